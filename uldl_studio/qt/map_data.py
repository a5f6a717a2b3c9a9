"""What the map draws, derived from the session: coordinates, shown rows, colour codes and
drawing order, and the redraw of every layer when the session changes.

``MapData`` is the half of ``MapView`` that follows the session; it keeps no sample state of
its own.  Points map back to table rows through index arrays (``shown_rows``), never
per-point objects.  A selection is shown by fading the other points (a faded twin of every
palette brush) and drawing the selected ones on top: only the codes change, whatever the
selection's size.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PySide6.QtCore import Slot

from uldl_studio.core.review.frontend import class_accuracy, placement_of, scores
from uldl_studio.qt import map_density
from uldl_studio.qt.map_colors import draw_order
from uldl_studio.qt.map_coordinates import MapCoordinates
from uldl_studio.qt.map_marks import shown_subset

class MapData(MapCoordinates):
    """Mixin of ``MapView``: the session → drawing half (see the module docstring)."""

    @property
    def table(self) -> pd.DataFrame | None:
        return self.session.table

    _table = table

    def _mode_available(self, mode: str) -> bool:
        if mode == "given":
            return True
        if mode not in self._available:
            table = self.table
            if table is None:
                ok = False
            elif mode == "predicted":
                ok = bool(self._classes) and all(f"p_{c}" in table for c in self._classes)
            else:
                values = self.session.score(mode) if mode in scores.names() else np.empty(0)
                ok = bool(np.isfinite(values[:4096]).any() or np.isfinite(values).any())
            self._available[mode] = ok
        return self._available[mode]

    # -- session events ----------------------------------------------------------------------
    @Slot()
    def _on_table_reset(self) -> None:
        """A new table (other rows): forget coordinates given earlier, reset the view."""
        table = self.table
        self._available.clear()
        self._classes = list(table.attrs.get("classes", [])) if table is not None else []
        self._va_placement = placement_of(self.session.run, table)
        self._provided_xy.clear()
        if table is not None and self._coord_mode != "va" and not self._has_coordinates(self._coord_mode):
            self._coord_mode = "va"
        if table is not None and self._coord_mode == "va" and not self._has_coordinates("va"):
            if self._has_coordinates("features"):
                self._coord_mode = "features"
        if table is not None and not self._mode_available(self._color_mode):
            self._color_mode = self.default_color_mode()
        self.controls.fill_color_combo(self._color_mode)
        self.controls.sync()
        self._rebuild(reset_view=True, new_table=True)

    @Slot()
    def _on_values_changed(self) -> None:
        """Same rows, new values (λ, d, p, scores, x2d/y2d): recolour, keep the view."""
        table = self.table
        self._available.clear()
        if table is None:
            return
        self._classes = list(table.attrs.get("classes", self._classes))
        self._va_placement = placement_of(self.session.run, table)
        if not self._mode_available(self._color_mode):
            self._color_mode = self.default_color_mode()
        self.controls.fill_color_combo(self._color_mode)
        self.controls.sync()
        self._rebuild(reset_view=False)

    @Slot(object)
    def _on_edits(self, _rows) -> None:
        """Labels or marks changed: label colours, label-based scores and edit marks follow."""
        self._available.clear()
        self._rebuild(reset_view=False)

    @Slot()
    def _on_filter_changed(self) -> None:
        if self.table is not None:
            self._rebuild(reset_view=False)
        else:
            self._update_banner()

    # -- drawing -----------------------------------------------------------------------------
    def _rebuild(self, reset_view: bool, new_table: bool = False) -> None:
        """Recompute coordinates, shown rows and colours; redraw every layer."""
        if self.table is None:
            self._xy = np.empty((0, 2))
            self._shown_rows = np.empty(0, dtype=np.int64)
            self._shown_xy = np.empty((0, 2))
            self._tree = None
            self._order = self._shown_codes = np.empty(0, dtype=np.intp)
            self._own_shown = None
            self.predicted.sync_toggle(False, self._coord_mode)
            self.predicted.draw(np.empty((0, 2)), [])
            self.points.set_points(np.empty(0), np.empty(0))
            self.density.set_points(self._shown_xy)
            self._update_selection_marks(redraw_points=False)
            self._update_current_mark()
            self._update_edited_marks()
            self._update_banner()
            self._update_info()
            return
        self._xy = self._coordinates_for(self._coord_mode)
        self.predicted.sync_toggle(self.session.has_predictions, self._coord_mode)
        self._compute_shown()
        if new_table and self._density_choice is None:
            self._apply_density(self._shown_rows.size > map_density.AUTO_POINTS)
        self.density.set_points(self._shown_xy)
        labels = self.axis_labels()
        if labels != self._axis_labels:  # a new label lays the plot out again
            self.plot_item.setLabel("bottom", labels[0])
            self.plot_item.setLabel("left", labels[1])
            self._axis_labels = labels
        self._recolor()
        self._update_edited_marks()
        self._update_selection_marks(redraw_points=False)
        self._update_current_mark()
        self._update_banner()
        if reset_view:
            self.reset_view()

    def _recolor(self, same_points: bool = False) -> None:
        """New colour codes and drawing order; ``same_points``: the shown points did not
        change (only the colouring), so the point item keeps its coordinates."""
        if self.table is None:
            return
        coloring = self._colorings.get(self.session, self._color_mode, self._scale, self._classes)
        brushes, full = self._palettes.get(coloring.brushes)
        self._codes = codes = coloring.codes
        all_shown = self._shown_rows.size == codes.size
        self._shown_codes = codes if all_shown else codes[self._shown_rows]
        self._value_range = coloring.value_range
        self._highlight = self._strong_shown = None
        if coloring.strong is not None:
            strong = coloring.strong if all_shown else coloring.strong[self._shown_rows]
            values = self.session.score(self._color_mode)
            values = values if all_shown else values[self._shown_rows]
            mean = float(values[strong].mean()) if strong.any() else float("nan")
            self._highlight = (int(np.count_nonzero(strong)), int(strong.size), mean)
            self._strong_shown = strong
        order = draw_order(self._color_mode, self._shown_codes, len(brushes))
        if order is None:  # categorical: a fixed shuffle so that no class hides another by row order
            if self._shuffle is None or self._shuffle.size != self._shown_rows.size:
                self._shuffle = np.random.default_rng(0).permutation(self._shown_rows.size)
            order = self._shuffle
        self._order = order
        # codes >= len(brushes): the faded variant, for unselected points during a selection
        self.points.set_palette(full, update=False)
        self._full_palette = full
        self._n_brushes = len(brushes)
        self._draw_points(new_points=not same_points)
        if coloring.kind == "categorical":
            self.key.show_classes(self._classes, brushes, self._shown_codes)
        else:
            self.key.show_score(self._color_mode, self._value_range, self._scale == "quantile",
                                self._highlight, brushes)
        self._update_info()

    def _selected_shown(self) -> np.ndarray | None:
        """Bool mask over the shown points of the selected ones (None: nothing selected)."""
        if not self.session.selection.size or self.table is None or self._shown_rows.size == 0:
            return None
        mask = self.session.selection_mask()
        if mask.size != self._shown_rows.size:
            mask = mask[self._shown_rows]
        return mask if mask.any() else None

    def _draw_points(self, new_points: bool = False) -> None:
        """Give the point item its colour codes and drawing order (and, with ``new_points``,
        the shown points).

        While some shown points are selected, the others use the faded palette entries and
        the selected ones are drawn on top.  With the density on, only the selected and
        highlighted points are drawn, over the density image.
        """
        codes, order = self._shown_codes, self._order
        selected = self._selected_shown()
        self._dimmed = selected is not None
        if selected is not None:
            codes = np.where(selected, codes, codes + self._n_brushes)
        if self.density.enabled:
            keep = selected if self._strong_shown is None else (
                self._strong_shown if selected is None else selected | self._strong_shown)
            order = order[:0] if keep is None else order[keep[order]]
        own = self._own_shown
        if own is not None:  # predicted rows: triangles instead of dots
            order = order[own[order]]
            self.predicted.draw(self._shown_xy[~own], [self._full_palette[c] for c in codes[~own]])
        else:
            self.predicted.draw(np.empty((0, 2)), [])
        if new_points:
            xy = self._shown_xy
            self.points.set_points(xy[:, 0], xy[:, 1], codes, order=order, on_top=selected)
        else:
            self.points.set_codes(codes, on_top=selected, order=order)

    @Slot()
    def _update_selection_marks(self, redraw_points: bool = True) -> None:
        """Selected points: full colour on top of faded others (``_draw_points``), plus a
        ring each while there are at most ``RING_LIMIT`` of them (a few stand out more)."""
        rows = self.session.selection
        if redraw_points and self.table is not None and (self._dimmed or len(rows)):
            self._draw_points()
        if rows.size > self.RING_LIMIT:
            xy = np.empty((0, 2))
        else:
            xy = shown_subset(self._shown_rows, self._shown_xy, rows)
        self.marks.show_selection(xy)
        self._update_info()

    def _update_edited_marks(self) -> None:
        rows = np.flatnonzero(self.session.flag("edited")).astype(np.int64)
        self.marks.show_edited(shown_subset(self._shown_rows, self._shown_xy, rows))

    @Slot(int)
    def _update_current_mark(self, *_args) -> None:
        row = self.session.current
        rows = np.array([row], dtype=np.int64) if row >= 0 else np.empty(0, dtype=np.int64)
        self.marks.show_current(shown_subset(self._shown_rows, self._shown_xy, rows))

    def _update_banner(self) -> None:
        if self.table is None or not self.session.filter.active:
            self.banner.hide()
            return
        shown = f"{self._shown_rows.size:,} of {len(self.table):,} shown"
        self.banner_label.setText(f"Filtered: {self.session.filter_text()} · {shown}")
        self.banner.show()

    def _update_info(self) -> None:
        if self.table is None:
            self.info_label.setText("no data")
            return
        n = len(self.table)
        text = f"{self._shown_rows.size:,} of {n:,} points" if self._shown_rows.size != n else f"{n:,} points"
        if self._missing_coordinates:
            text += f" ({self._missing_coordinates:,} without coordinates)"
        k = int(self.session.selection.size)
        if k:
            text += f" · {k:,} selected"
        self.info_label.setText(text)

    def _valid_accuracy(self) -> float | None:
        """The model's accuracy on the valid split's given labels (None without one)."""
        table = self.session.dataset_table
        classes = self.session.classes
        cols = [f"p_{c}" for c in classes]
        if table is None or not classes or any(c not in table for c in cols) or not (table["split"] == "valid").any():
            return None
        return float(class_accuracy(table, "valid").attrs["accuracy"])
