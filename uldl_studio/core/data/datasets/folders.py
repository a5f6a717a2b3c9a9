"""Class-per-folder trees: ``ROOT/<class>/*.png|jpg|jpeg|bmp`` or ``ROOT/<split>/<class>/...``.

Class folder names go through ``classes.canonical_name`` (``Happy``, ``angry``, ``sad`` are
fine); an unknown folder name is an error that lists every unknown folder. Split folder names:
train / valid / test or a synonym (training, val, validation, dev, testing). Without split
folders, samples are assigned 80/10/10 by an MD5 hash of their id (the path relative to
``ROOT``). Images in sub-folders of a class folder belong to that class. Hidden entries (a
leading ``.``) and files that are not images (by extension) are ignored. The classes are the
class folders present, in canonical order. Listing uses ``os.scandir``; no image is opened.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from uldl_studio.core.classes import CANONICAL, canonical_name
from uldl_studio.core.data.datasets.common import (
    IMAGE_EXTENSIONS, canonical_split, check_one_class, describe_folder, ensure_rows, hash_split, require_dir,
)
from uldl_studio.core.table import DatasetError, make_table


def subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _canonical_or_none(name: str) -> str | None:
    try:
        return canonical_name(name)
    except ValueError:
        return None


def layout_of(root: Path) -> str:
    """'split' when the sub-folders are split names, 'class' when they are class names, else ''."""
    names = subfolders(root)
    if names and all(canonical_split(n) for n in names):
        return "split"
    if names and any(_canonical_or_none(n) for n in names):
        return "class"
    return ""


def images_under(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                   if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    return out


def class_folders(folder: Path) -> dict[str, str]:
    """{folder name: canonical class}; DatasetError listing unknown folder names."""
    names = subfolders(folder)
    mapping = {n: _canonical_or_none(n) for n in names}
    unknown = [n for n, c in mapping.items() if c is None]
    if unknown:
        raise DatasetError(f"{folder}: unknown class folder names: {', '.join(repr(u) for u in unknown)}; expected "
                           f"emotion names ({', '.join(CANONICAL)} or a synonym such as happy, angry, sad)")
    seen: dict[str, str] = {}
    for name, cls in mapping.items():
        if cls in seen:
            raise DatasetError(f"{folder}: folders {seen[cls]!r} and {name!r} name the same class {cls}")
        seen[cls] = name
    return mapping  # type: ignore[return-value]


def load_folders(root: str | Path) -> pd.DataFrame:
    root = require_dir(root).resolve()
    kind = layout_of(root)
    if not kind:
        raise DatasetError(f"{root}: not a class-per-folder tree: expected sub-folders named after emotions "
                           f"({', '.join(CANONICAL)}), optionally inside train/valid/test; found {describe_folder(root)}")
    groups: list[tuple[str | None, Path]] = []
    if kind == "split":
        groups = [(canonical_split(n), root / n) for n in subfolders(root)]
    else:
        groups = [(None, root)]
    records = []
    for split, folder in groups:
        for name, cls in class_folders(folder).items():
            for path in images_under(folder / name):
                records.append((split, cls, path))
    frame = pd.DataFrame(records, columns=["split", "class", "path"])
    ensure_rows(frame, root, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    frame["sample_id"] = [Path(p).relative_to(root).as_posix() for p in frame["path"]]
    if kind == "class":
        frame["split"] = hash_split(frame["sample_id"].tolist())
    classes = [c for c in CANONICAL if c in set(frame["class"])]
    frame["label"] = frame["class"].map({c: i for i, c in enumerate(classes)})
    check_one_class(frame["label"].to_numpy(), classes, root)
    return make_table(frame[["sample_id", "path", "split", "label"]], classes, root, "folders")
