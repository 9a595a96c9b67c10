"""The search: :func:`tune` over grids of one solver or a race of solvers (see
:mod:`htbo.search.tune` for the rules, :mod:`htbo.search.grid` for grids and their
extension, :mod:`htbo.search.engine` for how members run)."""
from __future__ import annotations

from .grid import (OUTER_AXES, SECOND_AXIS, default_grid, edge_of, expand_grid, fmt,
                   next_value, point_label, scalar, with_scalar)
from .tune import (DEFAULT_MAX_MEMBERS, DEFAULT_MEMORY_LIMIT, HALVING, HALVING_MIN_POINTS,
                   TuneResult, tune)

__all__ = ["tune", "TuneResult", "expand_grid", "point_label", "edge_notes", "default_grid",
           "SECOND_AXIS", "OUTER_AXES", "HALVING_MIN_POINTS", "HALVING",
           "DEFAULT_MAX_MEMBERS", "DEFAULT_MEMORY_LIMIT"]


def edge_notes(points: list[dict], best: dict) -> list[str]:
    """For each numeric key with ≥ 2 distinct values: a note when ``best`` uses the
    smallest or largest value tried, with the next value at the same ratio."""
    notes = []
    keys = [k for k in points[0] if all(k in p for p in points)] if points else []
    for k in keys:
        e = edge_of(points, best, k)
        if e is None:
            continue
        side, b, n = e
        x, _ = next_value(side, b, n)
        word = "smallest" if side == "low" else "largest"
        vals = sorted({scalar(p[k]): p[k] for p in points}.items())
        if x is None:
            notes.append(f"{k}: best at the {word} value tried")
            continue
        notes.append(f"{k}: the best point uses the {word} value tried ({fmt(best[k])} of "
                     f"{', '.join(fmt(v) for _, v in vals)}); the optimum may lie beyond: "
                     f"extend the grid, e.g. {k}={fmt(with_scalar(best[k], x))}")
    return notes
