"""Label shift: class priors of a target collection, and the corrections that follow from them.

A model trained on one collection (the *source*) predicts p(y | x) under the source's class
priors π. On another collection whose class priors q differ (label shift: p(x | y) unchanged),
the Bayes posterior is p(y | x) · q_y / π_y, renormalised (:func:`reweight`). q is unknown; it
is estimated from the model's unlabelled predictions on the target:

* :func:`em_priors`: the EM of Saerens, Latinne & Decaestecker (2002), with a Dirichlet prior
  centred on π (maximum a posteriori instead of maximum likelihood) and a floor under every
  class. Plain EM on over-confident probabilities drives rare classes to exactly 0; the
  pseudo-counts and the floor keep every class alive;
* :func:`bbse_priors`: black-box shift estimation (Lipton, Wang & Smola 2018): the valid
  split's confusion matrix C (joint of predicted and given label) and the target's
  predicted-label frequencies μ solve C w = μ, q = w ⊙ π;
* :func:`fit_calibration`: EM needs calibrated posteriors. Bias-corrected temperature scaling
  (Alexandari, Kundaje & Shrikumar 2020): softmax(log p / T + b), T and the per-class bias b
  fitted by the negative log-likelihood of the valid split's given labels. At its optimum the
  mean calibrated posterior on the valid split equals the valid label frequencies, so π and
  the calibrated p agree by construction (also for a model trained with logit adjustment,
  whose raw p is balanced on purpose);
* :func:`adapt_priors`: all of it together, with a fallback to no change when the estimate is
  not to be trusted: too few rows, EM without convergence, two random halves of the target
  disagreeing by more than ``max_half_l1``, or no significant shift at all (a likelihood-ratio
  test against π at level ``alpha``: on a collection drawn like the source, p stays as it is).

Training time (``core.training``): :func:`logit_adjustment` gives the offsets τ log π that the
logit-adjusted loss of Menon et al. (2021) adds to the logits; τ = 1 is the balanced softmax.

Pure numpy/scipy; no torch, no files.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import chi2

EPS = 1e-12
#: estimation methods of :func:`adapt_priors`
PRIOR_METHODS = ("em", "bbse")


def _distribution(values, floor: float = 0.0) -> np.ndarray:
    """``values`` clipped at 0 and normalised; with ``floor``, every entry at least
    min(floor, 1/m): the entries below it are raised to it and the others scaled down to make
    room, until none is below."""
    v = np.clip(np.asarray(values, np.float64), 0.0, None)
    total = v.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("not a distribution: no positive mass")
    v = v / total
    floor = min(float(floor), 1.0 / len(v))
    if floor <= 0:
        return v
    low = np.zeros(len(v), bool)
    while True:
        now = low | (v < floor)
        if now.sum() == low.sum():
            return v
        low = now
        rest = v[~low].sum()
        v = np.where(low, floor, v * (1.0 - floor * low.sum()) / max(rest, EPS))


def reweight(probs: np.ndarray, source_priors, target_priors) -> np.ndarray:
    """Posteriors under ``target_priors``: p ⊙ (q / π), each row renormalised."""
    p = np.asarray(probs, np.float64)
    ratio = np.asarray(target_priors, np.float64) / np.maximum(np.asarray(source_priors, np.float64), EPS)
    out = p * ratio
    total = out.sum(1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, EPS), p)


def logit_adjustment(priors, tau: float = 1.0) -> np.ndarray:
    """τ · log π: the offsets the logit-adjusted loss adds to the logits (Menon et al. 2021)."""
    return float(tau) * np.log(np.maximum(np.asarray(priors, np.float64), EPS))


def log_likelihood(probs: np.ndarray, source_priors, target_priors) -> float:
    """Σ_i log Σ_k p_ik q_k / π_k: the target's log-likelihood under priors q, up to a constant."""
    p = np.asarray(probs, np.float64)
    ratio = np.asarray(target_priors, np.float64) / np.maximum(np.asarray(source_priors, np.float64), EPS)
    return float(np.log(np.maximum(p @ ratio, EPS)).sum())


@dataclass
class EMResult:
    priors: np.ndarray
    iterations: int
    converged: bool


