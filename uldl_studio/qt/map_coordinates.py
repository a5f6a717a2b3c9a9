"""Where the map puts each sample: the coordinates of the current map (valence-arousal, UMAP
or the feature map), which rows are shown (finite coordinates, inside the filter), and the
nearest shown row to a point."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from uldl_studio.qt.map_controls import COORDINATE_MODES

#: the table columns of each map (UMAP's may also be given with ``set_coordinates``)
COORDINATE_COLUMNS = {"va": ("valence", "arousal"), "features": ("x2d", "y2d"),
                      "umap": ("umap_x", "umap_y")}
AXIS_LABELS = {"va": ("valence", "arousal"), "umap": ("UMAP 1", "UMAP 2"),
               "features": ("feature map x", "feature map y")}


class MapCoordinates:
    """Mixin of ``MapView``: coordinates and shown rows, derived from the session."""

    def _init_coordinates(self) -> None:
        self._classes: list[str] = []
        self._coord_mode = "va"
        self._provided_xy: dict[str, np.ndarray] = {}
        self._xy = np.empty((0, 2))
        self._shown_rows = np.empty(0, dtype=np.int64)
        self._shown_xy = np.empty((0, 2))
        self._missing_coordinates = 0
        self._tree = None
        self._available: dict[str, bool] = {}  # per mode, until the table or its values change
        self._va_placement: str | None = None   # where the V-A points come from (core.engine.va.placement_of)

    @property
    def coordinate_mode(self) -> str:
        return self._coord_mode

    @property
    def va_placement(self) -> str | None:
        """Where the valence-arousal map's points come from, in words (None: unknown)."""
        return self._va_placement

    def axis_labels(self) -> tuple[str, str]:
        """The current map's axis labels; the valence axis names the placement."""
        labels = AXIS_LABELS[self._coord_mode]
        if self._coord_mode == "va" and self._va_placement:
            labels = (f"{labels[0]} ({self._va_placement})", labels[1])
        return labels

    @property
    def shown_rows(self) -> np.ndarray:
        """Table rows currently drawn (finite coordinates and inside the filter)."""
        return self._shown_rows

    def coordinates(self) -> np.ndarray:
        """(n, 2) coordinates of every table row in the current map (NaN when unknown)."""
        return self._xy

    def available_coordinate_modes(self) -> list[str]:
        """The maps with coordinates for the current table."""
        return [m for m in COORDINATE_MODES if self._has_coordinates(m)]

    def set_coordinates(self, mode: str, xy: np.ndarray | None = None) -> None:
        """Switch the map: "va" (valence/arousal), "umap" or "features" (x2d/y2d columns).

        ``xy`` (n, 2) gives coordinates for ``mode`` (e.g. a UMAP computed by a worker) of the
        dataset's n rows (predicted rows have none there), kept until the next table.  Without
        ``xy`` and without coordinates for ``mode``,
        ``coordinatesRequested(mode)`` is emitted and the map stays as it is.
        """
        if mode not in COORDINATE_MODES:
            raise ValueError(f"unknown coordinate mode {mode!r}; expected one of {COORDINATE_MODES}")
        if xy is not None:
            xy = np.asarray(xy, dtype=np.float64)
            n = self.session.dataset_size
            if xy.shape != (n, 2) and xy.shape != (len(self.session), 2):
                raise ValueError(f"coordinates for {mode!r} must have shape ({n}, 2), got {xy.shape}")
            self._provided_xy[mode] = xy
            self._available.pop("xy:" + mode, None)
        if self.table is not None and not self._has_coordinates(mode):
            self.controls.sync()
            self.coordinatesRequested.emit(mode)
            return
        changed = mode != self._coord_mode or xy is not None
        self._coord_mode = mode
        self.controls.sync()
        if changed:
            self._rebuild(reset_view=True)
            self.coordinatesChanged.emit(mode)

    def row_at(self, x: float, y: float, radius_px: float | None = None) -> int:
        """Nearest shown row to the data point (x, y) within ``radius_px`` screen pixels, or -1."""
        if self._shown_rows.size == 0:
            return -1
        radius_px = max(6.0, self._point_size) if radius_px is None else radius_px
        pw, ph = self.view_box.viewPixelSize()
        pw, ph = (pw or 1e-9), (ph or 1e-9)
        if self._tree is None:
            self._tree = cKDTree(self._shown_xy, balanced_tree=False, compact_nodes=False)
        k = min(16, self._shown_rows.size)
        dist, idx = self._tree.query([x, y], k=k, distance_upper_bound=radius_px * max(pw, ph))
        idx = np.atleast_1d(idx)
        idx = idx[idx < self._shown_rows.size]
        if idx.size == 0:
            return -1
        d = np.hypot((self._shown_xy[idx, 0] - x) / pw, (self._shown_xy[idx, 1] - y) / ph)
        best = int(np.argmin(d))
        return int(self._shown_rows[idx[best]]) if d[best] <= radius_px else -1

    # -- what the table offers -------------------------------------------------------------
    def _has_coordinates(self, mode: str) -> bool:
        key = "xy:" + mode
        if key not in self._available:
            table = self.table
            cols = COORDINATE_COLUMNS[mode]
            self._available[key] = table is not None and (mode in self._provided_xy or (
                all(c in table for c in cols)
                and bool(np.isfinite(table[list(cols)].to_numpy(np.float64)).any())))
        return self._available[key]

    def _coordinates_for(self, mode: str) -> np.ndarray:
        if mode in self._provided_xy:
            return self._padded(self._provided_xy[mode])
        table = self.table
        cols = COORDINATE_COLUMNS[mode]
        if all(c in table for c in cols):
            return table[list(cols)].to_numpy(np.float64)
        return np.full((len(table), 2), np.nan)

    def _padded(self, xy: np.ndarray) -> np.ndarray:
        """Given coordinates of the dataset's rows, NaN for the predicted rows after them."""
        n, total = self.session.dataset_size, len(self.session)
        if len(xy) == total:
            return xy
        return np.vstack([xy[:n], np.full((total - n, 2), np.nan)])

    def _compute_shown(self) -> None:
        xy = self._xy
        finite = np.isfinite(xy).all(axis=1)
        own = self.session.dataset_mask()
        keep = finite & self.session.visible_mask()
        if not self.predicted.shown:
            keep &= own
        self._missing_coordinates = int(xy.shape[0] - np.count_nonzero(finite))
        if keep.all():  # no gather: the shown points are the table's
            self._shown_rows = np.arange(xy.shape[0], dtype=np.int64)
            self._shown_xy = xy
        else:
            self._shown_rows = np.flatnonzero(keep).astype(np.int64)
            self._shown_xy = np.ascontiguousarray(xy[self._shown_rows])
        own_shown = own[self._shown_rows]
        self._own_shown = None if own_shown.all() else own_shown
        self._tree = None
