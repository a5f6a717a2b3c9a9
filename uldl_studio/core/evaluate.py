"""Metrics of a run (``uldl-studio evaluate RUN``), written to RUN/metrics.json.

Structure (floats; null where undefined)::

    {"method", "epochs", "classes",
     "test" / "valid" / "train": {n, accuracy (vs given label), mean_class_accuracy,
              [reference: accuracy vs the reference majority, kl, chebyshev, clark, canberra,
               cosine, intersection of p vs the reference distribution]},
     "constructed" (train rows): {mean_lambda,
              [d_vs_reference: six LDL metrics of d, onehot_vs_reference: of the given labels,
               lambda_auroc_reference: AUROC of λ for "given label ≠ reference majority"],
              [lambda_auroc_original: for "given label ≠ label_original" (injected noise)]}}
"""
from __future__ import annotations

import json
import math

import numpy as np

from . import metrics as M
from .atomic import atomic_write_text
from .table import d_columns, p_columns, reference_distribution


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
    from . import scores

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
    from .edits import apply_run_edits

    edited = apply_run_edits(samples, run.root)  # the journal is shared by the versions
    return {"reviewed": int(edited["reviewed"].sum()), "relabelled": int(edited["edited"].sum()),
            "unsure": int(edited["unsure"].sum())}


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
               "mean_class_accuracy": M.mean_class_accuracy(given, pred, m)}
        if ref_all is not None:
            ref = ref_all[mask]
            majority = ref.argmax(1)
            res["reference"] = {"accuracy": M.accuracy(majority, pred),
                                "mean_class_accuracy": M.mean_class_accuracy(majority, pred, m),
                                **M.ldl_metrics(ref, p)}
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
    out["review"] = _review_counts(run, samples)
    out = _clean(out)
    if write:
        atomic_write_text(run.path / "metrics.json", json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
