"""Occlusion culling for the map's point sprites: which sprites of a drawing sequence are
painted over completely by later opaque ones, so that leaving them out changes no pixel."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _window(src: np.ndarray, length: int, axis: int, op, forward: bool) -> np.ndarray:
    """``op`` over a window of ``length`` along ``axis``: ``out[c] = op(src[c-length+1..c])``
    (``forward``: ``src[c..c+length-1]``), in log steps with two buffers (no overlap copies).
    Entries whose window leaves the array use the part inside it."""
    a = src
    b = np.empty_like(src)
    k = 1
    while k < length:
        sh = min(k, length - k)
        lo = (slice(None),) * axis + (slice(None, -sh),)
        hi = (slice(None),) * axis + (slice(sh, None),)
        if forward:
            op(a[lo], a[hi], out=b[lo])
            b[hi[:axis] + (slice(-sh, None),)] = a[hi[:axis] + (slice(-sh, None),)]
        else:
            op(a[hi], a[lo], out=b[hi])
            b[lo[:axis] + (slice(None, sh),)] = a[lo[:axis] + (slice(None, sh),)]
        if a is src:
            a, b = b, np.empty_like(src)
        else:
            a, b = b, a
        k += sh
    return a


def occlusion_cull(lin: np.ndarray, occludes: np.ndarray | None,
                   core_rows: Sequence[tuple[int, int, int]], w: int, h: int,
                   gw: int, gh: int) -> np.ndarray:
    """Which sprites of a drawing sequence stay visible: a bool per entry.

    Entry ``k`` has its ``w``×``h`` sprite's top-left pixel at flat index ``lin[k]`` of a
    ``gw``×``gh`` grid (sprites must lie inside it) and is drawn after every entry before
    it.  Its sprite is *hidden* when every pixel of its bounding box is covered by the
    fully opaque core (``core_rows``: ``(dy, dx0, length)`` runs of alpha-255 pixels) of an
    entry drawn later whose ``occludes`` is set (None: all are): source-over with alpha
    255 replaces a pixel, so dropping hidden sprites changes no pixel of the picture.  Pure
    numpy: an image of "the last entry whose core covers this pixel" built with max
    filters, then a min filter over the bounding box.
    """
    rank = np.arange(lin.size, dtype=np.int32)
    last = np.full(gh * gw, -1, dtype=np.int32)
    if occludes is None:
        np.maximum.at(last, lin, rank)  # the last occluder at each top-left pixel
    else:
        occ = np.flatnonzero(occludes)
        np.maximum.at(last, lin[occ], rank[occ])
    last = last.reshape(gh, gw)
    covered = np.full_like(last, -1)  # rank of the last entry whose core covers the pixel
    runs: dict[int, np.ndarray] = {}
    for dy, dx0, length in core_rows:
        if length not in runs:
            runs[length] = _window(last, length, 1, np.maximum, forward=False)
        src = runs[length]
        np.maximum(covered[dy:, dx0:], src[:gh - dy, :gw - dx0], out=covered[dy:, dx0:])
    del runs, last
    # min over each sprite's bounding box, stored at its top-left pixel
    covered = _window(_window(covered, w, 1, np.minimum, forward=True), h, 0, np.minimum,
                      forward=True)
    return np.take(covered.ravel(), lin) <= rank
