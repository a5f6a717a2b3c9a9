"""How spread out a run's valence-arousal placement is: circumplex projection vs a V-A head.

    python bench/va_spread.py RUN [RUN ...] [--edge 0.02]

For each run, the points of its map (samples.csv ``valence``/``arousal``, every split) and,
where the dataset has its own V-A (``valence_given``, or ``valence`` of a run placed with the
columns), those as a reference row:

- ``placement``: where the points come from (``core.engine.va.placement_of``);
- ``valence 5-95 %``, ``arousal 5-95 %``: the range between the 5th and 95th percentiles;
- ``hull edge``: the share of points within ``--edge`` of the edge of the points' convex hull
  (a circumplex projection piles points on the walls of the polygon of class centroids);
- ``distinct``: the share of distinct points (rounded to 1e-3);
- ``RMSE to the dataset's V-A``: per axis, when the dataset has its own valence and arousal;
- ``valid acc`` and, when the run has a V-A head, its valid RMSE per axis (history.csv).

Prints a Markdown table (docs/benchmarks.md quotes it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.engine.va import placement_of  # noqa: E402


def spread(points: np.ndarray, edge: float) -> dict:
    """Quantile ranges, the share of points near the convex hull's edge, the share of distinct points."""
    from scipy.spatial import ConvexHull

    points = points[np.isfinite(points).all(1)]
    q = np.quantile(points, [0.05, 0.95], axis=0)
    hull = ConvexHull(points)
    # distance of each point to the hull's boundary: min over facets of -(n·x + b) (inside: ≥ 0)
    distance = np.min(-(points @ hull.equations[:, :2].T + hull.equations[:, 2]), axis=1)
    return {"n": len(points), "v_lo": q[0, 0], "v_hi": q[1, 0], "a_lo": q[0, 1], "a_hi": q[1, 1],
            "edge": float((distance <= edge).mean()),
            "distinct": len(np.unique(np.round(points, 3), axis=0)) / len(points)}


def rmse_to_given(samples) -> str:
    """RMSE of the placement to the dataset's own V-A (valence_given), per axis; "" without."""
    if "valence_given" not in samples:
        return ""
    given = samples[["valence_given", "arousal_given"]].to_numpy(np.float64)
    placed = samples[["valence", "arousal"]].to_numpy(np.float64)
    keep = np.isfinite(given).all(1) & np.isfinite(placed).all(1)
    if not keep.any():
        return ""
    rmse = np.sqrt(np.mean((placed[keep] - given[keep]) ** 2, axis=0))
    return f"{rmse[0]:.3f} / {rmse[1]:.3f}"


def rows_for(path: str, edge: float) -> list[tuple[str, str, dict, str, str]]:
    run = Run.open(path)
    samples = run.samples()
    history = run.history()
    last = history.iloc[-1] if len(history) else {}
    note = f"valid acc {last.get('valid_accuracy', float('nan')):.3f}"
    if "valid_va_rmse_valence" in history:
        note += f"; head valid RMSE {last['valid_va_rmse_valence']:.3f}/{last['valid_va_rmse_arousal']:.3f}"
    placement = placement_of(run) or "unknown"
    out = [(Path(path).name, placement, spread(samples[["valence", "arousal"]].to_numpy(np.float64), edge),
            rmse_to_given(samples), note)]
    if "valence_given" in samples:
        given = samples[["valence_given", "arousal_given"]].to_numpy(np.float64)
        if np.isfinite(given).all(1).sum() >= 3:
            out.append((Path(path).name, "dataset columns (reference)", spread(given, edge), "0 / 0", ""))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--edge", type=float, default=0.02, help="distance to the hull's edge (default 0.02)")
    args = parser.parse_args(argv)
    print(f"| run | placement | n | valence 5-95 % | arousal 5-95 % | within {args.edge:g} of the hull edge | "
          f"distinct points | RMSE to the dataset's V-A (valence / arousal) | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    seen = set()
    for path in args.runs:
        for name, placement, s, rmse, note in rows_for(path, args.edge):
            if placement.endswith("(reference)"):
                key = (placement, round(s["v_lo"], 6), round(s["a_hi"], 6))
                if key in seen:
                    continue
                seen.add(key)
            print(f"| {name} | {placement} | {s['n']} | {s['v_lo']:+.2f} … {s['v_hi']:+.2f} "
                  f"({s['v_hi'] - s['v_lo']:.2f}) | {s['a_lo']:+.2f} … {s['a_hi']:+.2f} ({s['a_hi'] - s['a_lo']:.2f}) | "
                  f"{100 * s['edge']:.1f} % | {100 * s['distinct']:.1f} % | {rmse or 'n/a'} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
