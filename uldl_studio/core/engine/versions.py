"""Run versions: training again never overwrites a trained model.

A run folder is a family of versions. Version 1 is the folder itself, as a first training
writes it. Training again (after edits, or with another configuration) writes version N into
``RUN/versions/vN/``, a complete run directory of its own (``core.run``: config.json,
checkpoint.pt, samples.csv, ...). The annotator's journal is shared by the family and stays
at ``RUN/edits.jsonl``.

``RUN/versions.json`` (written atomically, once the run has a second version) lists them::

    {"format_version": 1, "current": "v2",
     "versions": [{"name": "v1", "dir": ".", "parent": null, "created": "...",
                   "edits_seq": null, "edits": null, "unsure": null},
                  {"name": "v2", "dir": "versions/v2", "parent": "v1",
                   "created": "2025-01-01T12:00:00+00:00", "edits_seq": 12, "edits": 5, "unsure": 1}]}

- ``current``: the version ``Run.open(RUN)`` opens. A run without versions.json is a family
  of one version, v1 = the folder, current.
- ``parent``: the version it was retrained from (its λ becomes the new version's ``lambda_prev``).
- ``edits_seq``: the journal's ``last_seq`` when the version was started. The journal is
  append-only, so replaying it up to that sequence number (``EditJournal(path, upto_seq=…)``,
  ``Run.version_training_table``) gives exactly the labels the version was trained on.
  ``edits``: how many samples had a label from the annotator then (changed or confirmed),
  ``unsure``: how many were marked unsure. ``null`` for version 1 (not recorded).
- ``journals``: every annotator's journal file (relative to RUN) → its ``last_seq`` when the
  version was started; resuming the version replays these votes
  (``core.labels.annotations.training_labels``).
- A version's config.json repeats its name, parent, edits_seq, edits, unsure and journals
  under ``"version"``.

The life of a version (the GUI and ``uldl-studio retrain`` do the same)::

    run = start_version(root, config, table)       # RUN/versions/vN, registered, not current
    for progress in fit(table, config, run.path): ...
    complete_version(run)                          # current once all its epochs are done
    # stopped before its first epoch:  discard_unstarted(run)
    # stopped later: the version stays listed (incomplete) and the previous one current;
    #   resume with fit(run.version_training_table(), run.config, run.path, resume=True)

Only one process should change a run's versions at a time (as with the journal's writer).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from uldl_studio.core.atomic import atomic_write_text
from uldl_studio.core.labels.annotations import journal_seqs
from uldl_studio.core.labels.edits import run_journal
from uldl_studio.core.table import DatasetError, classes_of

VERSIONS_DIR = "versions"
REGISTRY = "versions.json"
REGISTRY_FORMAT = 1
FIRST = "v1"

#: files a run directory holds that ULDL Studio writes (a folder holding anything else, except
#: temporary files of these, is never removed as a whole)
RUN_FILES = ("config.json", "checkpoint.pt", "checkpoint.prev.pt", ".checkpoint.pt.writing", "samples.csv",
             "features.npy", "neighbors.npz", "history.csv", "metrics.json", "crossfit.npz", "umap.npy",
             "distributed.json")
_FOLDS_DIR = "crossfit"   # core.crossfit.FOLDS_DIR: the fold models, each a run directory
_NAME = re.compile(r"^v([1-9][0-9]*)$")


@dataclass(frozen=True)
class VersionInfo:
    """One version of a run, as ``list_versions`` reports it."""

    name: str                    # "v1", "v2", ...
    path: Path                   # its folder (the run folder itself for v1)
    parent: str | None           # the version it was retrained from
    created: str | None          # UTC ISO time it was started
    epochs_done: int             # epochs completed (rows of history.csv)
    epochs_planned: int          # TrainConfig.epochs of its config.json
    valid_acc: float | None      # valid accuracy after its last completed epoch (None: none yet)
    edits: int | None            # samples with a label from the annotator when it was started
    unsure: int | None           # samples marked unsure then
    edits_seq: int | None        # the journal's last_seq when it was started
    complete: bool               # epochs_done >= epochs_planned
    current: bool                # the one Run.open(RUN) opens

    def describe(self) -> str:
        """One line: name, epochs, valid accuracy, date, edits, marks."""
        acc = "valid acc –    " if self.valid_acc is None else f"valid acc {self.valid_acc:.3f}"
        when = (self.created or "")[:16].replace("T", " ") or "date unknown"
        edits = "edits not recorded" if self.edits is None else f"{self.edits} edited sample(s)"
        parent = f", from {self.parent}" if self.parent else ""
        marks = [m for m, on in (("current", self.current), ("incomplete", not self.complete)) if on]
        return (f"{'*' if self.current else ' '} {self.name:<4} {self.epochs_done}/{self.epochs_planned} epochs  "
                f"{acc}  {when}  {edits}{parent}" + (f"  ({', '.join(marks)})" if marks else ""))


# ----------------------------------------------------------------------------- the registry

def family_root(path: str | Path) -> Path:
    """The run folder of ``path`` (the folder itself, or RUN for ``RUN/versions/vN``)."""
    return _family(Path(path))[0]


def _family(path: Path) -> tuple[Path, str | None]:
    """(run folder, name of the version ``path`` is) — the name is None when ``path`` is a run
    folder rather than a version folder."""
    if path.parent.name == VERSIONS_DIR and _NAME.match(path.name) and (path.parent.parent / REGISTRY).is_file():
        return path.parent.parent, path.name
    return path, None


def read_registry(root: str | Path) -> dict | None:
    """RUN/versions.json as a dict, or None when the run has only its first version."""
    path = Path(root) / REGISTRY
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the run's version list ({exc.strerror or exc})") from exc
    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        version = document.get("format_version")
        if isinstance(version, int) and version > REGISTRY_FORMAT:
            raise DatasetError(f"{path}: written by a newer ULDL Studio (format {version}); "
                               f"this version reads format {REGISTRY_FORMAT} — update ULDL Studio")
        entries = document["versions"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("no versions listed")
        names = []
        for entry in entries:
            if not isinstance(entry, dict) or not _NAME.match(str(entry.get("name"))) or \
                    not isinstance(entry.get("dir"), str):
                raise ValueError(f"a bad version entry {entry!r}")
            names.append(entry["name"])
        if document.get("current") not in names:
            raise ValueError(f"the current version {document.get('current')!r} is not listed")
    except DatasetError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a valid version list ({exc})") from exc
    return document


def _write_registry(root: Path, document: dict) -> None:
    atomic_write_text(root / REGISTRY, json.dumps(document, indent=2) + "\n")


def _first_entry(root: Path) -> dict:
    created = None
    try:
        created = json.loads((root / "config.json").read_text(encoding="utf-8")).get("created")
    except (OSError, ValueError, AttributeError):
        pass
    return {"name": FIRST, "dir": ".", "parent": None, "created": created, "edits_seq": None, "edits": None,
            "unsure": None}


def _registry_or_new(root: Path) -> dict:
    return read_registry(root) or {"format_version": REGISTRY_FORMAT, "current": FIRST,
                                   "versions": [_first_entry(root)]}


def _entry(document: dict | None, root: Path, name: str) -> dict:
    if document is None:
        if name == FIRST:
            return {"name": FIRST, "dir": "."}
        raise DatasetError(f"{root}: the run has no version {name!r} (it has only {FIRST})")
    for entry in document["versions"]:
        if entry["name"] == name:
            return entry
    names = ", ".join(e["name"] for e in document["versions"])
    raise DatasetError(f"{root / REGISTRY}: the run has no version {name!r} (versions: {names})")


def locate(path: str | Path, version: str | None = None) -> tuple[Path, Path, str]:
    """(folder, run folder, version name) that ``Run.open(path, version)`` reads: ``version``
    of the run, else the version folder ``path`` itself, else the run's current version."""
    path = Path(path)
    root, own = _family(path)
    if version is None and own is not None:
        return path, root, own
    document = read_registry(root)
    name = version or (document["current"] if document else FIRST)
    folder = root / _entry(document, root, name)["dir"]
    if not folder.is_dir():
        raise DatasetError(f"{folder}: version {name} of the run {root} is missing (deleted or moved?)")
    return folder, root, name


