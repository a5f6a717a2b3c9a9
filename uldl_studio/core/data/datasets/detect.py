"""``--format auto``: recognise a dataset layout from cheap signatures (names and CSV headers).

Each check looks at file names and at most the first line of a few CSVs; nothing is parsed in
full. The order settles overlaps: a folder holding both a generic CSV and class folders is
read as ``csv``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from uldl_studio.core.data.datasets import affectnet, csv_layout, fer2013, ferplus, folders, rafdb
from uldl_studio.core.data.datasets.common import describe_folder, list_names
from uldl_studio.core.table import DatasetError


def _header(path: Path) -> set[str]:
    return set(csv_layout.csv_header(path)) if path.is_file() else set()


def _is_ferplus(p: Path) -> bool:
    if p.is_file():
        return p.name.lower() == "label.csv"
    if (p / "label.csv").is_file():
        return True
    names = {n.lower(): n for n in list_names(p)}
    return any(f.lower() in names and (p / names[f.lower()] / "label.csv").is_file() for f in ferplus.SPLIT_FOLDERS)


def _is_rafdb(p: Path) -> bool:
    if p.is_file():
        return p.name == rafdb.LABEL_FILE.name
    return (p / rafdb.LABEL_FILE).is_file() or (p / "basic" / rafdb.LABEL_FILE).is_file()


def _affectnet_header(path: Path) -> bool:
    return {c.lower() for c in affectnet.REQUIRED} <= _header(path)


def _is_affectnet(p: Path) -> bool:
    if p.is_file():
        return _affectnet_header(p)
    for folder in (p, p / affectnet.LIST_FOLDER):
        if folder.is_dir():
            for csv in folder.glob("*.csv"):
                if csv.name.lower() in affectnet.CSV_NAMES and _affectnet_header(csv):
                    return True
    return False


def _fer2013_header(path: Path) -> bool:
    return {c.lower() for c in fer2013.REQUIRED} <= _header(path)


def _is_fer2013(p: Path) -> bool:
    if p.is_file():
        return _fer2013_header(p)
    return any(_fer2013_header(p / name) for name in fer2013.CSV_NAMES)


def _is_csv(p: Path) -> bool:
    if p.is_file():
        return csv_layout.is_generic_csv(p)
    return any(csv_layout.is_generic_csv(c) for c in p.glob("*.csv"))


def _is_folders(p: Path) -> bool:
    return p.is_dir() and bool(folders.layout_of(p))


SIGNATURES: list[tuple[str, Callable[[Path], bool], str]] = [
    ("ferplus", _is_ferplus, "FER2013Train/, FER2013Valid/ or FER2013Test/ holding label.csv (or label.csv itself)"),
    ("rafdb", _is_rafdb, "EmoLabel/list_patition_label.txt (RAF-DB basic)"),
    ("affectnet", _is_affectnet, "training.csv or validation.csv with columns subDirectory_filePath, expression"),
    ("fer2013", _is_fer2013, "fer2013.csv or a CSV with columns emotion, pixels"),
    ("csv", _is_csv, "a CSV with columns path, label"),
    ("folders", _is_folders, "sub-folders named after emotions (neutral, happiness, ...), optionally inside "
                             "train/valid/test"),
]


def detect_format(path: str | Path) -> str:
    """Name of the layout at ``path`` (one of ``FORMATS``); DatasetError listing what was looked for."""
    if str(path) == "demo":
        return "demo"
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    for fmt, check, _ in SIGNATURES:
        try:
            if check(p):
                return fmt
        except OSError:
            continue
    looked = "; ".join(f"{fmt}: {what}" for fmt, _, what in SIGNATURES)
    found = describe_folder(p) if p.is_dir() else f"a file with columns {', '.join(_header(p)) or 'none'}"
    raise DatasetError(f"{p}: cannot detect the dataset layout. Looked for {looked}. Found {found}. "
                       f"Choose the format explicitly ({', '.join(fmt for fmt, _, _ in SIGNATURES)}).")
