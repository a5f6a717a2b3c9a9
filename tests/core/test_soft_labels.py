"""Exported soft labels: temperature calibrated on given labels, the mix, and what a run writes."""
from __future__ import annotations

import numpy as np
import pytest

from uldl_studio.core.soft_labels import build_soft_labels, fit_temperature, nll, temper


def test_temper_by_hand():
    p = np.array([[0.8, 0.2]])
    # T = 2: sqrt(0.8), sqrt(0.2) renormalised
    expected = np.sqrt([0.8, 0.2]) / np.sqrt([0.8, 0.2]).sum()
    assert np.allclose(temper(p, 2.0), expected)
    assert np.allclose(temper(p, 1.0), p)
    assert np.allclose(temper(p, 0.5), np.array([[0.64, 0.04]]) / 0.68)


def test_temperature_recovers_an_overconfident_model():
    """Labels drawn from q; the model reports q sharpened by T = 3: the fit finds T ≈ 3."""
    rng = np.random.default_rng(0)
    n, m = 20_000, 4
    logits = rng.normal(size=(n, m))
    q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(m, p=row) for row in q])
    sharp = temper(q, 1 / 3)
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(temper(sharp, t), labels) < nll(sharp, labels)


def test_mix_and_calibration_rows():
    constructed = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    mean_probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    labels = np.array([0, 1, 0])
    soft, t = build_soft_labels(constructed, mean_probs, labels, np.array([], dtype=np.int64), mix=0.5)
    assert t == 1.0                                            # nothing to calibrate on: T = 1
    assert np.allclose(soft, 0.5 * constructed + 0.5 * mean_probs)
    soft0, _ = build_soft_labels(constructed, mean_probs, labels, np.arange(3), mix=0.0)
    assert np.allclose(soft0, constructed)
    with pytest.raises(ValueError):
        build_soft_labels(constructed, mean_probs, labels, np.arange(3), mix=1.5)


def test_a_run_writes_soft_labels_and_exports_them(tmp_path):
    from uldl_studio.core.config import TrainConfig
    from uldl_studio.core.datasets.demo import load_demo
    from uldl_studio.core.export import read_soft_labels
    from uldl_studio.core.run import Run
    from uldl_studio.core.session import Session
    from uldl_studio.core.training import fit

    table = load_demo(n=240)
    config = TrainConfig(image_size=16, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32,
                         augment=False, device="cpu", k=4, epochs=2, progress_every=100)
    for _ in fit(table, config, tmp_path / "run"):
        pass
    run = Run.open(tmp_path / "run")
    samples = run.samples()
    classes = run.classes
    soft = samples[[f"soft_{c}" for c in classes]].to_numpy()
    pavg = samples[[f"pavg_{c}" for c in classes]].to_numpy()
    assert np.allclose(soft.sum(1), 1) and np.allclose(pavg.sum(1), 1)
    t = float(run.history()["soft_temperature"].iloc[-1])
    assert 0.2 <= t <= 10
    d = samples[[f"d_{c}" for c in classes]].to_numpy()
    assert np.allclose(soft, 0.5 * d + 0.5 * temper(pavg, t), atol=1e-9)
    session = Session.open_run(tmp_path / "run")
    session.export(tmp_path / "soft.csv")
    session.journal.close()
    back = read_soft_labels(tmp_path / "soft.csv")
    assert np.allclose(back[[f"d_{c}" for c in classes]].to_numpy(), soft)   # the export's d is the soft label