def version_folder(root: str | Path, name: str) -> Path:
    """The folder of version ``name`` of the run ``root``."""
    root = family_root(root)
    return locate(root, name)[0]


def parent_folder(run_dir: str | Path) -> Path | None:
    """The folder of the version ``run_dir`` was retrained from (None: not a retrained
    version, or its parent was deleted)."""
    run_dir = Path(run_dir)
    try:
        document = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        parent = (document.get("version") or {}).get("parent")
    except (OSError, ValueError, AttributeError):
        return None
    if not parent:
        return None
    try:
        return locate(family_root(run_dir), parent)[0]
    except DatasetError:
        return None


# ----------------------------------------------------------------------------- listing

def _history_summary(folder: Path) -> tuple[int, float | None]:
    path = folder / "history.csv"
    if not path.exists():
        return 0, None
    try:
        history = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise DatasetError(f"{path}: unreadable training history ({exc})") from exc
    if history.empty:
        return 0, None
    acc = history["valid_accuracy"].iloc[-1] if "valid_accuracy" in history else float("nan")
    return len(history), (None if pd.isna(acc) else float(acc))


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return document if isinstance(document, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable run configuration ({exc})") from exc


def list_versions(root: str | Path) -> list[VersionInfo]:
    """Every version of the run ``root`` (a run folder or one of its version folders), oldest
    first. A registered version whose folder is gone is left out with a warning."""
    root = family_root(root)
    if not (root / "config.json").exists():
        raise DatasetError(f"{root}: not a run directory (config.json is missing)")
    document = read_registry(root)
    entries = document["versions"] if document else [_first_entry(root)]
    current = document["current"] if document else FIRST
    out = []
    for entry in entries:
        folder = root if entry["dir"] == "." else root / entry["dir"]
        if not (folder / "config.json").exists():
            warnings.warn(f"{folder}: version {entry['name']} of the run is missing (deleted or moved?); not listed")
            continue
        config = _read_config(folder)
        done, acc = _history_summary(folder)
        try:
            planned = int((config.get("train") or {}).get("epochs", 0))
        except (TypeError, ValueError):
            planned = 0
        out.append(VersionInfo(
            name=entry["name"], path=folder, parent=entry.get("parent"),
            created=entry.get("created") or config.get("created"), epochs_done=done, epochs_planned=planned,
            valid_acc=acc, edits=entry.get("edits"), unsure=entry.get("unsure"), edits_seq=entry.get("edits_seq"),
            complete=done >= planned > 0, current=entry["name"] == current))
    return out


# ----------------------------------------------------------------------------- changing versions

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def start_version(root: str | Path, config, table: pd.DataFrame, journal=None, parent: str | None = None):
    """Create the next version of the run ``root`` for training ``config`` on ``table`` (the
    training table: ``Run.training_table()`` of the parent) and return it as a ``Run``.

    ``RUN/versions/vN/config.json`` gets the parent's dataset record, the config, and
    ``"version"``: name, parent (``parent``, default the current version), ``edits_seq`` /
    ``edits`` / ``unsure`` from ``journal`` (an open ``EditJournal`` of the run, default: the
    run's journal read from disk). The version is registered in RUN/versions.json but not
    current: ``complete_version`` makes it current once all its epochs are trained.
    """
    from uldl_studio.core.engine.run import Run, _write_config  # run.py imports this module

    root = family_root(root)
    parent_run = Run.open(root, version=parent)
    if journal is None:
        with run_journal(root) as own:
            seq, edits, unsure = own.last_seq, len(own.labels()), len(own.unsure())
    else:
        seq, edits, unsure = journal.last_seq, len(journal.labels()), len(journal.unsure())
    document = _registry_or_new(root)
    numbers = [int(_NAME.match(e["name"]).group(1)) for e in document["versions"]]
    number = max(numbers) + 1
    while (root / VERSIONS_DIR / f"v{number}").exists():  # a folder left from an unregistered try
        number += 1
    name = f"v{number}"
    folder = root / VERSIONS_DIR / name
    folder.mkdir(parents=True)
    recipe = parent_run.recipe
    if recipe.path and not recipe.is_demo:
        try:
            recipe = recipe.at(parent_run.dataset_path())  # where the dataset is now, relative paths kept right
        except DatasetError:
            pass
    journals = journal_seqs(root)
    record = {"name": name, "parent": parent_run.version, "edits_seq": seq, "edits": edits, "unsure": unsure,
              "journals": journals}
    try:
        _write_config(folder, config.to_dict(), recipe, classes_of(table), extra={"version": record})
        created = _read_config(folder).get("created") or _now()
        document["versions"].append({"name": name, "dir": f"{VERSIONS_DIR}/{name}", "parent": parent_run.version,
                                     "created": created, "edits_seq": seq, "edits": edits, "unsure": unsure,
                                     "journals": journals})
        _write_registry(root, document)
    except BaseException:
        _remove_known(folder)
        _rmdir_quietly(folder)
        raise
    return Run.open(folder)


def _checkpoint_epoch(folder: Path) -> int:
    from uldl_studio.core.engine.run import load_checkpoint  # run.py imports this module

    ckpt = load_checkpoint(folder)
    return 0 if ckpt is None else int(ckpt["epoch"])


def has_completed_epoch(folder: str | Path) -> bool:
    """Whether ``folder`` holds a trained epoch (a checkpoint or a per-sample table)."""
    folder = Path(folder)
    return any((folder / n).exists() for n in ("checkpoint.pt", "checkpoint.prev.pt", "samples.csv"))


def promote(root: str | Path, name: str) -> None:
    """Make version ``name`` the current one (the version ``Run.open(RUN)`` opens). It must hold
    a completed epoch. Written atomically."""
    root = family_root(root)
    document = read_registry(root)
    folder = locate(root, name)[0]
    if not has_completed_epoch(folder):
        raise DatasetError(f"{folder}: version {name} has no completed epoch; it cannot be made current")
    if document is None or document["current"] == name:
        return  # a family of one: v1 is current already
    document["current"] = name
    _write_registry(root, document)


def complete_version(run) -> bool:
    """After training ``run`` (a ``Run`` of a version): when its checkpoint has all the epochs
    its config plans, make it current and return True; else leave the current version as it
    is and return False (the version stays listed as incomplete, to be resumed)."""
    from uldl_studio.core.engine.run import Run  # run.py imports this module

    fresh = Run.open(run.path)  # the config as last trained (a resume may have changed epochs)
    if _checkpoint_epoch(fresh.path) < fresh.config.epochs:
        return False
    promote(fresh.root, fresh.version)
    return True


def _known_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and \
        any(name.startswith(f".{known}.") for known in (*RUN_FILES, REGISTRY))


def _foreign_files(folder: Path) -> list[Path]:
    """What in ``folder`` ULDL Studio did not write (recursing into the cross-fit folds)."""
    foreign = []
    if not folder.is_dir():
        return foreign
    for item in sorted(folder.iterdir()):
        if item.is_file() and (item.name in RUN_FILES or _known_temporary(item.name)):
            continue
        if item.is_dir() and not item.is_symlink() and item.name == _FOLDS_DIR:
            for fold in sorted(item.iterdir()):
                if fold.is_dir() and not fold.is_symlink() and re.match(r"^fold[0-9]+$", fold.name):
                    foreign.extend(_foreign_files(fold))
                else:
                    foreign.append(fold)
            continue
        foreign.append(item)
    return foreign


def _remove_known(folder: Path) -> None:
    """Delete the files ULDL Studio writes in ``folder`` (and its cross-fit folds); nothing else."""
    if not folder.is_dir():
        return
    for item in folder.iterdir():
        if item.is_file() and (item.name in RUN_FILES or _known_temporary(item.name)):
            item.unlink(missing_ok=True)
    folds = folder / _FOLDS_DIR
    if folds.is_dir() and not folds.is_symlink():
        for fold in folds.iterdir():
            if fold.is_dir() and not fold.is_symlink() and re.match(r"^fold[0-9]+$", fold.name):
                _remove_known(fold)
                _rmdir_quietly(fold)
        _rmdir_quietly(folds)


def _rmdir_quietly(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:
        return False


def _unregister(root: Path, name: str) -> None:
    document = read_registry(root)
    if document is None:
        return
    document["versions"] = [e for e in document["versions"] if e["name"] != name]
    _write_registry(root, document)


def discard_unstarted(run, keep_folder: bool = False) -> bool:
    """Remove a run or version that has no completed epoch (stopped before its first epoch, or
    failed before it), so no orphan folder is left. ``run``: a ``Run`` or a folder.

    - a version folder (``RUN/versions/vN``) is unregistered and removed;
    - a run folder without other versions (a new run) is removed (``keep_folder``: its files
      only, e.g. when the folder existed before the training);
    - a run folder that has other versions, or any folder with a completed epoch, is left as it is.

    Only the files training writes are deleted: a folder that holds anything else (the journal
    included) keeps it and stays, with a warning naming it. Returns True when something was
    removed.
    """
    folder = Path(getattr(run, "path", run))
    if not folder.is_dir() or has_completed_epoch(folder):
        return False
    root, own = _family(folder)
    if own is None and read_registry(folder) is not None:
        return False  # the first version of a run with others
    foreign = _foreign_files(folder)
    if own is not None:
        _unregister(root, own)
    _remove_known(folder)
    if foreign:
        shown = ", ".join(p.name for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        warnings.warn(f"{folder}: no epoch was trained; the folder is left in place because it holds other files ({shown})")
        return True
    if own is not None or not keep_folder:
        _rmdir_quietly(folder)
        if own is not None:
            _rmdir_quietly(folder.parent)  # RUN/versions when it is empty now
    return True


def delete_version(root: str | Path, name: str) -> None:
    """Delete version ``name`` of the run ``root`` (its folder and its entry in versions.json).

    Refused, with a DatasetError naming the run, for the current version (make another one
    current first), for v1 (the run folder itself), and for a version folder that holds files
    ULDL Studio did not write (nothing is deleted then). The journal is shared and never deleted.
    """
    root = family_root(root)
    document = read_registry(root)
    if document is None or name == FIRST:
        raise DatasetError(f"{root}: {FIRST} is the run folder itself; it cannot be deleted as a version")
    if document["current"] == name:
        raise DatasetError(f"{root}: {name} is the current version; make another version current before deleting it")
    folder = root / _entry(document, root, name)["dir"]
    foreign = _foreign_files(folder)
    if foreign:
        raise DatasetError(f"{folder}: not deleted: it holds files that are not part of a version "
                           f"({', '.join(p.name for p in foreign[:3])}); move them away first")
    _unregister(root, name)  # first: a crash part-way leaves an unlisted folder, never a listed half
    _remove_known(folder)
    _rmdir_quietly(folder)
    _rmdir_quietly(folder.parent)