def em_priors(probs: np.ndarray, source_priors, *, pseudo_count: float = 0.0, floor: float = 0.0,
              max_iter: int = 1000, tol: float = 1e-8) -> EMResult:
    """Target priors by EM (Saerens et al. 2002) from posteriors ``probs`` (n, m) computed
    under ``source_priors`` π.

    E-step: w_ik ∝ p_ik q_k / π_k; M-step (MAP under a Dirichlet prior with α_k − 1 =
    ``pseudo_count`` · π_k): q_k = (Σ_i w_ik + pseudo_count · π_k) / (n + pseudo_count), then
    every class raised to at least ``floor`` and renormalised. ``pseudo_count`` = 0 and
    ``floor`` = 0 is the plain maximum-likelihood EM. Starts at π; stops when the largest
    change of q is below ``tol``.
    """
    p = np.asarray(probs, np.float64)
    source = _distribution(source_priors)
    if p.ndim != 2 or p.shape[1] != len(source):
        raise ValueError(f"probs must be (n, {len(source)}), got {p.shape}")
    n = len(p)
    q = source.copy()
    for iteration in range(1, max_iter + 1):
        w = reweight(p, source, q)
        new = (w.sum(0) + pseudo_count * source) / (n + pseudo_count)
        new = _distribution(new, floor)
        change = float(np.abs(new - q).max())
        q = new
        if change < tol:
            return EMResult(q, iteration, True)
    return EMResult(q, max_iter, False)


def bbse_priors(target_pred: np.ndarray, valid_pred: np.ndarray, valid_labels: np.ndarray, m: int, *,
                floor: float = 0.0) -> np.ndarray:
    """Target priors by black-box shift estimation (Lipton et al. 2018), hard predictions.

    C_ij = P_valid(ŷ = i, y = j), μ_i = P_target(ŷ = i); w solves C w = μ (least squares),
    q_j = w_j · P_valid(y = j), negative entries clipped, floored and renormalised."""
    valid_pred = np.asarray(valid_pred, np.int64)
    valid_labels = np.asarray(valid_labels, np.int64)
    joint = np.zeros((m, m))
    np.add.at(joint, (valid_pred, valid_labels), 1.0)
    joint /= max(len(valid_labels), 1)
    mu = np.bincount(np.asarray(target_pred, np.int64), minlength=m)[:m] / max(len(target_pred), 1)
    w, *_ = np.linalg.lstsq(joint, mu, rcond=None)
    source = joint.sum(0)
    return _distribution(np.clip(w, 0.0, None) * source, floor)


# ----------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """softmax(log p / T + b): bias-corrected temperature scaling (b = 0: temperature only)."""

    temperature: float
    bias: np.ndarray

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        logits = np.log(np.clip(np.asarray(probs, np.float64), EPS, None)) / self.temperature + self.bias
        logits -= logits.max(1, keepdims=True)
        out = np.exp(logits)
        return out / out.sum(1, keepdims=True)


