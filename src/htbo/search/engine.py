"""Points and members of a search, run in vmapped batches that pause at rungs and continue.

A *point* is one hyperparameter setting of one solver; a *member* is one (point, seed). The
members that go from the same step to the same step of one structure run as one batch
(one compiled program per structure and batch shape) through :func:`htbo.runner.execute`:
from scratch for a first rung, otherwise from the states where the previous rung stopped
(the run loop's ``resume``), so a member continued rung after rung follows exactly the
iterates of one uninterrupted run. Batch shapes are padded up to a short ladder of sizes
(1, 2, 3, 4, 6, 8, 12, 16, ...: at most a third wasted) so that rungs and extension rounds
reuse compiled programs; a batch above ``max_members``, or whose compiled chunk needs more
than ``memory_limit`` bytes (XLA's memory analysis), runs in equal slices, the last padded.
Padding members never reach rows, records or counts.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..driver import eval_marks, initial_keys, programs
from ..history import quantile
from ..runner import cast_hp, execute

__all__ = ["Point", "Runner", "bucket", "group_key", "summary", "gather"]


_LADDER = sorted({2 ** i for i in range(40)} | {3 * 2 ** i for i in range(39)})


def bucket(n: int, cap: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... that holds ``n`` (at most ``cap``)."""
    return max(1, min(next(s for s in _LADDER if s >= n), cap))


def group_key(s):
    """What one compiled program serves: the solver's structure and its hp's shapes."""
    leaves, tdef = jax.tree_util.tree_flatten(s.hp)
    return (s.name, s.program(), tdef, s.sfo_per_step, s.hvp_per_step,
            tuple(np.shape(v) for v in leaves))


@dataclass(eq=False)
class Point:
    """One hyperparameter point of one solver (``cand``: the solver's label)."""

    idx: int
    cand: str
    params: dict
    label: str
    solver: object
    key: tuple
    steps: int                      # the full budget's steps
    rung_steps: list                # the step at which each rung ends (the last: steps)
    round: int = 0                  # the extension round that added it
    reached: int = -1               # the last rung completed
    finals: dict = field(default_factory=dict)   # rung -> {seed: metric} (inf: diverged)
    dead: dict = field(default_factory=dict)     # seed -> first non-finite step
    refs: dict = field(default_factory=dict)     # seed -> (batch result, member index)
    time_s: float = 0.0             # selection: compiled time charged to this point
    eval_time_s: float = 0.0        # fresh seeds: likewise
    done: int = 0                   # steps run (selection)

    @property
    def cost(self):
        return self.solver.sfo_per_step, self.solver.hvp_per_step

    def values(self, seeds, rung: int | None = None) -> np.ndarray:
        got = self.finals[self.reached if rung is None else rung]
        return np.array([got[sd] for sd in seeds], float)

    def stats(self, seeds, rung: int | None = None) -> dict:
        return summary(self.values(seeds, rung))

    def rank_key(self, seeds, rung: int | None = None):
        v = self.values(seeds, rung)
        return (float(np.median(v)), quantile(v, 0.8), self.idx)


def summary(v) -> dict:
    """Median, 20% and 80% quantiles, the values and the number of non-finite ones."""
    v = np.asarray(v, float)
    return dict(median=float(np.median(v)), q20=quantile(v, 0.2), q80=quantile(v, 0.8),
                finals=v.tolist(), diverged=int(np.sum(~np.isfinite(v))))


