"""Thumbnail grid of the current selection (or of all samples when nothing is selected).

Virtualised: a ``QTableView`` whose every row holds as many tiles as fit the width, over
``SampleGridModel``, a table model that holds only an index array (no per-row objects or
widgets).  Fixed row heights and column widths let Qt lay out any number of rows without
asking the model about each (a ``QListView`` in icon mode asks for every item: ~0.4 s per
change at 300k rows), so the whole selection is listed and the view just scrolls
(``bench/gui_scale.py``).  Thumbnails are asked for only when a tile is painted; missing ones
are fetched in small batches on the next event-loop turn through
``thumbnail_provider(row) -> QPixmap | None`` and cached.

Linking: the grid lists the session's review queue (``Session.queue``: one split, the
selection and the filter, worst first by the chosen score). The queue is a snapshot: edits
mark tiles in place and move nothing until "Re-sort"; a new queue scrolls back to its first
tile. Clicking an item (or moving with the keyboard) sets the session's current sample, and a
current row set elsewhere (the map, relabel navigation) is selected and scrolled to here.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np
import pandas as pd
from PySide6.QtCore import (
    QAbstractTableModel, QItemSelectionModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, QTimer,
    Signal, Slot,
)
from PySide6.QtGui import QBrush, QColor, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QHeaderView, QLabel, QSlider, QStyle, QStyledItemDelegate,
    QTableView, QToolBar, QToolButton, QVBoxLayout, QWidget,
)

from uldl_studio.core.review.frontend import scores
from uldl_studio.qt.inspector import number_text
from uldl_studio.qt.session_bridge import SessionBridge

ROW_ROLE = Qt.ItemDataRole.UserRole + 1
#: thumbnail size (px) of a new grid: three rows of tiles fit a laptop screen's default layout
DEFAULT_THUMBNAIL = 72


def sort_keys() -> list[str]:
    """Every registered score (worst first), then the sample id."""
    return [*scores.names(), "sample_id"]


def sort_label(key: str) -> str:
    if key == "sample_id":
        return "sample id"
    score = scores.get(key)
    return f"{score.label} ({'highest' if score.bad == 'high' else 'lowest'} first)"


def short_name(key: str) -> str:
    return "λ" if key == "lambda" else key.replace("_", " ")


class SampleGridModel(QAbstractTableModel):
    """Tiles over table rows given as an index array (display order), ``columns`` per row:
    tile ``k`` is at (k // columns, k % columns); cells past the last tile are empty."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.table: pd.DataFrame | None = None
        self.rows = np.empty(0, dtype=np.int64)
        self.columns = 1
        self.thumbnail_provider: Callable[[int], QPixmap | None] | None = None
        # whether a row's given label (and its scores) are hidden from the annotator (blind mode)
        self.label_hidden: Callable[[int], bool] = lambda row: False
        self.icon_size = 96
        self._classes: list[str] = []
        self._labels = np.empty(0, dtype=np.int64)
        self._score: np.ndarray | None = None
        self._score_name = ""
        self._edited = np.empty(0, dtype=bool)
        self._unsure = np.empty(0, dtype=bool)
        self._reviewed = np.empty(0, dtype=bool)
        self._ids = np.empty(0, dtype=object)
        self._raw: OrderedDict[int, QPixmap | None] = OrderedDict()    # row -> provider pixmap
        self._scaled: OrderedDict[int, QPixmap] = OrderedDict()        # row -> icon-size pixmap
        self.cache_size = 4000
        self._pending: dict[int, QPersistentModelIndex] = {}
        self._fetch_timer = QTimer(self)
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.setInterval(0)
        self._fetch_timer.timeout.connect(self._fetch_pending)
        self._placeholder = self._make_placeholder()

    # -- content -------------------------------------------------------------------------
    def set_table(self, table: pd.DataFrame | None) -> None:
        self.beginResetModel()
        self.table = table
        self._raw.clear()
        self._scaled.clear()
        self._pending.clear()
        self._read_columns()
        self.rows = np.empty(0, dtype=np.int64)
        self.endResetModel()

    def refresh_values(self, table: pd.DataFrame) -> None:
        """Same rows, new values: labels, λ, edits (thumbnails stay cached); the tiles repaint
        in place."""
        self.table = table
        self._read_columns()
        self._all_changed([Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.ForegroundRole])

    def _read_columns(self) -> None:
        table = self.table
        if table is None:
            self._classes, self._labels = [], np.empty(0, np.int64)
            self._edited, self._ids = np.empty(0, bool), np.empty(0, object)
            self._unsure = self._reviewed = np.empty(0, bool)
            return
        self._classes = list(table.attrs.get("classes", []))
        self._labels = table["label"].to_numpy(np.int64)
        self._edited = (table["edited"].fillna(False).to_numpy(bool) if "edited" in table
                        else np.zeros(len(table), bool))
        self._ids = table["sample_id"].to_numpy()
        self._unsure, self._reviewed = (table[c].fillna(False).to_numpy(bool) if c in table
                                        else np.zeros(len(table), bool) for c in ("unsure", "reviewed"))

    def _marks(self, row: int) -> str:
        """✎ edited, ? unsure, ✓ confirmed (reviewed and not edited)."""
        marks = "✎" if self._edited[row] else ("✓" if self._reviewed[row] else "")
        return marks + ("?" if self._unsure[row] else "")

    def set_score(self, name: str, values: np.ndarray | None) -> None:
        """The score shown under each thumbnail (the sort key's); shown from the next
        ``set_rows``, which resets the model (its callers always follow with one)."""
        self._score_name, self._score = short_name(name), values

    def set_rows(self, rows: np.ndarray) -> None:
        self.beginResetModel()
        self.rows = np.asarray(rows, dtype=np.int64)
        self._pending.clear()
        self.endResetModel()

    def set_icon_size(self, px: int) -> None:
        if px == self.icon_size:
            return
        self.icon_size = int(px)
        self._scaled.clear()
        self._placeholder = self._make_placeholder()
        self._all_changed([Qt.ItemDataRole.DecorationRole])

    def invalidate_thumbnails(self) -> None:
        self._raw.clear()
        self._scaled.clear()
        self._all_changed([Qt.ItemDataRole.DecorationRole])

    def set_columns(self, columns: int) -> None:
        columns = max(1, int(columns))
        if columns != self.columns:
            self.beginResetModel()
            self.columns = columns
            self.endResetModel()

    def position_of(self, row: int) -> int:
        """Position of a table row among the tiles, or -1."""
        hits = np.flatnonzero(self.rows == row)
        return int(hits[0]) if hits.size else -1

    def item(self, position: int) -> QModelIndex:
        """The cell of the tile at ``position``."""
        return self.index(position // self.columns, position % self.columns)

    def position(self, index: QModelIndex) -> int:
        """The tile position of a cell (-1 for an empty cell)."""
        if not index.isValid():
            return -1
        k = index.row() * self.columns + index.column()
        return k if k < self.rows.size else -1

    def _all_changed(self, roles=()) -> None:
        if self.rows.size:
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columns - 1), list(roles))

    # -- Qt model API --------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else -(-int(self.rows.size) // self.columns)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else self.columns

    def flags(self, index):
        if self.position(index) < 0:
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        k = self.position(index)
        if k < 0:
            return None
        row = int(self.rows[k])
        if role == Qt.ItemDataRole.DisplayRole:
            if self.label_hidden(row):
                marks = self._marks(row)
                return f"{marks} ?" if marks else "?"
            label = int(self._labels[row])
            name = self._classes[label] if label < len(self._classes) else str(label)
            marks = self._marks(row)
            text = f"{marks} {name}" if marks else name
            if self._score is not None and row < len(self._score) and np.isfinite(self._score[row]):
                text += f"\n{number_text(self._score[row], 2)} {self._score_name}"  # the value first: it survives eliding
            return text
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(row, index)
        if role == Qt.ItemDataRole.ToolTipRole:
            text = str(self._ids[row])
            states = [w for w, on in (("edited", self._edited[row]), ("unsure", self._unsure[row]),
                                      ("reviewed", self._reviewed[row] and not self._edited[row])) if on]
            return f"{text} ({', '.join(states)})" if states else text
        if role == Qt.ItemDataRole.ForegroundRole and (self._edited[row] or self._unsure[row]):
            return QBrush(QColor(160, 30, 90) if self._edited[row] else QColor(110, 50, 160))
        if role == ROW_ROLE:
            return row
        return None

    # -- thumbnails ----------------------------------------------------------------------
    def _make_placeholder(self) -> QPixmap:
        pm = QPixmap(self.icon_size, self.icon_size)
        pm.fill(QColor(225, 225, 225))
        return pm

    def _thumbnail(self, row: int, index) -> QPixmap:
        pm = self._scaled.get(row)
        if pm is not None:
            self._scaled.move_to_end(row)
            return pm
        if row in self._raw:
            return self._scale(row, self._raw[row])
        if self.thumbnail_provider is not None and row not in self._pending:
            self._pending[row] = QPersistentModelIndex(index)
            self._fetch_timer.start()
        return self._placeholder

    def _scale(self, row: int, raw: QPixmap | None) -> QPixmap:
        if raw is None or raw.isNull():
            pm = self._placeholder
        else:
            pm = raw.scaled(self.icon_size, self.icon_size, Qt.AspectRatioMode.KeepAspectRatio,
                            Qt.TransformationMode.SmoothTransformation)
        self._scaled[row] = pm
        while len(self._scaled) > self.cache_size:
            self._scaled.popitem(last=False)
        return pm

    @Slot()
    def _fetch_pending(self, batch: int = 48) -> None:
        """Fetch a batch of visible thumbnails; reschedule while some are left."""
        done = 0
        while self._pending and done < batch:
            row, pidx = self._pending.popitem()
            try:
                raw = self.thumbnail_provider(row) if self.thumbnail_provider else None
            except Exception:  # an unreadable image shows the placeholder
                raw = None
            self._raw[row] = raw
            while len(self._raw) > self.cache_size:
                self._raw.popitem(last=False)
            self._scale(row, raw)
            done += 1
            if pidx.isValid():
                idx = self.index(pidx.row(), pidx.column())
                self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
        if self._pending:
            self._fetch_timer.start()


