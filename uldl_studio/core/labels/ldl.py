"""Pure, vectorised functions for every equation of LDLVA (docs/method.md).

Shapes: B samples in a batch, K neighbours each, m classes, V feature dimension.
All functions take and return ``torch.Tensor``; numpy arrays are accepted and converted with
``torch.as_tensor``. Nothing here holds state: the training loop owns the tensors.

==========================  =================================================================
equation                    function
==========================  =================================================================
s_ik = exp(-||a_i-a_k||²/δ²)  ``local_similarity(a_i, a_k, delta, kind="l2")``
s_ik = exp(-||a_i-a_k||₁/σ)   ``local_similarity(..., kind="l1", l1_scale=0.5)`` (published code)
c_ik = ζ_ik · s_ik            ``contribution_degrees(zeta, s)``
d̃_i = Σ c f_k / Σ c          ``aggregate_distribution(c, neighbour_probs)``
d_i = (1-λ) l + λ d̃          ``target_distribution(onehot, lam, d_tilde)``
CE(d, f(x))                   ``soft_cross_entropy(target, logits)``
L_D                           ``discriminative_loss(features, labels, lam, centres)``
centre update (center loss)   ``update_centres(centres, features, labels, weights, alpha)``
==========================  =================================================================
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Scale of the L1 similarity in the published code: s = exp(-||a_i - a_k||_1 / 0.5).
PUBLISHED_L1_SCALE = 0.5

#: Below this total contribution Σ_k c_ik a sample is treated as having no usable neighbour.
ZERO_CONTRIBUTION = 1e-12


def _t(x, dtype=None) -> torch.Tensor:
    t = torch.as_tensor(x)
    if dtype is not None:
        t = t.to(dtype)
    elif not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    return t


def local_similarity(a_i, a_k, delta: float = 0.5, kind: str = "l2", l1_scale: float = PUBLISHED_L1_SCALE) -> torch.Tensor:
    """Similarity s_ik in (0, 1] of each sample's V-A point to its neighbours' points.

    ``a_i``: (B, 2), ``a_k``: (B, K, 2) → (B, K). s = 1 exactly at distance 0.

    - ``kind="l2"`` (default): ``exp(-||a_i - a_k||²₂ / δ²)`` — docs/method.md, step 2.
    - ``kind="l1"``: the published code's ``exp(-||a_i - a_k||₁ / l1_scale)`` with
      ``l1_scale = 0.5``; ``delta`` is ignored.

    Far-apart points underflow towards 0 (never negative); callers must tolerate s ≈ 0, which
    ``aggregate_distribution`` does.
    """
    a_i = _t(a_i)
    a_k = _t(a_k, a_i.dtype)
    diff = a_k - a_i.unsqueeze(-2)
    if kind == "l2":
        if delta <= 0:
            raise ValueError(f"delta must be > 0, got {delta}")
        return torch.exp(-(diff * diff).sum(-1) / (delta * delta))
    if kind == "l1":
        if l1_scale <= 0:
            raise ValueError(f"l1_scale must be > 0, got {l1_scale}")
        return torch.exp(-diff.abs().sum(-1) / l1_scale)
    raise ValueError(f"unknown similarity kind {kind!r}; expected 'l2' or 'l1'")


def contribution_degrees(zeta, s) -> torch.Tensor:
    """c_ik = ζ_ik · s_ik (both (B, K), in [0, 1])."""
    return _t(zeta) * _t(s)


def aggregate_distribution(c, neighbour_probs) -> torch.Tensor:
    """d̃_i = Σ_k c_ik f(x_k) / Σ_k c_ik: (B, K), (B, K, m) → (B, m).

    Zero total contribution (every c_ik = 0, e.g. all neighbours far away so s underflowed,
    or the calibration MLP says 0) has no defined weighted mean; such rows fall back to the
    *uniform* mean of the neighbours' distributions, so d̃ is always a distribution and the
    gradient stays finite.
    """
    c = _t(c)
    probs = _t(neighbour_probs, c.dtype)
    return (contribution_weights(c).unsqueeze(-1) * probs).sum(-2)


def contribution_weights(c) -> torch.Tensor:
    """The weight of each neighbour in d̃: c_ik / Σ_k c_ik, uniform where the total is zero
    (see ``aggregate_distribution``). (…, K) → (…, K), each row summing to 1."""
    c = _t(c)
    total = c.sum(-1, keepdim=True)
    usable = total > ZERO_CONTRIBUTION
    return torch.where(usable, c / total.clamp_min(ZERO_CONTRIBUTION), torch.full_like(c, 1.0 / c.shape[-1]))


def target_distribution(onehot, lam, d_tilde) -> torch.Tensor:
    """d_i = (1 - λ_i) l_i + λ_i d̃_i. ``lam``: (B,) or (B, 1), in [0, 1] → (B, m).

    A convex combination of two distributions, so a distribution for any λ in [0, 1].
    """
    onehot = _t(onehot)
    lam = _t(lam, onehot.dtype)
    if lam.dim() == onehot.dim() - 1:
        lam = lam.unsqueeze(-1)
    return (1.0 - lam) * onehot + lam * _t(d_tilde, onehot.dtype)


def lambda_evidence(d_tilde, target, log_probs, form: str = "ce") -> torch.Tensor:
    """λ's per-sample evidence from log-probabilities ``log_probs`` (B, m): negative when the model
    fits the neighbours' distribution d̃ better than the label l (λ should rise), positive when
    it fits the label better.

    - ``ce``: g_i = CE(d̃_i, f_i) − CE(l_i, f_i) = Σ_j (l_ij − d̃_ij) log f_ij, the derivative of
      the training loss by λ_i;
    - ``prob``: g_i = Σ_j (l_ij − d̃_ij) f_ij, the probability the model gives the label minus the
      one it gives the neighbours' distribution: bounded in [−1, 1], where ``ce`` grows without
      bound as f[label] → 0, so a few hopeless labels do not dominate λ's running baseline.
    """
    log_probs = _t(log_probs)
    weights = _t(target, log_probs.dtype) - _t(d_tilde, log_probs.dtype)
    if form == "ce":
        return (weights * log_probs).sum(-1)
    if form == "prob":
        return (weights * log_probs.exp()).sum(-1)
    raise ValueError(f"unknown evidence form {form!r}")


def soft_cross_entropy(target, logits, reduction: str = "mean") -> torch.Tensor:
    """CE(d, f(x)) = -Σ_j d_j log softmax(logits)_j; ``reduction``: mean | sum | none."""
    logits = _t(logits)
    per_sample = -(_t(target, logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1)
    return _reduce(per_sample, reduction)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}")


def centre_separation(centres, feature_dim: int | None = None) -> torch.Tensor:
    """Σ_{j≠k} exp(-||μ_j - μ_k||² / √V) over ordered pairs (each pair counted twice)."""
    centres = _t(centres)
    dim = centres.shape[-1] if feature_dim is None else feature_dim
    sq = torch.cdist(centres, centres).pow(2)
    off_diagonal = ~torch.eye(centres.shape[0], dtype=torch.bool, device=centres.device)
    return torch.exp(-sq / math.sqrt(dim))[off_diagonal].sum()


def discriminative_loss(features, labels, lam, centres, feature_dim: int | None = None,
                        reduction: str = "sum") -> torch.Tensor:
    """L_D = ½ Σ_i (1-λ_i) ||v_i - μ_{y_i}||² + Σ_{j≠k} exp(-||μ_j - μ_k||² / √V).

    ``reduction="sum"`` is the equation as written; ``"mean"`` divides the first (per-sample)
    term by B so the loss scale does not grow with the batch size (the separation term is
    per-batch either way). Pass a detached ``lam`` if λ should only weight, not learn from,
    this term (the training loop does: otherwise L_D always rewards a larger λ).
    """
    features = _t(features)
    labels = torch.as_tensor(labels, dtype=torch.long, device=features.device)
    lam = _t(lam, features.dtype).reshape(-1)
    centres = _t(centres, features.dtype)
    pull = 0.5 * (1.0 - lam) * (features - centres[labels]).pow(2).sum(-1)
    return _reduce(pull, "sum" if reduction == "sum" else "mean") + centre_separation(centres, feature_dim)


@torch.no_grad()
def update_centres(centres, features, labels, weights=None, alpha: float = 0.5,
                   separation_lr: float = 0.0, feature_dim: int | None = None) -> torch.Tensor:
    """One center-loss step (Wen et al., ECCV 2016, eq. 4) → new (m, V) centres.

    Δμ_j = Σ_{i: y_i = j} w_i (μ_j - v_i) / (1 + Σ_{i: y_i = j} w_i);  μ_j ← μ_j - α Δμ_j.
    ``weights`` default to 1 (the training loop passes 1 - λ_i, matching L_D's pull term).
    With ``separation_lr > 0`` the centres also take a gradient step on the separation term of
    L_D (the only thing that moves centres apart).
    """
    centres = _t(centres)
    features = _t(features, centres.dtype).detach()
    labels = torch.as_tensor(labels, dtype=torch.long, device=centres.device)
    w = torch.ones(len(labels), dtype=centres.dtype, device=centres.device) if weights is None \
        else _t(weights, centres.dtype).reshape(-1).detach()
    m = centres.shape[0]
    weight_sum = torch.zeros(m, dtype=centres.dtype, device=centres.device).index_add_(0, labels, w)
    feature_sum = torch.zeros_like(centres).index_add_(0, labels, w.unsqueeze(-1) * features)
    delta = (weight_sum.unsqueeze(-1) * centres - feature_sum) / (1.0 + weight_sum.unsqueeze(-1))
    new = centres - alpha * delta
    if separation_lr > 0:
        with torch.enable_grad():
            mu = new.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(centre_separation(mu, feature_dim), mu)
        new = new - separation_lr * grad
    return new
