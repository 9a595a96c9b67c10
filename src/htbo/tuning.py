"""Equal-budget tuning: a whole grid × seeds in one compiled program per structural group.

:func:`tune` builds the solver of every grid point (so each point is validated by its
constructor), groups the points by *structure* (the solver's cached ``step`` function and
the shape of its numeric hyperparameters: batch sizes, loop lengths, update kind, schedule
families), and runs each group as one vmapped batch of members (point × seed) through the
runner: one compile per group, whatever the number of points. Every point gets the same
budget (``steps = budget // cost per step`` of its group). A point whose iterates become
non-finite is scored ``inf`` for that seed and does not disturb the other members.

Members of a group are run in slices of at most ``max_members``; a slice whose compiled
chunk needs more than ``memory_limit`` bytes (XLA's memory analysis of the program:
arguments, outputs and temporaries) is halved until it fits. The last slice is padded with
copies of its last member so that every slice has the same shape (one compile).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .driver import programs
from .history import quantile
from .plan import steps_for_budget
from .runner import cast_hp, check_seeds, execute, float_dtype
from .schedules import initial_value, is_builtin
from .solvers import SOLVERS, make_solver

__all__ = ["tune", "TuneResult", "expand_grid", "point_label", "edge_notes"]

DEFAULT_MEMORY_LIMIT = 4 << 30   # bytes per compiled slice
DEFAULT_MAX_MEMBERS = 512


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
    points = [dict(p) for p in grid]
    if not points:
        raise ValueError("the grid is empty")
    return points


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v) if not isinstance(v, str) else v


def point_label(name: str, params: dict) -> str:
    """``name[k=v,...]`` (``name`` alone for no parameters)."""
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={_fmt(v)}' for k, v in params.items())}]"


@dataclass
class TuneResult:
    """``table``: one dict per point, best first (``label``, ``params``, ``median``, ``q20``,
    ``q80``, ``finals`` per seed, ``diverged`` = number of failing seeds, ``steps``);
    ``best`` = ``table[0]``; ``rows``: the histories (``label`` and ``point`` columns);
    ``notes``: points on the grid's edges with suggested extensions."""
    table: list[dict]
    rows: list[dict]
    notes: list[str]
    metric: str
    groups: int
    compile_s: float
    run_s: float
    diverged: list[dict] = field(default_factory=list)

    @property
    def best(self) -> dict:
        return self.table[0]

    def format_table(self) -> str:
        lines = [f"| rank | point | steps | median final {self.metric} | 20% | 80% | diverged |",
                 "|---|---|---|---|---|---|---|"]
        for i, t in enumerate(self.table, 1):
            lines.append(f"| {i} | {t['label']} | {t['steps']} | {t['median']:.4g} | "
                         f"{t['q20']:.4g} | {t['q80']:.4g} | {t['diverged']}/{len(t['finals'])} |")
        return "\n".join(lines)


def _maker(solver, problem=None) -> tuple[str, Callable]:
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; available: {sorted(SOLVERS)}")
        return solver, lambda **kw: make_solver(solver, problem=problem, **kw)
    if callable(solver):
        return getattr(solver, "__name__", "solver"), solver
    raise ValueError(f"solver must be a registered name or a constructor, got {solver!r}")


def _group_key(s):
    leaves, tdef = jax.tree_util.tree_flatten(s.hp)
    return (s.name, s.program(), tdef, s.sfo_per_step, s.hvp_per_step,
            tuple(np.shape(v) for v in leaves))


