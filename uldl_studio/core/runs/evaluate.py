"""Metrics of a run (``uldl-studio evaluate RUN``), written to RUN/metrics.json.

Structure (floats; null where undefined)::

    {"method", "epochs", "classes",
     "test" / "valid" / "train": {n, accuracy (vs given label), mean_class_accuracy,
              class_accuracy: {class: accuracy of the rows given that label}, class_n: {class: rows},
              [reference: accuracy, mean_class_accuracy, class_accuracy and class_n vs the
               reference majority, kl, chebyshev, clark, canberra, cosine, intersection of p vs
               the reference distribution]},
     "constructed" (train rows): {mean_lambda,
              [d_vs_reference: six LDL metrics of d, onehot_vs_reference: of the given labels,
               lambda_auroc_reference: AUROC of λ for "given label ≠ reference majority"],
              [lambda_auroc_original: for "given label ≠ label_original" (injected noise)]},
     "label_issues" (train rows): {n, estimated (the share the calibrated label_wrong_prob adds
              up to, core.label_issues), [measured: the share whose given label ≠ the reference
              majority], estimated_count, highlighted (the training rows the map highlights,
              label_issues.highlighted_mask),
              highlighted_expected_precision (their mean label_wrong_prob),
              [highlighted_precision, highlighted_recall: measured against the reference]}}
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from uldl_studio.core.atomic import atomic_write_text
from uldl_studio.core.engine.va import PRED_COLUMNS, run_placement, va_errors
from uldl_studio.core.labels import metrics as M
from uldl_studio.core.labels import scores
from uldl_studio.core.labels.edits import apply_run_edits
from uldl_studio.core.labels.label_issues import label_issues
from uldl_studio.core.table import d_columns, p_columns, reference_distribution


def _clean(tree):
    if isinstance(tree, dict):
        return {k: _clean(v) for k, v in tree.items()}
    if isinstance(tree, (float, np.floating)):
        return None if not math.isfinite(float(tree)) else float(tree)
    if isinstance(tree, np.integer):
        return int(tree)
    return tree


def _score_aurocs(part, wrong: np.ndarray) -> dict:
    """AUROC of every registered score (bad end high) for "given label ≠ reference majority"."""
    out = {}
    if wrong.all() or not wrong.any():
        return out
    for s in scores.registered():
        bad = scores.badness(part, s.name)
        if np.isfinite(bad).all() and np.ptp(bad) > 0:
            out[s.name] = M.auroc(bad, wrong)
    return out


def _review_counts(run, samples) -> dict:
    """How many samples the annotator reviewed, relabelled and marked unsure (the journal)."""
    edited = apply_run_edits(samples, run.root)  # the journal is shared by the versions
    return {"reviewed": int(edited["reviewed"].sum()), "relabelled": int(edited["edited"].sum()),
            "unsure": int(edited["unsure"].sum())}


def class_accuracy(table: pd.DataFrame, split: str | None = "test", truth: str = "label") -> pd.DataFrame:
    """Per-class accuracy of the prediction (argmax ``p_<class>``) on one split (None: all rows).

    ``truth``: ``"label"`` (the given labels, after the annotator's edits when the table has
    them) or ``"reference"`` (the majority of the reference distributions; a DatasetError-free
    empty frame when the table has none). Returns one row per class (index: class name) with
    ``n`` (rows of that class), ``correct`` and ``accuracy`` (NaN for a class with no row), and
    ``attrs`` ``accuracy`` (all rows) and ``mean_class_accuracy`` (the mean over the classes
    present)."""
    classes = list(table.attrs["classes"])
    m = len(classes)
    mask = np.ones(len(table), bool) if split is None else (table["split"] == split).to_numpy()
    if truth == "label":
        y = table["label"].to_numpy(np.int64)[mask]
    elif truth == "reference":
        ref = reference_distribution(table)
        y = ref[mask].argmax(1) if ref is not None else np.zeros(0, np.int64)
        if ref is None:
            mask = np.zeros(len(table), bool)
    else:
        raise ValueError(f"truth={truth!r}: expected 'label' or 'reference'")
    pred = table[p_columns(classes)].to_numpy(np.float64)[mask].argmax(1) if mask.any() else np.zeros(0, np.int64)
    n = np.bincount(y, minlength=m)[:m]
    correct = np.bincount(y[y == pred], minlength=m)[:m]
    frame = pd.DataFrame({"n": n, "correct": correct, "accuracy": M.per_class_accuracy(y, pred, m)},
                         index=pd.Index(classes, name="class"))
    frame.attrs = {"accuracy": M.accuracy(y, pred), "mean_class_accuracy": M.mean_class_accuracy(y, pred, m)}
    return frame


def _per_class(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    m = len(classes)
    acc = M.per_class_accuracy(y, pred, m)
    n = np.bincount(y, minlength=m)[:m]
    return {"class_accuracy": {c: float(a) for c, a in zip(classes, acc)},
            "class_n": {c: int(k) for c, k in zip(classes, n)}}


def _label_issue_metrics(samples, ref_all) -> dict:
    """The estimated share of label issues on the training rows, next to the measured one
    (given label ≠ reference majority) when the table has references."""
    train = (samples["split"] == "train").to_numpy()
    try:
        issues = label_issues(samples)
    except KeyError:
        return {}
    p_wrong, high = issues.p_wrong[train], issues.highlighted()[train]
    ok = np.isfinite(p_wrong)
    if not ok.any():
        return {}
    p_wrong, high = p_wrong[ok], high[ok]
    out = {"n": int(ok.sum()), "estimated": float(p_wrong.mean())}
    if ref_all is not None:
        wrong = samples["label"].to_numpy(np.int64)[train][ok] != ref_all[train][ok].argmax(1)
        out["measured"] = float(wrong.mean())
    out["estimated_count"] = float(p_wrong.sum())
    out["highlighted"] = int(high.sum())
    out["highlighted_expected_precision"] = float(p_wrong[high].mean()) if high.any() else float("nan")
    if ref_all is not None:
        out["highlighted_precision"] = float(wrong[high].mean()) if high.any() else float("nan")
        out["highlighted_recall"] = float((wrong & high).sum() / wrong.sum()) if wrong.any() else float("nan")
    return out


def _va_metrics(run, samples) -> dict:
    """Where the map's V-A points come from (``placement``), and when the run has a V-A head
    (``va_pred_*`` in samples.csv) its error per split against the dataset's own valence and
    arousal: RMSE, MAE and CCC per axis, and the RMSE of predicting the training rows' mean
    (``rmse_mean_*``, the reference a useful head beats)."""
    out: dict = {}
    placement = run_placement(run.config, run.history())
    if placement:
        out["placement"] = placement
    given = ["valence_given", "arousal_given"] if "valence_given" in samples else ["valence", "arousal"]
    if not all(c in samples for c in (*PRED_COLUMNS, *given)):
        return out
    pred = samples[list(PRED_COLUMNS)].to_numpy(np.float64)
    target = samples[given].to_numpy(np.float64)
    split = samples["split"].to_numpy()
    train = target[split == "train"]
    train = train[np.isfinite(train).all(1)]
    baseline = train.mean(0) if len(train) else None
    for name in ("train", "valid", "test"):
        mask = split == name
        errors = va_errors(pred[mask], target[mask], baseline) if mask.any() else {}
        if errors:
            errors["n"] = int(errors["n"])
            out.setdefault("head", {})[name] = errors
    return out


def evaluate(run, write: bool = True) -> dict:
    samples = run.samples()
    classes = list(run.classes)
    m = len(classes)
    ref_all = reference_distribution(samples)
    out: dict = {"method": run.config.method, "epochs": int(len(run.history())), "classes": classes}
    for split in ("train", "valid", "test"):
        mask = (samples["split"] == split).to_numpy()
        if not mask.any():
            continue
        part = samples[mask]
        p = part[p_columns(classes)].to_numpy(np.float64)
        pred = p.argmax(1)
        given = part["label"].to_numpy(np.int64)
        res = {"n": int(mask.sum()), "accuracy": M.accuracy(given, pred),
               "mean_class_accuracy": M.mean_class_accuracy(given, pred, m), **_per_class(given, pred, classes)}
        if ref_all is not None:
            ref = ref_all[mask]
            majority = ref.argmax(1)
            res["reference"] = {"accuracy": M.accuracy(majority, pred),
                                "mean_class_accuracy": M.mean_class_accuracy(majority, pred, m),
                                **_per_class(majority, pred, classes), **M.ldl_metrics(ref, p)}
        out[split] = res
    train = (samples["split"] == "train").to_numpy()
    if train.any():
        part = samples[train]
        lam = part["lambda"].to_numpy(np.float64)
        given = part["label"].to_numpy(np.int64)
        constructed: dict = {"mean_lambda": float(np.nanmean(lam)) if np.isfinite(lam).any() else float("nan")}
        if ref_all is not None:
            ref = ref_all[train]
            d = part[d_columns(classes)].to_numpy(np.float64)
            constructed["d_vs_reference"] = M.ldl_metrics(ref, d)
            soft_cols = [f"soft_{c}" for c in classes]
            if all(c in part for c in soft_cols):
                constructed["soft_vs_reference"] = M.ldl_metrics(ref, part[soft_cols].to_numpy(np.float64))
            constructed["score_auroc_reference"] = _score_aurocs(part, given != ref.argmax(1))
            constructed["onehot_vs_reference"] = M.ldl_metrics(ref, np.eye(m)[given])
            if np.isfinite(lam).all():
                constructed["lambda_auroc_reference"] = M.lambda_auroc(lam, given, ref)
        if "label_original" in part and np.isfinite(lam).all():
            constructed["lambda_auroc_original"] = M.lambda_auroc(lam, given, part["label_original"].to_numpy())
        out["constructed"] = constructed
    va = _va_metrics(run, samples)
    if va:
        out["va"] = va
    issues = _label_issue_metrics(samples, ref_all)
    if issues:
        out["label_issues"] = issues
    out["review"] = _review_counts(run, samples)
    out = _clean(out)
    if write:
        atomic_write_text(run.path / "metrics.json", json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
