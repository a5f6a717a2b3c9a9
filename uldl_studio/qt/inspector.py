"""Inspector for the current sample: image, labels, λ, V-A, d / p / reference bars, the people's
votes (bars and who voted what), and the K neighbours that built d with their similarity s,
calibration ζ and contribution c.

A sample predicted for another collection (a row of source ``prediction``) is shown the same
way: what it lacks (a given label, d, λ, neighbours) stays blank, and an image with a detected
face shows whole, the face boxed.

Blind mode (``set_blind``) hides the given label, the prediction, d, the scores, the reference,
the neighbours and the other annotators' votes of a sample until this annotator has voted on
it, so that nothing anchors their vote."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
from typing import Callable

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QBoxLayout, QFormLayout, QFrame, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QSizePolicy,
    QToolButton, QVBoxLayout, QWidget,
)

from uldl_studio.core.review.frontend import ThumbnailCache, contribution_weights, decode_image, scores
from uldl_studio.core.table import d_columns, p_columns, ref_columns

IMAGE_SIZE = 160
NEIGHBOUR_SIZE = 56
SERIES = (  # (column prefix, legend name, colour)
    ("d", "d (constructed)", "#ff7f0e"),
    ("p", "p (prediction)", "#1f77b4"),
    ("ref", "reference", "#7f7f7f"),
    ("votes", "votes", "#2ca02c"),
)
NO_RESULTS_TEXT = "no training results yet"
BLIND_TEXT = "blind mode: vote (number keys) to see the labels"


def array_to_pixmap(image: np.ndarray, size: int | None = None) -> QPixmap:
    """uint8 HxW or HxWx3 array -> QPixmap (copied), optionally scaled to ``size``."""
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        h, w = image.shape
        qimage = QImage(image.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    else:
        h, w = image.shape[:2]
        qimage = QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    pixmap = QPixmap.fromImage(qimage)
    if size is not None and (w != size or h != size):
        pixmap = pixmap.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
    return pixmap


def row_pixmap(cache, table, row: int, size: int) -> QPixmap:
    """Thumbnail of ``table``'s row ``row`` (``core.images.ThumbnailCache``) as a QPixmap.

    FER2013 rows decode their ``pixels`` string; an unreadable image gives the cache's placeholder.
    """
    pixels = table["pixels"].iat[row] if "pixels" in table else None
    image = cache.get(str(table["path"].iat[row]), pixels if isinstance(pixels, str) else None, size=size)
    return array_to_pixmap(image, size)


def face_box(rec) -> tuple[int, int, int, int] | None:
    """The detected face's box (x, y, w, h) in the whole image, when the row has one."""
    box = pd.to_numeric(pd.Series([rec.get(f"box_{k}") for k in ("x", "y", "w", "h")]), errors="coerce")
    return tuple(int(v) for v in box) if box.notna().all() else None


