"""Grids: expansion, labels, each solver's default grid, and the extension of an edge.

* A grid is ``{key: [values]}`` (the Cartesian product) or a list of points (dicts).
* A numeric value is a number or a built-in schedule; its *scalar* is the number, or the
  schedule's first leaf (η₀ of ``η₀/(1+t/T₀)^p``). Schedules of one family with one η₀ share
  that scalar, so ``[0.1, isqrt:0.1:200]`` is one value of the η₀ axis tried two ways.
* **Extension** (:func:`extend_axis`): when the best point's scalar on a numeric axis is the
  axis's smallest or largest, the points at that edge on the best point's line (its values
  on the other numeric axes; every schedule family and structural value) are copied with
  the next value on that side, the grid's own ratio again (``b·b/n``, ``n`` the neighbour
  of the edge value ``b``).
  On a side where the axis is bounded (β < 1, β ≤ 1, λ ≥ 0 ...) the ratio applies to the
  distance from the bound instead, ``B ± (b − B)²/(n − B)``, which never reaches it; a
  value that rounds onto the bound (values keep 3 significant digits), or that the solver
  refuses, stops the axis there.
* **Default grids** (:func:`default_grid`): the solver's outer step (``eta``, ``eta_x``) at
  ``c/3, c, 3c`` around its centre ``c`` (the problem's recommended value, else the
  solver's), each as a constant and as ``isqrt:v:T₀`` with ``T₀`` a tenth of the steps,
  times one second axis per solver (:data:`SECOND_AXIS`) at ``c/3, c, 3c`` (an axis bounded
  above by ``B``: ``B − 3(B − c), c, B − (B − c)/3``): 18 points.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable

import jax
import numpy as np

from ..schedules import LinearGrowth, initial_value, inverse_sqrt, is_builtin

__all__ = ["expand_grid", "point_label", "scalar", "with_scalar", "axis_values", "edge_of",
           "next_value", "extend_axis", "default_grid", "SECOND_AXIS", "OUTER_AXES",
           "declared", "fmt"]

#: the one axis searched beside the outer step in each solver's default grid
SECOND_AXIS = {
    "n2sba": "lam", "f2ba": "lam", "f2sa": "lam", "clipped-f2sa": "clip",
    "soba": "rho", "clipped-soba": "clip", "stocbio": "neumann_lr",
    "n2sgda": "tau", "sgdmax": "tau", "sgda": "tau", "clipped-sgda": "clip",
    "nsgda-m": "momentum",
    "dnsvrb": "lam", "dsvrb": "lam", "dsvrb-clip": "clip", "dsgd-bilevel": "lam",
}
#: the outer step of a default grid: the first of these the solver has
OUTER_AXES = ("eta", "eta_x")


def expand_grid(grid) -> list[dict]:
    """``{key: [values]}`` → the Cartesian product as a list of dicts (key order kept);
    a list of dicts is returned as is."""
    if isinstance(grid, dict):
        for k, v in grid.items():
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                raise ValueError(f"grid[{k!r}] must be a list of values, got {v!r}")
        keys = list(grid)
        vals = [list(grid[k]) for k in keys]
        if any(not v for v in vals):
            raise ValueError(f"grid has a key with no values: {grid}")
        return [dict(zip(keys, combo)) for combo in itertools.product(*vals)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable):
        raise ValueError(f"a grid must be {{key: [values]}} or a list of points, got {grid!r}")
    points = [dict(p) for p in grid]
    if not points:
        raise ValueError("the grid is empty")
    return points


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if not isinstance(v, str) else v


def point_label(name: str, params: dict) -> str:
    """``name[k=v,...]`` (``name`` alone for no parameters)."""
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={fmt(v)}' for k, v in params.items())}]"


def scalar(v) -> float | None:
    """A comparable magnitude: numbers as they are, built-in schedules by their first leaf
    (η₀); ``None`` for anything else (booleans, strings, other callables)."""
    if isinstance(v, (bool, np.bool_)) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if is_builtin(v):
        return float(jax.tree_util.tree_leaves(v)[0])
    return None


def with_scalar(v, x: float):
    """``v`` with its scalar replaced by ``x``: a schedule keeps its family and its other
    numbers (η₀/(1+t/T₀)^p: T₀ and p), except a linear λ_t = min(a + r t, b), which scales
    whole (r and b by x/a); an integer stays an integer when ``x`` is integral."""
    if is_builtin(v):
        leaves, tdef = jax.tree_util.tree_flatten(v)
        rest = list(leaves[1:])
        if isinstance(v, LinearGrowth) and float(leaves[0]) != 0:
            c = float(x) / float(leaves[0])
            rest = [float(f"{float(a) * c:.6g}") for a in rest]
        return jax.tree_util.tree_unflatten(tdef, [float(x)] + rest)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and float(x).is_integer():
        return int(x)
    return float(x)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def declared(solver) -> dict:
    """The solver's declarations (a network solver's: its one-agent solver's); ``{}`` for
    solvers not built with :func:`htbo.solvers.base.solver`."""
    inner = getattr(solver, "dec", solver)
    fn = getattr(inner, "declarations", None)
    return fn() if callable(fn) else {}


def axis_values(points: list[dict], key: str) -> list[float] | None:
    """The sorted distinct scalars of ``key`` over ``points`` (``None`` when a point lacks
    the key or has a non-numeric value there)."""
    vals = set()
    for p in points:
        if key not in p:
            return None
        x = scalar(p[key])
        if x is None:
            return None
        vals.add(x)
    return sorted(vals)


def edge_of(points: list[dict], best: dict, key: str) -> tuple[str, float, float] | None:
    """``(side, edge value, neighbour)`` when ``best``'s scalar on ``key`` is the smallest
    (``'low'``) or largest (``'high'``) of at least two values; else ``None``."""
    vals = axis_values(points, key)
    if not vals or len(vals) < 2 or key not in best:
        return None
    b = scalar(best[key])
    if b == vals[0]:
        return "low", b, vals[1]
    if b == vals[-1]:
        return "high", b, vals[-2]
    return None


def _in_bounds(x: float, p) -> bool:
    lo = x >= p.low if p.low_closed else x > p.low
    hi = x <= p.high if p.high_closed else x < p.high
    return math.isfinite(x) and lo and hi


def next_value(side: str, b: float, n: float, param=None) -> tuple[float | None, str]:
    """The next scalar beyond the edge value ``b`` (neighbour ``n``) on ``side``, and why
    there is none. ``param``: the axis's declaration (its bounds; none: ``(0, ∞)``)."""
    low = getattr(param, "low", 0.0)
    high = getattr(param, "high", math.inf)
    if side == "high":
        if math.isinf(high):
            x = b * b / n if n > 0 else math.nan
        else:
            x = high - (high - b) ** 2 / (high - n)
    else:
        x = low + (b - low) ** 2 / (n - low) if n != low else math.nan
    if not math.isfinite(x):
        return None, f"no ratio to repeat ({fmt(n)} next to {fmt(b)})"
    x = _round(x)
    bound = high if side == "high" else low
    ok = _in_bounds(x, param) if param is not None else x > 0
    if x == b or x == bound or not ok:  # only rounding lands on the bound
        return None, f"the bound {fmt(float(bound))}"
    return x, ""