def _slice_size(problem, solver, hp_one, n_members, max_members, memory_limit, x0, y0):
    """Members per compiled slice: ``max_members`` halved until XLA's memory analysis of the
    chunk program fits ``memory_limit``."""
    size = max(1, min(n_members, max_members))
    init_b, chunk, _ = programs(*solver.program()[:2])
    while True:
        hp_b = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (size, *a.shape)), hp_one)
        keys = jax.random.split(jax.random.key(0), size)
        states = jax.eval_shape(init_b, problem, x0, y0, keys, hp_b)
        lowered = chunk.lower(problem, states, keys, np.int32(1))
        try:
            mem = lowered.compile().memory_analysis()
            need = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        except Exception:  # noqa: BLE001 - backends without memory analysis
            return size
        if need <= memory_limit or size == 1:
            if need > memory_limit:
                raise MemoryError(f"one member needs {need / 2**20:.0f} MiB, over the "
                                  f"memory limit of {memory_limit / 2**20:.0f} MiB")
            return size
        size = max(1, size // 2)


def tune(problem, solver, grid, *, budget: int | None = None, steps: int | None = None,
         seeds: Sequence[int] | int = 5, metric: str = "grad_norm", hp: dict | None = None,
         n_evals: int = 10, writer=None, progress: bool = False, hvp_cost: float = 0.0,
         max_members: int = DEFAULT_MAX_MEMBERS, memory_limit: int = DEFAULT_MEMORY_LIMIT,
         run_kwargs: dict | None = None, label: str | None = None) -> TuneResult:
    """Run every point of ``grid`` for every seed with the same budget; rank the points.

    ``solver``: a registered name or a constructor ``(**hyperparameters) -> Solver``;
    ``grid``: ``{key: [values]}`` (Cartesian product) or a list of dicts; ``hp``: fixed
    hyperparameters under every point. ``budget`` in SFO (``hvp_cost`` = SFO-equivalents per
    HVP, 0 = HVPs free) or ``steps``. ``seeds``: a count or a list. Rank by the median over
    seeds of the final ``metric`` (diverged seeds count as ``inf``). ``run_kwargs`` go to the
    runner (e.g. ``metrics_fn``, ``counters``, ``labels``, ``validate`` for network solvers).
    """
    if (budget is None) == (steps is None):
        raise ValueError("give exactly one of budget (SFO) or steps")
    seeds = check_seeds(range(seeds) if isinstance(seeds, (int, np.integer)) and
                        not isinstance(seeds, bool) else seeds)
    name, make = _maker(solver, problem)
    name = label or name
    base = dict(hp or {})
    points = expand_grid(grid)
    built = []
    for params in points:
        lab = point_label(name, params)
        try:
            s = make(**{**base, **params})
        except (ValueError, TypeError) as e:
            raise ValueError(f"grid point {lab}: {e}") from None
        built.append((lab, params, s))
    groups: dict = {}
    for i, (lab, params, s) in enumerate(built):
        groups.setdefault(_group_key(s), []).append(i)
    dtype = float_dtype(problem)
    rk = dict(run_kwargs or {})
    extra = rk.pop("labels", {})
    finals: dict[int, list[float]] = {}
    steps_of: dict[int, int] = {}
    rows, diverged = [], []
    compile_s = run_s = 0.0
    bar = None
    if progress and len(groups) > 1:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(groups), desc=f"tune {name}: groups", unit="group")
    for idx in groups.values():
        s0 = built[idx[0]][2]
        n_steps = steps if steps is not None else steps_for_budget(s0, budget, hvp_cost)
        members = [(i, seed) for i in idx for seed in seeds]
        hps = [cast_hp(built[i][2].hp, dtype) for i, _ in members]
        t0 = time.perf_counter()  # the slice's chunk compiles here (execute then reuses it)
        size = _slice_size(problem, s0, hps[0], len(members), max_members, memory_limit,
                           problem.x0, problem.y0)
        compile_s += time.perf_counter() - t0
        for lo in range(0, len(members), size):
            part = members[lo:lo + size]
            pad = size - len(part)
            part_hp = hps[lo:lo + size] + [hps[lo + len(part) - 1]] * pad
            hp_b = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *part_hp)
            labels = [dict(extra, label=built[i][0], point=i) for i, _ in part]
            labels += [dict(labels[-1], padding=True)] * pad
            seeds_b = [seed for _, seed in part] + [part[-1][1]] * pad

            def keep(new, _w=writer):
                new = [r for r in new if not r.get("padding")]
                if _w is not None and new:
                    _w(new)

            res = execute(problem, s0, hp_b, seeds_b, labels, steps=n_steps, n_evals=n_evals,
                          writer=keep, progress=progress, on_nonfinite="continue",
                          progress_desc=f"{name}: {len(part)} members", **rk)
            compile_s += res.compile_s
            run_s += res.run_s
            rows += [r for r in res.rows if not r.get("padding")]
            dead = {(d["point"], d["seed"]) for d in res.diverged if not d.get("padding")}
            diverged += [d for d in res.diverged if not d.get("padding")]
            last = {}
            for r in res.rows:
                if not r.get("padding"):
                    last[(r["point"], r["seed"])] = r
            if res.rows and metric not in res.rows[0]:
                raise ValueError(f"unknown metric {metric!r}; the rows have "
                                 f"{sorted(k for k in res.rows[0] if k not in _META)}")
            for i, seed in part:
                v = None if (i, seed) in dead else last.get((i, seed), {}).get(metric)
                finals.setdefault(i, []).append(math.inf if v is None else float(v))
                steps_of[i] = n_steps
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    table = []
    for i, (lab, params, s) in enumerate(built):
        v = np.array(finals[i], float)
        table.append(dict(label=lab, params=params, hparams=dict(s.hparams), point=i,
                          median=float(np.median(v)), q20=quantile(v, 0.2),
                          q80=quantile(v, 0.8), finals=v.tolist(),
                          diverged=int(np.sum(~np.isfinite(v))), steps=steps_of[i],
                          sfo=steps_of[i] * s.sfo_per_step, hvp=steps_of[i] * s.hvp_per_step))
    table.sort(key=lambda t: (t["median"], t["q80"], t["point"]))
    return TuneResult(table, rows, edge_notes(points, table[0]["params"]), metric, len(groups),
                      compile_s, run_s, diverged)


