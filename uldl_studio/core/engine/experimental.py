"""Experimental training paths: λ's per-batch evidence and its running baselines.

Not part of the product loop. ``core.engine.training`` calls this module only when a config asks
for ``lambda_evidence="batch"`` or ``"both"``; the default, ``"epoch"``, never reaches it. The
path is kept, not deleted, because every run written before λ's evidence moved to the
evaluation pass was trained with it (``core.engine.config.FORMAT_1_MISSING``), and such a run
must resume and retrain as it was trained.

Per-batch evidence: at every LDLVA batch, ``ldl.lambda_evidence`` of the augmented training
forward, minus a running mean (``lambda_baseline``: ``global``, one mean over all samples, kept
in slot 0 of the state's ``baseline``; ``class``, one mean per given label; ``none``), drives one
step of λ's objective for the batch's rows. On FER+ it ranked the wrong labels worse than the
epoch evidence (AUROC 0.758 against 0.816, bench/RESULTS_ferplus.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from uldl_studio.core.labels import ldl

BASELINE_MOMENTUM = 0.9


def per_batch(config) -> bool:
    """Whether ``config`` asks for λ's per-batch evidence (``lambda_evidence`` batch or both)."""
    return config.lambda_evidence != "epoch"


@torch.no_grad()
def batch_evidence(config, d_tilde: torch.Tensor, targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B,) λ's evidence of one training forward (no gradient)."""
    return ldl.lambda_evidence(d_tilde.detach(), targets, F.log_softmax(logits.detach(), -1),
                               config.lambda_evidence_form)


def centred(state, baseline: str, y: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """``evidence`` minus its running baseline (``baseline``: global, class or none); the
    state's ``baseline``/``baseline_seen`` updated with this batch first."""
    if baseline == "class":
        update_baseline(state, y, evidence)
        return evidence - state.baseline[y]
    if baseline == "global":  # one running mean over all samples, kept in slot 0
        update_baseline(state, torch.zeros_like(y), evidence)
        return evidence - state.baseline[0]
    return evidence


def update_baseline(state, y: torch.Tensor, evidence: torch.Tensor, momentum: float = BASELINE_MOMENTUM) -> None:
    """Blend each slot's batch mean into its running mean (a slot's first batch sets it)."""
    m = state.baseline.shape[0]
    count = torch.zeros(m, device=y.device).index_add_(0, y, torch.ones_like(evidence))
    total = torch.zeros(m, device=y.device).index_add_(0, y, evidence)
    present = count > 0
    mean = total / count.clamp_min(1)
    blended = torch.where(state.baseline_seen, momentum * state.baseline + (1 - momentum) * mean, mean)
    state.baseline = torch.where(present, blended, state.baseline)
    state.baseline_seen = state.baseline_seen | present
