"""Per-sample evidence that a given label is wrong or ambiguous, recorded by every run.

After every epoch ``core.training.fit`` makes an eval-mode pass over all rows (``ce`` and
``ldlva`` alike). From the class probabilities p and backbone features of that pass:

- ``TrainingDynamics`` accumulates, over all completed epochs (warm-up included), p[given label]
  and the margin p[given] - max_{j≠given} p[j]. Their epoch mean and standard deviation of
  p[given] are the confidence and variability of a data map (Swayamdipta et al., "Dataset
  Cartography", EMNLP 2020); the epoch mean of the margin is the area under the margin
  (Pleiss et al., "Identifying Mislabeled Data using the Area Under the Margin Ranking",
  NeurIPS 2020). Low values mean the model rarely agreed with the label.
- the epoch-averaged class probabilities (``pavg_<class>``), a prediction less fitted to each
  training image's own label than the last epoch's, from which ``core.soft_labels`` builds
  the exported soft labels.
- ``knn_disagreement`` asks the K nearest training samples in feature space whether they
  share the label: high values mean the neighbourhood says otherwise.

Every row gets these values, using its given ``label`` (valid and test rows have one too).
The sums live in the checkpoint, so a resumed run writes the same values as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from uldl_studio.core.labels.scores import p_given_and_best_other

#: samples.csv columns written from this module, in order.
COLUMNS = ("dyn_p_given_mean", "dyn_p_given_std", "dyn_margin_mean", "knn_disagreement")


class TrainingDynamics:
    """Running sums over epochs of p[given] (and its square) and of the margin, per row."""

    def __init__(self, n_rows: int, rows_key: str = ""):
        self.rows_key = rows_key            # identifies the rows (ids in order) the sums belong to
        self.p_given_sum = np.zeros(n_rows)
        self.p_given_sumsq = np.zeros(n_rows)
        self.margin_sum = np.zeros(n_rows)
        self.probs_sum: np.ndarray | None = None   # (n_rows, m), allocated at the first update
        self.epochs = 0

    def update(self, probs, labels) -> None:
        """Add one epoch's evaluation pass: ``probs`` (N, m), ``labels`` (N,) given labels."""
        p = np.asarray(probs, dtype=np.float64)
        p = p / p.sum(axis=1, keepdims=True)  # as written to the p_<class> columns
        given, best_other = p_given_and_best_other(p, np.asarray(labels, dtype=np.int64))
        margin = given - best_other
        self.p_given_sum += given
        self.p_given_sumsq += given * given
        self.margin_sum += margin
        self.probs_sum = p.copy() if self.probs_sum is None else self.probs_sum + p
        self.epochs += 1

    def mean_probs(self) -> np.ndarray | None:
        """(N, m) class probabilities averaged over the epochs (None before the first)."""
        return None if self.epochs == 0 or self.probs_sum is None else self.probs_sum / self.epochs

    def columns(self) -> dict[str, np.ndarray]:
        """``dyn_p_given_mean``, ``dyn_p_given_std`` (population std over epochs),
        ``dyn_margin_mean``; NaN before the first epoch."""
        if self.epochs == 0:
            nan = np.full(len(self.p_given_sum), np.nan)
            return {"dyn_p_given_mean": nan, "dyn_p_given_std": nan.copy(), "dyn_margin_mean": nan.copy()}
        mean = self.p_given_sum / self.epochs
        variance = np.maximum(self.p_given_sumsq / self.epochs - mean * mean, 0.0)
        return {"dyn_p_given_mean": mean, "dyn_p_given_std": np.sqrt(variance),
                "dyn_margin_mean": self.margin_sum / self.epochs}

    def state_dict(self) -> dict:
        """Checkpoint form (tensors, so ``torch.load(weights_only=True)`` reads it)."""
        return {"rows_key": self.rows_key, "epochs": self.epochs,
                "p_given_sum": torch.from_numpy(self.p_given_sum.copy()),
                "p_given_sumsq": torch.from_numpy(self.p_given_sumsq.copy()),
                "margin_sum": torch.from_numpy(self.margin_sum.copy()),
                "probs_sum": None if self.probs_sum is None else torch.from_numpy(self.probs_sum.copy())}

    def load_state_dict(self, saved: dict | None) -> str | None:
        """Restore the sums of ``state_dict()``. Returns why they could not be restored (the
        sums then stay at zero), or None."""
        if saved is None:
            return "the checkpoint has no training-dynamics sums (written by an older version)"
        if saved.get("rows_key") != self.rows_key or len(saved["p_given_sum"]) != len(self.p_given_sum):
            return "the checkpoint's training-dynamics sums are for other rows (valid/test rows changed?)"
        if int(saved["epochs"]) > 0 and saved.get("probs_sum") is None:
            return "the checkpoint has no epoch-averaged probabilities (written by an older version)"
        self.p_given_sum = saved["p_given_sum"].numpy().astype(np.float64)
        self.p_given_sumsq = saved["p_given_sumsq"].numpy().astype(np.float64)
        self.margin_sum = saved["margin_sum"].numpy().astype(np.float64)
        self.probs_sum = None if saved.get("probs_sum") is None else saved["probs_sum"].numpy().astype(np.float64)
        self.epochs = int(saved["epochs"])
        return None