def extend_axis(points: list[dict], key: str, b: float, x: float,
                best: dict | None = None, along: tuple = ()) -> list[dict]:
    """Copies, with ``x`` on ``key``, of every point whose scalar on ``key`` is ``b`` and
    (with ``best``) whose scalars on the axes ``along`` are the best point's: the line
    through the best point, in every schedule family and structural variant tried."""
    def on_line(p):
        return best is None or all(scalar(p.get(k)) == scalar(best.get(k)) for k in along
                                   if k != key)
    return [dict(p, **{key: with_scalar(p[key], x)}) for p in points
            if scalar(p[key]) == b and on_line(p)]


def _around(c: float, param) -> list[float]:
    high = getattr(param, "high", math.inf)
    if math.isfinite(high) and 3 * c >= high:
        vals = [high - 3 * (high - c), c, high - (high - c) / 3]
    else:
        vals = [c / 3, c, 3 * c]
    return [_round(v) for v in vals if param is None or _in_bounds(_round(v), param)]


def default_grid(solver, steps: int, name: str | None = None) -> dict:
    """The default grid of ``solver`` (built with the values to centre on: the problem's
    recommended defaults and any fixed ones) for a run of ``steps`` steps (see the module
    docstring). ``name``: its registered name (default ``solver.name``)."""
    decl = declared(solver)
    inner = getattr(solver, "dec", solver)
    numeric = [k for k, p in decl.items() if p.kind == "numeric"]
    if not numeric:
        raise ValueError(f"{name or getattr(solver, 'name', solver)}: no numeric "
                         "hyperparameter to search; give a grid")
    outer = next((k for k in OUTER_AXES if k in numeric), numeric[0])
    t0 = float(max(1, round(steps / 10)))
    grid = {}
    c = scalar(getattr(inner, outer))
    if c is None or not c > 0:
        c = initial_value(getattr(inner, outer))
    vals = _around(c, decl[outer])
    grid[outer] = [v for x in vals for v in ((x, inverse_sqrt(x, t0)) if decl[outer].schedule
                                               else (x,))]
    second = SECOND_AXIS.get(name or getattr(solver, "name", ""))
    if second in numeric and second != outer and inner.active(second):
        v = getattr(inner, second)
        c2 = scalar(v)
        if c2 is not None and not is_builtin(v) and c2 > 0:
            grid[second] = _around(c2, decl[second])
    return grid