class _TileDelegate(QStyledItemDelegate):
    """A tile: the thumbnail centred at the top, two lines of text under it."""

    def paint(self, painter, option, index) -> None:
        if index.data(ROW_ROLE) is None:
            return
        rect = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(rect, option.palette.highlight())
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        top = rect.top() + 3
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            painter.drawPixmap(rect.left() + (rect.width() - pixmap.width()) // 2, top, pixmap)
            top += pixmap.height()
        brush = index.data(Qt.ItemDataRole.ForegroundRole)
        colour = (option.palette.highlightedText().color() if selected
                  else brush.color() if isinstance(brush, QBrush) else option.palette.text().color())
        painter.save()
        painter.setPen(colour)
        painter.setFont(option.font)
        text_rect = QRect(rect.left(), top + 2, rect.width(), rect.bottom() - top - 2)
        metrics = painter.fontMetrics()
        lines = [metrics.elidedText(line, Qt.TextElideMode.ElideRight, text_rect.width())
                 for line in str(index.data()).split("\n")]
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop), "\n".join(lines))
        painter.restore()


class GridView(QWidget):
    """Thumbnails of the selected samples (all samples when nothing is selected) that pass
    the session's filter.

    Args:
        bridge: the session's Qt bridge (a new session is created when None).
        parent: Qt parent.

    Attributes: ``thumbnail_provider`` (property; ``callable(row) -> QPixmap | None``),
    ``tile_view`` (QTableView), ``model`` (SampleGridModel).

    Signals:
        sortKeyChanged(str)
        activated(int): a row was double-clicked or Enter was pressed on it.

    With "predicted samples" ticked, the grid lists the table's predicted rows (``source`` =
    prediction) that pass the filter, in the sort key's order, instead of the review queue.
    """

    sortKeyChanged = Signal(str)
    activated = Signal(int)

    def __init__(self, bridge: SessionBridge | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge if bridge is not None else SessionBridge(self)
        self.session = self.bridge.session
        self._cell = QSize(108, 140)  # tile size; set from the thumbnail size by _apply_sizes
        self._syncing = False
        self._shown_key: str | None = None  # the sort key the listed queue was shown with

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        # A tool bar: in a narrow window what does not fit goes behind its » button instead
        # of forcing the window wider. The queue's progress comes first: it must stay in view.
        bar = self.controls = QToolBar(self)
        bar.setIconSize(QSize(16, 16))
        self.info_label = QLabel(self)
        self.info_label.setObjectName("queueProgress")
        self.info_label.setContentsMargins(4, 0, 8, 0)
        bar.addWidget(self.info_label)
        bar.addWidget(QLabel("Sort:", self))
        self.sort_combo = QComboBox(self)
        self.sort_combo.setToolTip("the order of the review queue (only scores with values are offered)")
        self._fill_sort_combo()
        self.sort_combo.activated.connect(lambda i: self.set_sort_key(self.sort_combo.itemData(i)))
        bar.addWidget(self.sort_combo)
        self.split_combo = QComboBox(self)
        for split, text in (("train", "training rows"), ("valid", "valid rows"), ("test", "test rows"),
                            ("all", "all rows")):
            self.split_combo.addItem(text, split)
        self.split_combo.setToolTip("which rows the queue walks (←/→, Enter)")
        self.split_combo.activated.connect(lambda i: self.session.set_queue_order(split=self.split_combo.itemData(i)))
        bar.addWidget(self.split_combo)
        self.resort_button = QToolButton(self)
        self.resort_button.setText("Re-sort")
        self.resort_button.setToolTip("sort the queue again: edited samples move to their new place")
        self.resort_button.clicked.connect(self.session.resort_queue)
        bar.addWidget(self.resort_button)
        self.predicted_box = QCheckBox("predicted samples", self)
        self.predicted_box.setToolTip("list the samples predicted for another collection instead of the dataset")
        self.predicted_box.toggled.connect(self._update_rows)
        self.predicted_box.hide()
        self._predicted_box_action = bar.addWidget(self.predicted_box)
        self._predicted_box_action.setVisible(False)
        bar.addSeparator()
        bar.addWidget(QLabel("Size:", self))
        self.size_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.size_slider.setRange(32, 192)
        self.size_slider.setValue(DEFAULT_THUMBNAIL)
        self.size_slider.setFixedWidth(110)
        self.size_slider.valueChanged.connect(self.set_thumbnail_size)
        bar.addWidget(self.size_slider)
        layout.addWidget(bar)

        self.model = SampleGridModel(self)
        view = self.tile_view = QTableView(self)
        view.setModel(self.model)
        view.setItemDelegate(_TileDelegate(view))
        view.setShowGrid(False)
        view.setWordWrap(False)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # the width never jumps
        for header in (view.horizontalHeader(), view.verticalHeader()):
            header.hide()
            header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # no per-row size queries
        view.selectionModel().currentChanged.connect(self._on_view_current)
        view.activated.connect(lambda idx: self.activated.emit(int(idx.data(ROW_ROLE)))
                               if idx.data(ROW_ROLE) is not None else None)
        view.viewport().installEventFilter(self)
        layout.addWidget(view, 1)
        self._apply_sizes(DEFAULT_THUMBNAIL)

        bridge = self.bridge
        bridge.queueChanged.connect(self._on_queue_changed)
        bridge.currentChanged.connect(self._on_model_current)
        bridge.tableReset.connect(self._on_table_reset)
        bridge.resultsChanged.connect(self._on_values_changed)
        bridge.editsChanged.connect(self._on_values_changed)
        bridge.predictionsChanged.connect(self._on_predictions_changed)
        self._update_info()

    # -- public API ----------------------------------------------------------------------
    @property
    def thumbnail_provider(self):
        return self.model.thumbnail_provider

    @thumbnail_provider.setter
    def thumbnail_provider(self, provider: Callable[[int], QPixmap | None] | None) -> None:
        self.model.thumbnail_provider = provider
        self.model.invalidate_thumbnails()

    def listing_predictions(self) -> bool:
        """Whether the grid lists the predicted rows rather than the review queue."""
        return self.predicted_box.isChecked() and self.session.has_predictions

    @Slot()
    def _on_predictions_changed(self) -> None:
        """Other predicted rows: their old thumbnails go with them."""
        has = self.session.has_predictions
        self._predicted_box_action.setVisible(has)  # a widget in a tool bar shows through its action
        self.model.set_table(self._table)
        if not has:
            self.predicted_box.setChecked(False)
        self._update_rows()

    @property
    def sort_key(self) -> str:
        """The score the queue is sorted by (the chosen one once it has values)."""
        return self.session.queue_key

    @property
    def _table(self) -> pd.DataFrame | None:
        return self.session.table

    @Slot()
    def _on_table_reset(self) -> None:
        self.model.set_table(self._table)
        self._update_rows()

    def _fill_sort_combo(self) -> None:
        """Offer the scores that have values (all of them before a table is open)."""
        keys = [k for k in sort_keys() if self._table is None or self.session.has_values(k)]
        if [self.sort_combo.itemData(i) for i in range(self.sort_combo.count())] != keys:
            self.sort_combo.blockSignals(True)
            self.sort_combo.clear()
            for key in keys:
                self.sort_combo.addItem(sort_label(key), key)
                if key != "sample_id":
                    self.sort_combo.setItemData(self.sort_combo.count() - 1, scores.get(key).tooltip,
                                                Qt.ItemDataRole.ToolTipRole)
            self.sort_combo.blockSignals(False)
        self.sort_combo.setCurrentIndex(self.sort_combo.findData(self.session.queue_key))

    @Slot()
    def _on_values_changed(self, *_args) -> None:
        """Same rows, new λ/d/p/edits: refresh the tiles' text and marks in place (the order is
        the queue's, which edits do not move); keep cached thumbnails."""
        self.model.refresh_values(self._table)
        self.model.set_score(self.sort_key, None if self.sort_key == "sample_id"
                             else self.session.score(self.sort_key))
        self._update_info()

    @Slot()
    def _on_queue_changed(self) -> None:
        """A new queue (sort, split, selection, filter, results): list it from its first tile."""
        old_key = self._shown_key
        self._fill_sort_combo()
        self.split_combo.setCurrentIndex(self.split_combo.findData(self.session.queue_split))
        self._update_rows()
        if not self.listing_predictions() and self.model.rows.size:
            self.tile_view.scrollToTop()
        self._shown_key = self.sort_key
        if old_key is not None and old_key != self.sort_key:
            self.sortKeyChanged.emit(self.sort_key)

    def set_sort_key(self, key: str) -> None:
        """Sort the queue by ``key`` (a registered score or ``sample_id``)."""
        if key not in sort_keys():
            raise ValueError(f"unknown sort key {key!r}; expected one of {sort_keys()}")
        self.session.set_queue_order(key=key)

    @Slot(int)
    def set_thumbnail_size(self, px: int) -> None:
        if self.size_slider.value() != px:
            self.size_slider.setValue(px)  # re-enters through valueChanged
            return
        self._apply_sizes(px)

    def rows(self) -> np.ndarray:
        """Table rows in display order."""
        return self.model.rows

    def height_for_rows(self, rows: int) -> int:
        """The height that shows ``rows`` rows of tiles under the tool bar."""
        return self.controls.sizeHint().height() + rows * self._cell.height() + 2 * self.tile_view.frameWidth() + 6

    # -- internals -------------------------------------------------------------------------
    def _apply_sizes(self, px: int) -> None:
        metrics = self.fontMetrics()
        text_height = 2 * metrics.height() + 6
        # wide enough for the caption under the thumbnail ("✎? happiness", "ambiguity 0.00")
        caption = max(metrics.horizontalAdvance(t) for t in ("✎? happiness", "0.00 ambiguity"))
        self._cell = QSize(max(px, caption + 6) + 12, px + text_height + 8)
        self.tile_view.horizontalHeader().setDefaultSectionSize(self._cell.width())
        self.tile_view.verticalHeader().setDefaultSectionSize(self._cell.height())
        self.model.set_icon_size(px)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """As many tiles per row as the viewport's width holds; the current tile stays in view."""
        columns = max(1, self.tile_view.viewport().width() // max(1, self._cell.width()))
        if columns != self.model.columns:
            self.model.set_columns(columns)
            self._select_current(scroll=True)

    def eventFilter(self, obj, event):  # noqa: N802
        if obj is self.tile_view.viewport() and event.type() == event.Type.Resize:
            self._fit_columns()
        return super().eventFilter(obj, event)

    @Slot()
    def _update_rows(self, *_args) -> None:
        if self._table is None:
            self.model.set_rows(np.empty(0, dtype=np.int64))
            self._update_info()
            return
        key = self.sort_key
        self.model.set_score(key, None if key == "sample_id" else self.session.score(key))
        self.model.set_rows(self._predicted_rows() if self.listing_predictions() else self.session.queue)
        self._select_current(scroll=False)
        self._update_info()

    def _predicted_rows(self) -> np.ndarray:
        """The predicted rows that pass the filter, worst first by the sort key (NaN last)."""
        order = self.session.sort_order(self.sort_key)
        keep = self.session.visible_mask() & ~self.session.dataset_mask()
        return order[keep[order]]

    def _update_info(self) -> None:
        total = 0 if self._table is None else len(self._table)
        if not total:
            self.info_label.setText("no data")
            return
        if self.listing_predictions():
            self.info_label.setText(f"{self.model.rows.size:,} predicted samples")
            return
        queue = self.session.queue
        done = int(self.session.queue_reviewed().sum())
        what = "selection" if self.session.selection.size else "queue"
        self.info_label.setText(f"{done:,} / {queue.size:,} reviewed in this {what}")

    @Slot(object, object)
    def _on_view_current(self, current, _previous) -> None:
        k = self.model.position(current)
        if self._syncing or k < 0:
            return
        self.session.set_current(int(self.model.rows[k]))

    @Slot(int)
    def _on_model_current(self, _row: int) -> None:
        self._select_current(scroll=True)

    def _select_current(self, scroll: bool) -> None:
        row = self.session.current
        pos = self.model.position_of(row) if row >= 0 else -1
        self._syncing = True
        try:
            sel = self.tile_view.selectionModel()
            if pos < 0:
                sel.clearSelection()
                return
            index = self.model.item(pos)
            sel.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            if scroll:
                self.tile_view.scrollTo(index)
        finally:
            self._syncing = False


__all__ = ["GridView", "SampleGridModel", "sort_keys", "ROW_ROLE"]
