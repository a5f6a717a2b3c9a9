"""Apply a trained run to other images: soft labels for any image collection.

Two entry points:

* :func:`predict_collection` (``uldl-studio predict``, the GUI's Predict dialog): any
  collection :func:`core.image_collection.read_collection` reads (a folder tree, a CSV of
  paths, one image, any labelled layout whatever its classes). The run's classes define the
  output; the collection's own label is kept as text in ``source_label``. Images are decoded,
  optionally searched for faces (``core.faces``), batched and forwarded in chunks, so a large
  collection is never held decoded at once; ``progress(done, total, text)`` is called after
  every chunk and ``cancel`` (a ``threading.Event`` or a callable) is checked before every
  image and between forward batches.
* :func:`predict`: a SampleTable whose classes the run knows, labels re-indexed into the run's
  class order (a class the run lacks is a DatasetError); the rows keep their label.
* :func:`head_placement`: a SampleTable (any classes) placed in V-A space by the run's V-A
  head, for training another run with ``--va-from`` (``core.engine.va``, provider ``head``).

A prediction row (:data:`PREDICTION_COLUMNS`, written by :func:`write_predictions`):

* ``sample_id`` (the collection's id; ``<id>#face<k>`` for the k-th detected face, the largest
  face first), ``path`` (the source image), ``split`` = ``"test"`` (every prediction is held-out
  data for the run), ``label`` = the predicted class (argmax p) and ``label_name``, ``edited`` =
  False (the annotator's flags: none on a prediction);
* ``valence``, ``arousal``: the run's V-A head's prediction when the run has one (it was trained
  on a dataset with valence and arousal, ``TrainConfig.va_head_weight``), else the circumplex
  projection of p with the run's centroids and temperature (``core.va.circumplex_points``);
* the registry scores: ``self_confidence`` = 1 − max p, ``margin`` = the registry's "best
  other − p[label]", which with label = the predicted class is −(best − second best) ∈
  [−1, 0] (0 = a tie between the two top classes), ``entropy`` = normalised entropy of p
  (:data:`PREDICTION_SCORES`); the other exported scores (``lambda``, ``ambiguity``, ``aum``,
  ``confidence_mean``, ``variability``, ``knn_disagreement``, ``oof_confidence``…) describe a
  training run and are empty; ``unsure`` and ``reviewed`` are False;
* ``d_<class>`` = ``p_<class>`` = the model's softmax (with ``tta``: the mean of the image's
  and its mirror image's softmax);
* ``source_label`` (text, empty when the collection has none), ``face_index`` and ``box_x``,
  ``box_y``, ``box_w``, ``box_h`` (source pixels; empty for whole-image rows), ``x2d``, ``y2d``:
  the run's 2-D feature map applied to the image's features (of the un-mirrored image), so a
  new image lands next to the training images it resembles (:class:`FeatureProjection`);
  ``va_pred_valence``, ``va_pred_arousal``: the V-A head's prediction (empty when the run has no
  head), so a reader can tell which ``valence``/``arousal`` is;
* ``adapted`` (only when ``PredictOptions.adapt`` asks for a correction): the corrections
  applied to this collection's p, e.g. ``bn+priors``, or ``none`` when none was.

Corrections for a collection unlike the run's dataset (``PredictOptions.adapt``, CLI
``--adapt``), applied to a copy of the model in memory, never to the run on disk:

* ``bn`` (AdaBN, Li et al. 2016): the BatchNorm statistics re-estimated on the collection's
  own images (covariate shift: other cameras, framings, lighting); the images are forwarded
  twice;
* ``priors``: the collection's class priors estimated from the unlabelled predictions and p
  re-weighted to them (``core.shift.adapt_priors``: calibrated on the run's valid split, MAP-EM
  with a floor, or BBSE; no change when the estimate is unstable or there is no significant
  shift). :class:`PredictSummary` carries the estimated next to the source priors.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from uldl_studio.core.cancel import Cancelled, cancel_requested
from uldl_studio.core.classes import canonical_name
from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.data.faces import AUTO_FACTOR, DEFAULT_MARGIN, FACE_MODES, FaceDetector, crop_face, needs_detection
from uldl_studio.core.data.image_cache import open_cached_images
from uldl_studio.core.data.image_collection import Collection, read_collection
from uldl_studio.core.data.images import ImageReadError, decode_image, to_model_input
from uldl_studio.core.engine.augment import to_float
from uldl_studio.core.engine.config import TrainConfig, resolve_device
from uldl_studio.core.engine.model import build_model
from uldl_studio.core.engine.precision import choose_precision
from uldl_studio.core.engine.run import Run
from uldl_studio.core.engine.va import HEAD_COLUMNS, PRED_COLUMNS, circumplex_points
from uldl_studio.core.labels import scores
from uldl_studio.core.labels.metrics import accuracy, ldl_metrics, mean_class_accuracy
from uldl_studio.core.progress import Progress, run_to_end
from uldl_studio.core.runs.export import read_soft_labels, write_soft_labels
from uldl_studio.core.runs.shift import PRIOR_METHODS, SourceModel, adapt_priors
from uldl_studio.core.table import READ_CSV_EXACT_FLOATS, DatasetError, classes_of, d_columns, p_columns

__all__ = ["predict", "predict_collection", "head_placement", "Predictor", "PredictOptions", "Prediction", "PredictSummary",
           "FeatureProjection", "write_predictions", "read_predictions",
           "EXTRA_COLUMNS", "PREDICTION_SPLIT", "PREDICTION_SCORES", "ADAPT_MODES", "ADAPTED_COLUMN", "parse_adapt"]

PREDICTION_SPLIT = "test"
EXTRA_COLUMNS = ("source_label", "face_index", "box_x", "box_y", "box_w", "box_h", "x2d", "y2d",
                 "va_pred_valence", "va_pred_arousal")
#: written after the extra columns when the prediction was asked to adapt to the collection
ADAPTED_COLUMN = "adapted"
#: the corrections ``PredictOptions.adapt`` may ask for, in the order they are applied
ADAPT_MODES = ("bn", "priors")
#: AdaBN needs at least this many images (fewer: BatchNorm statistics too noisy; not applied)
ADABN_MIN_IMAGES = 64
_INT_EXTRAS = ("face_index", "box_x", "box_y", "box_w", "box_h")
_FLOAT_EXTRAS = ("x2d", "y2d", "va_pred_valence", "va_pred_arousal")
#: the registered scores a prediction row has; every other exported score describes a training
#: run (λ, the training dynamics, neighbours, cross-fitting, their rank average) and is empty
PREDICTION_SCORES = ("self_confidence", "margin", "entropy")
_PROJECTION_TOLERANCE = 0.05


# ----------------------------------------------------------------------------- the 2-D feature map
@dataclass
class FeatureProjection:
    """The run's 2-D feature map (``x2d``/``y2d`` of samples.csv) as a fixed linear map.

    ``core.run.feature_map_2d`` is a PCA of the last epoch's features, recomputed per call; a
    new sample must go through the same map, not a PCA of its own batch. The map is recovered
    from ``RUN/features.npy`` (float16 features of every row) and the ``x2d``/``y2d`` the run
    wrote for them: a least-squares fit of the (exactly linear) map, which reproduces the PCA
    up to float16 rounding even where its two eigenvalues are close (a PCA recomputed from the
    rounded features could rotate there). With fewer rows than twice the feature dimension the
    PCA is recomputed instead. ``fit_error`` is the RMS distance between the map applied to
    the run's own features and the written ``x2d``/``y2d``, relative to their spread.
    """

    mean: np.ndarray        # (V,)
    matrix: np.ndarray      # (V, 2)
    offset: np.ndarray      # (2,)
    fit_error: float

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float64) - self.mean
        return x @ self.matrix + self.offset

    @classmethod
    def fit(cls, features: np.ndarray, xy: np.ndarray) -> "FeatureProjection":
        x = np.asarray(features, np.float64)
        xy = np.asarray(xy, np.float64)
        mean = x.mean(0)
        xc = x - mean
        n, v = xc.shape
        if n >= 2 * (v + 1):
            design = np.hstack([xc, np.ones((n, 1))])
            solution, *_ = np.linalg.lstsq(design, xy, rcond=None)
            matrix, offset = solution[:v], solution[v]
        else:
            _, _, vt = np.linalg.svd(xc, full_matrices=False)
            comps = vt[:2]
            if comps.shape[0] < 2:
                comps = np.vstack([comps, np.zeros((2 - comps.shape[0], v))])
            signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
            signs[signs == 0] = 1
            matrix, offset = (comps * signs[:, None]).T, np.zeros(2)
        fitted = xc @ matrix + offset
        spread = float(np.sqrt(np.mean(np.sum((xy - xy.mean(0)) ** 2, axis=1)))) or 1.0
        error = float(np.sqrt(np.mean(np.sum((fitted - xy) ** 2, axis=1)))) / spread
        return cls(mean, matrix, offset, error)

    @classmethod
    def from_run(cls, run) -> "FeatureProjection | None":
        """The run's map, or None (with a warning) when the run lacks the files to rebuild it."""
        path = Path(run.path) / "samples.csv"
        try:
            features = run.features()
            xy = pd.read_csv(path, usecols=["x2d", "y2d"], **READ_CSV_EXACT_FLOATS).to_numpy(np.float64)
        except (OSError, ValueError, KeyError):
            features, xy = None, None
        if features is None or xy is None or len(features) != len(xy) or len(xy) < 3:
            warnings.warn(DatasetWarning(f"{run.path}: no feature map to place predictions on (features.npy "
                                         f"and samples.csv's x2d/y2d missing or out of step); x2d, y2d left empty"),
                          stacklevel=2)
            return None
        good = np.isfinite(xy).all(1) & np.isfinite(np.asarray(features, np.float64)).all(1)
        projection = cls.fit(features[good], xy[good])
        if projection.fit_error > _PROJECTION_TOLERANCE:
            warnings.warn(DatasetWarning(f"{run.path}: features.npy reproduces the run's feature map only "
                                         f"approximately (relative error {projection.fit_error:.2f}); x2d, y2d of "
                                         f"the predictions are approximate"), stacklevel=2)
        return projection