_META = {"run_id", "solver", "problem", "noise", "seed", "step", "sfo", "hvp", "time_s", "label",
         "point"}


def _scalar(v) -> float | None:
    """A comparable magnitude: numbers as they are, built-in schedules by their value at 0."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if is_builtin(v):
        return initial_value(v)
    return None


def _scaled(v, r: float):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return max(1, int(round(v * r)))
    if isinstance(v, (float, np.floating)):
        return float(f"{v * r:.3g}")
    if is_builtin(v):
        leaves, tdef = jax.tree_util.tree_flatten(v)
        return jax.tree_util.tree_unflatten(tdef, [float(f"{leaves[0] * r:.3g}")] + leaves[1:])
    return None


def edge_notes(points: list[dict], best: dict) -> list[str]:
    """For each numeric key with ≥ 2 distinct values: a note when ``best`` uses the
    smallest or largest value tried, with a suggested next value (the same ratio again)."""
    notes = []
    keys = [k for k in points[0] if all(k in p for p in points)] if points else []
    for k in keys:
        vals = {}
        for p in points:
            x = _scalar(p[k])
            if x is None:
                break
            vals[x] = p[k]
        else:
            if len(vals) < 2 or k not in best:
                continue
            order = sorted(vals)
            b = _scalar(best[k])
            if b == order[0] or b == order[-1]:
                low = b == order[0]
                nb = order[1] if low else order[-2]
                r = b / nb if b * nb > 0 else (0.5 if low else 2.0)
                sug = _scaled(best[k], r)
                side = "smallest" if low else "largest"
                notes.append(f"{k}: the best point uses the {side} value tried ({_fmt(best[k])}"
                             f" of {', '.join(_fmt(vals[x]) for x in order)}); the optimum may "
                             f"lie beyond: extend the grid, e.g. {k}={_fmt(sug)}"
                             if sug is not None else f"{k}: best at the {side} value tried")
    return notes
