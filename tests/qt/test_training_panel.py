"""Training panel and session: fit runs on a worker thread, progress reaches the panel,
Stop is honoured between batches, results are read back after each epoch."""
from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.timeout(120)



def test_panel_values_roundtrip(qtbot, settings_dir):
    from uldl_studio.qt.training_panel import TrainingPanel, make_train_config

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.set_values({"method": "ce", "epochs": 3, "k": 5, "delta": 0.4, "gamma": 0.02,
                      "neighbors": "exact", "similarity": "l1", "device": "cpu",
                      "neighbor_space": "features", "neighbor_refresh": True})
    values = panel.values()
    assert values["neighbor_space"] == "features" and values["neighbor_refresh"] is True
    assert values["method"] == "ce" and values["epochs"] == 3 and values["k"] == 5
    assert values["delta"] == pytest.approx(0.4) and values["gamma"] == pytest.approx(0.02)
    assert values["neighbors"] == "exact" and values["similarity"] == "l1"
    panel.set_values({"delta": None})
    assert panel.values()["delta"] is None          # "auto"
    assert panel.delta.text() == "auto"
    config = make_train_config({**panel.values(), "not_a_field": 1})
    assert config.method == "ce" and config.k == 5
    assert config.neighbor_space == "features" and config.neighbor_refresh
    panel.set_running(True)
    assert not panel.neighbor_space.isEnabled() and not panel.neighbor_refresh.isEnabled()


def test_progress_updates_bar_and_curves(qtbot):
    from uldl_studio.core.engine.training import Progress
    from uldl_studio.qt.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.reset_curves()
    panel.show_progress(Progress("train", 1, 4, 5, 10, loss=1.5, accuracy=0.4, mean_lambda=0.2, eta_seconds=75))
    assert panel.progress_bar.value() == 125            # 0.5 epoch of 4
    assert "ETA 1:15" in panel.progress_bar.format()
    assert panel.loss_plot.points == 1 and panel.lambda_plot.points == 1
    panel.show_progress(Progress("done", 4, 4))
    assert panel.progress_bar.value() == 1000


def test_session_trains_one_epoch_and_loads_results(qtbot, tmp_path, demo_table, tiny_config):
    from uldl_studio.core.runs import jobs
    from uldl_studio.qt.training_controller import TrainingController
    from uldl_studio.qt.training_panel import make_train_config

    session = TrainingController(emit_every=1)
    config = make_train_config({**tiny_config, "epochs": 1})
    progress, epochs = [], []
    session.progress.connect(progress.append)
    session.epochResults.connect(lambda run, samples: epochs.append((run, samples)))
    main_thread = threading.get_ident()
    seen_threads = []
    session.progress.connect(lambda p: seen_threads.append(threading.get_ident()))
    with qtbot.waitSignal(session.finished, timeout=100_000) as blocker:
        session.start(jobs.new_run(None, config, tmp_path / "run", table=demo_table))
    assert blocker.args == ["done"]
    assert not session.is_running
    assert set(seen_threads) == {main_thread}        # slots ran on the GUI thread
    phases = [p.phase for p in progress]
    assert "epoch_end" in phases and phases[-1] == "done"
    assert len(epochs) == 1
    run, samples = epochs[0]
    assert len(samples) == len(demo_table) and "lambda" in samples
    assert run.has_results


def test_stop_is_honoured(qtbot, tmp_path, demo_table, tiny_config):
    from uldl_studio.core.runs import jobs
    from uldl_studio.qt.training_controller import TrainingController
    from uldl_studio.qt.training_panel import make_train_config

    session = TrainingController(emit_every=1)
    config = make_train_config({**tiny_config, "epochs": 50, "batch_size": 8})
    with qtbot.waitSignal(session.progress, timeout=60_000,
                          check_params_cb=lambda p: p.phase in ("train", "warmup") and p.batch >= 1):
        session.start(jobs.new_run(None, config, tmp_path / "run", table=demo_table))
    with qtbot.waitSignal(session.finished, timeout=30_000) as blocker:
        session.stop()
    assert blocker.args == ["cancelled"]
    assert session.last_progress.phase == "cancelled"
    assert session.last_progress.epoch < 50


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_failure_is_reported_not_raised(qtbot, tmp_path, tiny_config):
    import pandas as pd

    from uldl_studio.core.table import make_table
    from uldl_studio.core.runs import jobs
    from uldl_studio.qt.training_controller import TrainingController
    from uldl_studio.qt.training_panel import make_train_config

    table = make_table(pd.DataFrame({"sample_id": ["a"], "path": ["/nope.png"], "split": ["test"],
                                     "label": [0]}), ["neutral", "happiness"], "/", "csv")
    session = TrainingController()
    with qtbot.waitSignals([session.failed, session.finished], timeout=30_000):
        session.start(jobs.new_run(None, make_train_config({**tiny_config, "epochs": 1}), tmp_path / "run", table=table))
    assert not session.is_running


