"""Label health: per class, the share of samples the run's results contradict, the mean of a
chosen score, and the given label × constructed label confusion matrix.

Everything shown is derived from the session on each refresh (``core.health`` does the
counting); clicking a matrix cell or a class row selects those samples through the bridge, so
the map and the grid follow, and makes the most ambiguous of them the current sample.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFrame, QHBoxLayout, QHeaderView, QLabel,
    QScrollArea, QSizePolicy, QStyledItemDelegate, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from uldl_studio.core import health, scores

from .inspector import short_name

CLASS_ROLE = Qt.ItemDataRole.UserRole          # rates table: the class index of the row
RATE_ROLE = Qt.ItemDataRole.UserRole + 1       # rates table: the rate the bar draws
SHARE_ROLE = Qt.ItemDataRole.UserRole + 2      # matrix: the cell's share of its given label

AGREE_RGB = (0, 114, 178)       # diagonal: the model agrees with the given label (blue)
DISAGREE_RGB = (213, 94, 0)     # off the diagonal: likely mislabelled (vermilion)
BAR_COLOUR = QColor(213, 94, 0, 80)
WHITE = (255, 255, 255)
DARK_TEXT = QColor(30, 30, 30)
ZERO_TEXT = QColor(170, 170, 170)
LIGHT_TEXT = QColor(255, 255, 255)

NO_TABLE = "Open a dataset or a run to see label health."
NO_RESULTS = "No training results yet: train a model first to see label health."
RATE_COLUMNS = (
    ("class", "the given (current) label"),
    ("n", "samples with this given label that are counted"),
    ("flagged", ("samples whose constructed distribution d (p where there is no d) puts its "
                 "highest mass on another class: likely mislabelled")),
    ("rate", "estimated mislabel rate: flagged / n"),
    ("mean", ""),  # set from the chosen score
)


def shade(share: float) -> float:
    """Colour strength of a cell of row share ``share`` (square root: small shares of another
    class, the interesting ones, stay visible)."""
    return float(np.sqrt(np.clip(share, 0.0, 1.0))) if np.isfinite(share) else 0.0


def blend(rgb: tuple[int, int, int], strength: float) -> QColor:
    """White at ``strength`` 0 to ``rgb`` at 1."""
    s = float(np.clip(strength, 0.0, 1.0)) if np.isfinite(strength) else 0.0
    return QColor(*(round(w + (c - w) * s) for w, c in zip(WHITE, rgb)))


def plural(n: int, word: str = "sample") -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


class _RateBarDelegate(QStyledItemDelegate):
    """Draws a bar of width ``rate`` × cell width behind the cell's text."""

    def paint(self, painter, option, index) -> None:
        rate = index.data(RATE_ROLE)
        if rate is not None and np.isfinite(rate) and rate > 0:
            r = option.rect.adjusted(2, 3, -2, -3)
            width = max(1, round(r.width() * min(float(rate), 1.0)))
            painter.fillRect(QRect(r.left(), r.top(), width, r.height()), BAR_COLOUR)
        super().paint(painter, option, index)


def _compact_table(parent: QWidget) -> QTableWidget:
    table = QTableWidget(parent)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setWordWrap(False)
    table.setCornerButtonEnabled(False)
    table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    row_height = table.fontMetrics().height() + 6
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(row_height)
    table.verticalHeader().setMinimumSectionSize(row_height)
    table.horizontalHeader().setHighlightSections(False)
    table.verticalHeader().setHighlightSections(False)
    return table


def _fit(table: QTableWidget) -> None:
    """Make ``table`` exactly as tall as its rows and no narrower than its columns need (it
    never scrolls; the panel does)."""
    frame = 2 * table.frameWidth()
    horizontal, vertical = table.horizontalHeader(), table.verticalHeader()
    header = horizontal.sizeHint().height() if not horizontal.isHidden() else 0
    table.setFixedHeight(frame + header + vertical.length())
    width = 0
    for j in range(table.columnCount()):
        if table.isColumnHidden(j):
            continue
        width += max(table.sizeHintForColumn(j), horizontal.sectionSizeHint(j),
                     horizontal.minimumSectionSize())
    side = vertical.sizeHint().width() if not vertical.isHidden() else 0
    table.setMinimumWidth(frame + side + width)