def fit_calibration(probs: np.ndarray, labels: np.ndarray, *, bias: bool = True) -> Calibration:
    """T (and, with ``bias``, b with b_0 = 0) minimising the NLL of ``labels`` under
    softmax(log p / T + b) (L-BFGS on log T and b)."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64)
    m = p.shape[1]
    log_p = np.log(np.clip(p, EPS, None))
    onehot = np.eye(m)[y]
    n = max(len(y), 1)

    def unpack(theta):
        b = np.zeros(m)
        if bias:
            b[1:] = theta[1:]
        return np.exp(theta[0]), b

    def objective(theta):
        t, b = unpack(theta)
        z = log_p / t + b
        z -= z.max(1, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(1, keepdims=True))
        q = np.exp(log_q)
        loss = -(onehot * log_q).sum() / n
        residual = (q - onehot) / n                       # d loss / d z
        grad_t = -(residual * log_p).sum() / t            # d z / d log T = −log p / T
        grad = [grad_t] + (list(residual.sum(0)[1:]) if bias else [])
        return loss, np.asarray(grad)

    theta0 = np.zeros(m if bias else 1)
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                      bounds=[(np.log(0.05), np.log(20.0))] + [(-10.0, 10.0)] * (len(theta0) - 1))
    t, b = unpack(result.x)
    return Calibration(float(t), b)


# ----------------------------------------------------------------------------- the whole correction
@dataclass
class SourceModel:
    """What the correction needs to know about the run: its calibration, the source priors
    (the valid split's label frequencies, which the calibrated p matches) and, for BBSE, the
    valid split's predictions and labels."""

    calibration: Calibration
    priors: np.ndarray
    valid_pred: np.ndarray
    valid_labels: np.ndarray

    @classmethod
    def fit(cls, valid_probs: np.ndarray, valid_labels: np.ndarray, m: int, *, bias: bool = True) -> "SourceModel":
        valid_labels = np.asarray(valid_labels, np.int64)
        if len(valid_labels) == 0:
            raise ValueError("no valid rows to calibrate on")
        calibration = fit_calibration(valid_probs, valid_labels, bias=bias)
        priors = _distribution(np.bincount(valid_labels, minlength=m)[:m] + 0.5)  # +½: no class at exactly 0
        return cls(calibration, priors, np.asarray(valid_probs).argmax(1), valid_labels)


@dataclass
class PriorShift:
    """What :func:`adapt_priors` estimated and whether it was applied."""

    method: str
    applied: bool
    source_priors: list[float]
    target_priors: list[float]           # the estimate (also when not applied)
    reason: str = ""                     # why it was not applied
    rows: int = 0
    iterations: int = 0
    half_l1: float = float("nan")        # L1 between the estimates of two random halves
    lr_statistic: float = float("nan")   # 2 Δ log-likelihood against the source priors
    temperature: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def l1_change(self) -> float:
        return float(np.abs(np.asarray(self.target_priors) - np.asarray(self.source_priors)).sum())

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self, classes: list[str]) -> list[str]:
        head = (f"class priors ({self.method}, {self.rows} rows): "
                + ("applied" if self.applied else f"not applied ({self.reason})"))
        width = max(len(c) for c in classes)
        rows = [f"  {c:{width}s}  source {s:.3f}  estimated {t:.3f}"
                for c, s, t in zip(classes, self.source_priors, self.target_priors)]
        return [head, *rows]


def adapt_priors(probs: np.ndarray, source: SourceModel, *, method: str = "em", pseudo_count: float = 100.0,
                 floor: float = 0.002, min_rows: int = 30, max_half_l1: float = 0.5, alpha: float = 0.01,
                 seed: int = 0) -> tuple[np.ndarray, PriorShift]:
    """(posteriors under the estimated target priors, the estimate) for the target's
    predictions ``probs`` (n, m), or (``probs`` unchanged, the estimate with ``applied`` False)
    when the estimate is not trusted (see the module docstring)."""
    if method not in PRIOR_METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(PRIOR_METHODS)}")
    p = np.asarray(probs, np.float64)
    n, m = p.shape
    calibrated = source.calibration(p)
    pi = source.priors

    def estimate(rows: np.ndarray) -> tuple[np.ndarray, int, bool]:
        if method == "em":
            res = em_priors(calibrated[rows], pi, pseudo_count=pseudo_count, floor=floor)
            return res.priors, res.iterations, res.converged
        q = bbse_priors(p[rows].argmax(1), source.valid_pred, source.valid_labels, m, floor=floor)
        return q, 0, True

    shift = PriorShift(method, False, [float(v) for v in pi], [float(v) for v in pi], rows=n,
                       temperature=source.calibration.temperature)
    if n < min_rows:
        shift.reason = f"{n} rows, fewer than {min_rows}"
        return p, shift
    q, shift.iterations, converged = estimate(np.arange(n))
    shift.target_priors = [float(v) for v in q]
    if not converged or not np.isfinite(q).all():
        shift.reason = "the estimate did not converge"
        return p, shift
    order = np.random.default_rng(seed).permutation(n)
    half_a, *_ = estimate(order[: n // 2])
    half_b, *_ = estimate(order[n // 2:])
    shift.half_l1 = float(np.abs(half_a - half_b).sum())
    if shift.half_l1 > max_half_l1:
        shift.reason = f"unstable: two halves of the rows disagree by L1 {shift.half_l1:.2f} > {max_half_l1}"
        return p, shift
    shift.lr_statistic = 2.0 * (log_likelihood(calibrated, pi, q) - log_likelihood(calibrated, pi, pi))
    if alpha > 0 and shift.lr_statistic < chi2.ppf(1.0 - alpha, m - 1):
        shift.reason = f"no significant shift (likelihood ratio {shift.lr_statistic:.1f})"
        return p, shift
    shift.applied = True
    return reweight(calibrated, pi, q), shift
