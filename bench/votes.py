"""Several annotators: how much the combined label gains over the votes alone and the model
alone, where the next vote should go, and whether Dawid–Skene finds who is reliable.

**FER+** (its real crowd votes, ``crowd_<class>``; images with at least four emotion votes):

- each image gets *k* of its votes, drawn at random (one permutation of its votes per draw);
  the other votes are the reference, so nothing the labels are scored against is ever seen;
- soft labels of the test images, intersection with the reference: the k votes' shares
  (*votes alone*), the model's prediction p and p calibrated by the fitted temperature (*model
  alone*), and the combined label of ``core.labels.annotations`` (``combine_votes``: the model's
  temperature and its prior strength α fitted on the valid split's own k votes, the posterior
  Dirichlet(α·p̂ + votes), its intersection estimate); beside it the posterior mean and
  Dawid–Skene's true-class posterior with the model's evidence;
- the valid split's numbers are printed as well: that is where choices are made; the test
  split's are the result;
- budget of 1.5 votes per image: every image has one vote, half of the images of each split get
  a second one, chosen by the queue (``next_vote_gain`` after the first votes) or at random; the
  reference is every vote but the first two, for both.

The model is a trained run (``--run``), whose ``p_<class>`` for the valid and test images are
held-out predictions (it was trained on the train split only).

**Demo** (true labels known): three simulated annotators vote on every sample (one right with
probability 0.9, else a uniformly drawn class; one right with probability 0.7, else always
``neutral``; one uniformly random), the dataset's given label is the fourth source, as in the
product. Dawid–Skene's accuracy per source against the real one, and the combined label's
accuracy (argmax of the posterior) against the majority vote of the four (ties: lowest class).

Mean ± sd over draws (``--draws``):

    python bench/votes.py --run RUN --draws 5 --markdown
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uldl_studio.core.labels import annotations as A  # noqa: E402
from uldl_studio.core.data.datasets import load_dataset  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.table import classes_of  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ferplus"
KS = (1, 2, 3)
MIN_VOTES = 4


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum(a, b).sum(axis=1)


def shares(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum(axis=1, keepdims=True)


def vote_lists(counts: np.ndarray) -> np.ndarray:
    """(n, max votes) each image's votes as class indices, -1 padded."""
    counts = counts.astype(np.int64)
    width = int(counts.sum(axis=1).max())
    out = np.full((len(counts), width), -1, dtype=np.int64)
    for i, row in enumerate(counts):
        votes = np.repeat(np.arange(len(row)), row)
        out[i, :len(votes)] = votes
    return out


