"""FER+ label-health benchmark: which per-sample score finds the wrong labels, which soft
label is closest to the crowd, and whether a second stage trained on the soft labels helps.

Each image of FER+ has ten annotators' votes; the benchmark gives every training image ONE
annotator's vote (`--single-label sample`, one draw per seed) and trains on that, then checks
against the crowd:

- **scores**: for every registered score (``core.scores``) of the ce and the ldlva run, the
  AUROC and the precision in the top 5 % (the first images an annotator reviews) for
  "given label != crowd majority" on the training split; cleanlab's out-of-fold
  self-confidence (2-fold cross-fitted ce) next to them with `--cleanlab`;
- **soft labels** on the training split against the crowd distributions (intersection, KL):
  one-hot given label, the prediction p, the epoch-averaged prediction p̄, the constructed d,
  the exported soft label (``soft_<class>``), and (1 − w) d + w p_T (p calibrated by one
  temperature fitted on the valid split's given labels) for several weights w;
- **accuracy** on the test split against the crowd majority: ce, ldlva, a second stage (ce
  trained on ldlva's exported soft labels, `--second-stage`) and ce on the crowd majority
  (the ceiling, `--ceiling`, trained once).

Repeats over annotator draws (`--seeds 0 1 2`) and prints mean ± sd. Images are decoded once.

    python bench/ferplus_scores.py --seeds 0 1 2 --limit 12000 --epochs 6 --second-stage --cleanlab
    python bench/ferplus_scores.py --seeds 0 --epochs 8 --second-stage --cleanlab --ceiling
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ferplus import DEFAULT_DATA, load_shared_images, out_of_fold_probabilities, parse_overrides, train  # noqa: E402

from uldl_studio.core.labels import scores  # noqa: E402
from uldl_studio.core.engine.config import TrainConfig  # noqa: E402
from uldl_studio.core.data.datasets import load_dataset  # noqa: E402
from uldl_studio.core.labels.metrics import auroc, ldl_metrics  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.labels.soft_labels import (  # noqa: E402
    TARGET_PREFIX, build_soft_labels, fit_temperature, mix_for, temper,
)
from uldl_studio.core.table import classes_of, d_columns, p_columns, ref_columns  # noqa: E402

MIXES = (0.0, 0.1, 0.25, 0.4, 0.5, 1.0)


def precision_at(score: np.ndarray, positive: np.ndarray, share: float = 0.05) -> float:
    """Share of true positives among the ``share`` highest scores."""
    k = max(1, int(round(share * len(score))))
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:k]
    return float(positive[order].mean())


def score_table(samples, classes, crowd_major, prefix: str) -> dict[str, float]:
    """AUROC and precision@5% of every registered score on the training rows."""
    train = samples["split"].to_numpy() == "train"
    noisy = samples["label"].to_numpy()[train] != crowd_major[train]
    out = {}
    for s in scores.registered():
        if s.name == "lambda_change":
            continue
        bad = scores.badness(samples, s.name)[train]
        if not np.isfinite(bad).any() or np.nanstd(bad) == 0:
            continue
        bad = np.where(np.isfinite(bad), bad, np.nanmin(bad))
        out[f"{prefix}{s.name}.auroc"] = auroc(bad, noisy)
        out[f"{prefix}{s.name}.p@5%"] = precision_at(bad, noisy)
    return out


def soft_label_table(samples, classes, prefix: str) -> dict[str, float]:
    """Distance of the soft-label candidates to the crowd: training split; the mix weight's
    valid-split intersection, for selecting it."""
    out = {}
    m = len(classes)
    valid = samples[samples["split"].to_numpy() == "valid"]
    temperature = fit_temperature(valid[p_columns(classes)].to_numpy(float), valid["label"].to_numpy())
    for split in ("train", "valid"):
        part = samples[samples["split"].to_numpy() == split]
        crowd = part[ref_columns(classes)].to_numpy(float)
        given = part["label"].to_numpy()
        p = part[p_columns(classes)].to_numpy(float)
        pavg = part[[f"pavg_{c}" for c in classes]].to_numpy(float)
        d = part[d_columns(classes)].to_numpy(float)
        candidates = {"crowd one-hot": np.eye(m)[crowd.argmax(1)],  # the reference to beat (needs the crowd)
                      "one-hot": np.eye(m)[given], "p": p, "pavg": pavg, "d": d,
                      "soft": current_soft_labels(samples, classes, prefix.split(".")[0])[
                          samples["split"].to_numpy() == split]}
        p_calibrated = temper(p, temperature)
        for w in MIXES:
            candidates[f"mix{w:g}"] = (1 - w) * d + w * p_calibrated
        for name, dist in candidates.items():
            metrics = ldl_metrics(crowd, dist)
            out[f"{prefix}{split}.{name}.inter"] = metrics["intersection"]
            out[f"{prefix}{split}.{name}.kl"] = metrics["kl"]
    return out


def current_soft_labels(samples, classes, method: str) -> np.ndarray:
    """The exported soft labels by today's rule (core.soft_labels), from a run's d and p: the
    same as its soft_<class> columns for a run trained by this version, and comparable for
    runs kept from an earlier one (--reuse)."""
    p = samples[p_columns(classes)].to_numpy(float)
    constructed = p.copy()
    train = samples["split"].to_numpy() == "train"
    constructed[train] = samples.loc[train, d_columns(classes)].to_numpy(float)
    valid = np.flatnonzero(samples["split"].to_numpy() == "valid")
    soft, _ = build_soft_labels(constructed, p, samples["label"].to_numpy(), valid, mix_for(method, None))
    return soft


def test_accuracy(samples, classes) -> float:
    test = samples[samples["split"] == "test"]
    crowd = test[ref_columns(classes)].to_numpy(float).argmax(1)
    return float((test[p_columns(classes)].to_numpy(float).argmax(1) == crowd).mean())


REUSE = False  # --reuse: read finished runs in WORK instead of training them again


def trained(table, config, work, name, images):
    import pandas as pd

    history = Path(work) / name / "history.csv"
    if REUSE and history.exists() and len(pd.read_csv(history)) == config.epochs:
        samples, seconds = Run.open(Path(work) / name).samples(), float(pd.read_csv(history)["seconds"].sum())
        print(f"  [{name}] reused the finished run in {Path(work) / name}", flush=True)
    else:
        samples, seconds = train(table, config, Path(work) / name, name, images)
    samples.attrs["soft_temperature"] = float(pd.read_csv(history)["soft_temperature"].iloc[-1])
    return samples, seconds


def _trained_fold(table, config, out_dir, label, images):
    """``trained`` for ``out_of_fold_probabilities`` (a fold's run is reused with --reuse too)."""
    return trained(table, config, Path(out_dir).parent, Path(out_dir).name, images)


def one_seed(args, seed, images, majority, work) -> dict[str, float]:
    sampled = load_dataset(args.data, fmt="ferplus", single_label="sample", seed=seed, limit=args.limit)
    assert (sampled["path"].to_numpy() == majority["path"].to_numpy()).all(), "tables not row-aligned"
    classes = classes_of(sampled)
    crowd_major = majority["label"].to_numpy()
    common = dict(epochs=args.epochs, seed=seed, device="auto", num_threads=args.threads)
    result: dict[str, float] = {}
    runs = {"ce": trained(sampled, TrainConfig(method="ce", **common), work, f"ce-s{seed}", images)}
    if "ldlva" in args.methods:
        runs["ldlva"] = trained(sampled, TrainConfig(method="ldlva", **common, **parse_overrides(args.set)), work,
                                f"ldlva-s{seed}", images)
    result["given_noisy_share"] = float((sampled["label"].to_numpy() != crowd_major)[
        sampled["split"].to_numpy() == "train"].mean())
    for name, (samples, result[f"{name}.seconds"]) in runs.items():
        result.update(score_table(samples, classes, crowd_major, f"{name}.score."))
        result.update(soft_label_table(samples, classes, f"{name}.soft."))
        result[f"{name}.test_acc"] = test_accuracy(samples, classes)
    if args.second_stage and "ldlva" in runs:
        ldlva = runs["ldlva"][0]
        staged = sampled.copy()
        staged.attrs = dict(sampled.attrs)
        soft = current_soft_labels(ldlva, classes, "ldlva")
        for j, c in enumerate(classes):
            staged[f"{TARGET_PREFIX}{c}"] = soft[:, j]
        second, result["second.seconds"] = trained(staged, TrainConfig(method="ce", **common), work,
                                                   f"second-s{seed}", images)
        result["second.test_acc"] = test_accuracy(second, classes)
    if args.cleanlab:
        from cleanlab.rank import get_label_quality_scores

        train_rows = sampled["split"].to_numpy() == "train"
        given = sampled["label"].to_numpy()[train_rows]
        oof = out_of_fold_probabilities(sampled, TrainConfig(method="ce", **common), work / f"oof-s{seed}", seed,
                                        images, train_fn=_trained_fold)
        quality = get_label_quality_scores(given, oof, method="self_confidence")
        noisy = given != crowd_major[train_rows]
        result["cleanlab.oof_self_confidence.auroc"] = auroc(1 - quality, noisy)
        result["cleanlab.oof_self_confidence.p@5%"] = precision_at(1 - quality, noisy)
    return result


def summarise(per_seed: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    keys = sorted(set().union(*per_seed))
    return {k: (float(np.mean([r[k] for r in per_seed if k in r])),
                float(np.std([r[k] for r in per_seed if k in r])))
            for k in keys}


SOFT_CANDIDATES = ["crowd one-hot", "one-hot", "p", "pavg", "d", "soft", *[f"mix{w:g}" for w in MIXES]]
ACCURACY_ROWS = (("ce.test_acc", "ce (one annotator)"), ("ldlva.test_acc", "ldlva (one annotator)"),
                 ("second.test_acc", "second stage: ce on ldlva's soft labels"),
                 ("ceiling.test_acc", "ce on the crowd majority (ceiling)"))


def _cell_formatter(summary: dict[str, tuple[float, float]], n: int, missing: str, pad: str = ""):
    """key -> "mean ± sd" over draws (one draw: the value and ``pad``), ``missing`` when absent."""
    def cell(key):
        if key not in summary:
            return missing
        mean, sd = summary[key]
        return f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}{pad}"
    return cell


def show(summary: dict[str, tuple[float, float]], n: int) -> None:
    fmt = _cell_formatter(summary, n, "    -      ", "      ")

    print(f"\nFlagging given != crowd majority on the training split (mean ± sd over {n} annotator draw(s)):")
    print(f"{'score':26s} {'ce AUROC':>13s} {'ce P@5%':>13s} {'ldlva AUROC':>13s} {'ldlva P@5%':>13s}")
    for s in scores.registered():
        if s.name == "lambda_change":
            continue
        print(f"{s.name:26s} {fmt(f'ce.score.{s.name}.auroc'):>13s} {fmt(f'ce.score.{s.name}.p@5%'):>13s} "
              f"{fmt(f'ldlva.score.{s.name}.auroc'):>13s} {fmt(f'ldlva.score.{s.name}.p@5%'):>13s}")
    print(f"{'cleanlab OOF (2-fold ce)':26s} {fmt('cleanlab.oof_self_confidence.auroc'):>13s} "
          f"{fmt('cleanlab.oof_self_confidence.p@5%'):>13s}")

    print("\nSoft labels against the crowd distributions (intersection ↑ / KL ↓):")
    print(f"{'candidate':13s} {'ce train':>25s} {'ldlva train':>25s} {'ldlva valid inter':>18s}")
    for name in SOFT_CANDIDATES:
        cells = []
        for run in ("ce", "ldlva"):
            cells.append(f"{fmt(f'{run}.soft.train.{name}.inter')} / {fmt(f'{run}.soft.train.{name}.kl')}")
        print(f"{name:13s} {cells[0]:>25s} {cells[1]:>25s} {fmt(f'ldlva.soft.valid.{name}.inter'):>18s}")

    print("\nTest accuracy against the crowd majority:")
    for key, label in ACCURACY_ROWS:
        print(f"  {label:42s} {fmt(key)}")


def markdown(summary: dict[str, tuple[float, float]], n: int) -> None:
    """The tables of ``show`` as Markdown (for docs/benchmarks.md)."""
    cell = _cell_formatter(summary, n, "–")

    print("\n| score | ce AUROC | ce P@5% | ldlva AUROC | ldlva P@5% |\n|---|---|---|---|---|")
    for s in scores.registered():
        if s.name == "lambda_change":
            continue
        print(f"| {s.name} | " + " | ".join(cell(f"{run}.score.{s.name}.{m}") for run in ("ce", "ldlva")
                                            for m in ("auroc", "p@5%")) + " |")
    print(f"| cleanlab out-of-fold (2-fold ce) | {cell('cleanlab.oof_self_confidence.auroc')} | "
          f"{cell('cleanlab.oof_self_confidence.p@5%')} | | |")
    print("\n| soft label | ce train ∩ / KL | ldlva train ∩ / KL |\n|---|---|---|")
    for name in SOFT_CANDIDATES:
        print(f"| {name} | " + " | ".join(f"{cell(f'{run}.soft.train.{name}.inter')} / "
                                         f"{cell(f'{run}.soft.train.{name}.kl')}" for run in ("ce", "ldlva")) + " |")
    print("\n| test accuracy vs crowd majority | |\n|---|---|")
    for key, label in ACCURACY_ROWS:
        print(f"| {label} | {cell(key)} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="first N samples per split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--second-stage", action="store_true")
    parser.add_argument("--cleanlab", action="store_true")
    parser.add_argument("--ceiling", action="store_true")
    parser.add_argument("--work", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown too")
    parser.add_argument("--methods", nargs="+", choices=("ce", "ldlva"), default=["ce", "ldlva"],
                        help="train these (ce always: the baselines are measured on it)")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig override for ldlva, KEY=VALUE")
    parser.add_argument("--json", default=None, help="write the per-seed numbers here")
    parser.add_argument("--reuse", action="store_true",
                        help="read runs already finished in --work instead of training them again")
    args = parser.parse_args(argv)
    global REUSE
    REUSE = args.reuse
    if not Path(args.data).exists():
        print(f"FER+ data not found at {args.data}; nothing to benchmark", file=sys.stderr)
        return 1
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="uldl-ferplus-scores-"))
    majority = load_dataset(args.data, fmt="ferplus", single_label="majority", limit=args.limit)
    print(f"FER+ {majority['split'].value_counts().to_dict()}, {args.epochs} epochs, seeds {args.seeds}")
    images = load_shared_images(majority, TrainConfig())
    per_seed = []
    started = time.perf_counter()
    for seed in args.seeds:
        per_seed.append(one_seed(args, seed, images, majority, work))
        if args.json:
            Path(args.json).write_text(json.dumps(per_seed, indent=1))
        print(f"seed {seed} done ({time.perf_counter() - started:.0f}s)", flush=True)
    if args.ceiling:
        crowd, seconds = trained(majority, TrainConfig(method="ce", epochs=args.epochs, seed=0, device="auto",
                                                       num_threads=args.threads),
                                 work, "ceiling", images)
        for r in per_seed:
            r["ceiling.test_acc"] = test_accuracy(crowd, classes_of(majority))
    summary = summarise(per_seed)
    show(summary, len(per_seed))
    if args.markdown:
        markdown(summary, len(per_seed))
    if args.json:
        Path(args.json).write_text(json.dumps(per_seed, indent=1))
    print(f"\nrun directories: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
