"""Equal-budget tuning: each method gets the same SFO budget and its best point of a grid."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from .runner import run, steps_for_budget

__all__ = ["best_of_grid"]


def best_of_grid(problem, make_solver: Callable[..., object], grid: Iterable[dict],
                 sfo_budget: int, seeds: Sequence[int], metric: str = "grad_norm",
                 n_evals: int = 1) -> tuple[dict, np.ndarray, list[tuple[dict, float]]]:
    """Run ``make_solver(**params)`` for every ``params`` in ``grid`` with ``sfo_budget`` SFO.

    Returns ``(best_params, best_finals, table)``: the point with the lowest median final
    ``metric`` over ``seeds``, its per-seed final values, and ``[(params, median)]`` for the
    whole grid. A diverged run counts as ``inf`` (it never wins, it never crashes the search).
    """
    table, best = [], None
    for params in grid:
        solver = make_solver(**params)
        res = run(problem, solver, steps=steps_for_budget(solver, sfo_budget), seeds=seeds,
                  n_evals=n_evals, on_nonfinite="stop")
        finals = res.final(metric)
        med = float(np.median(finals))
        table.append((params, med))
        if best is None or med < best[2]:
            best = (params, finals, med)
    if best is None:
        raise ValueError("best_of_grid: the grid is empty")
    return best[0], best[1], table