@torch.no_grad()
def knn_disagreement(features, labels, probs, train_rows, k: int, *, chunk_elements: int = 2 ** 22) -> np.ndarray:
    """How much each row's K nearest training samples disagree with its given label.

    Neighbours: the ``k`` train rows with the highest cosine similarity of ``features``
    (N, V), the row itself excluded (by position, so duplicates still count). For a row i with
    given label y_i and neighbours n:

        knn_disagreement_i = mean_n [ 0.5 · 1(y_n ≠ y_i) + 0.5 · (1 - p_n[y_i]) ]

    in [0, 1]: 0 when every neighbour has the same label and is sure of it. ``labels`` (N,),
    ``probs`` (N, m), ``train_rows`` (T,) positions of the train rows. Brute force on the
    features' device in chunks of about ``chunk_elements`` similarities. NaN for a row with no
    neighbour (a single train row). Returns float64 (N,).
    """
    feats = torch.as_tensor(features).float()
    device = feats.device
    labels = torch.as_tensor(labels, device=device).long()
    probs = torch.as_tensor(probs, device=device).float()
    train_rows = torch.as_tensor(train_rows, device=device).long()
    n, t = len(feats), len(train_rows)
    out = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
    kk = min(int(k), t)
    if kk == 0 or n == 0:
        return out.cpu().numpy()
    unit = F.normalize(feats, dim=1)
    train_unit = unit[train_rows].T.contiguous()            # (V, T)
    train_labels, train_probs = labels[train_rows], probs[train_rows]
    position = torch.full((n,), -1, dtype=torch.long, device=device)
    position[train_rows] = torch.arange(t, device=device)   # column of each train row
    step = max(1, min(n, chunk_elements // t))
    buffer = torch.empty(step, t, device=device)            # reused: no fresh pages per chunk
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=device)
        sim = torch.mm(unit[rows], train_unit, out=buffer[:len(rows)])  # (c, T) cosine similarities
        own = position[rows]
        is_train = own >= 0
        sim[is_train.nonzero().squeeze(1), own[is_train]] = -float("inf")
        top_sim, top = sim.topk(kk, dim=1)                  # (c, kk) train columns
        valid = top_sim > -float("inf")
        y = labels[rows][:, None].expand_as(top)
        differs = (train_labels[top] != y).double()
        p_given = train_probs[top, y].double()
        score = 0.5 * differs + 0.5 * (1.0 - p_given)
        count = valid.sum(1)
        out[rows] = torch.where(count > 0, (score * valid).sum(1) / count.clamp_min(1), out[rows])
    return out.cpu().numpy()