def whole_image(rec, box: tuple[int, int, int, int]) -> QPixmap | None:
    """The row's whole image with the face ``box`` (x, y, w, h) drawn, scaled to fit (None:
    unreadable)."""
    try:
        pixmap = array_to_pixmap(decode_image(str(rec["path"])))
    except Exception:  # noqa: BLE001 - an unreadable image must not break the inspector
        return None
    painter = QPainter(pixmap)
    pen = QPen(QColor(255, 40, 40))
    pen.setWidth(max(2, pixmap.width() // 120))
    painter.setPen(pen)
    painter.drawRect(*box)
    painter.end()
    return pixmap.scaled(IMAGE_SIZE, IMAGE_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                         Qt.TransformationMode.SmoothTransformation)


def number_text(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; a value that rounds to zero shows as 0, never −0."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def short_name(name: str) -> str:
    return name[:3]


def neighbour_shares(contribution: np.ndarray) -> np.ndarray:
    """What each neighbour contributed to d̃ (``core.ldl.contribution_weights``: c_k / Σ c)."""
    return contribution_weights(np.asarray(contribution, dtype=np.float64)).numpy()


class NeighbourTile(QToolButton):
    """One neighbour: thumbnail, class and s / ζ / c."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.setAutoRaise(True)
        self.setIconSize(pg.QtCore.QSize(NEIGHBOUR_SIZE, NEIGHBOUR_SIZE))
        font = self.font()
        font.setPointSizeF(max(6.5, font.pointSizeF() - 1.5))
        self.setFont(font)
        self.row: int | None = None


class DistributionChart(pg.PlotWidget):
    """Grouped bars: d, p and (when present) the reference distribution per class."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground("w")
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Ignored)  # see chart_box
        self.setMaximumHeight(280)  # the neighbours below stay in view
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.showGrid(y=True, alpha=0.25)
        self.setYRange(0, 1.0, padding=0.02)
        for axis in ("left", "bottom"):
            self.getAxis(axis).setTextPen("#333")
            self.getAxis(axis).setPen("#888")
        self.getAxis("left").setWidth(30)
        # One legend row above the bars (the y range leaves room for it), never over them.
        self.legend = self.addLegend(offset=(5, 1), labelTextColor="#333", labelTextSize="8pt",
                                     colCount=3, brush=pg.mkBrush(255, 255, 255, 220))
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.empty_text = pg.TextItem(NO_RESULTS_TEXT, color="#777", anchor=(0.5, 0.5))
        self.addItem(self.empty_text)
        self.empty_text.setPos(0.5, 0.5)
        self._classes: list[str] = []

    def set_distributions(self, classes: list[str], series: dict[str, np.ndarray],
                          names: dict[str, str] | None = None, empty_text: str = NO_RESULTS_TEXT) -> None:
        """``series``: prefix ('d' | 'p' | 'ref' | 'votes') -> (m,) distribution; ``names``
        overrides a series' legend name; ``empty_text`` is shown when there is no series."""
        self.empty_text.setText(empty_text)
        for item in self.bars.values():
            self.removeItem(item)
        self.bars.clear()
        self.legend.clear()
        m = len(classes)
        if classes != self._classes:
            self._classes = list(classes)
            self.getAxis("bottom").setTicks([[(i, short_name(c)) for i, c in enumerate(classes)]])
        present = [s for s in SERIES if s[0] in series]
        self.empty_text.setVisible(not present)
        if not present:
            self.setXRange(-0.5, max(m, 1) - 0.5)
            self.empty_text.setPos((m - 1) / 2 if m else 0.5, 0.5)
            return
        width = 0.8 / len(present)
        for j, (prefix, name, colour) in enumerate(present):
            x = np.arange(m) - 0.4 + width * (j + 0.5)
            bar = pg.BarGraphItem(x=x, height=np.asarray(series[prefix], dtype=float), width=width * 0.95,
                                  brush=pg.mkBrush(colour), pen=pg.mkPen(None))
            self.addItem(bar)
            self.legend.addItem(bar, (names or {}).get(prefix, name))
            self.bars[prefix] = bar
        self.setXRange(-0.5, m - 0.5, padding=0.01)
        top = max(float(np.nanmax(series[p])) for p, _, _ in present)
        self.setYRange(0, max(0.3, min(1.0, top)) * 1.25, padding=0)


class Inspector(QWidget):
    """Shows one row of the session's table, with every registered score that has a value.
    ``neighbourActivated(row)``: a neighbour was clicked."""

    neighbourActivated = Signal(int)

    def __init__(self, bridge, thumbnails=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = bridge.session
        self.thumbnails = thumbnails  # core.images.ThumbnailCache (lazy when None)
        self.row: int | None = None
        self._neighbors = None       # dict from Run.neighbors(), cached per run/results
        self._neighbors_loaded = False
        self._train_rows: np.ndarray | None = None
        #: row -> core.labels.annotations.SampleVotes | None (``set_vote_source``)
        self._vote_source: Callable[[int], object] | None = None
        self.blind = False
        self.annotator = ""
        self._revealed: Callable[[int], bool] = lambda row: True

        self.image = QLabel()
        self.image.setFixedSize(IMAGE_SIZE, IMAGE_SIZE)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFrameShape(QFrame.Shape.StyledPanel)
        self.image.setStyleSheet("background: #222; color: #bbb;")

        self.title = QLabel("No sample selected")
        bold = QFont(self.title.font())
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() + 1)
        self.title.setFont(bold)
        self.title.setWordWrap(True)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setVerticalSpacing(2)
        for key, caption in (("label", "Given label"), ("state", "State"), ("votes", "Votes"), ("lambda", "λ"),
                             ("va", "Valence, arousal"), ("pred", "Predicted"), ("split", "Split")):
            value = QLabel("–")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self.fields[key] = value
            form.addRow(caption, value)
        self.score_fields: dict[str, tuple[QLabel, QLabel]] = {}
        for score in scores.registered():
            if score.name == "lambda":
                continue  # its own row above, with the change since the last run
            caption, value = QLabel(score.short_label), QLabel("–")
            caption.setToolTip(score.tooltip)
            value.setToolTip(score.tooltip)
            form.addRow(caption, value)
            self.score_fields[score.name] = (caption, value)
        self.fields["lambda"].setToolTip(scores.get("lambda").tooltip)
        info = QVBoxLayout()
        info.addWidget(self.title)
        info.addLayout(form)
        info.addStretch(1)
        top = self._top = QHBoxLayout()
        top.addWidget(self.image, 0, Qt.AlignmentFlag.AlignTop)
        top.addLayout(info, 1)

        self.chart = DistributionChart()
        # The chart asks for no more than its minimum height (its own hint is ignored inside
        # this box, whose hint is then the chart's minimum) and grows into what is left: the
        # dock's scroll area gives the panel the height its parts ask for, so a short dock
        # squeezes the chart, never the wrapped fields above it.
        chart_box = QWidget()
        chart_layout = QVBoxLayout(chart_box)
        chart_layout.setContentsMargins(0, 0, 0, 0)
        chart_layout.addWidget(self.chart)
        chart_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        self.neighbour_box = QGroupBox("Neighbours that built d̃: share of d̃ (c / Σc), s · ζ = c")
        self.neighbour_grid = QGridLayout(self.neighbour_box)
        self.neighbour_grid.setSpacing(2)
        self.neighbour_note = QLabel("available after training")
        self.neighbour_note.setStyleSheet("color: #777;")
        self.neighbour_grid.addWidget(self.neighbour_note, 0, 0)
        self.tiles: list[NeighbourTile] = []

        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #666;")

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(chart_box, 1)
        layout.addWidget(self.neighbour_box)
        layout.addWidget(self.hint)

        bridge.tableReset.connect(self._on_results)
        bridge.resultsChanged.connect(self._on_results)
        bridge.editsChanged.connect(self._on_edits)
        bridge.predictionsChanged.connect(self._on_results)

    #: narrower than this, the fields go under the image instead of beside it (never clipped)
    STACK_BELOW = 420

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        direction = (QBoxLayout.Direction.TopToBottom if event.size().width() < self.STACK_BELOW
                     else QBoxLayout.Direction.LeftToRight)
        if self._top.direction() != direction:
            self._top.setDirection(direction)

    def set_vote_source(self, source: Callable[[int], object] | None) -> None:
        """``source(row)`` → the sample's votes (``core.labels.annotations.SampleVotes``) or None;
        the inspector shows them as bars beside d, p and the reference, and who voted what."""
        self._vote_source = source
        self.refresh()

    def set_blind(self, blind: bool, annotator: str = "", revealed: Callable[[int], bool] | None = None) -> None:
        """Blind mode for ``annotator``: a row is shown whole only once ``revealed(row)`` (they
        have voted on it); before that, only its image, id and split."""
        self.blind = bool(blind)
        self.annotator = annotator
        self._revealed = revealed or (lambda row: True)
        self.refresh()

    def is_hidden(self, row: int | None) -> bool:
        """Blind mode hides this row's labels, prediction and other votes (not voted yet); a
        predicted sample of another collection is never voted on, so it is never hidden."""
        return self.blind and row is not None and self.session.is_dataset_row(row) and not self._revealed(row)

    def _sample_votes(self, row: int):
        if self._vote_source is None or not self.session.is_dataset_row(row):
            return None
        try:
            return self._vote_source(row)
        except Exception:  # noqa: BLE001 - unreadable votes must not break the inspector
            return None

    def _show_votes(self, row: int, hidden: bool) -> np.ndarray | None:
        """Fill the Votes field (tooltip: who voted what); the vote shares for the bars."""
        field = self.fields["votes"]
        votes = None if hidden else self._sample_votes(row)
        if votes is None or votes.n_voters == 0:
            field.setText("hidden until you vote" if hidden else "none")
            field.setToolTip("blind mode: the other annotators' votes appear once you have voted" if hidden
                             else "nobody has voted on this sample yet")
            return None
        classes = votes.classes
        shares = votes.shares()
        agreement = votes.agreement
        top = int(np.argmax(votes.counts))
        parts = [f"{votes.n_voters} voter{'s' if votes.n_voters != 1 else ''}",
                 f"{classes[top]} {int(votes.counts[top])}"]
        if np.isfinite(agreement):
            parts.append(f"agreement {agreement:.2f}")
        mine = votes.by_annotator.get(self.annotator)
        if mine is not None:
            parts.append(f"you: {classes[mine]}")
        field.setText(" · ".join(parts))
        lines = [f"{name}{' (you)' if name == self.annotator else ''}: {classes[v]}"
                 + (" (unsure)" if name in votes.unsure else "") for name, v in sorted(votes.by_annotator.items())]
        if votes.crowd.sum() > 0:
            lines.append("the dataset's crowd: " + ", ".join(f"{classes[j]} {int(k)}"
                                                            for j, k in enumerate(votes.crowd) if k > 0))
        lines.append("per class: " + ", ".join(f"{classes[j]} {int(k)}" for j, k in enumerate(votes.counts) if k > 0))
        field.setToolTip("\n".join(lines))
        return shares

    def detach_hint(self) -> QLabel:
        """The key help, taken out of the panel for a place that never scrolls (the dock puts it
        under the scrolled panel: the keys stay in view however long the panel grows)."""
        self.layout().removeWidget(self.hint)
        self.hint.setContentsMargins(9, 2, 9, 4)
        return self.hint

    def set_hint(self, text: str) -> None:
        """A line of help under the inspector (the relabel keys); hidden when empty."""
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    # -- data access ---------------------------------------------------------------------
    def _cache(self):
        if self.thumbnails is None:
            self.thumbnails = ThumbnailCache()
        return self.thumbnails

    def _pixmap(self, row: int, size: int) -> QPixmap | None:
        try:
            return row_pixmap(self._cache(), self.session.table, row, size)
        except Exception:  # a bad image must not break the inspector
            return None

    def _neighbour_data(self):
        if not self._neighbors_loaded:
            self._neighbors_loaded = True
            self._neighbors = None
            run = self.session.run
            if run is not None:
                try:
                    self._neighbors = run.neighbors()
                except Exception:
                    self._neighbors = None
            table = self.session.dataset_table
            self._train_rows = np.flatnonzero(table["split"].to_numpy() == "train") if table is not None else None
        return self._neighbors

    # -- slots ---------------------------------------------------------------------------
    @Slot()
    def _on_results(self) -> None:
        self._neighbors_loaded = False
        self._neighbors = None
        if self.row is not None and self.row >= len(self.session):
            self.row = None
        self.refresh()

    @Slot(object)
    def _on_edits(self, rows) -> None:
        if self.row is not None and (len(rows) == 0 or self.row in set(np.asarray(rows).tolist())):
            self.refresh()

    @Slot(int)
    def set_row(self, row: int | None) -> None:
        if row is not None and row < 0:
            row = None
        self.row = row
        self.refresh()

    def refresh(self) -> None:
        table = self.session.table
        row = self.row
        if table is None or row is None or row >= len(table):
            self._show_empty()
            return
        classes = self.session.classes
        rec = table.iloc[row]
        own = self.session.is_dataset_row(row)
        self.title.setText(str(rec["sample_id"]) if own else f"{rec['sample_id']} (predicted)")
        self.title.setToolTip(str(rec["path"]))
        box = face_box(rec)
        pixmap = self._pixmap(row, IMAGE_SIZE) if box is None else whole_image(rec, box)
        if pixmap is None:
            self.image.setPixmap(QPixmap())
            self.image.setText("image\nunreadable")
        else:
            self.image.setPixmap(pixmap)

        hidden = self.is_hidden(row)
        vote_shares = self._show_votes(row, hidden)
        if hidden:
            self._show_blind(row)
            return
        label = int(rec["label"])
        text = classes[label]
        edited = bool(rec.get("edited", False)) if "edited" in table else False
        if edited and "label_given" in table and int(rec["label_given"]) != label:
            text += f"  (was {classes[int(rec['label_given'])]})"
        self.fields["label"].setText(f"<b>{text}</b>  [key {label + 1}]")
        states = []
        if edited:
            states.append("<span style='color:#d35400'>✎ edited</span>")
        if bool(rec.get("unsure", False)) if "unsure" in table else False:
            states.append("<span style='color:#8e44ad'>? unsure</span>")
        if rec["sample_id"] in self.session.reviewed_ids() and not edited:
            states.append("reviewed")
        self.fields["state"].setText(", ".join(states) if states else "as given")
        lam = rec["lambda"] if "lambda" in table else np.nan
        lam_text = "–" if not np.isfinite(lam) else number_text(lam)
        if "lambda_prev" in table and np.isfinite(rec["lambda_prev"]) and np.isfinite(lam):
            lam_text += f"  (Δ {lam - rec['lambda_prev']:+.3f})"
        self.fields["lambda"].setText(lam_text)
        va = [rec[c] if c in table else np.nan for c in ("valence", "arousal")]
        self.fields["va"].setText("–" if not np.all(np.isfinite(va)) else f"{va[0]:+.2f}, {va[1]:+.2f}")
        self.fields["split"].setText(str(rec["split"]))
        if not own:
            self._show_source_fields(rec)
        for name, (caption, value) in self.score_fields.items():
            v = float(self.session.score(name)[row])
            shown = bool(np.isfinite(v))
            caption.setVisible(shown)
            value.setVisible(shown)
            value.setText(number_text(v))

        series: dict[str, np.ndarray] = {}
        for prefix, cols in (("d", d_columns(classes)), ("p", p_columns(classes)),
                             ("ref", ref_columns(classes))):
            if all(c in table for c in cols):
                values = rec[cols].to_numpy(dtype=np.float64)
                if np.all(np.isfinite(values)):
                    series[prefix] = values
        if "p" in series:
            k = int(np.argmax(series["p"]))
            self.fields["pred"].setText(f"{classes[k]} ({series['p'][k]:.2f})")
        else:
            self.fields["pred"].setText("–")
        names = {}
        if vote_shares is not None:
            series["votes"] = vote_shares
            votes = self._sample_votes(row)
            names["votes"] = f"votes ({votes.n_voters})" if votes is not None else "votes"
        self.chart.set_distributions(classes, series, names)
        self._show_neighbours(row)

    def _show_source_fields(self, rec) -> None:
        """A predicted row has no given label, state or split of this dataset."""
        source = rec.get("source_label")
        self.fields["label"].setText(f"source: {source}" if isinstance(source, str) and source else "–")
        self.fields["state"].setText("predicted for another collection")
        self.fields["split"].setText("other collection")

    def _show_blind(self, row: int) -> None:
        """Blind mode before this annotator's vote: the image, the id and the split only."""
        table = self.session.table
        hidden = "hidden until you vote"
        for key in ("label", "lambda", "va", "pred"):
            self.fields[key].setText(hidden if key in ("label", "pred") else "–")
        self.fields["state"].setText("blind mode")
        self.fields["split"].setText(str(table["split"].iat[row]))
        for caption, value in self.score_fields.values():
            caption.hide()
            value.hide()
        self.chart.set_distributions(self.session.classes, {}, empty_text=BLIND_TEXT)
        self._set_tiles([])
        self.neighbour_note.setText("blind mode: the neighbours' labels appear once you have voted")

    def _show_empty(self) -> None:
        self.title.setText("No sample selected")
        self.fields["votes"].setToolTip("")
        self.image.setPixmap(QPixmap())
        self.image.setText("click a point\nor a thumbnail")
        for value in self.fields.values():
            value.setText("–")
        for caption, value in self.score_fields.values():
            caption.hide()
            value.hide()
        self.chart.set_distributions(self.session.classes, {})
        self._set_tiles([])
        self.neighbour_note.setText("")

    def _show_neighbours(self, row: int) -> None:
        data = self._neighbour_data()
        table = self.session.table
        if data is None or self._train_rows is None:
            self._set_tiles([])
            self.neighbour_note.setText("available after training" if self.session.run is None
                                        else "no neighbour file in this run")
            return
        positions = np.flatnonzero(self._train_rows == row)
        if len(positions) == 0:
            self._set_tiles([])
            self.neighbour_note.setText(
                f"{table['split'].iat[row]} samples have no constructed d (only training samples do)"
                if self.session.is_dataset_row(row) else "a predicted sample: no neighbours built its label")
            return
        pos = int(positions[0])
        indices = np.asarray(data["indices"])[pos]
        s = np.asarray(data.get("similarity", data.get("s")))[pos] if data.get("similarity", data.get("s")) is not None else None
        zeta = np.asarray(data["zeta"])[pos] if "zeta" in data else None
        c = np.asarray(data.get("contribution", data.get("c")))[pos] if data.get("contribution", data.get("c")) is not None else None
        classes = self.session.classes
        shares = neighbour_shares(c) if c is not None else None
        items = []
        for j, idx in enumerate(indices):
            if idx < 0 or idx >= len(self._train_rows):
                continue
            nrow = int(self._train_rows[idx])
            # the share of d̃ first (what the bars show); the raw s, ζ, c can be tiny at high λ
            parts = [] if shares is None else [f"{shares[j]:.0%} of d̃"]
            if s is not None:
                parts.append(f"s {s[j]:.3g}")
            if zeta is not None:
                parts.append(f"ζ {zeta[j]:.3g}")
            if c is not None:
                parts.append(f"c {c[j]:.3g}")
            items.append((nrow, classes[int(table['label'].iat[nrow])], parts))
        self.neighbour_note.setText("" if items else "no neighbours")
        self._set_tiles(items)

    def _set_tiles(self, items) -> None:
        while len(self.tiles) < len(items):
            tile = NeighbourTile(self.neighbour_box)
            tile.clicked.connect(self._on_tile_clicked)
            self.tiles.append(tile)
        columns = 4
        for i, tile in enumerate(self.tiles):
            if i < len(items):
                nrow, name, parts = items[i]
                tile.row = nrow
                pixmap = self._pixmap(nrow, NEIGHBOUR_SIZE)
                tile.setIcon(pixmap if pixmap is not None else QPixmap())
                tile.setText(f"{name}\n{parts[0] if parts else ''}\n{'  '.join(parts[1:])}")
                tile.setToolTip(f"{self.session.table['sample_id'].iat[nrow]}\n" + "\n".join(parts))
                self.neighbour_grid.addWidget(tile, 1 + i // columns, i % columns)
                tile.show()
            else:
                tile.hide()
                tile.row = None
        self.neighbour_note.setVisible(True)

    @Slot()
    def _on_tile_clicked(self) -> None:
        tile = self.sender()
        if isinstance(tile, NeighbourTile) and tile.row is not None:
            self.neighbourActivated.emit(tile.row)
