"""How a run's training table is made from a dataset on disk: a frozen :class:`DatasetRecipe`.

A run records its recipe in ``RUN/config.json`` (``"dataset"``) and reads its dataset again
with :meth:`DatasetRecipe.load`, so the CLI, the GUI and a retrain all build the same table
the same way: read the layout, keep the first ``limit`` samples per split, pick the single
label, flip a fraction of the training labels (benchmarks), join soft labels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from uldl_studio.core.data.datasets import load_dataset
from uldl_studio.core.engine.noise import inject_label_noise
from uldl_studio.core.labels.soft_labels import join_soft_labels

DEMO = "demo"


@dataclass(frozen=True)
class DatasetRecipe:
    """A dataset and how it is read. ``path``: an absolute path, or ``"demo"``."""

    path: str
    format: str = "auto"
    limit: int | None = None
    single_label: str = "majority"
    seed: int = 0
    label_noise: float = 0.0
    noise_seed: int = 0
    soft_labels: str | None = None

    @classmethod
    def of(cls, data: str | Path, **fields) -> "DatasetRecipe":
        """The recipe for ``data`` (a path, or ``"demo"``), with paths made absolute."""
        path = DEMO if str(data) == DEMO else str(Path(data).expanduser().resolve())
        soft = fields.pop("soft_labels", None)
        if soft:
            soft = str(Path(soft).expanduser().resolve())
        return cls(path=path, soft_labels=soft, **{k: v for k, v in fields.items() if v is not None})

    @classmethod
    def from_dict(cls, info: dict) -> "DatasetRecipe":
        """Read a run's ``"dataset"`` record; keys it does not know (``path_rel``) are ignored
        and missing ones take their defaults (runs written before they existed)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in info.items() if k in names and v is not None}
        values.setdefault("path", "")
        values["format"] = values.get("format") or "auto"
        values["single_label"] = values.get("single_label") or "majority"
        for key in ("seed", "noise_seed"):
            values[key] = int(values.get(key) or 0)
        values["label_noise"] = float(values.get("label_noise") or 0.0)
        if values.get("limit") is not None:
            values["limit"] = int(values["limit"])
        return cls(**values)

    def to_dict(self) -> dict:
        """The record written to ``RUN/config.json``."""
        return dataclasses.asdict(self)

    def at(self, path: str) -> "DatasetRecipe":
        """The same recipe for the dataset found at ``path`` (it moved with the run)."""
        return dataclasses.replace(self, path=path)

    @property
    def is_demo(self) -> bool:
        return self.path == DEMO

    def load(self) -> pd.DataFrame:
        """Read the dataset as the recipe says (a SampleTable)."""
        table = load_dataset(self.path, fmt=self.format, single_label=self.single_label,
                             seed=self.seed, limit=self.limit)
        if self.label_noise:
            table = inject_label_noise(table, self.label_noise, seed=self.noise_seed)
        if self.soft_labels:
            table = join_soft_labels(table, self.soft_labels)
        return table