def permuted(votes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    keys = np.where(votes >= 0, rng.random(votes.shape), np.inf)
    return np.take_along_axis(votes, np.argsort(keys, axis=1), axis=1)


def counts_of(votes: np.ndarray, m: int) -> np.ndarray:
    out = np.zeros((len(votes), m))
    rows, cols = np.nonzero(votes >= 0)
    np.add.at(out, (rows, votes[rows, cols]), 1.0)
    return out


def combine(given: np.ndarray, probs: np.ndarray, valid: np.ndarray) -> dict:
    """The product's combination over the crowd's given votes (``core.annotations``): the
    combined label (temperature and α fitted on ``valid``), its next-vote gain, and Dawid–Skene's
    true-class posterior with the model's evidence (weight fitted on ``valid``)."""
    m = given.shape[1]
    empty = np.zeros((len(given), 0), dtype=np.int64)
    combo = A.combine_votes(empty, m, given, probs, None, valid)
    ds = A.dawid_skene(empty, m, given)
    weight = A.fit_model_weight(ds, empty, given, probs, valid)
    post = A.combined_posterior(ds, empty, given, probs, weight)
    return {"soft": combo.soft, "posterior": post, "alpha": combo.prior_strength, "temperature": combo.temperature,
            "calibrated": combo.prior, "mean": combo.mean, "gain": combo.gain, "weight": weight}


def ferplus(args, log) -> dict:
    table = load_dataset(args.data, fmt="ferplus")
    classes = classes_of(table)
    m = len(classes)
    run = Run.open(args.run)
    samples = run.samples().set_index("sample_id")
    pcols = [f"p_{c}" for c in classes]
    table = table[table["split"].isin(["valid", "test"])].reset_index(drop=True)
    counts = table[A.crowd_columns(classes)].to_numpy(np.float64)
    keep = counts.sum(axis=1) >= MIN_VOTES
    table, counts = table[keep].reset_index(drop=True), counts[keep]
    probs = samples.loc[table["sample_id"], pcols].to_numpy(np.float64)
    valid = table["split"].to_numpy() == "valid"
    test = ~valid
    log(f"FER+: {int(valid.sum())} valid and {int(test.sum())} test images with >= {MIN_VOTES} emotion votes; "
        f"model: {run.config.method}, {len(run.history())} epoch(s) completed")
    votes = vote_lists(counts)
    names = ("votes", "model", "calibrated", "combined", "mean", "posterior")
    out = {f"k{k}": {**{n: [] for n in names}, **{f"valid_{n}": [] for n in names}, "alpha": [], "temperature": []}
           for k in KS}
    queue = {f"{split}{name}": [] for split in ("", "valid_")
             for name in ("queue", "random", "queue_votes", "random_votes")}
    for draw in range(args.draws):
        rng = np.random.default_rng(1000 + draw)
        order = permuted(votes, rng)
        for k in KS:
            given = counts_of(order[:, :k], m)
            reference = shares(counts_of(order[:, k:], m))
            c = combine(given, probs, valid)
            res = out[f"k{k}"]
            for name, soft in (("votes", shares(given)), ("model", probs), ("calibrated", c["calibrated"]),
                               ("combined", c["soft"]), ("mean", c["mean"]), ("posterior", c["posterior"])):
                score = intersection(soft, reference)
                res[name].append(score[test].mean())
                res[f"valid_{name}"].append(score[valid].mean())
            res["alpha"].append(c["alpha"])
            res["temperature"].append(c["temperature"])
        # budget 1.5 votes per image: the second vote where the queue says, or at random
        first = counts_of(order[:, :1], m)
        second = counts_of(order[:, 1:2], m)
        reference = shares(counts_of(order[:, 2:], m))
        gain = combine(first, probs, valid)["gain"]
        for name in ("queue", "random"):
            chosen = np.zeros(len(table), dtype=bool)
            for split in (valid, test):
                rows = np.flatnonzero(split)
                half = len(rows) // 2
                if name == "queue":
                    picked = rows[np.argsort(-gain[rows], kind="stable")[:half]]
                else:
                    picked = rng.choice(rows, half, replace=False)
                chosen[picked] = True
            given = first + np.where(chosen[:, None], second, 0.0)
            c = combine(given, probs, valid)
            combined, alone = intersection(c["soft"], reference), intersection(shares(given), reference)
            queue[name].append(combined[test].mean())
            queue[f"{name}_votes"].append(alone[test].mean())
            queue[f"valid_{name}"].append(combined[valid].mean())
            queue[f"valid_{name}_votes"].append(alone[valid].mean())
        log(f"  draw {draw}: " + ", ".join(f"k={k}: votes {out[f'k{k}']['votes'][-1]:.4f} model "
                                           f"{out[f'k{k}']['model'][-1]:.4f} combined "
                                           f"{out[f'k{k}']['combined'][-1]:.4f} (alpha {out[f'k{k}']['alpha'][-1]:.2f})"
                                           for k in KS)
            + f"; 1.5 votes: queue {queue['queue'][-1]:.4f} random {queue['random'][-1]:.4f}")
    return {"per_k": out, "queue": queue, "n_test": int(test.sum()), "n_valid": int(valid.sum())}


def demo(args, log) -> dict:
    from uldl_studio.core.data.datasets.demo import load_demo

    table = load_demo()
    m = len(classes_of(table))
    truth = table["true_label"].to_numpy(np.int64)
    given = table["label"].to_numpy(np.int64)
    n = len(table)
    out = {"ds_error": [], "ds_error_no_given": [], "combined": [], "majority": [], "accuracy": [],
           "estimated": []}
    for draw in range(args.draws):
        rng = np.random.default_rng(2000 + draw)
        good = np.where(rng.random(n) < 0.9, truth, rng.integers(0, m, n))
        biased = np.where(rng.random(n) < 0.7, truth, 0)
        random = rng.integers(0, m, n)
        labels = np.column_stack([good, biased, random, given])
        real = (labels == truth[:, None]).mean(axis=0)
        ds = A.dawid_skene(labels, m)
        out["ds_error"].append(np.abs(ds.accuracy() - real))
        out["accuracy"].append(real)
        out["estimated"].append(ds.accuracy())
        out["ds_error_no_given"].append(np.abs(A.dawid_skene(labels[:, :3], m).accuracy() - real[:3]))
        combined = A.combined_posterior(ds, labels).argmax(axis=1)
        majority = counts_of(labels, m).argmax(axis=1)
        out["combined"].append((combined == truth).mean())
        out["majority"].append((majority == truth).mean())
        log(f"  demo draw {draw}: real accuracy {np.round(real, 3).tolist()}, Dawid-Skene "
            f"{np.round(ds.accuracy(), 3).tolist()}; combined {out['combined'][-1]:.4f} vs majority "
            f"{out['majority'][-1]:.4f}")
    return out


def ms(values, digits: int = 4) -> str:
    values = np.asarray(values, np.float64)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=False, help="a trained FER+ run (its p of the valid and test images)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER+ root")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    start = time.time()

    def log(text):
        print(text, flush=True)

    fer = None
    if args.run:
        if not Path(args.data).is_dir():
            print(f"skipped FER+: {args.data} is not there", flush=True)
        else:
            fer = ferplus(args, log)
    dem = None if args.skip_demo else demo(args, log)
    print(f"\n{args.draws} draws, {time.time() - start:.0f} s")
    if fer is not None:
        for split in ("valid_", ""):
            where = "valid (where T and alpha are fitted: for choosing)" if split else "test (reported)"
            print(f"\nFER+ {where} images ({fer['n_valid'] if split else fer['n_test']}): intersection with the "
                  "held-out votes, mean ± sd over draws")
            print("| votes given | votes alone | model alone (p) | model alone (calibrated) | combined | "
                  "posterior mean | true-class posterior | fitted alpha (votes) | fitted T |")
            print("|---|---|---|---|---|---|---|---|---|")
            for k in KS:
                r = fer["per_k"][f"k{k}"]
                print(f"| {k} | {ms(r[split + 'votes'])} | {ms(r[split + 'model'])} | {ms(r[split + 'calibrated'])} | "
                      f"{ms(r[split + 'combined'])} | {ms(r[split + 'mean'])} | {ms(r[split + 'posterior'])} | "
                      f"{ms(r['alpha'], 2)} | "
                      f"{ms(r['temperature'], 2)} |")
        for k in KS:
            r = fer["per_k"][f"k{k}"]
            beats_votes = all(c > v for c, v in zip(r["combined"], r["votes"]))
            best_model = np.maximum(r["model"], r["calibrated"])
            beats_model = all(c > p for c, p in zip(r["combined"], best_model))
            print(f"test, k={k}: combined > votes alone on every draw: {beats_votes}; > the better model alone "
                  f"on every draw: {beats_model}")
        q = fer["queue"]
        print("\n1.5 votes per image (the second vote for half of the images): intersection")
        print("| second vote | combined (test) | votes alone (test) | combined (valid) |")
        print("|---|---|---|---|")
        print(f"| queue (needs another vote) | {ms(q['queue'])} | {ms(q['queue_votes'])} | {ms(q['valid_queue'])} |")
        print(f"| random half | {ms(q['random'])} | {ms(q['random_votes'])} | {ms(q['valid_random'])} |")
        print(f"test: queue > random on every draw: {all(a > b for a, b in zip(q['queue'], q['random']))} "
              f"(combined), {all(a > b for a, b in zip(q['queue_votes'], q['random_votes']))} (votes alone)")
    if dem is not None:
        err = np.stack(dem["ds_error"])
        acc = np.stack(dem["accuracy"])
        est = np.stack(dem["estimated"])
        names = ["good (0.9)", "biased (0.7, else neutral)", "random", "dataset's label"]
        print("\nDemo, simulated annotators: Dawid-Skene's accuracy against the real one (mean over draws)")
        print("| source | real accuracy | Dawid-Skene | largest error over draws |")
        print("|---|---|---|---|")
        for s, name in enumerate(names):
            print(f"| {name} | {acc[:, s].mean():.4f} | {est[:, s].mean():.4f} | {err[:, s].max():.4f} |")
        print(f"largest error, every source and draw: {err.max():.4f} (target < 0.05: {err.max() < 0.05}); "
              f"without the dataset's label as a source: {np.stack(dem['ds_error_no_given']).max():.4f}")
        print(f"accuracy against the true labels: combined {ms(dem['combined'])}, majority vote {ms(dem['majority'])}; "
              f"combined > majority on every draw: {all(c > v for c, v in zip(dem['combined'], dem['majority']))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
