"""Label health: the estimated number of label issues first (the sum of the calibrated
probability that a label is wrong, ``core.label_issues``), then per class the estimated issues,
their rate and how many of the likeliest wrong labels the map highlights,
the mean of a chosen score, and the expected given label × true label matrix.

Everything shown is derived from the session on each refresh (``core.health`` does the
counting); clicking a matrix cell or a class row selects those samples through the bridge, so
the map and the grid follow, and makes the likeliest wrong of them the current sample.
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

from uldl_studio.core.review import health
from uldl_studio.core.review.frontend import PRECISION, class_accuracy, scores

from .inspector import short_name

CLASS_ROLE = Qt.ItemDataRole.UserRole          # rates table: the class index of the row
RATE_ROLE = Qt.ItemDataRole.UserRole + 1       # rates table: the rate the bar draws
SHARE_ROLE = Qt.ItemDataRole.UserRole + 2      # matrix: the cell's share of its given label

AGREE_RGB = (0, 114, 178)       # diagonal: the model agrees with the given label (blue)
DISAGREE_RGB = (213, 94, 0)     # off the diagonal: estimated label issues (vermilion)
BAR_COLOUR = QColor(213, 94, 0, 80)
WHITE = (255, 255, 255)
DARK_TEXT = QColor(30, 30, 30)
ZERO_TEXT = QColor(170, 170, 170)
LIGHT_TEXT = QColor(255, 255, 255)

NO_TABLE = "Open a dataset or a run to see label health."
NO_RESULTS = "No training results yet: train a model first to see label health."
ISSUE_SCORE = "label_wrong_prob"
RATE_COLUMNS = (
    ("class", "the given (current) label"),
    ("n", "samples with this given label that are counted"),
    ("issues", "estimated label issues: the sum of P(label is wrong) over the class's samples"),
    ("rate", "estimated share of wrong labels: issues / n"),
    ("high", "highlighted: the likeliest wrong labels, drawn strongly on the map (as many as keep "
             f"the expected share of wrong labels among them at {PRECISION:.0%} or more, each more "
             "likely wrong than right); click the row to select them"),
    ("valid acc", "the model's accuracy on the valid split's samples given this label (the panel's first "
                  "lines give the mean over the classes: rare classes count as much as common ones)"),
    ("mean", ""),  # set from the chosen score
)
ACCURACY_COLUMN = len(RATE_COLUMNS) - 2
MEAN_COLUMN = len(RATE_COLUMNS) - 1


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

    Signals: ``cellSelected(given, true, count)`` after a matrix cell's samples (given label
    ``given`` whose most probable true label is ``true``) were selected;
    ``classSelected(given, count)`` after a class row's highlighted samples were selected.
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
        self.rates = None                  # the displayed core.health.issue_rates (+ mean)
        self.counts = None                 # the displayed expected given × true matrix (float)
        self.cell_counts = None            # rows a click on each cell selects

        self.message = QLabel(NO_TABLE, self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #666; padding: 6px;")

        content = QWidget()
        self.content = content
        self.train_only = QCheckBox("training samples only", content)
        self.train_only.setChecked(True)
        self.train_only.setToolTip("Count only the training split (each split's labels are judged "
                                   "by their own noise model; valid and test labels are not "
                                   "trained on)")
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
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.rates_table.setItemDelegateForColumn(3, _RateBarDelegate(self.rates_table))
        self.rates_table.cellClicked.connect(self._on_rates_clicked)

        self.caption = QLabel("Rows: given label · columns: likely true label. Each cell: the expected "
                              "number of samples (sums of P(true | image, given)); shade: share of the "
                              "given label. Click a cell to select the samples whose most likely true "
                              "label it is.", content)
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

    def set_score(self, name: str) -> None:
        """Show the per-class mean of the registered score ``name``."""
        scores.get(name)  # unknown names are an error
        self._chosen_score = name
        self.refresh()

    def _training_counted_in_sample(self) -> bool:
        """Whether training samples are among the counted ones without out-of-fold predictions."""
        table = self.session.dataset_table
        has_train = table is not None and bool((table["split"].astype(str) == "train").any())
        return has_train and not all(f"oof_{c}" in table for c in self.session.classes)

    def counted_rows(self) -> np.ndarray | None:
        """The rows the panel counts: the training split, or None (all rows)."""
        table = self.session.dataset_table
        if table is None or not self.training_only:
            return None
        return health.training_rows(table)

    def select_cell(self, given: int, true: int) -> np.ndarray:
        """Select the samples of matrix cell (given, true): given label ``given``, most likely
        true label ``true``; make the likeliest wrong of them current; what a click on the cell
        does.  Returns the rows (none: nothing changes)."""
        table = self.session.dataset_table
        if table is None or not health.has_issue_estimate(table):
            return np.empty(0, dtype=np.int64)
        rows = health.issue_cell_rows(table, given, true, rows=self.counted_rows())
        classes = self.session.classes
        if rows.size:
            self._select(rows)
            self.cellSelected.emit(int(given), int(true), int(rows.size))
            self.statusMessage.emit(f"Selected {plural(int(rows.size))}: given {classes[given]}, "
                                    f"most likely {classes[true]}")
        else:
            self.statusMessage.emit(f"No samples: none given {classes[given]} is most likely "
                                    f"{classes[true]}; the selection is unchanged")
        return rows

    def select_flagged(self, given: int) -> np.ndarray:
        """Select the highlighted samples of class ``given``: its likeliest wrong labels, the
        ones the map draws strongly (a click on its rate row)."""
        table = self.session.dataset_table
        if table is None or not health.has_issue_estimate(table):
            return np.empty(0, dtype=np.int64)
        rows = health.highlighted_rows(table, given, rows=self.counted_rows())
        name = self.session.classes[given]
        if rows.size:
            self._select(rows)
            self.classSelected.emit(int(given), int(rows.size))
            self.statusMessage.emit(f"Selected {plural(int(rows.size))} given {name} whose label is "
                                    "highlighted as likely wrong")
        else:
            self.statusMessage.emit(f"No samples: no {name} label is highlighted as likely wrong; "
                                    "the selection is unchanged")
        return rows

    def refresh(self) -> None:
        """Recompute everything shown from the session."""
        self._stale = False
        table = self.session.dataset_table
        ready = table is not None and health.has_issue_estimate(table)
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
        rates = health.issue_rates(table, rows)
        if self._score_name is not None:
            values = self.session.score(self._score_name)[self.session.dataset_mask()]
            rates["mean"] = health.class_means(table, values, rows)
        self.counts = health.issue_matrix(table, rows)
        self.cell_counts = health.issue_cell_counts(table, rows)
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

    def _select(self, rows: np.ndarray) -> None:
        session = self.session
        session.select(rows)
        mask = np.zeros(len(session), dtype=bool)
        mask[rows] = True
        key = ISSUE_SCORE if session.has_values(ISSUE_SCORE) else "ambiguity"
        worst = session.most_ambiguous(key, mask)
        session.set_current(int(rows[0]) if worst is None else worst)

    # -- drawing -------------------------------------------------------------------------
    def _update_score_combo(self) -> None:
        available = self.session.available_scores()
        names = [s.name for s in available]
        for name in (self._chosen_score, "ambiguity", ISSUE_SCORE, *names):
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
        header = self.rates_table.horizontalHeaderItem(MEAN_COLUMN)
        header.setToolTip(f"mean {scores.get(name).label} over the counted samples of the class: {tip}"
                          if name is not None else "")
        self.rates_table.setColumnHidden(MEAN_COLUMN, name is None)

    def _valid_accuracy(self):
        """Per-class accuracy of the model on the valid split (``core.evaluate.class_accuracy``),
        or None without a valid split or predictions."""
        table = self.session.dataset_table
        classes = self.session.classes
        if table is None or not classes or any(f"p_{c}" not in table for c in classes) \
                or not (table["split"] == "valid").any():
            return None
        return class_accuracy(table, "valid")

    def _fill_summary(self) -> None:
        rates = self.rates
        n = int(rates["n"].sum())
        kind = "training sample" if self.training_only else "sample"
        if n == 0:
            self.summary.setText(f"No {kind}s with results to count.")
            return
        estimated = float(rates["estimated"].sum())
        highlighted = int(rates["highlighted"].sum())
        classes = self.session.classes
        text = (f"<b>≈ {estimated:,.0f} label issues</b> among {plural(n, kind)} "
                f"(<b>{estimated / n:.1%}</b>)")
        top = health.largest_confusion(self.counts)
        if top is not None and estimated >= 0.5:
            g, k, count = top
            text += f", most: given {classes[g]}, likely {classes[k]} (≈ {count:,.0f})"
        text += (". The estimate is the sum of a calibrated probability that each label is wrong "
                 "(a held-out temperature and a class-pair noise model, no extra votes needed).")
        if self._training_counted_in_sample():
            text += (" Training samples are judged in-sample, by the model that learned their labels: it finds "
                     "fewer issues among them than there are (on full FER+, 3 in 100 fewer); cross-fit folds "
                     "(Training panel) judge them by models that never saw them.")
        if highlighted:
            expected = float(rates["highlighted_wrong"].sum()) / highlighted
            text += (f" <b>{highlighted:,}</b> of the likeliest wrong labels are highlighted on the map; "
                     f"≈ {expected:.0%} of them are expected to be wrong. "
                     "Click a class to select its highlighted samples.")
        else:
            text += " No label is highlighted: none is likely enough to be wrong."
        accuracy = self._valid_accuracy()
        if accuracy is not None:
            worst = accuracy["accuracy"].dropna().sort_values().head(2)
            text += (f" The model: valid accuracy {accuracy.attrs['accuracy']:.2f}, mean class accuracy "
                     f"{accuracy.attrs['mean_class_accuracy']:.2f}"
                     + (f" (lowest: {', '.join(f'{c} {a:.2f}' for c, a in worst.items())})" if len(worst) else "")
                     + ".")
        self.summary.setText(text)

    def _fill_rates(self) -> None:
        table = self.rates_table
        table.setRowCount(len(self.rates))
        kind = "training samples" if self.training_only else "samples"
        score = scores.get(self._score_name) if self._score_name is not None else None
        rates = self.rates
        means = rates["mean"].to_numpy(float) if "mean" in rates else np.full(len(rates), np.nan)
        accuracy = self._valid_accuracy()
        per_class = (accuracy["accuracy"].reindex(rates["class"]).to_numpy(float) if accuracy is not None
                     else np.full(len(rates), np.nan))
        for i, (c, name, n, estimated, rate, high, acc, mean) in enumerate(zip(
                rates["index"], rates["class"], rates["n"], rates["estimated"].to_numpy(float),
                rates["rate"].to_numpy(float), rates["highlighted"], per_class, means)):
            tip = (f"{name}: ≈ {estimated:,.1f} of {n:,} {kind} ({rate:.1%}) estimated wrong; {high:,} more "
                   f"likely wrong than right — click to select them" if n else f"{name}: no {kind}")
            texts = (str(name), f"{n:,}", f"{estimated:,.0f}", f"{rate:.1%}" if np.isfinite(rate) else "–",
                     f"{high:,}", f"{acc:.2f}" if np.isfinite(acc) else "–",
                     f"{mean:.3f}" if np.isfinite(mean) else "–")
            for j, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{name}: mean {score.label} {text}" if j == MEAN_COLUMN and score is not None
                                else tip)
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
            col.setToolTip(f"likely true label {name}")
            matrix.setHorizontalHeaderItem(k, col)
            row = QTableWidgetItem(name)
            row.setToolTip(f"given label {name}")
            matrix.setVerticalHeaderItem(k, row)
        totals = counts.sum(axis=1)
        bold = QFont(matrix.font())
        bold.setBold(True)
        for g in range(m):
            for k in range(m):
                expected = float(counts[g, k])
                count = int(round(expected))
                share = expected / totals[g] if totals[g] else 0.0
                item = QTableWidgetItem(f"{count:,}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                item.setData(SHARE_ROLE, share)
                strength = shade(share)
                item.setBackground(QBrush(blend(AGREE_RGB if g == k else DISAGREE_RGB, strength)))
                item.setForeground(QBrush(ZERO_TEXT if count == 0 else
                                          LIGHT_TEXT if strength > 0.7 else DARK_TEXT))
                if g == k:
                    item.setFont(bold)
                head = f"given {classes[g]}, true {classes[k]}"
                clicked = int(self.cell_counts[g, k])
                if count or clicked:
                    note = f" ({share:.0%} of given {classes[g]})"
                    item.setToolTip(f"{head}: ≈ {plural(count)} expected{note} — click to select the "
                                    f"{plural(clicked)} most likely {classes[k]}")
                else:
                    item.setToolTip(f"{head}: no samples")
                matrix.setItem(g, k, item)
        matrix.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        _fit(matrix)
