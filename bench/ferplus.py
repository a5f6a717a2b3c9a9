"""FER+ benchmark: does LDLVA beat plain cross-entropy when each image has one annotator's label?

Trains, with the same backbone, epochs and seed, on FER+ (../shared/data/ferplus):
  ce        cross-entropy on one annotator's vote per image (`--single-label sample`)
  ldlva     LDLVA on the same labels
  ce-crowd  cross-entropy on the crowd majority (the ceiling to approach)
and reports, on the test split, accuracy against the crowd majority and KL / intersection of
the predictions to the crowd distributions; on the training split, the same two measures for
LDLVA's constructed distributions d and for the one-hot given labels; and the AUROC of λ for
flagging "given label != crowd majority", next to cleanlab's self-confidence label-quality
score computed from out-of-fold `ce` predictions (2 folds) on the same samples.

Valid-split metrics are printed too (select configurations on valid, report test once).
Images are decoded once and shared by every run.

    python bench/ferplus.py --epochs 8 [--limit N] [--set KEY=VALUE ...]
    python bench/ferplus.py --limit 8000 --epochs 5 --sweep NAME "KEY=VALUE ..." [--sweep ...]
        (sweep mode: ce once, then ldlva once per variant; valid metrics only;
         --sweep-skip-ce leaves out the ce row)
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

from uldl_studio.core.data.datasets import load_dataset  # noqa: E402
from uldl_studio.core.labels.metrics import accuracy, auroc, ldl_metrics  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.table import classes_of, p_columns, d_columns, ref_columns  # noqa: E402
from uldl_studio.core.engine.config import TrainConfig  # noqa: E402
from uldl_studio.core.engine.training import fit  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"


def parse_overrides(pairs):
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def train(table, config, out_dir, label, images=None):
    started = time.perf_counter()
    for progress in fit(table, config, out_dir, images=images):
        if progress.phase == "epoch_end":
            print(f"  [{label}] epoch {progress.epoch}/{progress.epochs} loss {progress.loss:.3f} "
                  f"acc {progress.accuracy:.3f} mean λ {progress.mean_lambda:.3f} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
    return Run.open(out_dir).samples(), time.perf_counter() - started


def split_scores(samples, classes, split="test"):
    test = samples[samples["split"] == split]
    crowd = test[ref_columns(classes)].to_numpy(float)
    pred = test[p_columns(classes)].to_numpy(float)
    metrics = ldl_metrics(crowd, pred)
    return {"accuracy": accuracy(crowd.argmax(1), pred.argmax(1)),
            "kl": metrics["kl"], "intersection": metrics["intersection"]}


def load_shared_images(table, config):
    from uldl_studio.core.data.images import load_images

    started = time.perf_counter()
    images, problems = load_images(table, config.image_size, config.channels)
    if problems:
        raise SystemExit(f"{len(problems)} FER+ images could not be read (first: {problems[0].path})")
    print(f"decoded {len(images)} images once in {time.perf_counter() - started:.0f}s", flush=True)
    return images


def train_diagnostics(samples, classes):
    """On the training split: the constructed d and the exported soft label vs the crowd, and
    the AUROC of λ, of the same run's self-confidence and of ``ambiguity`` for given != crowd
    majority."""
    from uldl_studio.core.labels import scores

    train_mask = samples["split"].to_numpy() == "train"
    part = samples[train_mask]
    crowd = part[ref_columns(classes)].to_numpy(float)
    noisy = part["label"].to_numpy() != crowd.argmax(1)
    constructed = part[d_columns(classes)].to_numpy(float)
    soft = part[[f"soft_{c}" for c in classes]].to_numpy(float)
    lam = part["lambda"].to_numpy(float)
    return {"d_inter": ldl_metrics(crowd, constructed)["intersection"],
            "soft_inter": ldl_metrics(crowd, soft)["intersection"],
            "lambda_auroc": auroc(lam, noisy), "mean_lambda": float(lam.mean()),
            "self_conf_auroc": auroc(scores.badness(samples, "self_confidence")[train_mask], noisy),
            "ambiguity_auroc": auroc(scores.badness(samples, "ambiguity")[train_mask], noisy)}


def sweep(sampled, classes, variants, common, work, images, with_ce=True):
    rows = []
    if with_ce:
        ce_config = TrainConfig(method="ce", **common)
        ce_samples, secs = train(sampled, ce_config, work / "ce", "ce", images)
        rows.append(("ce", "", split_scores(ce_samples, classes, "valid"), None, secs))
    for name, spec in variants:
        overrides = parse_overrides(spec.split())
        config = TrainConfig(method="ldlva", **common, **overrides)
        samples, secs = train(sampled, config, work / f"ldlva-{name}", f"ldlva {name}", images)
        rows.append((f"ldlva {name}", spec, split_scores(samples, classes, "valid"),
                     train_diagnostics(samples, classes), secs))
        print(f"  [ldlva {name}] {rows[-1][2]} {rows[-1][3]}", flush=True)
    print(f"\nValid split ({int((sampled['split'] == 'valid').sum())} images), {common['epochs']} epochs, "
          f"seed {common['seed']}:")
    print("(λ, 1 − p[given] and ambiguity: AUROC for given != crowd majority on train; d and the exported "
          "soft label: intersection with the crowd on train)")
    print(f"{'run':24s} {'acc':>6s} {'KL':>6s} {'inter':>6s} {'λ':>6s} {'1-p':>6s} {'ambig':>6s} {'d':>6s} "
          f"{'soft':>6s} {'mean λ':>7s} {'time':>6s}  overrides")
    for name, spec, score, diag, secs in rows:
        extra = (f"{diag['lambda_auroc']:6.3f} {diag['self_conf_auroc']:6.3f} {diag['ambiguity_auroc']:6.3f} "
                 f"{diag['d_inter']:6.3f} {diag['soft_inter']:6.3f} {diag['mean_lambda']:7.3f}" if diag
                 else " ".join(f"{'-':>6s}" for _ in range(5)) + f" {'-':>7s}")
        print(f"{name:24s} {score['accuracy']:6.3f} {score['kl']:6.3f} {score['intersection']:6.3f} {extra} "
              f"{secs:5.0f}s  {spec}", flush=True)


def out_of_fold_probabilities(table, config, work, seed, images=None, train_fn=None):
    """`ce` predictions for every training sample from a model that never saw it (2 folds).
    ``train_fn`` (default ``train``) trains one fold: (table, config, out_dir, label, images)."""
    train_fn = train_fn or train
    train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, 2, size=len(train_rows))
    probs = np.zeros((len(train_rows), len(classes_of(table))))
    for k in (0, 1):
        part = table.iloc[train_rows].copy()
        part.attrs = dict(table.attrs)
        part["split"] = np.where(fold == k, "valid", "train")
        samples, _ = train_fn(part, config, work / f"oof{k}", f"ce fold {k}",
                           None if images is None else images[train_rows])
        held = samples["split"].to_numpy() == "valid"
        probs[np.flatnonzero(fold == k)] = samples.loc[held, p_columns(classes_of(table))].to_numpy(float)
    return probs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="first N samples per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cleanlab", action="store_true")
    parser.add_argument("--set", action="append", default=[], help="TrainConfig override for ldlva, KEY=VALUE")
    parser.add_argument("--work", default=None, help="keep run directories here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--sweep", nargs=2, action="append", default=[], metavar=("NAME", "OVERRIDES"),
                        help='ldlva variant: NAME "KEY=VALUE KEY=VALUE" (sweep mode, valid split only)')
    parser.add_argument("--sweep-skip-ce", action="store_true",
                        help="sweep mode: do not train the ce row (it is deterministic: reuse an earlier one)")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"FER+ data not found at {args.data}; nothing to benchmark", file=sys.stderr)
        return 1

    sampled = load_dataset(args.data, fmt="ferplus", single_label="sample", seed=args.seed, limit=args.limit)
    majority = load_dataset(args.data, fmt="ferplus", single_label="majority", seed=args.seed, limit=args.limit)
    classes = classes_of(sampled)
    counts = sampled["split"].value_counts().to_dict()
    print(f"FER+ {counts}, {len(classes)} classes; given label != crowd majority on "
          f"{np.mean(sampled['label'].to_numpy() != majority['label'].to_numpy()):.3f} of samples")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="uldl-ferplus-"))
    common = dict(epochs=args.epochs, seed=args.seed, device="auto", num_threads=args.threads)
    images = load_shared_images(sampled, TrainConfig(**common))
    assert (sampled["path"].to_numpy() == majority["path"].to_numpy()).all(), "tables not row-aligned"
    if args.sweep:
        sweep(sampled, classes, args.sweep, common, work, images, with_ce=not args.sweep_skip_ce)
        print(f"\nrun directories: {work}")
        return 0
    ldlva_config = TrainConfig(method="ldlva", **common, **parse_overrides(args.set))
    ce_config = TrainConfig(method="ce", **common)

    rows, seconds = {}, {}
    print(f"ldlva config overrides: {parse_overrides(args.set) or 'none (TrainConfig defaults)'}")
    ce_samples, seconds["ce"] = train(sampled, ce_config, work / "ce", "ce", images)
    ldlva_samples, seconds["ldlva"] = train(sampled, ldlva_config, work / "ldlva", "ldlva", images)
    crowd_samples, seconds["ce-crowd"] = train(majority, ce_config, work / "ce-crowd", "ce-crowd", images)
    named = {"ce (one annotator)": ce_samples, "ldlva (one annotator)": ldlva_samples,
             "ce on crowd majority (ceiling)": crowd_samples}

    for split in ("valid", "test"):
        print(f"\n{split.capitalize()} split ({counts.get(split, 0)} images), {args.epochs} epochs, seed {args.seed}:")
        print(f"{'model':34s} {'acc':>7s} {'KL':>7s} {'inter':>7s} {'time':>7s}")
        for (name, samples), secs in zip(named.items(), seconds.values()):
            score = split_scores(samples, classes, split)
            print(f"{name:34s} {score['accuracy']:7.3f} {score['kl']:7.3f} {score['intersection']:7.3f} {secs:6.0f}s")

    train_mask = ldlva_samples["split"].to_numpy() == "train"
    train_part = ldlva_samples[train_mask]
    crowd = train_part[ref_columns(classes)].to_numpy(float)
    given = train_part["label"].to_numpy()
    onehot = np.eye(len(classes))[given]
    constructed = train_part[d_columns(classes)].to_numpy(float)
    d_scores, onehot_scores = ldl_metrics(crowd, constructed), ldl_metrics(crowd, onehot)
    print("\nTraining split, distance to the crowd distributions:")
    print(f"  constructed d (ldlva): KL {d_scores['kl']:.3f}  intersection {d_scores['intersection']:.3f}")
    print(f"  one-hot given labels : KL {onehot_scores['kl']:.3f}  intersection {onehot_scores['intersection']:.3f}")

    noisy = given != crowd.argmax(1)
    lam = train_part["lambda"].to_numpy(float)
    print(f"\nFlagging given != crowd majority ({noisy.mean():.3f} of training samples), AUROC:")
    print(f"  λ (ldlva)                         {auroc(lam, noisy):.3f}")
    ce_train = ce_samples[ce_samples["split"] == "train"]
    self_conf_in_sample = 1 - ce_train[p_columns(classes)].to_numpy(float)[np.arange(len(given)), given]
    print(f"  1 - p[given] of ce (in-sample)    {auroc(self_conf_in_sample, noisy):.3f}")
    if not args.skip_cleanlab:
        from cleanlab.rank import get_label_quality_scores

        started = time.perf_counter()
        oof = out_of_fold_probabilities(sampled, ce_config, work, args.seed, images)
        quality = get_label_quality_scores(given, oof, method="self_confidence")
        print(f"  cleanlab self-confidence (2-fold) {auroc(1 - quality, noisy):.3f}   "
              f"({time.perf_counter() - started:.0f}s for the two folds)")
    print(f"\nrun directories: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