# ----------------------------------------------------------------------------- the model
class Predictor:
    """A run's model ready to forward images: the run's precision, input geometry and classes."""

    def __init__(self, run, device: str = "auto", *, projection: bool = True) -> None:
        ckpt = run.checkpoint()
        if ckpt is None:
            raise DatasetError(f"{run.path}: the run has no trained model yet (no checkpoint.pt); train it first")
        self.run = run
        self.config = TrainConfig.from_dict(ckpt["config"])
        self.classes = [canonical_name(c) for c in ckpt["classes"]]
        self.device = resolve_device(device)
        self.has_va_head = "va_head.weight" in ckpt["model"]
        model = build_model(self.config.model_config(len(self.classes), self.has_va_head))
        model.load_state_dict(ckpt["model"])
        # the run's own precision, so a trained sample gets the same p here as in samples.csv
        self.precision = choose_precision(self.device, self.config.amp, self.config.channels_last)
        self.model = self.precision.prepare_model(model.to(self.device)).eval()
        self.batch_size = int(self.config.eval_batch_size)
        self.projection = FeatureProjection.from_run(run) if projection else None

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def channels(self) -> int:
        return int(self.config.channels)

    def forward(self, images: np.ndarray, *, tta: bool = False,
                cancelled: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (B, C, S, S) → probabilities float64 (B, m) and features float32 (B, V).

        ``tta``: p is the mean of the image's and its mirror image's softmax; the features
        are the un-mirrored image's. ``cancelled`` is checked between forward batches.
        """
        probs, feats = [], []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                if cancelled is not None and cancelled():
                    raise Cancelled("during prediction")
                x = to_float(torch.as_tensor(images[start:start + self.batch_size]).to(self.device))
                with self.precision.autocast():
                    logits, v = self.model(self.precision.prepare_input(x))
                p = torch.softmax(logits.float(), -1)
                if tta:
                    with self.precision.autocast():
                        flipped, _ = self.model(self.precision.prepare_input(x.flip(-1)))
                    p = 0.5 * (p + torch.softmax(flipped.float(), -1))
                probs.append(p.cpu().numpy().astype(np.float64))
                feats.append(v.float().cpu().numpy())
        if not probs:
            m = len(self.classes)
            return np.zeros((0, m)), np.zeros((0, 0), np.float32)
        p = np.concatenate(probs)
        p /= p.sum(1, keepdims=True)
        return p, np.concatenate(feats)

    def adapted_bn(self, images: np.ndarray, *, batch_size: int = 256, seed: int = 0) -> "Predictor":
        """A copy whose BatchNorm statistics are those of ``images`` (uint8 (N, C, S, S)): AdaBN.

        The statistics are reset and re-estimated as a cumulative average over batches of the
        shuffled images (a collection sorted by class would otherwise give batch statistics of
        one class each); no parameter changes and the run on disk is untouched."""
        adapted = copy.copy(self)
        model = copy.deepcopy(self.model)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative moving average over the batches
        model.eval()
        for module in norms:
            module.train()
        order = np.random.default_rng(seed).permutation(len(images))
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                rows = np.sort(order[start:start + batch_size])
                if len(rows) < 2:
                    continue
                x = to_float(torch.as_tensor(images[rows]).to(self.device))
                with self.precision.autocast():
                    model(self.precision.prepare_input(x))
        adapted.model = model.eval()
        return adapted

    def source_model(self, *, bias: bool = True):
        """``core.shift.SourceModel`` of the run: calibration and class priors fitted on its
        valid split's predictions and labels (samples.csv; the test split when there is no
        valid one). DatasetError when the run has neither."""
        cached = getattr(self, "_source_model", None)
        if cached is not None and cached[0] == bias:
            return cached[1]
        samples = self.run.samples()
        cols = p_columns(self.classes)
        split = samples["split"].astype(str)
        for name in ("valid", "test"):
            rows = samples[(split == name).to_numpy()]
            rows = rows[np.isfinite(rows[cols].to_numpy(np.float64)).all(1)] if len(rows) else rows
            if len(rows):
                break
        else:
            raise DatasetError(f"{self.run.path}: --adapt priors calibrates on the run's valid split, and the run has "
                               "no valid or test rows with predictions")
        model = SourceModel.fit(rows[cols].to_numpy(np.float64), rows["label"].to_numpy(np.int64), len(self.classes),
                                bias=bias)
        self._source_model = (bias, model)
        return model

    def va(self, probs: np.ndarray) -> np.ndarray:
        """The circumplex point of each prediction (the run's centroids and temperature)."""
        va = circumplex_points(probs, self.classes, self.config.va_centroids, self.config.va_temperature)
        return np.clip(va, -1.0, 1.0)

    def va_head(self, features: np.ndarray) -> np.ndarray:
        """The V-A head's points of the features ``forward`` returned, (B, 2) float64; NaN when
        the run has no head."""
        features = np.asarray(features, np.float32)
        if not self.has_va_head:
            return np.full((len(features), 2), np.nan)
        if len(features) == 0:
            return np.zeros((0, 2))
        with torch.no_grad():
            points = self.model.va(torch.as_tensor(features, device=self.device))
        return points.cpu().numpy().astype(np.float64)


# ----------------------------------------------------------------------------- SampleTable API
def predict(run, table: pd.DataFrame, *, batch_size: int = 64, device: str = "auto",
            progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """p for every readable row of a SampleTable whose classes the run knows.

    The result is the table with ``p_<class>``, ``d_<class>`` = ``p_*`` and ``lambda`` = NaN,
    its labels re-indexed into the run's class order (``attrs["classes"]`` becomes the run's);
    a table class the run does not know is a DatasetError. Rows whose image cannot be read are
    dropped with a DatasetWarning. For collections whatever their classes, see
    :func:`predict_collection`.
    """
    predictor = Predictor(run, device, projection=False)
    run_classes = predictor.classes
    table_classes = [canonical_name(c) for c in classes_of(table)]
    unknown = [c for c in table_classes if c not in run_classes]
    if unknown:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: classes {unknown} are unknown to the run "
                           f"{run.path} (it was trained on {', '.join(run_classes)}); "
                           f"predict_collection keeps such labels as text")
    remap = np.array([run_classes.index(c) for c in table_classes], dtype=np.int64)
    table, p, feats = _forward_table(predictor, table, batch_size, progress)
    out = table.copy()
    out["label"] = remap[out["label"].to_numpy(np.int64)]
    if "label_original" in out:
        out["label_original"] = remap[out["label_original"].to_numpy(np.int64)]
    out = out.drop(columns=[c for c in out.columns if c.startswith(("p_", "d_"))] + ["lambda"], errors="ignore")
    out["lambda"] = np.nan
    for j, (dc, pc) in enumerate(zip(d_columns(run_classes), p_columns(run_classes))):
        out[dc] = p[:, j]
        out[pc] = p[:, j]
    if predictor.has_va_head:
        head = predictor.va_head(feats)
        out[PRED_COLUMNS[0]], out[PRED_COLUMNS[1]] = head[:, 0], head[:, 1]
    out.attrs = {**table.attrs, "classes": list(run_classes)}
    return out


def _forward_table(predictor: "Predictor", table: pd.DataFrame, batch_size: int,
                   progress: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The readable rows of ``table`` and their p (R, m) and features (R, V), read through the
    decoded-image cache (one batch in memory at a time, whatever the table's size)."""
    table, images = open_cached_images(table, predictor.image_size, predictor.channels)
    if len(table) == 0:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: no readable images to predict")
    probs, feats = [], []
    for start in range(0, len(images), batch_size):
        p, v = predictor.forward(images.read(np.arange(start, min(start + batch_size, len(images)))))
        probs.append(p)
        feats.append(v)
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return table, np.concatenate(probs), np.concatenate(feats)


def head_placement(run, table: pd.DataFrame, *, batch_size: int = 64, device: str = "auto",
                   progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """``table`` (any classes) with the V-A head points of ``run`` (a ``Run``, a run folder or a
    :class:`Predictor`) in ``core.engine.va.HEAD_COLUMNS``, what ``fit`` places the samples with
    for ``va=head`` (``--va-from RUN``). Rows whose image cannot be read get NaN (``fit`` drops
    them too). DatasetError when the run has no V-A head."""
    if not isinstance(run, Predictor):
        if isinstance(run, (str, Path)):
            run = Run.open(run)
        run = Predictor(run, device, projection=False)
    if not run.has_va_head:
        raise DatasetError(f"--va-from {run.run.path}: the run has no V-A head (its dataset had no valence and "
                           "arousal, or it was trained with va_head_weight=0)")
    readable, _, feats = _forward_table(run, table, batch_size, progress)
    head = run.va_head(feats)
    points = pd.DataFrame(head, columns=list(HEAD_COLUMNS), index=readable["sample_id"].astype(str).to_numpy())
    points = points[~points.index.duplicated()]
    out = table.drop(columns=[c for c in HEAD_COLUMNS if c in table])
    placed = points.reindex(out["sample_id"].astype(str).to_numpy())
    for c in HEAD_COLUMNS:
        out[c] = placed[c].to_numpy(np.float64)
    out.attrs = dict(table.attrs)
    return out


# ----------------------------------------------------------------------------- collections
@dataclass
class PredictOptions:
    """How :func:`predict_collection` works (CLI: ``--faces``, ``--tta``, ``--batch-size``...)."""

    faces: str = "off"                 # off | auto | detect (core.faces)
    tta: bool = False                  # average p over the image and its mirror image
    chunk_size: int = 256              # images decoded (and their crops forwarded) per chunk
    device: str = "auto"
    face_margin: float = DEFAULT_MARGIN
    auto_factor: float = AUTO_FACTOR   # --faces auto: detect when the short side > factor × input size
    workers: int = 2                   # decoding / detection threads
    adapt: tuple = ()                  # corrections for the collection: "bn", "priors" (ADAPT_MODES)
    prior_method: str = "em"           # priors: em (MAP-EM) | bbse (core.shift)

    def __post_init__(self) -> None:
        self.adapt = parse_adapt(self.adapt)
        if self.prior_method not in PRIOR_METHODS:
            raise DatasetError(f"prior method {self.prior_method!r}: expected one of {', '.join(PRIOR_METHODS)}")
        if self.faces not in FACE_MODES:
            raise DatasetError(f"faces={self.faces!r}: expected one of {', '.join(FACE_MODES)}")
        if int(self.chunk_size) < 1:
            raise DatasetError(f"chunk size must be >= 1, got {self.chunk_size}")
        if not 0.0 <= float(self.face_margin) <= 2.0:
            raise DatasetError(f"face margin must be in [0, 2], got {self.face_margin}")


def parse_adapt(value) -> tuple[str, ...]:
    """``"bn,priors"``, ``["priors", "bn"]``, ``"none"`` or ``()`` → the corrections in
    ``ADAPT_MODES`` order; a DatasetError names an unknown one."""
    if isinstance(value, str):
        value = [v for v in value.replace("+", ",").split(",")]
    names = [str(v).strip() for v in (value or ()) if str(v).strip() and str(v).strip() != "none"]
    unknown = [v for v in names if v not in ADAPT_MODES]
    if unknown:
        raise DatasetError(f"adapt {', '.join(unknown)}: expected {' or '.join(ADAPT_MODES)}")
    return tuple(m for m in ADAPT_MODES if m in names)


@dataclass
class PredictSummary:
    """What a prediction did, for the CLI's closing lines and the GUI's report."""

    source: str
    images: int = 0                    # images in the collection
    rows: int = 0                      # prediction rows (faces, or whole images)
    unreadable: int = 0
    unreadable_example: str | None = None
    no_face: int = 0                   # images not written: no face found (--faces detect)
    no_face_example: str | None = None
    whole_image: int = 0               # --faces auto: large images without a face, predicted whole
    faces_found: int = 0
    skipped_files: int = 0             # non-image files in a folder tree
    labelled_rows: int = 0             # rows with a source label
    scored_rows: int = 0               # rows whose source label is one of the run's classes
    accuracy: float | None = None      # on the scored rows
    mean_class_accuracy: float | None = None
    ldl: dict = field(default_factory=dict)   # LDL metrics vs the reference, on the scored rows
    ldl_rows: int = 0
    seconds: float = 0.0
    faces: str = "off"
    tta: bool = False
    adapt: tuple = ()                  # corrections asked for
    adapted: tuple = ()                # corrections applied
    bn_note: str = ""                  # why AdaBN was not applied
    prior_shift: object = None         # core.shift.PriorShift of --adapt priors
    classes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        def n(count: int, word: str) -> str:
            return f"{count} {word}" + ("" if count == 1 else "s")

        out = [f"read {self.source}"]
        detail = []
        if self.unreadable:
            detail.append(f"{self.unreadable} unreadable skipped")
        if self.faces != "off":
            detail.append(f"{n(self.faces_found, 'face')} found")
        if self.no_face:
            detail.append(f"{n(self.no_face, 'image')} without a face not written")
        if self.whole_image:
            detail.append(f"{n(self.whole_image, 'large image')} without a face predicted whole")
        rate = f"{self.images / self.seconds:.0f} images/s" if self.seconds > 0 else ""
        out.append(f"predicted {n(self.rows, 'row')} from {n(self.images, 'image')}"
                   + (f" ({'; '.join(detail)})" if detail else "")
                   + (f" in {self.seconds:.1f} s, {rate}" if rate else ""))
        if self.labelled_rows:
            text = (f"source labels: {self.labelled_rows} rows labelled, {self.scored_rows} with a class the run "
                    f"knows")
            if self.scored_rows and self.accuracy is not None:
                text += f"; on those: accuracy {self.accuracy:.3f}, mean class accuracy {self.mean_class_accuracy:.3f}"
            out.append(text)
            if self.ldl:
                metrics = ", ".join(f"{k} {v:.3f}" for k, v in self.ldl.items())
                out.append(f"against the reference distributions ({self.ldl_rows} rows, restricted to the run's "
                           f"classes): {metrics}")
        if "bn" in self.adapt:
            out.append("BatchNorm statistics re-estimated on the collection (AdaBN)" if "bn" in self.adapted
                       else f"BatchNorm statistics not re-estimated: {self.bn_note}")
        if self.prior_shift is not None:
            out.extend(self.prior_shift.lines(self.classes))
        return out


@dataclass
class Prediction:
    table: pd.DataFrame
    summary: PredictSummary


@dataclass
class _Item:
    crops: list
    faces: list                     # (face_index, Box | None) per crop
    error: str | None = None
    no_face: bool = False
    whole_image: bool = False


def predict_collection(run, source, options: PredictOptions | None = None, *,
                       progress: Callable[[int, int, str], None] | None = None, cancel=None) -> Prediction:
    """:func:`predict_steps` run to its end; ``progress(done, total, text)`` after every chunk."""
    report = None if progress is None else (lambda p: progress(p.batch, p.batches, p.message))
    return run_to_end(predict_steps(run, source, options, cancel=cancel), report)


def predict_steps(run, source, options: PredictOptions | None = None, *, cancel=None) -> Iterator[Progress]:
    """Soft labels for every image (or face) of ``source`` (see the module docstring): a job
    that yields a ``Progress("predict")`` after every chunk and returns the :class:`Prediction`.

    ``run``: a ``Run`` or a :class:`Predictor`; ``source``: a path for ``read_collection`` or a
    :class:`~uldl_studio.core.data.image_collection.Collection`. Raises :class:`Cancelled`
    when cancelled, DatasetError when nothing could be predicted (every image unreadable, or
    without a face). Unreadable images and images without a face each give one DatasetWarning
    with the count and an example.
    """
    options = options or PredictOptions()
    started = time.perf_counter()
    cancelled = lambda: cancel_requested(cancel)  # noqa: E731
    collection = source if isinstance(source, Collection) else read_collection(source)
    predictor = run if isinstance(run, Predictor) else Predictor(run, options.device)
    detector = FaceDetector() if options.faces != "off" else None
    size, channels = predictor.image_size, predictor.channels
    table = collection.table
    n = len(table)
    paths = table["path"].astype(str).tolist()
    pixels = table["pixels"].tolist() if "pixels" in table else None
    summary = PredictSummary(source=collection.describe(), images=n, skipped_files=collection.skipped,
                             faces=options.faces, tta=options.tta, adapt=options.adapt, classes=list(predictor.classes))
    kept_crops: list = [] if "bn" in options.adapt else None  # AdaBN forwards every crop again

    def prepare(i: int) -> _Item | None:
        if cancelled():
            return None
        try:
            image = decode_image(paths[i], pixels[i] if pixels is not None else None)
        except ImageReadError as exc:
            return _Item([], [], error=exc.reason)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a collection
            return _Item([], [], error=f"{type(exc).__name__}: {exc}")
        detect = detector is not None and (options.faces == "detect" or
                                           needs_detection(image.shape, size, options.auto_factor))
        if detect:
            boxes = detector.detect(image)
            if boxes:
                return _Item([to_model_input(crop_face(image, b, options.face_margin), size, channels)
                              for b in boxes], [(k, b) for k, b in enumerate(boxes)])
            if options.faces == "detect":
                return _Item([], [], no_face=True)
        return _Item([to_model_input(image, size, channels)], [(-1, None)], whole_image=detect)

    src_rows, face_index, boxes, probs, coords, heads = [], [], [], [], [], []
    problems: list[tuple[str, str]] = []
    no_face: list[str] = []
    chunk = int(options.chunk_size)
    starts = list(range(0, n, chunk))
    yield Progress("predict", batch=0, batches=n, message="predicting")
    pool = ThreadPoolExecutor(max_workers=max(1, int(options.workers)), thread_name_prefix="uldl-predict")
    try:
        def submit(start: int):
            return [pool.submit(prepare, i) for i in range(start, min(start + chunk, n))]

        pending = submit(starts[0]) if starts else []
        for k, start in enumerate(starts):
            futures = pending
            items = [f.result() for f in futures]
            if cancelled() or any(item is None for item in items):
                raise Cancelled("during prediction")
            pending = submit(starts[k + 1]) if k + 1 < len(starts) else []  # decode ahead while forwarding
            crops, rows_here = [], []
            for offset, item in enumerate(items):
                i = start + offset
                if item.error is not None:
                    problems.append((paths[i], item.error))
                    continue
                if item.no_face:
                    no_face.append(paths[i])
                    continue
                summary.whole_image += int(item.whole_image)
                for (f, box), crop in zip(item.faces, item.crops):
                    crops.append(crop)
                    rows_here.append(i)
                    face_index.append(f)
                    boxes.append((box.x, box.y, box.w, box.h) if box is not None else (-1, -1, -1, -1))
                    summary.faces_found += int(f >= 0)
            del items
            if crops:
                if kept_crops is not None:
                    kept_crops.extend(crops)
                p, feats = predictor.forward(np.stack(crops), tta=options.tta, cancelled=cancelled)
                probs.append(p)
                coords.append(predictor.projection(feats) if predictor.projection is not None
                              else np.full((len(p), 2), np.nan))
                heads.append(predictor.va_head(feats))
                src_rows.extend(rows_here)
            del crops
            yield Progress("predict", batch=min(start + chunk, n), batches=n, message="predicting")
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True)

    summary.unreadable = len(problems)
    if problems:
        summary.unreadable_example = f"{problems[0][0]} ({problems[0][1]})"
    summary.no_face = len(no_face)
    summary.no_face_example = no_face[0] if no_face else None
    if not src_rows:
        root = collection.root
        if summary.unreadable == n:
            raise DatasetError(f"{root}: none of the {n} images could be read, e.g. {summary.unreadable_example}")
        unread = f" ({summary.unreadable} more could not be read)" if summary.unreadable else ""
        raise DatasetError(f"{root}: no face found in any of the {n - summary.unreadable} images{unread}, e.g. "
                           f"{summary.no_face_example}; --faces auto or off predicts on whole images")
    if problems:
        warnings.warn(DatasetWarning(f"{summary.unreadable} of {n} images could not be read and were skipped, "
                                     f"e.g. {summary.unreadable_example}"), stacklevel=2)
    if no_face:
        warnings.warn(DatasetWarning(f"{summary.no_face} of {n} images have no face the detector finds and were "
                                     f"not written, e.g. {summary.no_face_example}"), stacklevel=2)

    rows = np.asarray(src_rows, np.int64)
    probs, coords, heads = np.concatenate(probs), np.concatenate(coords), np.concatenate(heads)
    if options.adapt:
        probs, coords, heads = _adapt(predictor, options, summary, probs, coords, heads, kept_crops, cancelled)
    out = _prediction_table(predictor, collection, rows, np.asarray(face_index, np.int64),
                            np.asarray(boxes, np.int64).reshape(-1, 4), probs, coords, heads)
    if options.adapt:
        out[ADAPTED_COLUMN] = "+".join(summary.adapted) or "none"
    summary.rows = len(out)
    _score_against_sources(out, collection, rows, predictor.classes, summary)
    summary.seconds = time.perf_counter() - started
    return Prediction(out, summary)


def _adapt(predictor: Predictor, options: PredictOptions, summary: PredictSummary, probs: np.ndarray,
           coords: np.ndarray, heads: np.ndarray, crops: list | None,
           cancelled) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corrections ``options.adapt`` asks for, recorded in ``summary``: AdaBN (the crops
    forwarded again through a copy of the model with the collection's BatchNorm statistics),
    then the class priors."""
    applied = []
    if "bn" in options.adapt:
        if len(crops) < ADABN_MIN_IMAGES:
            summary.bn_note = f"{len(crops)} images, fewer than {ADABN_MIN_IMAGES}"
        else:
            images = np.stack(crops)
            adapted = predictor.adapted_bn(images)
            probs, feats = adapted.forward(images, tta=options.tta, cancelled=cancelled)
            if predictor.projection is not None:
                coords = predictor.projection(feats)
            heads = adapted.va_head(feats)
            applied.append("bn")
    if "priors" in options.adapt:
        probs, shift = adapt_priors(probs, predictor.source_model(), method=options.prior_method)
        summary.prior_shift = shift
        if shift.applied:
            applied.append("priors")
    summary.adapted = tuple(applied)
    return probs, coords, heads


def _prediction_table(predictor: Predictor, collection, rows: np.ndarray, faces: np.ndarray, boxes: np.ndarray,
                      p: np.ndarray, xy: np.ndarray, heads: np.ndarray | None = None) -> pd.DataFrame:
    classes = predictor.classes
    source = collection.table.iloc[rows].reset_index(drop=True)
    ids = source["sample_id"].astype(str).to_numpy(dtype=object)
    detected = faces >= 0
    if detected.any():
        ids = ids.copy()
        ids[detected] = [f"{sid}#face{k}" for sid, k in zip(ids[detected], faces[detected])]
    label = p.argmax(1).astype(np.int64)
    if heads is None:
        heads = np.full((len(p), 2), np.nan)
    va = np.clip(heads, -1.0, 1.0) if predictor.has_va_head else predictor.va(p)
    out = pd.DataFrame({"sample_id": ids, "path": source["path"].astype(str).to_numpy(dtype=object),
                        "split": PREDICTION_SPLIT, "label": label,
                        "label_name": np.asarray(classes, dtype=object)[label], "edited": False,
                        "valence": va[:, 0], "arousal": va[:, 1]})
    for j, (dc, pc) in enumerate(zip(d_columns(classes), p_columns(classes))):
        out[dc] = p[:, j]
        out[pc] = p[:, j]
    out.attrs = {"classes": list(classes), "root": collection.root, "format": "prediction"}
    for score in scores.exported():
        if score.name not in out:
            out[score.name] = score.values(out) if score.name in PREDICTION_SCORES else np.nan
    out["source_label"] = source["source_label"].to_numpy(dtype=object)
    out["face_index"] = pd.array(np.where(detected, faces, 0), dtype="Int64")
    out.loc[~detected, "face_index"] = pd.NA
    for j, name in enumerate(("box_x", "box_y", "box_w", "box_h")):
        out[name] = pd.array(boxes[:, j], dtype="Int64")
        out.loc[~detected, name] = pd.NA
    out["x2d"], out["y2d"] = xy[:, 0], xy[:, 1]
    out["va_pred_valence"], out["va_pred_arousal"] = heads[:, 0], heads[:, 1]
    out.attrs = {"classes": list(classes), "root": collection.root, "format": "prediction"}
    return out


def _score_against_sources(out: pd.DataFrame, collection, rows: np.ndarray, classes: list[str],
                           summary: PredictSummary) -> None:
    """Accuracy and LDL metrics on the rows whose source label is one of the run's classes
    (``rows``: each prediction row's position in the collection's table)."""
    labels = out["source_label"]
    summary.labelled_rows = int(labels.notna().sum())
    known = labels.isin(classes).to_numpy()
    summary.scored_rows = int(known.sum())
    if not known.any():
        return
    m = len(classes)
    truth = np.array([classes.index(c) for c in labels[known]], dtype=np.int64)
    p = out[p_columns(classes)].to_numpy(np.float64)[known]
    predicted = p.argmax(1)
    summary.accuracy = accuracy(truth, predicted)
    summary.mean_class_accuracy = mean_class_accuracy(truth, predicted, m)
    if not collection.ref_classes:
        return
    # The reference on the run's classes: mass on classes the run lacks is dropped, the rest
    # renormalised; rows left with no mass are not scored.
    source = collection.table.iloc[rows[known]]
    ref = np.zeros((len(source), m))
    for j, c in enumerate(classes):
        if c in collection.ref_classes:
            ref[:, j] = source[f"ref_{c}"].to_numpy(np.float64)
    sums = ref.sum(1)
    good = np.isfinite(ref).all(1) & (sums > 0)
    if good.any():
        summary.ldl = ldl_metrics(ref[good] / sums[good, None], p[good])
        summary.ldl_rows = int(good.sum())


# ----------------------------------------------------------------------------- files
def _extra_text(value, name: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if name in _INT_EXTRAS:
        return str(int(value))
    if name in _FLOAT_EXTRAS:
        return repr(float(value))
    return str(value)


def _extra_json(text: str, name: str):
    """An extra column's cell in JSON: the int, float or text that ``_extra_text`` wrote, None
    where empty."""
    if text == "":
        return None
    return int(text) if name in _INT_EXTRAS else float(text) if name in _FLOAT_EXTRAS else text


def write_predictions(table: pd.DataFrame, path: str | Path) -> None:
    """A soft-label file (``core.runs.export.write_soft_labels``) plus the :data:`EXTRA_COLUMNS`
    (and :data:`ADAPTED_COLUMN` when the table has it), written in one pass, atomically.
    ``read_soft_labels`` reads it (extra columns kept as strings); :func:`read_predictions`
    converts them back."""
    json_file = Path(path).suffix.lower() == ".json"
    extra = []
    for name in (*EXTRA_COLUMNS, ADAPTED_COLUMN):
        if name in table:
            texts = [_extra_text(v, name) for v in table[name].tolist()]
            extra.append((name, [_extra_json(t, name) for t in texts] if json_file else texts))
    write_soft_labels(table, path, extra)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """``read_soft_labels`` with the extra prediction columns typed: ``face_index``/``box_*``
    nullable ints, ``x2d``/``y2d`` floats, ``source_label`` None where empty."""
    frame = read_soft_labels(path)
    for name in _INT_EXTRAS:
        if name in frame:
            frame[name] = pd.array(pd.to_numeric(frame[name].replace("", None), errors="raise"), dtype="Int64")
    for name in _FLOAT_EXTRAS:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name].replace("", None), errors="raise").astype(np.float64)
    if "source_label" in frame:
        frame["source_label"] = frame["source_label"].map(lambda v: None if v in ("", None) else v).astype(object)
    return frame