class HealthPanel(QWidget):
    """Label health of the session's run (see the module docstring).

    Signals: ``cellSelected(given, constructed, count)`` after a matrix cell's samples were
    selected; ``classSelected(given, count)`` after a class row's likely mislabelled samples
    were selected.
    """

    cellSelected = Signal(int, int, int)
    classSelected = Signal(int, int)
    statusMessage = Signal(str)

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = bridge.session
        self._chosen_score = "ambiguity"   # what the user asked for; shown when it has values
        self._score_name: str | None = None
        self._stale = True
        self.rates = None                  # the displayed core.health.mislabel_rates (+ mean)
        self.counts = None                 # the displayed confusion matrix

        self.message = QLabel(NO_TABLE, self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #666; padding: 6px;")

        content = QWidget()
        self.content = content
        self.train_only = QCheckBox("training samples only", content)
        self.train_only.setChecked(True)
        self.train_only.setToolTip("Count only the training split: valid and test rows have no "
                                   "constructed distribution (their soft label is built from the "
                                   "prediction p alone)")
        self.train_only.toggled.connect(self._on_option_changed)
        self.score_combo = QComboBox(content)
        self.score_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.score_combo.setMinimumContentsLength(10)
        self.score_combo.activated.connect(lambda i: self.set_score(self.score_combo.itemData(i)))
        score_caption = QLabel("Mean per class of", content)
        score_row = QHBoxLayout()
        score_row.setContentsMargins(0, 0, 0, 0)
        score_row.addWidget(score_caption)
        score_row.addWidget(self.score_combo, 1)

        self.summary = QLabel(content)
        self.summary.setWordWrap(True)

        self.rates_table = _compact_table(content)
        self.rates_table.setColumnCount(len(RATE_COLUMNS))
        for j, (title, tip) in enumerate(RATE_COLUMNS):
            item = QTableWidgetItem(title)
            item.setToolTip(tip)
            self.rates_table.setHorizontalHeaderItem(j, item)
        self.rates_table.verticalHeader().hide()
        header = self.rates_table.horizontalHeader()
        for j in range(len(RATE_COLUMNS)):
            header.setSectionResizeMode(j, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.rates_table.setItemDelegateForColumn(3, _RateBarDelegate(self.rates_table))
        self.rates_table.cellClicked.connect(self._on_rates_clicked)

        self.caption = QLabel("Rows: given label · columns: constructed label (argmax of the soft label). "
                              "Shade: share of the given label. Click a cell to select its samples.", content)
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: #555;")
        self.matrix = _compact_table(content)
        self.matrix.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.matrix.horizontalHeader().setMinimumSectionSize(26)
        self.matrix.setShowGrid(True)
        self.matrix.setStyleSheet("QTableWidget { gridline-color: #d8d8d8; }")
        self.matrix.cellClicked.connect(self.select_cell)

        inner = QVBoxLayout(content)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.setSpacing(4)
        inner.addWidget(self.train_only)
        inner.addWidget(self.summary)
        inner.addLayout(score_row)
        inner.addWidget(self.rates_table)
        inner.addWidget(self.caption)
        inner.addWidget(self.matrix)
        inner.addStretch(1)

        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message)
        layout.addWidget(self.scroll, 1)

        bridge.tableReset.connect(self._on_session_changed)
        bridge.resultsChanged.connect(self._on_session_changed)
        bridge.editsChanged.connect(self._on_session_changed)
        self.refresh()

    # -- public API ----------------------------------------------------------------------
    @property
    def score_name(self) -> str | None:
        """The score whose per-class mean is shown (None when no score has values)."""
        return self._score_name

    @property
    def training_only(self) -> bool:
        return self.train_only.isChecked()

    def set_training_only(self, on: bool) -> None:
        self.train_only.setChecked(bool(on))  # toggled → refresh

    def set_score(self, name: str) -> None:
        """Show the per-class mean of the registered score ``name``."""
        scores.get(name)  # unknown names are an error
        self._chosen_score = name
        self.refresh()

    def counted_rows(self) -> np.ndarray | None:
        """The rows the panel counts: the training split, or None (all rows)."""
        table = self.session.table
        if table is None or not self.training_only:
            return None
        return health.training_rows(table)

    def select_cell(self, given: int, constructed: int) -> np.ndarray:
        """Select the samples of matrix cell (given, constructed) and make the most ambiguous of
        them current; what a click on the cell does.  Returns the rows (none: nothing changes)."""
        table = self.session.table
        if table is None or not health.has_distributions(table):
            return np.empty(0, dtype=np.int64)
        rows = health.cell_rows(table, given, constructed, rows=self.counted_rows())
        classes = self.session.classes
        if rows.size:
            self._select(rows, f"Select given {classes[given]}, constructed {classes[constructed]}")
            self.cellSelected.emit(int(given), int(constructed), int(rows.size))
            self.statusMessage.emit(f"Selected {plural(int(rows.size))}: given {classes[given]}, "
                                    f"soft label {classes[constructed]}")
        else:
            self.statusMessage.emit(f"No samples: none given {classes[given]} has its soft label's most mass "
                                    f"on {classes[constructed]}; the selection is unchanged")
        return rows

    def select_flagged(self, given: int) -> np.ndarray:
        """Select the likely mislabelled samples of class ``given`` (a click on its rate row)."""
        table = self.session.table
        if table is None or not health.has_distributions(table):
            return np.empty(0, dtype=np.int64)
        rows = health.flagged_rows(table, given, rows=self.counted_rows())
        if rows.size:
            self._select(rows, f"Select likely mislabelled {self.session.classes[given]}")
            self.classSelected.emit(int(given), int(rows.size))
            self.statusMessage.emit(f"Selected {plural(int(rows.size))} given {self.session.classes[given]} "
                                    "whose soft label puts most mass on another class")
        else:
            self.statusMessage.emit(f"No samples: every {self.session.classes[given]} keeps its given label on "
                                    "top of its soft label; the selection is unchanged")
        return rows

    def refresh(self) -> None:
        """Recompute everything shown from the session."""
        self._stale = False
        table = self.session.table
        ready = table is not None and health.has_distributions(table)
        self.message.setText(NO_TABLE if table is None else NO_RESULTS)
        self.message.setVisible(not ready)
        self.scroll.setVisible(ready)
        if not ready:
            self.rates = self.counts = None
            self.rates_table.setRowCount(0)
            self.matrix.setRowCount(0)
            self.matrix.setColumnCount(0)
            return
        rows = self.counted_rows()
        self._update_score_combo()
        rates = health.mislabel_rates(table, rows)
        if self._score_name is not None:
            rates["mean"] = health.class_means(table, self.session.score(self._score_name), rows)
        self.counts = health.confusion(table, rows)
        order = np.lexsort((np.arange(len(rates)), -rates["rate"].fillna(-1.0).to_numpy()))
        self.rates = rates.iloc[order].reset_index()  # "index" = the class index
        self._fill_summary()
        self._fill_rates()
        self._fill_matrix()

    # -- events --------------------------------------------------------------------------
    @Slot()
    def _on_session_changed(self, *_args) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True  # a hidden dock redraws when it is shown

    def showEvent(self, event) -> None:
        if self._stale:
            self.refresh()
        super().showEvent(event)

    @Slot()
    def _on_option_changed(self, *_args) -> None:
        self.refresh()

    @Slot(int, int)
    def _on_rates_clicked(self, row: int, _column: int) -> None:
        item = self.rates_table.item(row, 0)
        if item is not None:
            self.select_flagged(int(item.data(CLASS_ROLE)))

    def _select(self, rows: np.ndarray, text: str) -> None:
        session = self.session
        self.bridge.select(rows, text=text)
        mask = np.zeros(len(session), dtype=bool)
        mask[rows] = True
        worst = session.most_ambiguous("ambiguity", mask)
        session.set_current(int(rows[0]) if worst is None else worst)

    # -- drawing -------------------------------------------------------------------------
    def _update_score_combo(self) -> None:
        available = self.session.available_scores()
        names = [s.name for s in available]
        for name in (self._chosen_score, "ambiguity", *names):
            if name in names:
                break
        else:
            name = None
        self._score_name = name
        combo = self.score_combo
        combo.blockSignals(True)
        if [combo.itemData(i) for i in range(combo.count())] != names:
            combo.clear()
            for s in available:
                combo.addItem(s.label, s.name)
                combo.setItemData(combo.count() - 1, s.tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(combo.findData(name) if name is not None else -1)
        combo.blockSignals(False)
        combo.setEnabled(bool(names))
        tip = "" if name is None else scores.get(name).tooltip
        combo.setToolTip(f"Per-class mean of this score: {tip}" if tip else "no score has values")
        header = self.rates_table.horizontalHeaderItem(4)
        header.setToolTip(f"mean {scores.get(name).label} over the counted samples of the class: {tip}"
                          if name is not None else "")
        self.rates_table.setColumnHidden(4, name is None)

    def _fill_summary(self) -> None:
        n = int(self.rates["n"].sum())
        flagged = int(self.rates["likely_mislabelled"].sum())
        kind = "training sample" if self.training_only else "sample"
        if n == 0:
            self.summary.setText(f"No {kind}s with results to count.")
            return
        text = (f"{plural(n, kind)} · {flagged:,} likely mislabelled ({flagged / n:.1%}): their soft label "
                f"puts most mass on another class than the given one.")
        if flagged == 0:
            text += " No soft label moves a given label off the top."
        else:
            text += " Click a class to select its flagged samples."
        # the grid ranks by a score, which always has a worst end: say how the two relate
        key = self.session.queue_key
        if key != "sample_id" and self.session.has_values(key):
            values = self.session.score(key)
            rows = self.counted_rows()
            counted = values if rows is None else values[rows]
            score = scores.get(key)
            if score.value_range == (0.0, 1.0):
                cut = 0.9 if score.bad == "high" else 0.1
                with np.errstate(invalid="ignore"):
                    top = int(np.sum(counted >= cut) if score.bad == "high" else np.sum(counted <= cut))
                text += (f" The grid ranks by {score.label}, a ranking with a worst end whatever the labels:"
                         f" {top:,} {'≥' if score.bad == 'high' else '≤'} {cut:g}.")
        self.summary.setText(text)

    def _fill_rates(self) -> None:
        table = self.rates_table
        table.setRowCount(len(self.rates))
        kind = "training samples" if self.training_only else "samples"
        score = scores.get(self._score_name) if self._score_name is not None else None
        rates = self.rates
        means = rates["mean"].to_numpy(float) if "mean" in rates else np.full(len(rates), np.nan)
        for i, (c, name, n, flagged, rate, mean) in enumerate(zip(
                rates["index"], rates["class"], rates["n"], rates["likely_mislabelled"],
                rates["rate"].to_numpy(float), means)):
            tip = (f"{name}: {flagged:,} of {n:,} {kind} ({rate:.1%}) put their highest mass on "
                   f"another class — click to select them" if n else f"{name}: no {kind}")
            texts = (str(name), f"{n:,}", f"{flagged:,}", f"{rate:.1%}" if np.isfinite(rate) else "–",
                     f"{mean:.3f}" if np.isfinite(mean) else "–")
            for j, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{name}: mean {score.label} {text}" if j == 4 and score is not None else tip)
                if j == 0:
                    item.setData(CLASS_ROLE, int(c))
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if j == 3:
                    item.setData(RATE_ROLE, float(rate))
                table.setItem(i, j, item)
        _fit(table)

    def _fill_matrix(self) -> None:
        classes = self.session.classes
        counts = self.counts
        m = len(classes)
        matrix = self.matrix
        matrix.setRowCount(m)
        matrix.setColumnCount(m)
        for k, name in enumerate(classes):
            col = QTableWidgetItem(short_name(name))
            col.setToolTip(f"constructed label {name}")
            matrix.setHorizontalHeaderItem(k, col)
            row = QTableWidgetItem(name)
            row.setToolTip(f"given label {name}")
            matrix.setVerticalHeaderItem(k, row)
        totals = counts.sum(axis=1)
        bold = QFont(matrix.font())
        bold.setBold(True)
        for g in range(m):
            for k in range(m):
                count = int(counts[g, k])
                share = count / totals[g] if totals[g] else 0.0
                item = QTableWidgetItem(f"{count:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setData(SHARE_ROLE, share)
                strength = shade(share)
                item.setBackground(QBrush(blend(AGREE_RGB if g == k else DISAGREE_RGB, strength)))
                item.setForeground(QBrush(ZERO_TEXT if count == 0 else
                                          LIGHT_TEXT if strength > 0.7 else DARK_TEXT))
                if g == k:
                    item.setFont(bold)
                head = f"given {classes[g]}, constructed {classes[k]}"
                if count:
                    note = f" ({share:.0%} of given {classes[g]})"
                    item.setToolTip(f"{head}: {plural(count)}{note} — click to select them")
                else:
                    item.setToolTip(f"{head}: no samples")
                matrix.setItem(g, k, item)
        matrix.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        _fit(matrix)