class Runner:
    """Runs batches of members and keeps the counts: compiled programs, times, rows,
    divergences and the SFO/HVP spent (real members only; selection and fresh seeds
    apart)."""

    def __init__(self, problem, *, metric, n_evals, dtype, writer=None, progress=False,
                 max_members=512, memory_limit=4 << 30):
        self.problem, self.metric, self.n_evals = problem, metric, n_evals
        self.dtype, self.writer, self.progress = dtype, writer, progress
        self.max_members, self.memory_limit = max_members, memory_limit
        self.keys: set = set()
        self.compile_s = self.run_s = 0.0
        self.rows: list[dict] = []
        self.eval_rows: list[dict] = []
        self.diverged: dict = {}
        self.spent = {"select": [0, 0], "eval": [0, 0]}   # phase -> [SFO, HVP]
        self._fits: dict = {}        # (group key, size) -> the size that fits
        self._fit_s: dict = {}       # (group key, size) -> time of its memory analysis
        self._pkey = _problem_key(problem)
        self._validated: set = set()

    def _size(self, s0, hp_one, n: int, steps: int) -> int:
        """The batch size for ``n`` members to run ``steps`` steps: the ladder's size for
        ``n``, or a size already compiled for this structure (in slices, the last padded)
        when running its padding costs less than compiling (per-member step time and
        compile time measured on earlier batches)."""
        key = group_key(s0)
        size = bucket(n, self.max_members)
        known = _COMPILED.get((key, self._pkey), {})
        per_step = _STEP_S.get((key, self._pkey))
        if known and size not in known and per_step is not None:
            comp = max(known.values())
            cost = {s: math.ceil(n / s) * s * steps * per_step + (0.0 if s in known else comp)
                    for s in [size] + [s for s in known if s <= self.max_members]}
            size = min(cost, key=lambda s: (cost[s], s))
        k = (key, size)
        if k not in self._fits:
            t0 = time.perf_counter()
            self._fits[k] = _fit(self.problem, s0, hp_one, size, self.memory_limit)
            self._fit_s[(key, self._fits[k])] = time.perf_counter() - t0
            self.compile_s += time.perf_counter() - t0
        return self._fits[k]

    def _init(self, s0, hp_b, seeds) -> dict:
        """The members' initial states and run keys, as :class:`htbo.driver.VmapExecutor`
        makes them, with weakly typed leaves (a Python-scalar ``x0``) made strong: the
        states a chunk returns are strong, and a chunk compiled for one typing would be
        compiled again for the other."""
        init_b = programs(*s0.program()[:2])[0]
        ikeys, keys = initial_keys(seeds)
        t0 = time.perf_counter()
        states = jax.tree_util.tree_map(_strong, init_b(self.problem, self.problem.x0,
                                                        self.problem.y0, ikeys, hp_b))
        jax.block_until_ready(states)
        self.compile_s += time.perf_counter() - t0
        return dict(states=states, keys=keys)

    def run(self, members: list, start: int, until: int, rk: dict, *, phase: str = "select",
            rung: int | None = None, label: str | None = None) -> dict:
        """Advance ``members`` (``(point, seed)`` pairs of one structure and step count)
        from ``start`` to ``until``; returns ``{(point index, seed): metric at until}``
        (``inf`` for a diverged member). ``rung``: record the values as that rung's;
        ``label``: the rows' label (default each point's)."""
        pt0 = members[0][0]
        s0, steps = pt0.solver, pt0.steps
        self.keys.add(pt0.key)
        if start:  # continue from the states of the last rung, grouped by where they are
            members = sorted(members, key=lambda m: (id(m[0].refs[m[1]][0]),
                                                     m[0].refs[m[1]][1]))
        hps = {id(p): cast_hp(p.solver.hp, self.dtype) for p, _ in members}
        size = self._size(s0, hps[id(pt0)], len(members), until - start)
        marks = set(eval_marks(steps, self.n_evals)) | {0}
        rk = dict(rk)
        extra = rk.pop("labels", {})
        validate = rk.pop("validate", True) and pt0.key not in self._validated
        self._validated.add(pt0.key)
        clock = "time_s" if phase == "select" else "eval_time_s"
        values = {}
        for lo in range(0, len(members), size):
            part = members[lo:lo + size]
            pad = size - len(part)
            full = part + [part[-1]] * pad
            hp_b = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                          *[hps[id(p)] for p, _ in full])
            labels = [dict(extra, label=label or p.label, point=p.idx, phase=phase)
                      for p, _ in part]
            labels += [dict(labels[-1], padding=True)] * pad
            count: dict = {}
            for p, _ in part:
                count[id(p)] = count.get(id(p), 0) + 1
            share = [count[id(p)] / len(part) for p, _ in part] + [0.0] * pad
            where = {(p.idx, sd): i for i, (p, sd) in enumerate(part)}
            offset = [getattr(p, clock) for p, _ in part]
            if start:
                resume = dict(step=start, run_s=0.0, **gather(full),
                              dead={i: p.dead[sd] for i, (p, sd) in enumerate(full)
                                    if sd in p.dead})
            else:  # initial states made here, typed as the run's states (one compile)
                resume = dict(step=0, run_s=0.0, dead={}, emit=True,
                              **self._init(s0, hp_b, [sd for _, sd in full]))

            def keep(new, _offset=offset, _where=where):
                kept = []
                for r in new:
                    if r.get("padding") or (r["step"] == until and r["step"] not in marks):
                        continue
                    r["time_s"] = r["time_s"] + _offset[_where[(r["point"], r["seed"])]]
                    kept.append(r)
                (self.rows if phase == "select" else self.eval_rows).extend(kept)
                if self.writer is not None and kept:
                    self.writer(kept)

            res = execute(self.problem, s0, hp_b, [sd for _, sd in full], labels, steps=steps,
                          n_evals=self.n_evals, writer=keep, progress=self.progress,
                          on_nonfinite="continue", until=until, time_share=share,
                          resume=resume, validate=validate,
                          progress_desc=f"{label or pt0.cand}: {len(part)} members to step "
                                        f"{until}", **rk)
            validate = False
            known = _COMPILED.setdefault((pt0.key, self._pkey), {})
            if size not in known:  # the memory analysis compiled the chunk program
                known[size] = res.compile_s + self._fit_s.get((pt0.key, size), 0.0)
            if until > start:
                _STEP_S[(pt0.key, self._pkey)] = res.run_s / (size * (until - start))
            self.compile_s += res.compile_s
            self.run_s += res.run_s
            spent = self.spent[phase]
            spent[0] += len(part) * (until - start) * s0.sfo_per_step
            spent[1] += len(part) * (until - start) * s0.hvp_per_step
            if res.rows and self.metric not in res.rows[0]:
                raise ValueError(f"unknown metric {self.metric!r}; the rows have "
                                 f"{sorted(k for k in res.rows[0] if k not in _META)}")
            last = {(r["point"], r["seed"]): r for r in res.rows
                    if not r.get("padding") and r["step"] == until}
            for i, (p, sd) in enumerate(part):
                if i in res.dead and sd not in p.dead:
                    p.dead[sd] = res.dead[i]
                    self.diverged[(p.idx, sd)] = dict(label=labels[i]["label"], point=p.idx,
                                                      seed=sd, step=res.dead[i], phase=phase)
                p.refs[sd] = (res, i)
                v = None if sd in p.dead else last.get((p.idx, sd), {}).get(self.metric)
                v = math.inf if v is None or not math.isfinite(v) else float(v)
                values[(p.idx, sd)] = v
                if rung is not None:
                    p.finals.setdefault(rung, {})[sd] = v
                setattr(p, clock, getattr(p, clock) + res.run_s / len(part))
                if phase == "select":
                    p.done = until
        return values


