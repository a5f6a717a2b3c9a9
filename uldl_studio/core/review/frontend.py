"""What a front end uses of the core besides the :class:`~uldl_studio.core.review.session.Session`
and the jobs (``core.runs.jobs``), in one list.

The GUI (``uldl_studio.qt``) imports the session's package (``core.review``), the jobs and the
plain value types (``core.table``, ``core.classes``, ``core.progress``, ``core.cancel``,
``core.atomic``, ``core.engine.config``, ``core.engine.recipe``), and nothing else of the core:
an import contract in pyproject.toml holds it to that. What else it needs is named here, so a
change to the GUI's dependencies on the lower layers is a change to this file:

- the score registry and the label-issue highlight (what the map colours and the grid sorts by);
- the annotators' votes (the annotator bar, the agreement dialog);
- images and thumbnails; a run's versions; the run directory as a type;
- a few pure helpers: the neighbours' weights behind a constructed distribution, where the
  map's points come from, per-class accuracy, the export's column names, the demo dataset.
"""
from __future__ import annotations

from uldl_studio.core.data.datasets.common import IMAGE_EXTENSIONS
from uldl_studio.core.data.datasets.demo import load_demo
from uldl_studio.core.data.images import ThumbnailCache, decode_image
from uldl_studio.core.engine import versions
from uldl_studio.core.engine.run import Run
from uldl_studio.core.engine.va import placement_of
from uldl_studio.core.labels import annotations, scores
from uldl_studio.core.labels.label_issues import PRECISION, highlighted_mask
from uldl_studio.core.labels.ldl import contribution_weights
from uldl_studio.core.runs.evaluate import class_accuracy
from uldl_studio.core.runs.export import soft_label_columns
from uldl_studio.core.runs.predict import PredictOptions

__all__ = [
    "IMAGE_EXTENSIONS", "PRECISION", "PredictOptions", "Run", "ThumbnailCache", "annotations", "class_accuracy",
    "contribution_weights", "decode_image", "highlighted_mask", "load_demo", "placement_of", "scores",
    "soft_label_columns", "versions",
]
