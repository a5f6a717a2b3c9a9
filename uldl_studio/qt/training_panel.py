"""Training panel: settings, Start/Stop, progress with ETA and live curves.

The panel is a view: it turns its fields into a config dict and shows the progress records
that the window's ``TrainingController`` (qt/training_controller.py) forwards.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
    QProgressBar, QPushButton, QSizePolicy, QSpinBox, QVBoxLayout, QWidget,
)

from uldl_studio.core.engine.config import TrainConfig


# Panel fields -> TrainConfig fields.  Values the panel does not show keep TrainConfig's
# defaults; ``extra_config`` (tests, advanced users) overrides anything.  These are also the
# fields the panel saves in the settings (``TrainingPanel(settings=...)``).
PANEL_DEFAULTS: dict[str, Any] = {
    "method": "ldlva", "epochs": 8, "device": "auto", "k": 8, "delta": None,
    "similarity": "l2", "gamma": 0.01, "neighbors": "bank", "neighbor_space": "va",
    "neighbor_refresh": True, "folds": 0, "va": "auto", "va_from": None,
}
#: the V-A placements the panel offers (``TrainConfig.va``); "head" asks for a run folder
VA_CHOICES = (("auto", "auto"), ("columns", "dataset's V-A"), ("circumplex", "circumplex"),
              ("head", "a run's V-A head…"))


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def train_config_defaults() -> dict[str, Any]:
    """TrainConfig's defaults for the fields the panel shows (PANEL_DEFAULTS for the others)."""
    defaults = dict(PANEL_DEFAULTS)
    for f in dataclasses.fields(TrainConfig):
        if f.name in defaults and f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
    return defaults