def _strong(a):
    return jax.lax.convert_element_type(a, a.dtype) if getattr(
        jax.typeof(a), "weak_type", False) else a


#: per (structure, problem): batch sizes compiled in this process with their compile times,
#: and the last measured time per member-step (what choosing a batch size weighs)
_COMPILED: dict = {}
_STEP_S: dict = {}


def _problem_key(problem):
    leaves, tdef = jax.tree_util.tree_flatten(problem)
    return tdef, tuple((np.shape(a), str(np.asarray(a).dtype) if not hasattr(a, "dtype")
                        else str(a.dtype)) for a in leaves)


_META = {"run_id", "solver", "problem", "noise", "seed", "step", "sfo", "hvp", "time_s", "label",
         "point", "phase"}


def gather(full) -> dict:
    """``states`` and ``keys`` of the members ``(point, seed)``, stacked in that order from
    the batches where they stopped."""
    groups: list = []
    for p, sd in full:
        res, i = p.refs[sd]
        if groups and groups[-1][0] is res:
            groups[-1][1].append(i)
        else:
            groups.append((res, [i]))
    states, keys = [], []
    for res, idx in groups:
        ix = jnp.asarray(idx)
        states.append(jax.tree_util.tree_map(lambda a: a[ix], res.states))
        keys.append(res.keys[ix])
    if len(groups) == 1:
        return dict(states=states[0], keys=keys[0])
    return dict(states=jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *states),
                keys=jnp.concatenate(keys))


def _bytes(tree) -> int:
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
               for a in jax.tree_util.tree_leaves(tree) if hasattr(a, "shape"))


def _upper_bound(problem, solver, states, size: int) -> int:
    """A generous bound on a chunk's memory: the problem's data, 16 copies of the members'
    states, and per member 16 minibatches of the largest batch (every row of every data
    leaf) — far above what XLA reports on every built-in problem."""
    batch = max([int(v) for k, v in solver.hparams.items()
                 if "batch" in k and isinstance(v, (int, np.integer))] or [1])
    rows = 0
    for d in (problem.data_f, problem.data_g):
        leaves = [a for a in jax.tree_util.tree_leaves(d) if getattr(a, "ndim", 0) >= 1]
        rows += sum(_bytes(a) // max(1, a.shape[0]) for a in leaves)
    data = _bytes((problem.data_f, problem.data_g, problem.x0, problem.y0))
    return data + 16 * _bytes(states) + 16 * size * batch * max(rows, 1)


def _fit(problem, solver, hp_one, size: int, memory_limit: int) -> int:
    """``size`` halved until XLA's memory analysis of the chunk program fits the limit (no
    analysis, which costs a compile, when a generous bound already fits an eighth of it)."""
    init_b, chunk, _ = programs(*solver.program()[:2])
    while True:
        hp_b = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (size, *a.shape)), hp_one)
        keys = jax.random.split(jax.random.key(0), size)
        states = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                        jax.eval_shape(init_b, problem, problem.x0,
                                                       problem.y0, keys, hp_b))
        # one machine's solvers only: a network's members carry m agents' minibatches
        if hasattr(solver, "hparams") and not hasattr(solver, "dec") and \
                _upper_bound(problem, solver, states, size) <= memory_limit // 8:
            return size
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
