"""The main window: map (centre), grid, inspector and training panel in docks; toolbar with
map mode, colour mode, point size, filters, export and predict.

It creates the core session (``core.session.Session``: table with edits, run, journal,
filter, selection, current sample) and its Qt bridge, hands the bridge to every view, and
runs the workers (loading, UMAP, training).  It owns no sample state itself; see
docs/architecture.md.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import platformdirs
from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QScrollArea, QToolBar, QVBoxLayout, QWidget,
)

from uldl_studio.core.review.frontend import ThumbnailCache
from uldl_studio.core.runs import jobs
from uldl_studio.core.table import DatasetError
from uldl_studio.qt.about import show_about
from uldl_studio.qt.annotator import install as install_annotator
from uldl_studio.qt.demo import demo_source, load_demo_table
from uldl_studio.qt.export_dialogs import ExportDialog, PredictDialog
from uldl_studio.qt.filter_bar import FilterBar
from uldl_studio.qt.grid_view import GridView
from uldl_studio.qt.health_panel import HealthPanel
from uldl_studio.qt.inspector import Inspector, row_pixmap
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.relabel import RelabelController
from uldl_studio.qt.session_bridge import SessionBridge
from uldl_studio.qt.settings import StudioSettings, fit_on_screen, restore_geometry
from uldl_studio.qt.shortcuts import show_shortcuts
from uldl_studio.qt.start_screen import StartScreen
from uldl_studio.qt.training_controller import TrainingController
from uldl_studio.qt.training_panel import TrainingPanel, make_train_config
from uldl_studio.qt.umap_worker import cached_umap, compute_umap
from uldl_studio.qt.versions_dialog import VersionsDialog
from uldl_studio.qt.workers import JobRunner

MAP_MIN_SIZE = (260, 220)
#: usable minimum widths of the side docks and rows of tiles the grid shows by default
TRAINING_DOCK_MIN_WIDTH = 250
INSPECTOR_DOCK_MIN_WIDTH = 350
DEFAULT_DOCK_WIDTHS = (290, 440)
DEFAULT_GRID_ROWS = 3


def default_runs_dir() -> Path:
    env = os.environ.get("ULDL_STUDIO_RUNS")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("uldl-studio")) / "runs"


class MainWindow(QMainWindow):
    """Signals for tests and the app: ``sessionLoaded()``, ``loadFailed(str)``,
    ``trainingFinished(str outcome)``, ``epochLoaded(int epoch)``, ``umapReady()``."""

    sessionLoaded = Signal()
    loadFailed = Signal(str)
    trainingFinished = Signal(str)
    epochLoaded = Signal(int)
    umapReady = Signal()

    def __init__(self, settings: StudioSettings | None = None, parent: QWidget | None = None, *,
                 restore_layout: bool = True) -> None:
        """``restore_layout=False``: ignore the saved geometry and dock layout (screenshots)."""
        super().__init__(parent)
        self.settings = settings or StudioSettings()
        self.setWindowTitle("ULDL Studio")
        self.bridge = SessionBridge(self)
        self.session = self.bridge.session  # the open dataset or run (core.review.session.Session)
        self.training = TrainingController(self)
        # Tests replace this: returns True when the user agrees to stop training and close.
        self.confirm_close: Callable[[], bool] = self._ask_close_while_training
        self.next_run_dir: Path | None = None  # where the next new run goes (None: runs folder)
        self._load_job = JobRunner(self, name="load")
        self._umap_job = JobRunner(self, name="umap")
        self._umap_coords: np.ndarray | None = None
        self._epoch_seen = 0
        self._loading_dataset: tuple[str, str] | None = None  # a dataset being opened (path, format)
        self._continue_ok = False  # the open version can be resumed (Continue)
        #: a dataset that fails to open opens the start screen (off for a one-shot screenshot)
        self.offer_start_screen = True
        self._placed_current: int | None = None  # the row training results made current
        self._grow_timer = QTimer(self, singleShot=True, interval=120)  # after a resize settles
        self._grow_timer.timeout.connect(self.grow_docks)
        self._closing = False
        self._results_shown = False

        self.thumbnails = ThumbnailCache(cache_dir=os.environ.get("ULDL_STUDIO_THUMBS"))
        self._build_views()
        self._build_docks()
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._connect()
        self._install_annotator()
        self.statusBar().showMessage("Open a dataset, a run or the demo (File menu).")
        self._default_state = self.saveState()  # View → Reset layout goes back to it
        self._restore_layout(restore_layout)
        self._update_enabled()

    # ================================================================ construction
    def _build_views(self) -> None:
        # No undo stack for selections: Ctrl+Z belongs to the annotator's edit journal.
        # The map brings its own control bar (box/lasso/pan, map mode, colour mode, point
        # size) and filter banner; the window's toolbar adds the filters, export and predict.
        self.map_view = MapView(self.bridge)
        self.map_view.thumbnail_provider = self._thumbnail_pixmap
        for name in ("left", "bottom"):  # V-A is in [-1, 1]: no "(x0.001)" SI scaling
            self.map_view.plot_item.getAxis(name).enableAutoSIPrefix(False)
        self.grid_view = self._make_grid_view()
        self.inspector = Inspector(self.bridge, self.thumbnails)
        self.health_panel = HealthPanel(self.bridge)
        self.training_panel = TrainingPanel(settings=self.settings)

        self.map_message = QLabel()
        self.map_message.setObjectName("mapMessage")
        self.map_message.setWordWrap(True)
        self.map_message.setStyleSheet("background: #e7f1ff; color: #084298; padding: 4px 8px;")
        self.map_message.hide()
        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.map_message)
        layout.addWidget(self.map_view, 1)
        # the docks give way before the map does: it keeps a usable size in any window
        self.map_view.setMinimumSize(*MAP_MIN_SIZE)
        self.setCentralWidget(centre)

    def _make_grid_view(self) -> QWidget:
        grid = GridView(self.bridge)
        grid.thumbnail_provider = lambda row: self._thumbnail_pixmap(row, 128)
        return grid

    def _thumbnail_pixmap(self, row: int, size: int = 96):
        return row_pixmap(self.thumbnails, self.session.table, row, size)

    def _build_docks(self) -> None:
        def dock(title: str, name: str, widget: QWidget, area, scroll: bool = False,
                 footer: QWidget | None = None) -> QDockWidget:
            d = QDockWidget(title, self)
            d.setObjectName(name)
            if scroll:  # scrolls up and down only: nothing is ever hidden behind a sideways bar
                holder = QScrollArea()
                holder.setWidgetResizable(True)
                holder.setWidget(widget)
                holder.setFrameShape(QScrollArea.Shape.NoFrame)
                holder.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
                widget = holder
            if footer is not None:  # under the scrolled part, always in view
                box = QWidget()
                column = QVBoxLayout(box)
                column.setContentsMargins(0, 0, 0, 0)
                column.setSpacing(0)
                column.addWidget(widget, 1)
                column.addWidget(footer)
                widget = box
            d.setWidget(widget)
            self.addDockWidget(area, d)
            return d

        self.training_dock = dock("Training", "trainingDock", self.training_panel,
                                  Qt.DockWidgetArea.LeftDockWidgetArea, scroll=True)
        self.inspector_dock = dock("Inspector", "inspectorDock", self.inspector,
                                   Qt.DockWidgetArea.RightDockWidgetArea, scroll=True,
                                   footer=self.inspector.detach_hint())
        self.grid_dock = dock("Samples", "gridDock", self.grid_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.health_dock = dock("Label health", "healthDock", self.health_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.inspector_dock, self.health_dock)
        self.inspector_dock.raise_()
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        # Minimums that keep each dock usable: the window stops shrinking before they are crushed.
        self.training_panel.setMinimumWidth(TRAINING_DOCK_MIN_WIDTH - 20)
        self.training_dock.setMinimumWidth(TRAINING_DOCK_MIN_WIDTH)
        self.inspector.setMinimumWidth(INSPECTOR_DOCK_MIN_WIDTH - 20)
        self.inspector_dock.setMinimumWidth(INSPECTOR_DOCK_MIN_WIDTH)
        self.health_dock.setMinimumWidth(INSPECTOR_DOCK_MIN_WIDTH)
        self.grid_dock.setMinimumHeight(self.grid_view.height_for_rows(1))
        self._apply_default_sizes()

    def _apply_default_sizes(self) -> None:
        self.resizeDocks([self.training_dock, self.inspector_dock], list(DEFAULT_DOCK_WIDTHS),
                         Qt.Orientation.Horizontal)
        title = self.fontMetrics().height() + 12  # the dock's title bar sits above the grid
        self.resizeDocks([self.grid_dock], [self.grid_view.height_for_rows(DEFAULT_GRID_ROWS) + title],
                         Qt.Orientation.Vertical)

    @Slot()
    def reset_layout(self) -> None:
        """View → Reset layout: every dock and tool bar where it was at first start, default sizes."""
        self.restoreState(self._default_state)
        for d in (self.training_dock, self.inspector_dock, self.grid_dock, self.health_dock):
            d.setFloating(False)
            d.show()
        self.toolbar.show()
        self.inspector_dock.raise_()
        self._apply_default_sizes()
        self._show_status("Layout reset to the default.")

    def layout_is_crushed(self) -> bool:
        """Whether a shown dock is smaller than its usable minimum (e.g. a layout saved by an
        older version, or restored into a smaller window)."""
        for d in (self.training_dock, self.inspector_dock, self.grid_dock):
            if d.isVisible() and not d.isFloating() and (d.width() < d.minimumWidth() or
                                                         d.height() < d.minimumHeight()):
                return True
        return False

    def _docks_below_default(self) -> list[tuple[QDockWidget, int]]:
        """The side docks narrower than their default width, with that width."""
        return [(d, w) for d, w in zip((self.training_dock, self.inspector_dock), DEFAULT_DOCK_WIDTHS)
                if d.isVisible() and not d.isFloating() and d.width() < w - 8]

    @Slot()
    def grow_docks(self) -> None:
        """Give the side docks back their default widths when the window has room again: a
        window made small and then large (or a layout saved small) never keeps crushed docks;
        the map keeps at least twice its minimum width."""
        self._grow_grid()
        short = self._docks_below_default()
        if not short:
            return
        spare = self.centralWidget().width() - 2 * MAP_MIN_SIZE[0]
        if spare <= 0:
            return
        wanted = sum(w - d.width() for d, w in short)
        share = min(1.0, spare / wanted)
        self.resizeDocks([d for d, _ in short], [int(d.width() + share * (w - d.width())) for d, w in short],
                         Qt.Orientation.Horizontal)

    def _grow_grid(self) -> None:
        """The grid back to its default rows when the map has room above it."""
        dock = self.grid_dock
        wanted = self.grid_view.height_for_rows(DEFAULT_GRID_ROWS) + self.fontMetrics().height() + 12
        if not dock.isVisible() or dock.isFloating() or dock.height() >= wanted - 8:
            return
        spare = self.map_view.height() - 2 * MAP_MIN_SIZE[1]
        if spare > 0:
            self.resizeDocks([dock], [dock.height() + min(spare, wanted - dock.height())], Qt.Orientation.Vertical)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        old = event.oldSize()
        if old.width() > 0 and (event.size().width() > old.width() or event.size().height() > old.height()):
            self._grow_timer.start()

    def _build_actions(self) -> None:
        self.open_dataset_action = QAction("Open dataset &folder…", self, shortcut=QKeySequence("Ctrl+O"))
        self.open_dataset_action.triggered.connect(self.choose_dataset)
        self.open_csv_action = QAction("Open dataset &CSV…", self)
        self.open_csv_action.triggered.connect(self.choose_csv)
        self.start_screen_action = QAction("&Start screen…", self, shortcut=QKeySequence("Ctrl+Shift+S"))
        self.start_screen_action.setStatusTip("open a folder, a CSV or a run with a preview and a format choice")
        self.start_screen_action.triggered.connect(lambda: self.show_start_screen())
        self.open_run_action = QAction("Open &run…", self, shortcut=QKeySequence("Ctrl+Shift+O"))
        self.open_run_action.triggered.connect(self.choose_run)
        self.open_demo_action = QAction("Open the &demo", self)
        self.open_demo_action.triggered.connect(lambda: self.open_demo())
        self.export_action = QAction("&Export soft labels…", self, shortcut=QKeySequence("Ctrl+E"))
        self.export_action.triggered.connect(self.show_export_dialog)
        self.predict_action = QAction("&Predict another dataset…", self)
        self.predict_action.triggered.connect(self.show_predict_dialog)
        self.versions_action = QAction("&Versions…", self)
        self.versions_action.setStatusTip("every version of the open run: open one, delete one")
        self.versions_action.triggered.connect(self.show_versions)
        self.runs_folder_action = QAction("Runs &folder…", self)
        self.runs_folder_action.setStatusTip("where new runs are written")
        self.runs_folder_action.triggered.connect(self.choose_runs_folder)
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence("Ctrl+Q"))
        self.quit_action.triggered.connect(self.close)
        self.relabel = RelabelController(self.bridge, self)

    def _build_toolbar(self) -> None:
        bar = QToolBar("Filters and export", self)
        bar.setObjectName("mainToolbar")
        bar.setIconSize(QSize(16, 16))
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.toolbar = bar

        self.filter_bar = FilterBar(self.bridge, self)
        bar.addWidget(self.filter_bar)
        self.range_slider = self.filter_bar.slider  # the tool bar's slider (tests and tools reach it here)
        bar.addSeparator()
        bar.addAction(self.relabel.undo_action)
        bar.addAction(self.relabel.redo_action)
        bar.addAction(self.relabel.relabel_selection_action)
        bar.addSeparator()
        bar.addAction(self.export_action)
        bar.addAction(self.predict_action)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.start_screen_action)
        file_menu.addAction(self.open_dataset_action)
        file_menu.addAction(self.open_csv_action)
        file_menu.addAction(self.open_run_action)
        file_menu.addAction(self.open_demo_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addAction(self.predict_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = self.menuBar().addMenu("&Edit")
        r = self.relabel
        for act in (r.undo_action, r.redo_action, None, r.accept_action, r.previous_action, r.next_action,
                    r.unsure_action, None, r.relabel_selection_action, r.unsure_selection_action):
            if act is None:
                edit_menu.addSeparator()
            else:
                edit_menu.addAction(act)
        self.label_menu = edit_menu.addMenu("Label current as")
        self.selection_label_menu = edit_menu.addMenu("Relabel selection as")
        for a in r.label_actions:
            self.label_menu.addAction(a)
        for a in r.selection_label_actions:
            self.selection_label_menu.addAction(a)
        run_menu = self.menuBar().addMenu("&Run")
        run_menu.addAction(self.versions_action)
        run_menu.addAction(self.runs_folder_action)
        view_menu = self.menuBar().addMenu("&View")
        for d in (self.training_dock, self.inspector_dock, self.health_dock, self.grid_dock):
            view_menu.addAction(d.toggleViewAction())
        view_menu.addAction(self.toolbar.toggleViewAction())
        view_menu.addAction("Show &all points", self.map_view.reset_view)
        view_menu.addSeparator()
        self.reset_layout_action = view_menu.addAction("&Reset layout", self.reset_layout)
        help_menu = self.menuBar().addMenu("&Help")
        self.shortcuts_action = help_menu.addAction("&Keyboard shortcuts", self.show_shortcuts)
        self.shortcuts_action.setShortcut(QKeySequence("F1"))
        self.about_action = help_menu.addAction("&About ULDL Studio", self.show_about)

    @Slot()
    def show_shortcuts(self):
        """Help → Keyboard shortcuts: every key and mouse gesture on one sheet."""
        return show_shortcuts(self, len(self.session.classes) or 8)

    @Slot()
    def show_about(self):
        return show_about(self, self.session.run)

    def _connect(self) -> None:
        b = self.bridge
        b.tableReset.connect(self._on_table_reset)
        b.resultsChanged.connect(self._on_results_changed)
        b.editsChanged.connect(self._on_edits_changed)
        b.runChanged.connect(self._on_run_changed)
        b.filterChanged.connect(self._on_filter_changed)
        b.currentChanged.connect(self._on_current_changed)
        b.selectionChanged.connect(self._update_counts)
        self.relabel.statusMessage.connect(self._show_status)
        self.health_panel.statusMessage.connect(self._show_status)
        self.inspector.neighbourActivated.connect(self.set_current_row)
        self.map_view.coordinatesRequested.connect(self._on_coordinates_requested)
        self.map_view.size_spin.valueChanged.connect(lambda v: self.settings.set_value("point_size", int(v)))
        self.map_view.set_point_size(int(self.settings.value("point_size", 5)))
        self.training_panel.startRequested.connect(self.start_training)
        self.training_panel.continueRequested.connect(self.continue_training)
        self.training_panel.stopRequested.connect(self.stop_training)
        self.training.progress.connect(self.training_panel.show_progress)
        self.training.epochResults.connect(self._on_epoch_results)
        self.training.crossfitResults.connect(self._on_crossfit_results)
        self.training.finished.connect(self._on_training_finished)
        self.training.failed.connect(self._on_training_failed)
        self.counts_label = QLabel()
        self.statusBar().addPermanentWidget(self.counts_label)

    def _install_annotator(self) -> None:
        """The annotator's name and vote progress in the status bar; blind mode in the View menu."""
        self.annotator = install_annotator(self)
        hidden = lambda row: (self.annotator.blind and self.session.is_dataset_row(row)  # noqa: E731
                              and not self.annotator.has_voted(row))
        self.relabel.label_hidden = self.grid_view.model.label_hidden = hidden
        self.annotator.blind_action.toggled.connect(
            lambda _on: self.session.table is not None and self.grid_view.model.refresh_values(self.session.table))

    # ================================================================ opening
    def open_demo(self, n: int | None = None, seed: int = 0) -> None:
        """Load the built-in demo on a worker (the first time writes its images)."""
        n = int(n or os.environ.get("ULDL_STUDIO_DEMO_N", 3000))

        def job(cancel):
            return ("dataset", load_demo_table(n, seed), demo_source())

        self._loading_dataset = None
        self._load(job, "the demo dataset (the first time draws its faces)")

    def open_dataset(self, path: str, fmt: str = "auto") -> None:
        path = str(path)

        def job(cancel):
            opened = jobs.open_dataset(path, fmt)
            return ("dataset", opened.table, opened.source)

        self._loading_dataset = (path, fmt)
        self._load(job, path)

    def open_run(self, path: str, version: str | None = None) -> None:
        """Open a run folder (its current version, or ``version``) or a version's folder."""
        path = str(path)

        def job(cancel):
            opened = jobs.open_run(path, version)  # without a finished epoch: with its dataset
            return ("run", opened.run, opened.samples, opened.dataset)

        self._loading_dataset = None
        self._load(job, path)

    def show_table(self, table, source: dict) -> None:
        """Show an already loaded dataset (start screen preview)."""
        self._on_loaded(("dataset", table, source))

    def _load(self, job, what: str) -> None:
        if self.training.is_running:
            self._show_status("Stop training before opening something else.")
            return
        if not self._load_job.stop_and_wait():
            self._show_status("Still loading the previous dataset…")
            return
        self._show_status(f"Loading {what} …")
        self.map_message.setText(f"Loading {what} …")
        self.map_message.show()
        self._load_job.start(job, on_result=self._on_loaded, on_error=self._on_load_failed)

    @Slot(object)
    def _on_loaded(self, result) -> None:
        self._loading_dataset = None
        self.map_message.hide()
        self._stop_umap()
        self._umap_coords = None
        if result[0] == "dataset":
            _, table, source = result
            self.session.set_dataset(table, source)
            self.settings.add_recent(source["path"], source["kind"], source.get("format", "auto"))
            name = "demo" if source["kind"] == "demo" else Path(source["path"]).name
            self.setWindowTitle(f"ULDL Studio — {name}")
            self._show_status(f"{len(table)} samples loaded. Press “Start training” to learn λ.")
            self.training_panel.reset_curves()
            self.training_panel.progress_bar.setFormat("idle")
            order = self.grid_order()
            if len(order):
                self.set_current_row(int(order[0]))
        else:
            _, run, samples, dataset = result
            if samples is None:
                self.session.set_dataset(dataset, {"kind": "run", "path": str(run.path)})
                self._show_status(f"{run.path}: no finished epoch yet; start training to continue it.")
                self.next_run_dir = Path(run.path)
            else:
                self.session.set_run(run, samples, source={"kind": "run", "path": str(run.path)})
                try:
                    self.training_panel.show_history(run.history())
                except Exception:  # noqa: BLE001 - a damaged history must not block opening
                    self.training_panel.reset_curves()
                row = self.most_ambiguous_row()
                if row is not None:
                    self.set_current_row(row)
                self._show_status(f"Run {run.path.name}: {len(samples)} samples; the most ambiguous is selected.")
            self.settings.add_recent(str(run.path), "run")
            if samples is None:
                self.setWindowTitle(f"ULDL Studio — run {Path(run.path).name}")
        self.sessionLoaded.emit()

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.map_message.setText(f"Could not open: {message}")
        self.map_message.show()
        self._show_status(f"Could not open: {message}")
        failed, self._loading_dataset = getattr(self, "_loading_dataset", None), None
        if failed is not None and not self._closing and self.offer_start_screen:
            # the start screen shows the problem beside a format choice and a preview
            self.show_start_screen(*failed)
        self.loadFailed.emit(message)

    def show_start_screen(self, path: str | None = None, fmt: str = "auto"):
        """File → Start screen: open a folder, a CSV, a run or the demo, with a preview and a
        format choice; with ``path``, that dataset is previewed (its error shown) right away."""
        screen = getattr(self, "start_screen", None)
        if screen is None:
            screen = self.start_screen = StartScreen(self.settings, self)
            screen.setWindowFlag(Qt.WindowType.Window, True)
            screen.demoChosen.connect(lambda: (screen.close(), self.open_demo()))
            screen.runChosen.connect(lambda p: (screen.close(), self.open_run(p)))
            screen.datasetChosen.connect(lambda table, source: (screen.close(), self.show_table(table, source)))
        if path is not None:
            screen.format_combo.setCurrentIndex(max(0, screen.format_combo.findData(fmt)))
            screen.preview_path(path, fmt)
        screen.refresh_recent()
        screen.show()
        screen.raise_()
        return screen

    @Slot()
    def choose_dataset(self) -> None:
        start = self.settings.value("last_folder", str(Path.home()))
        path = QFileDialog.getExistingDirectory(self, "Open dataset folder", start)
        if path:
            self.settings.set_value("last_folder", str(Path(path).parent))
            self.open_dataset(path)

    @Slot()
    def choose_csv(self) -> None:
        start = self.settings.value("last_folder", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset CSV", start, "CSV files (*.csv *.tsv *.txt);;All files (*)")
        if path:
            self.settings.set_value("last_folder", str(Path(path).parent))
            self.open_dataset(path)

    @Slot()
    def choose_run(self) -> None:
        start = self.settings.value("last_folder", str(Path.home()))
        path = QFileDialog.getExistingDirectory(self, "Open run directory", start)
        if path:
            self.open_run(path)

    @Slot()
    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for item in self.settings.recent_projects():
            text = "demo" if item["kind"] == "demo" else item["path"]
            act = self.recent_menu.addAction(f"[{item['kind']}] {text}")
            act.triggered.connect(lambda checked=False, it=item: self.open_recent(it))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def open_recent(self, item: dict) -> None:
        if item["kind"] == "demo":
            self.open_demo()
        elif item["kind"] == "run":
            self.open_run(item["path"])
        else:
            self.open_dataset(item["path"], item.get("format", "auto"))

    # ================================================================ session -> views
    @Slot()
    def _on_table_reset(self) -> None:
        self._after_results()
        self.inspector.set_row(self.current_row())
        self._update_counts()

    @Slot()
    def _on_results_changed(self) -> None:
        self._after_results()
        self._update_counts()

    def _after_results(self) -> None:
        """Pick a colour mode that shows the results, hide stale messages, enable actions."""
        if self.session.has_results and not self._results_shown:
            self._results_shown = True
            self.map_view.set_color_mode(self.map_view.default_color_mode())
        if not self.session.has_results:
            self._results_shown = False
        if self.session.is_open and not self.map_view.available_coordinate_modes():
            self._show_map_message("No valence-arousal for this dataset yet: training places every "
                                   "sample (pseudo valence-arousal from the warm-up predictions).")
        elif not self._load_job.is_running and not self._umap_job.is_running:
            self.map_message.hide()
        self._update_enabled()

    @Slot(object)
    def _on_edits_changed(self, rows) -> None:
        # the views recolour themselves; the window's counts and actions follow
        self._update_counts()
        self._update_enabled()

    @Slot()
    def _on_run_changed(self) -> None:
        run = self.session.run
        # read once per run change, not on every edit
        self._continue_ok = run is not None and run.has_results and self._can_continue(run)
        if run is None:
            self.training_panel.set_run_text(f"Run: a new run folder is created in {self.runs_folder()} "
                                             "when training starts (Run → Runs folder… changes it).")
        else:
            self.setWindowTitle(f"ULDL Studio — run {Path(run.root).name} ({run.version})")
            self.training_panel.set_run_text(
                f"Run: {run.root} · version {run.version}\n“Train new version” retrains it with everybody's "
                "votes (unsure → high λ) into a new version; this one is kept. “Continue” resumes it.")
            self.training_panel.set_values(run.config.to_dict())
        self._update_enabled()

    @Slot()
    def _on_current_changed(self, *args) -> None:
        self.inspector.set_row(self.current_row())

    def _update_enabled(self) -> None:
        has = self.session.has_results
        self.export_action.setEnabled(has)
        self.predict_action.setEnabled(self.session.run is not None and has)
        self.filter_bar.set_enabled(self.session.is_open, has)
        run = self.session.run
        self.training_panel.set_can_start(
            self.session.is_open,
            "open a dataset first" if not self.session.is_open else
            "train a new version of this run: the current one is kept" if run is not None else
            "train a new run on this dataset",
            can_continue=run is not None and self._continue_ok,
            start_text="Train new version" if run is not None else "Start training")
        self.versions_action.setEnabled(run is not None)
        self.relabel.update_enabled()
        m = len(self.session.classes)
        self.inspector.set_hint(
            f"Keys: 1–{m} relabel · Ctrl+1–{m} selection · Enter accept → next in queue · "
            "←/→ · Space unsure · Ctrl+Z undo" if self.session.can_edit else
            ("Train (or open a run) to relabel: edits are saved in the run." if self.session.is_open else ""))

    @Slot()
    def _update_counts(self, *args) -> None:
        if not self.session.is_open:
            self.counts_label.setText("")
            return
        n = self.session.dataset_size
        parts = [f"{n:,} samples", f"{len(self.selected_rows()):,} selected",
                 f"{int(self.session.flag('edited').sum()):,} edited"]
        unsure = int(self.session.flag("unsure").sum())
        if unsure:
            parts.append(f"{unsure:,} unsure")
        self.counts_label.setText(" · ".join(parts) + "  ")

    @Slot(str)
    def _show_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def _show_map_message(self, text: str) -> None:
        self.map_message.setText(text)
        self.map_message.show()

    # ================================================================ queries
    def visible_mask(self) -> np.ndarray:
        """Rows that pass the session's filter (classes, score ranges)."""
        return self.session.visible_mask()

    def most_ambiguous_row(self) -> int | None:
        """The first row of the review queue (the worst training sample by the queue's score)."""
        queue = self.session.queue
        return int(queue[0]) if queue.size else None

    # ================================================================ filters
    def set_class_filter(self, visible_classes) -> None:
        self.session.set_filter(classes=visible_classes)

    def set_score_filter(self, name: str, low: float, high: float) -> None:
        """Show only rows whose score ``name`` lies in [low, high] (the tool bar follows)."""
        self.filter_bar.choose_score(name)
        self.session.set_range(name, low, high)

    def set_lambda_filter(self, low: float, high: float) -> None:
        self.set_score_filter("lambda", low, high)

    @Slot()
    def clear_filters(self) -> None:
        self.session.clear_filter()

    @Slot()
    def _on_filter_changed(self) -> None:
        self._update_counts()

    # ================================================================ UMAP
    @Slot(str)
    def _on_coordinates_requested(self, mode: str) -> None:
        if mode == "umap":
            self.request_umap()

    def request_umap(self) -> None:
        """Show the UMAP map: from RUN/umap.npy when fresh, else computed on a worker."""
        run = self.session.run
        if run is None or not self.session.has_results:
            self._show_map_message("The UMAP map needs learned features: train first.")
            return
        cached = cached_umap(run.path, self.session.dataset_size)
        if cached is not None:
            self._on_umap(cached)
            return
        if self._umap_job.is_running:
            return
        self._show_map_message("Computing the UMAP of the learned features… (the first time also "
                               "compiles UMAP, which takes a while). The map switches when it is ready.")
        run_dir = run.path
        self._umap_job.start(lambda cancel: compute_umap(run_dir, cancel), on_result=self._on_umap,
                             on_error=self._on_umap_failed)

    @Slot(str)
    def _on_umap_failed(self, message: str) -> None:
        self._show_map_message(f"UMAP failed: {message}")

    @Slot(object)
    def _on_umap(self, coords) -> None:
        if coords is None or len(coords) != self.session.dataset_size or self._closing:
            return
        self._umap_coords = np.asarray(coords)
        self.map_message.hide()
        self.map_view.set_coordinates("umap", self._umap_coords)
        self.umapReady.emit()

    def _stop_umap(self) -> None:
        if not self._umap_job.stop_and_wait():
            self._umap_job.detach()  # it ends on its own; its result is dropped

    # ================================================================ training
    def _new_run_dir(self) -> Path:
        if self.next_run_dir is not None:
            return Path(self.next_run_dir)
        source = self.session.source
        name = "demo" if source.get("kind") == "demo" else Path(source.get("path", "dataset")).name
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "dataset"
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.runs_folder() / f"{name}-{stamp}"

    @Slot(dict)
    def start_training(self, values: dict | None = None) -> None:
        """Start: a new run for a dataset; for an open run, a new *version* of it (the trained
        model is never overwritten), learning from the annotator's edits."""
        if self.training.is_running or not self.session.is_open:
            return
        values = dict(values if values is not None else self.training_panel.values())
        try:
            config = make_train_config(values)
        except (TypeError, ValueError) as exc:
            QMessageBox.warning(self, "Training settings", str(exc))
            return
        try:
            plan = self.session.training_plan(config, self._new_run_dir(), folds=int(values.get("folds") or 0))
        except DatasetError as exc:
            QMessageBox.warning(self, "Training", str(exc))
            return
        self._begin_training(plan)

    @staticmethod
    def _can_continue(run) -> bool:
        """Continue resumes the run's current version, or a version that stopped early; a
        finished older version is never trained further (train a new version instead)."""
        info = jobs.version_info(run)  # None: an unreadable registry: no Continue, Start still works
        return info is not None and (info.current or not info.complete)

    @Slot(dict)
    def continue_training(self, values: dict | None = None) -> None:
        """Continue: resume the open version from its last epoch up to the panel's Epochs."""
        run = self.session.run
        if self.training.is_running or run is None:
            return
        if not self._can_continue(run):
            self._show_status(f"{run.version} is a finished older version: train a new version instead.")
            return
        values = dict(values if values is not None else self.training_panel.values())
        epochs = int(values.get("epochs", run.config.epochs))
        done = len(run.history())
        if epochs <= done:
            self._show_status(f"{run.version} already has {done} epoch(s): set Epochs above {done} to continue it.")
            return
        self._begin_training(jobs.resume(run, epochs, folds=int(values.get("folds") or 0)),
                             f"{run.version} of {Path(run.root).name}, epochs {done + 1}–{epochs}")

    def _begin_training(self, plan, what: str | None = None) -> None:
        self.next_run_dir = None
        self._epoch_seen = 0
        self.training_panel.reset_curves()
        self.training_panel.set_running(True)
        into = "" if plan.kind == jobs.VERSION else f"\ninto {plan.out}"
        self.training_panel.set_run_text(f"Training {what or plan.describe}{into}")
        self._show_status(f"Training {what or plan.describe} …")
        self.training.start(plan)

    def _training_note(self) -> str:
        """What the finished training left, in a sentence for the status bar."""
        result = self.training.result
        if result is None:
            return ""
        return result.message[:1].upper() + result.message[1:] + "."

    def _show_current_version(self, target_root: Path | None) -> None:
        """Show the run's current version again (after a version stopped early)."""
        run = self.session.run
        if target_root is None or run is None:
            return
        try:
            current = jobs.open_run(target_root, dataset=False).run
        except Exception:  # noqa: BLE001 - nothing to go back to: keep what is shown
            return
        if Path(current.path) != Path(run.path):
            self.open_run(str(current.path))

    def runs_folder(self) -> Path:
        """Where new runs are written (Run → Runs folder…, kept in the settings)."""
        return Path(self.settings.value("runs_dir", str(default_runs_dir())))

    @Slot()
    def choose_runs_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for new runs", str(self.runs_folder()))
        if path:
            self.settings.set_value("runs_dir", str(path))
            self._show_status(f"New runs go to {path}")
            self._on_run_changed()

    @Slot()
    def show_versions(self):
        """Run → Versions: the open run's versions; open or delete one."""
        if self.session.run is None:
            return None
        dialog = VersionsDialog(self.session.run, self)
        dialog.openRequested.connect(self.open_run)
        dialog.show()
        return dialog

    @Slot()
    def stop_training(self) -> None:
        if self.training.is_running:
            self.training.stop()
            self._show_status("Stopping after the current batch…")

    @Slot(object, object)
    def _on_epoch_results(self, run, samples) -> None:
        if self._closing:
            return
        self._umap_coords = None
        had_results = self.session.has_results
        # the session keeps the selection and the current sample, by sample id
        self.session.set_run(run, samples, source={"kind": "run", "path": str(run.path)})
        untouched = self.current_row() is not None and self.current_row() == self._placed_current
        if not had_results or untouched or self.current_row() is None:
            # new results: the annotator starts at the top of the new queue (unless they moved)
            row = self.most_ambiguous_row()
            if row is not None:
                self.set_current_row(row)
            self._placed_current = row
        if self.map_view.coordinate_mode == "umap":
            self.request_umap()  # new features: the cached UMAP is stale
        self._epoch_seen += 1
        progress = self.training.last_progress
        self.epochLoaded.emit(int(getattr(progress, "epoch", self._epoch_seen) or self._epoch_seen))

    @Slot(object, object)
    def _on_crossfit_results(self, run, samples) -> None:
        if not self._closing:
            self.session.set_run(run, samples, source={"kind": "run", "path": str(run.path)})

    @Slot(str)
    def _on_training_finished(self, outcome: str) -> None:
        self.training_panel.set_running(False)
        plan, result = self.training.plan, self.training.result
        note = self._training_note()
        if outcome == "cancelled":
            self.training_panel.progress_bar.setFormat("stopped — the last finished epoch is saved")
            self._show_status(note or "Training stopped; the last finished epoch is saved in the run.")
        elif outcome == "done":
            self.training_panel.progress_bar.setValue(1000)
            self._show_status(note or "Training finished.")
        elif note:
            self._show_status(note)
        if self.session.run is not None:
            self.settings.add_recent(str(self.session.run.root), "run")
            self._on_run_changed()
            if plan is not None and plan.kind == jobs.VERSION and (result is None or not result.current):
                self._show_current_version(Path(plan.out))
        self._update_enabled()
        self.trainingFinished.emit(outcome)

    @Slot(str)
    def _on_training_failed(self, message: str) -> None:
        self.training_panel.status.setText(f"<span style='color:#b00020'>Training failed: {message}</span>")
        self._show_status(f"Training failed: {message}")

    # ================================================================ export / predict
    def _export_dir(self) -> Path:
        # the last folder exported to; else beside the dataset (not inside the runs folder)
        dataset = Path(str(self.session.source.get("path", ""))) if self.session.source.get("kind") != "demo" else None
        fallback = dataset.parent if dataset is not None and dataset.parent.is_dir() and str(dataset) else Path.home()
        return Path(self.settings.value("export_folder", str(fallback)))

    @Slot()
    def show_export_dialog(self) -> None:
        dialog = ExportDialog(self.session, self.selected_rows(), self._export_dir(), self)
        if dialog.exec() and dialog.written is not None:
            path = dialog.path_edit.text()
            self.settings.set_value("export_folder", str(Path(path).parent))
            side = self.session.last_reliability
            also = f"; the annotators' reliabilities to {Path(side).name}" if side is not None else ""
            self._show_status(f"Wrote {dialog.written} rows to {path}{also}")

    def export_csv(self, path: str | Path, selection_only: bool = False) -> int:
        """Export without a dialog (tests, scripts)."""
        rows = self.selected_rows() if selection_only else None
        return self.session.export(path, rows)

    @Slot()
    def show_predict_dialog(self) -> PredictDialog | None:
        if self.session.run is None:
            return None
        dialog = PredictDialog(self.session.run, self._export_dir(), self)
        dialog.finishedWith.connect(self._on_predicted)
        dialog.open()
        return dialog

    @Slot(str, object)
    def _on_predicted(self, outcome: str, info) -> None:
        """A finished prediction: its samples join the table (triangles on the map) until the next one."""
        if outcome != "done":
            self._show_status(f"Predict: {outcome}")
            return
        self.session.set_predictions(info.get("table"))
        # what matters first: the status bar's permanent widgets leave little room for a long path
        self._show_status(f"Predicted {info['rows']} samples: triangles on the map; written to "
                          f"{Path(str(info['path'])).name} ({Path(str(info['path'])).parent})")

    # ================================================================ closing / layout
    def _ask_close_while_training(self) -> bool:
        answer = QMessageBox.question(
            self, "Training is running",
            "Training is still running. Stop it and close? The last finished epoch is kept in the run.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.training.is_running:
            if not self.confirm_close():
                event.ignore()
                return
            self._closing = True
            self._show_status("Stopping training…")
            if not self.training.stop_and_wait():  # the job itself tidies the run up as it ends
                self._show_status("Training did not stop in time; it ends after the current batch.")
        self._closing = True
        if getattr(self, "start_screen", None) is not None:
            self.start_screen.close()
        for job in (self._load_job, self._umap_job):
            if not job.stop_and_wait(10_000):
                job.detach()  # it ends on its own; its result is dropped
        self.session.close()
        self.settings.save_window("main", self.saveGeometry(), self.saveState())
        self.settings.sync()
        super().closeEvent(event)

    def _restore_layout(self, restore: bool = True) -> None:
        restore_geometry(self, self.settings.window_geometry("main") if restore else None)
        state = self.settings.window_state("main") if restore else None
        if state is not None:
            self.restoreState(state)
        self._check_layout_on_show = True

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if getattr(self, "_check_layout_on_show", False):
            self._check_layout_on_show = False
            # once the window manager has framed the window: keep it (title bar included) on
            # the screen, and never keep a crushed layout
            QTimer.singleShot(150, self._after_first_show)

    @Slot()
    def _after_first_show(self) -> None:
        fit_on_screen(self)
        if self.layout_is_crushed():
            self.reset_layout()
        else:
            self.grow_docks()

    # ================================================================ selection
    def current_row(self) -> int | None:
        row = self.session.current
        return None if row < 0 or row >= len(self.session) else int(row)

    @Slot(int)
    def set_current_row(self, row: int) -> None:
        self.session.set_current(int(row))

    def selected_rows(self) -> np.ndarray:
        return np.asarray(self.session.selection, dtype=np.int64)

    def _set_selection(self, rows) -> None:
        # Selection changes are not undoable here: Ctrl+Z belongs to the edit journal.
        self.session.select(np.asarray(rows, dtype=np.int64))

    def grid_order(self) -> np.ndarray:
        """Rows in the grid's order (what ←/→ walk through)."""
        return np.asarray(self.grid_view.rows(), dtype=np.int64)