def make_train_config(values: dict[str, Any]):
    """A TrainConfig from ``values``; keys TrainConfig does not know are ignored."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in names})


# ================================================================== the panel
class CurvePlot(pg.PlotWidget):
    """A small live curve (x = fractional epoch)."""

    def __init__(self, title: str, colour: str, min_span: float | None = None) -> None:
        """``min_span``: the y axis shows at least this range (a nearly flat mean λ would
        otherwise be blown up into noise with unreadable tick labels)."""
        super().__init__()
        self.min_span = min_span
        self.setBackground("w")
        self.setTitle(title, color="#333", size="9pt")
        self.setMinimumHeight(100)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.showGrid(x=True, y=True, alpha=0.25)
        for axis in ("left", "bottom"):
            ax = self.getAxis(axis)
            ax.setTextPen("#333")
            ax.setPen("#888")
        self.getAxis("left").setWidth(38)
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        # Symbols too: a run's history may have a single point (no line to draw).
        self.curve = self.plot([], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=4,
                               symbolPen=None, symbolBrush=colour)
        self._x: list[float] = []
        self._y: list[float] = []

    def sizeHint(self):  # noqa: N802 - three small plots share the panel's height
        return QSize(220, 130)

    def clear_points(self) -> None:
        self._x.clear()
        self._y.clear()
        self.curve.setData([], [])

    def add_point(self, x: float, y: float | None) -> None:
        if y is None or not math.isfinite(float(y)):
            return
        self._x.append(float(x))
        self._y.append(float(y))
        self.curve.setData(np.asarray(self._x), np.asarray(self._y))
        wanted = "o" if len(self._x) <= 60 else None  # dots only while they are few
        if self.curve.opts["symbol"] != wanted:
            self.curve.setSymbol(wanted)
        if self.min_span is not None:
            lo, hi = min(self._y), max(self._y)
            if hi - lo < self.min_span:
                mid = (lo + hi) / 2
                lo, hi = max(0.0, mid - self.min_span / 2), mid + self.min_span / 2
                self.setYRange(lo, hi, padding=0.05)
            else:
                self.enableAutoRange(axis="y")

    @property
    def points(self) -> int:
        return len(self._x)


class TrainingPanel(QWidget):
    """Training settings, Start/Stop, progress and live curves.

    Emits ``startRequested(dict)`` with the config values and ``stopRequested()``; the main
    window trains with its ``TrainingController``.  ``extra_config`` is merged into every config.
    """

    startRequested = Signal(dict)
    continueRequested = Signal(dict)
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None, *, settings=None) -> None:
        """``settings`` (a :class:`~uldl_studio.qt.settings.StudioSettings`): the fields start
        from the values saved there and every change is saved back (``extra_config`` is not)."""
        super().__init__(parent)
        self.extra_config: dict[str, Any] = {}
        self.settings = settings
        defaults = train_config_defaults()

        self.method = QComboBox()
        self.method.addItem("LDLVA", "ldlva")
        self.method.addItem("CE (baseline)", "ce")
        self.method.setToolTip("LDLVA: learns λ and label distributions; CE: plain cross-entropy")
        self.epochs = QSpinBox(minimum=1, maximum=500)
        self.device = QComboBox()
        for d in ("auto", "cpu", "cuda"):
            self.device.addItem(d, d)
        self.k = QSpinBox(minimum=1, maximum=64)
        self.k.setToolTip("K: neighbours in valence-arousal space that build each distribution")
        self.delta = QDoubleSpinBox(minimum=0.0, maximum=10.0, singleStep=0.05, decimals=3)
        # 0 shows "auto": TrainConfig.delta = None picks the median V-A distance to the K neighbours.
        self.delta.setSpecialValueText("auto")
        self.delta.setToolTip("δ: scale of the similarity s = exp(-dist² / δ²) in V-A space "
                              "(auto: median distance to the K neighbours)")
        self.similarity = QComboBox()
        self.similarity.addItem("L2 (Gaussian)", "l2")
        self.similarity.addItem("L1 (published)", "l1")
        self.gamma = QDoubleSpinBox(minimum=0.0, maximum=10.0, singleStep=0.005, decimals=4)
        self.gamma.setToolTip("γ: weight of the discriminative loss L_D")
        self.neighbors = QComboBox()
        self.neighbors.addItem("bank (fast)", "bank")
        self.neighbors.addItem("exact (slow)", "exact")
        self.neighbors.setToolTip("neighbour outputs f(x_k): a memory bank of each sample's latest "
                                  "output, or K extra forward passes per sample as published")
        self.neighbor_space = QComboBox()
        self.neighbor_space.addItem("valence-arousal", "va")
        self.neighbor_space.addItem("learned features", "features")
        self.neighbor_space.setToolTip("where the K neighbours are searched: the V-A points shown on the "
                                       "map, or the cosine similarity of the network's features")
        self.neighbor_refresh = QCheckBox("rebuild every epoch")
        self.neighbor_refresh.setToolTip("re-place the samples and rebuild the neighbours after every "
                                         "epoch, from the model as it learns")
        self.va = QComboBox()
        for value, text in VA_CHOICES:
            self.va.addItem(text, value)
        self.va.setToolTip("where each sample sits in valence-arousal space (the map, the neighbours): the "
                           "dataset's own V-A, the circumplex projection of the class probabilities, or "
                           "the V-A head of a run trained on a dataset with V-A (AffectNet, the demo); "
                           "auto: the dataset's V-A where every row has it, else the circumplex")
        self.va_from: str | None = None
        self._va_index = 0
        self.va.activated.connect(self._on_va_chosen)
        self.folds = QSpinBox(minimum=1, maximum=10)  # the minimum, 1, shows "off": folds start at 2
        self.folds.setSpecialValueText("off")
        self.folds.setToolTip("after training, cross-fit K plain cross-entropy models for the out-of-fold "
                              "self-confidence score (K extra trainings; 2 or more)")
        self.set_values(defaults)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Method", self.method)
        form.addRow("Epochs", self.epochs)
        form.addRow("Device", self.device)
        form.addRow("K", self.k)
        form.addRow("δ", self.delta)
        form.addRow("Distance", self.similarity)
        form.addRow("γ", self.gamma)
        form.addRow("Neighbours", self.neighbors)
        form.addRow("Neighbours in", self.neighbor_space)
        form.addRow("", self.neighbor_refresh)
        form.addRow("V-A from", self.va)
        form.addRow("Cross-fit folds", self.folds)
        settings_box = QGroupBox("Settings")
        settings_box.setLayout(form)

        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("startTraining")
        self.continue_button = QPushButton("Continue")
        self.continue_button.setObjectName("continueTraining")
        self.continue_button.setToolTip("resume the open run's current version up to the Epochs set here")
        self.continue_button.setEnabled(False)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.continue_button.clicked.connect(lambda: self.continueRequested.emit(self.values()))
        self.stop_button.clicked.connect(self._on_stop_clicked)
        # Start on a row of its own: its text ("Train new version") must never be clipped
        buttons = QVBoxLayout()
        buttons.addWidget(self.start_button)
        second = QHBoxLayout()
        second.addWidget(self.continue_button, 1)
        second.addWidget(self.stop_button, 1)
        buttons.addLayout(second)

        self.run_label = QLabel("Run: new run (created on start)")
        self.run_label.setWordWrap(True)
        self.run_label.setStyleSheet("color: #555;")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("idle")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.loss_plot = CurvePlot("loss", "#d62728")
        self.accuracy_plot = CurvePlot("accuracy (train)", "#1f77b4", min_span=0.1)
        self.lambda_plot = CurvePlot("mean λ", "#9467bd", min_span=0.1)
        curves = QVBoxLayout()
        curves.setSpacing(2)
        for plot in (self.loss_plot, self.accuracy_plot, self.lambda_plot):
            curves.addWidget(plot)

        layout = QVBoxLayout(self)
        layout.addWidget(settings_box)
        layout.addLayout(buttons)
        layout.addWidget(self.run_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addLayout(curves, 1)
        self.setMinimumWidth(260)
        self._running = False
        self._can_continue = False
        if settings is not None:
            self.restore_settings()
            for signal in (self.method.currentIndexChanged, self.epochs.valueChanged,
                           self.device.currentIndexChanged, self.k.valueChanged,
                           self.delta.valueChanged, self.similarity.currentIndexChanged,
                           self.gamma.valueChanged, self.neighbors.currentIndexChanged,
                           self.neighbor_space.currentIndexChanged, self.neighbor_refresh.toggled,
                           self.folds.valueChanged, self.va.currentIndexChanged):
                signal.connect(self.save_settings)

    def restore_settings(self) -> None:
        """Show the values saved in ``settings`` (a value that does not fit is skipped)."""
        if self.settings is None:
            return
        for key, value in self.settings.training_values().items():
            if key in PANEL_DEFAULTS:
                try:
                    self.set_values({key: value})
                except (TypeError, ValueError):
                    pass

    @Slot()
    def save_settings(self) -> None:
        """Save the panel's fields (without ``extra_config``) in ``settings``, when given."""
        if self.settings is not None:
            self.settings.set_training_values(self.panel_values())

    # -- values --------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The panel's config values (TrainConfig field names), ``extra_config`` merged."""
        values = self.panel_values()
        values.update(self.extra_config)
        return values

    def panel_values(self) -> dict[str, Any]:
        """What the fields show (the keys of PANEL_DEFAULTS), without ``extra_config``."""
        return {
            "method": self.method.currentData(),
            "epochs": self.epochs.value(),
            "device": self.device.currentData(),
            "k": self.k.value(),
            "delta": float(self.delta.value()) or None,
            "similarity": self.similarity.currentData(),
            "gamma": float(self.gamma.value()),
            "neighbors": self.neighbors.currentData(),
            "neighbor_space": self.neighbor_space.currentData(),
            "neighbor_refresh": self.neighbor_refresh.isChecked(),
            "folds": 0 if self.folds.value() < 2 else self.folds.value(),
            "va": self.va.currentData(),
            "va_from": self.va_from if self.va.currentData() == "head" else None,
        }

    def set_values(self, values: dict[str, Any]) -> None:
        def pick(combo: QComboBox, value) -> None:
            i = combo.findData(value)
            if i >= 0:
                combo.setCurrentIndex(i)

        if "method" in values:
            pick(self.method, values["method"])
        if "epochs" in values:
            self.epochs.setValue(int(values["epochs"]))
        if "device" in values:
            pick(self.device, values["device"])
        if "k" in values:
            self.k.setValue(int(values["k"]))
        if "delta" in values:
            self.delta.setValue(float(values["delta"] or 0.0))
        if "similarity" in values:
            pick(self.similarity, values["similarity"])
        if values.get("gamma") is not None:
            self.gamma.setValue(float(values["gamma"]))
        if "neighbors" in values:
            pick(self.neighbors, values["neighbors"])
        if "neighbor_space" in values:
            pick(self.neighbor_space, values["neighbor_space"])
        if "neighbor_refresh" in values:
            self.neighbor_refresh.setChecked(bool(values["neighbor_refresh"]))
        if "folds" in values:
            self.folds.setValue(max(1, int(values["folds"] or 0)))
        if "va" in values or values.get("va_from"):  # va_from alone (restored settings) means the head
            va = values.get("va", "head")
            if va == "head" and values.get("va_from"):
                self._set_va_head(str(values["va_from"]))
            elif va != "head":
                pick(self.va, va)
            self._va_index = self.va.currentIndex()

    def _set_va_head(self, run_dir: str) -> None:
        """Place the samples with the V-A head of the run ``run_dir``."""
        self.va_from = run_dir
        i = self.va.findData("head")
        self.va.setItemText(i, f"head of {Path(run_dir).name}")
        self.va.setItemData(i, run_dir, Qt.ItemDataRole.ToolTipRole)
        self.va.setCurrentIndex(i)

    @Slot(int)
    def _on_va_chosen(self, index: int) -> None:
        """Choosing "V-A head of another run…" asks for the run folder (Cancel keeps the choice before)."""
        if self.va.itemData(index) != "head":
            self._va_index = index
            return
        folder = QFileDialog.getExistingDirectory(self, "The run whose V-A head places the samples",
                                                  self.va_from or "")
        if folder:
            self._set_va_head(folder)
            self._va_index = index
            self.save_settings()
        else:
            self.va.setCurrentIndex(self._va_index)

    def set_run_text(self, text: str) -> None:
        self.run_label.setText(text)

    # -- state ---------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self._running = running
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(not running and self._can_continue)
        self.stop_button.setEnabled(running)
        for w in (self.method, self.epochs, self.device, self.k, self.delta, self.similarity,
                  self.gamma, self.neighbors, self.neighbor_space, self.neighbor_refresh):
            w.setEnabled(not running)

    def set_can_start(self, can: bool, why: str = "", *, can_continue: bool = False,
                      start_text: str = "Start training") -> None:
        """``can_continue``: a run is open whose current version can be resumed; ``start_text``:
        what Start does ("Start training", "Train new version")."""
        self._can_continue = bool(can_continue)
        if not self._running:
            self.start_button.setEnabled(can)
            self.continue_button.setEnabled(self._can_continue)
        self.start_button.setText(start_text)
        self.start_button.setToolTip(why)

    def reset_curves(self) -> None:
        for plot in (self.loss_plot, self.accuracy_plot, self.lambda_plot):
            plot.clear_points()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting…")

    def show_history(self, history) -> None:
        """Show a finished run's per-epoch history (``Run.history()``) when it is opened."""
        self.reset_curves()
        if history is None or len(history) == 0 or "epoch" not in history:
            self.progress_bar.setFormat("idle")
            return
        for _, row in history.iterrows():
            x = float(row["epoch"])
            self.loss_plot.add_point(x, row.get("loss"))
            self.accuracy_plot.add_point(x, row.get("train_accuracy"))
            if row.get("phase", "train") != "warmup":
                self.lambda_plot.add_point(x, row.get("mean_lambda"))
        epochs = int(history["epoch"].max())
        self.progress_bar.setValue(1000)
        valid = history["valid_accuracy"].iloc[-1] if "valid_accuracy" in history else float("nan")
        text = f"run: {epochs} epoch(s) trained"
        if math.isfinite(valid):
            text += f" · valid acc {valid:.3f}"
        self.progress_bar.setFormat(text)

    @Slot(object)
    def show_progress(self, p) -> None:
        """Show one Progress record (GUI thread)."""
        epochs = max(1, int(getattr(p, "epochs", 1) or 1))
        epoch = int(getattr(p, "epoch", 0) or 0)
        batches = int(getattr(p, "batches", 0) or 0)
        batch = int(getattr(p, "batch", 0) or 0)
        phase = getattr(p, "phase", "")
        within = batch / batches if batches else (1.0 if phase == "epoch_end" else 0.0)
        # Epochs are counted from 1 in Progress; epoch 0 is the load/warm-up stage.
        x = max(0.0, (epoch - 1) + within) if epoch >= 1 else within
        fraction = min(1.0, x / epochs)
        if phase == "done":
            fraction = 1.0
        self.progress_bar.setValue(int(round(fraction * 1000)))
        eta = format_duration(getattr(p, "eta_seconds", None))
        if phase == "done":
            text = f"done · {epochs} epochs · {format_duration(getattr(p, 'seconds', None))}"
        elif phase == "cancelled":
            text = f"stopped at epoch {epoch}/{epochs}"
        elif phase == "load":
            text = "loading images…"
        else:
            text = f"epoch {epoch}/{epochs} · batch {batch}/{batches} · ETA {eta}"
        self.progress_bar.setFormat(text)
        message = getattr(p, "message", "") or ""
        if message:
            self.status.setText(message)
        if phase in ("train", "warmup", "epoch_end"):
            self.loss_plot.add_point(x, getattr(p, "loss", None))
            self.accuracy_plot.add_point(x, getattr(p, "accuracy", None))
            if phase != "warmup":
                self.lambda_plot.add_point(x, getattr(p, "mean_lambda", None))

    # -- buttons -------------------------------------------------------------------------
    @Slot()
    def _on_start_clicked(self) -> None:
        self.startRequested.emit(self.values())

    @Slot()
    def _on_stop_clicked(self) -> None:
        self.stop_button.setEnabled(False)
        self.progress_bar.setFormat("stopping after this batch…")
        self.stopRequested.emit()