def test_panel_fields_are_saved_and_restored(qtbot, settings_dir):
    """Every field, neighbour space and per-epoch refresh included, survives a new panel."""
    from uldl_studio.qt.settings import StudioSettings
    from uldl_studio.qt.training_panel import PANEL_DEFAULTS, TrainingPanel

    panel = TrainingPanel(settings=StudioSettings())
    qtbot.addWidget(panel)
    assert set(panel.panel_values()) == set(PANEL_DEFAULTS)
    wanted = {"method": "ce", "epochs": 3, "device": "cpu", "k": 5, "delta": 0.4,
              "similarity": "l1", "gamma": 0.02, "neighbors": "exact",
              "neighbor_space": "features", "neighbor_refresh": False, "folds": 3,
              "va": "head", "va_from": "/data/runs/affectnet"}
    assert panel.panel_values()["neighbor_space"] != "features"
    assert panel.panel_values()["neighbor_refresh"] is True
    panel.extra_config = {"k": 4, "image_size": 16}          # never saved
    # Through the widgets, as a user changes them (no training started).
    panel.neighbor_space.setCurrentIndex(panel.neighbor_space.findData("features"))
    panel.neighbor_refresh.setChecked(False)
    panel.set_values({k: v for k, v in wanted.items() if not k.startswith("neighbor_")})

    again = TrainingPanel(settings=StudioSettings())
    qtbot.addWidget(again)
    values = again.panel_values()
    assert values["neighbor_space"] == "features" and values["neighbor_refresh"] is False
    assert values == pytest.approx(wanted)
    assert "image_size" not in StudioSettings().training_values()
    # A panel without settings keeps the defaults and saves nothing.
    plain = TrainingPanel()
    qtbot.addWidget(plain)
    assert plain.panel_values()["neighbor_space"] == "va"


def test_saved_values_that_do_not_fit_are_skipped(qtbot, settings_dir):
    from uldl_studio.qt.settings import StudioSettings
    from uldl_studio.qt.training_panel import TrainingPanel

    settings = StudioSettings()
    settings.set_training_values({"epochs": "many", "k": 6, "neighbor_space": "nowhere"})
    panel = TrainingPanel(settings=settings)
    qtbot.addWidget(panel)
    assert panel.k.value() == 6 and panel.neighbor_space.currentData() == "va"


def test_the_va_placement_choice_and_another_runs_head(qtbot, settings_dir, tmp_path, monkeypatch):
    """The panel offers the V-A placements; "V-A head of another run…" asks for the run folder
    (Cancel keeps the choice before) and the config trains with that run's head."""
    from PySide6.QtWidgets import QFileDialog

    from uldl_studio.qt.training_panel import TrainingPanel, make_train_config

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert panel.values()["va"] == "auto" and panel.values()["va_from"] is None
    head = panel.va.findData("head")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    panel.va.setCurrentIndex(head)
    panel.va.activated.emit(head)                           # the annotator cancels the folder dialog
    assert panel.values()["va"] == "auto"
    source = tmp_path / "affectnet-run"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(source)))
    panel.va.setCurrentIndex(head)
    panel.va.activated.emit(head)
    values = panel.values()
    assert values["va"] == "head" and values["va_from"] == str(source)
    assert panel.va.currentText() == "head of affectnet-run"
    config = make_train_config(values)
    assert config.va == "head" and config.va_from == str(source)
    panel.set_values({"va": "circumplex"})
    assert panel.values()["va"] == "circumplex" and panel.values()["va_from"] is None
    panel.set_values(config.to_dict())                      # an opened run shows its placement
    assert panel.values()["va_from"] == str(source)
