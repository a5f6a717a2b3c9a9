"""How good is the estimated number of label issues (``label_wrong_prob``, core.label_issues)?

For each finished run given (trained on a dataset with reference distributions: FER+ with
`--single-label sample`, the demo with or without `--label-noise`), per split:

- the estimated share of label issues (the mean of label_wrong_prob) next to the measured share of
  given labels that differ from the reference majority, and the confident joint's own count;
- the highlighted rows (``LabelIssues.highlighted``: the likeliest wrong labels, as many as keep
  their mean label_wrong_prob at ``PRECISION`` or above, each ≥ 0.5; what the map draws
  strongly): their share, the cut-off, the measured precision (given ≠ reference among them)
  against the precision they promise (their mean label_wrong_prob) and the recall (the share
  of all disagreeing labels they hold); the same for the plain rule label_wrong_prob ≥ 0.5;
- the precision–recall curve of the ranking by label_wrong_prob at several cut-offs, and AUROC;
- with `--cleanlab` (the bench extra): cleanlab's own estimate of the number of label issues
  from the same calibrated probabilities, beside ours (cleanlab is never a product dependency).

Tune on the valid split; report the training split once.

    python bench/label_issues.py RUN [RUN ...] [--cleanlab] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uldl_studio.core.labels.label_issues import HIGHLIGHT, label_issues  # noqa: E402
from uldl_studio.core.labels.label_issues import highlight_threshold  # noqa: E402
from uldl_studio.core.labels.metrics import auroc  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.labels.soft_labels import temper  # noqa: E402
from uldl_studio.core.table import p_columns, reference_distribution  # noqa: E402

CUTS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
TOP_SHARES = (0.01, 0.05, 0.1, 0.15, 0.2, 0.3)


def curve(p_wrong: np.ndarray, wrong: np.ndarray) -> list[dict]:
    """Precision and recall at each probability cut-off and at each top share of the ranking."""
    out = []
    positives = max(int(wrong.sum()), 1)
    for cut in CUTS:
        sel = p_wrong >= cut
        out.append({"at": f"p ≥ {cut:g}", "share": float(sel.mean()),
                    "precision": float(wrong[sel].mean()) if sel.any() else float("nan"),
                    "recall": float((wrong & sel).sum() / positives)})
    order = np.argsort(-p_wrong, kind="stable")
    for share in TOP_SHARES:
        k = max(1, int(round(share * len(p_wrong))))
        top = order[:k]
        out.append({"at": f"top {share:.0%}", "share": k / len(p_wrong), "precision": float(wrong[top].mean()),
                    "recall": float(wrong[top].sum() / positives)})
    return out


def cleanlab_estimate(probs: np.ndarray, labels: np.ndarray) -> float:
    from cleanlab.count import estimate_joint

    joint = estimate_joint(labels=labels, pred_probs=probs)
    return float(1.0 - np.trace(joint))


def one_run(path: str, use_cleanlab: bool) -> dict:
    run = Run.open(path)
    samples = run.samples()
    ref = reference_distribution(samples)
    if ref is None:
        raise SystemExit(f"{path}: no reference distributions to measure against")
    issues = label_issues(samples)
    labels = samples["label"].to_numpy(np.int64)
    wrong_all = labels != ref.argmax(1)
    probs = samples[p_columns(list(run.classes))].to_numpy(np.float64)
    result = {"run": str(path), "groups": {}}
    highlighted = issues.highlighted()
    for group in issues.groups:
        rows = group.rows
        p_wrong, wrong = issues.p_wrong[rows], wrong_all[rows]
        entry = {"n": int(rows.size), "source": group.source, "temperature": group.temperature,
                 "sharpening": group.sharpening, "estimated": float(p_wrong.mean()),
                 "measured": float(wrong.mean()), "confident_joint": group.confident_joint_rate,
                 "auroc": auroc(p_wrong, wrong), "threshold": issues.threshold,
                 # the threshold is the whole table's (as the map's); per split for comparison
                 "split_threshold": highlight_threshold(p_wrong)}
        for prefix, high in (("highlighted", highlighted[rows]), ("half", p_wrong >= HIGHLIGHT)):
            entry[f"{prefix}_share"] = float(high.mean())
            entry[f"{prefix}_precision"] = float(wrong[high].mean()) if high.any() else float("nan")
            entry[f"{prefix}_promised"] = float(p_wrong[high].mean()) if high.any() else float("nan")
            entry[f"{prefix}_recall"] = float((wrong & high).sum() / max(int(wrong.sum()), 1))
        entry["curve"] = curve(p_wrong, wrong)
        if use_cleanlab:
            entry["cleanlab"] = cleanlab_estimate(temper(probs[rows], group.temperature), labels[rows])
        result["groups"][group.name] = entry
    return result


def show(result: dict) -> None:
    print(f"\n{result['run']}")
    print(f"{'split':8s} {'n':>6s} {'estimated':>9s} {'measured':>8s} {'diff':>6s} {'conf.joint':>10s} "
          f"{'cleanlab':>8s} {'AUROC':>6s} {'s':>5s} | {'cut':>4s} {'highl.':>6s} {'prec':>5s} {'promised':>8s} "
          f"{'recall':>6s} | P≥0.5: {'share':>5s} {'prec':>5s} {'prom.':>5s} {'recall':>6s}")
    for name, g in result["groups"].items():
        cl = f"{g['cleanlab']:.3f}" if "cleanlab" in g else "–"
        print(f"{name:8s} {g['n']:6d} {g['estimated']:9.3f} {g['measured']:8.3f} {g['estimated'] - g['measured']:+6.3f} "
              f"{g['confident_joint']:10.3f} {cl:>8s} {g['auroc']:6.3f} {g['sharpening']:5.3f} | {g['threshold']:4.2f} "
              f"{g['highlighted_share']:6.3f} {g['highlighted_precision']:5.3f} {g['highlighted_promised']:8.3f} "
              f"{g['highlighted_recall']:6.3f} |        {g['half_share']:5.3f} {g['half_precision']:5.3f} "
              f"{g['half_promised']:5.3f} {g['half_recall']:6.3f}")
    for name, g in result["groups"].items():
        print(f"  precision–recall, {name}: " + "; ".join(
            f"{c['at']}: {c['share']:.1%} of rows, P {c['precision']:.3f} R {c['recall']:.3f}" for c in g["curve"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--cleanlab", action="store_true", help="cleanlab's estimate beside ours (bench extra)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = [one_run(path, args.cleanlab) for path in args.runs]
    for result in results:
        show(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
