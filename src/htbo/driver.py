"""The one run loop: evaluation marks, rows, timing, non-finite detection, checkpoints, resume.

A run advances *members* (one hyperparameter point × one seed each) together through an
**executor** that owns the compiled programs:

* :class:`VmapExecutor` — every member on this process, ``vmap``\\ ped (also the simulated
  decentralized mode, whose solver stacks the agents);
* :class:`htbo.decentralized.distributed.ShardMapExecutor` — one agent per process
  (``shard_map`` over the agents, members ``vmap``\\ ped inside), same iterates.

:func:`drive` is written once for both. It evaluates at step 0 and at ``n_evals`` roughly
equally spaced marks (the last is ``steps``), and at least every ``max_chunk_s`` seconds;
times compiled chunks only (``block_until_ready`` inside the clock, compile time apart,
evaluation outside and never counted); finds each member's first non-finite step by
replaying the failing chunk from its saved start; hands rows to ``writer`` and states to
``checkpoint`` at every evaluation; and continues from such a checkpoint (``resume``) with
identical iterates. ``until`` stops early (at a step ≤ ``steps``, evaluated there) while
keeping the marks of the full run, so a run continued from that point evaluates exactly
where an uninterrupted one would.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .metrics import evaluate
from .prng import split

__all__ = ["drive", "RunResult", "NonFiniteError", "VmapExecutor", "programs", "evaluator",
           "eval_marks", "all_finite"]


class NonFiniteError(FloatingPointError):
    """The iterates became NaN/inf; ``step`` is the first bad step, ``seed`` its seed,
    ``result`` the :class:`RunResult` of what was done before (its rows and states)."""

    def __init__(self, message: str, step: int, seed: int, result: "RunResult | None" = None):
        super().__init__(message)
        self.step, self.seed, self.result = step, seed, result


@dataclass
class RunResult:
    rows: list[dict]
    compile_s: float
    run_s: float
    steps: int
    states: Any = None
    nonfinite: dict | None = None          # the earliest failure: {"seed", "step"}
    meta: dict = field(default_factory=dict)
    diverged: list[dict] = field(default_factory=list)  # every failing member
    keys: Any = None
    dead: dict = field(default_factory=dict)  # member index -> its first non-finite step

    def final(self, metric: str = "grad_norm") -> np.ndarray:
        """The metric at each seed's last evaluation, one value per seed in run order
        (``inf`` for seeds whose iterates became non-finite)."""
        seeds = self.meta.get("seeds") or sorted({r["seed"] for r in self.rows})
        dead = {d["seed"] for d in self.diverged}
        last: dict = {}
        for r in self.rows:
            if r["seed"] not in last or r["step"] >= last[r["seed"]]["step"]:
                last[r["seed"]] = r
        out = []
        for s in seeds:
            v = last.get(s, {}).get(metric)
            out.append(math.inf if s in dead or v is None else float(v))
        return np.array(out, float)


# -- compiled programs (vmapped members) ---------------------------------------------------------
def _strip_hp(st):
    return st._replace(hp=()) if hasattr(st, "_replace") and hasattr(st, "hp") else st


def all_finite(tree):
    """Whether every inexact leaf of a state (its ``hp`` aside) is finite."""
    leaves = [jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(_strip_hp(tree))
              if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def member_loop(step: Callable, *extra):
    """``(problem, state, key, n) -> (state, key)``: ``n`` steps (traced) of one member; each
    step draws ``key, sub = split(key)`` and calls ``step(problem, state, sub, *extra)``."""
    def loop(prob, st, k, n):
        def body(_, c):
            st, k = c
            k, sub = split(k)
            return step(prob, st, sub, *extra), k
        return jax.lax.fori_loop(0, n, body, (st, k))
    return loop


def member_replay(step: Callable, *extra):
    """``(problem, state, key, n) -> first``: the first step in ``1..n`` after which the state
    is non-finite (0 if none), replaying the same keys as :func:`member_loop`."""
    def replay(prob, st, k, n):
        def body(t, c):
            st, k, first = c
            k, sub = split(k)
            st = step(prob, st, sub, *extra)
            bad = jnp.logical_and(first == 0, jnp.logical_not(all_finite(st)))
            return st, k, jnp.where(bad, t + 1, first)
        return jax.lax.fori_loop(0, n, body, (st, k, jnp.zeros((), jnp.int32)))[2]
    return replay


@functools.lru_cache(maxsize=None)
def programs(init: Callable, step: Callable):
    """Jitted ``(init, chunk, replay)`` over a leading member axis, cached per solver
    structure (its canonical ``init``/``step``), so every run of that structure reuses the
    compiled programs. ``chunk(problem, states, keys, n)`` runs ``n`` (traced) steps per
    member and returns the per-member finiteness."""
    init_b = jax.jit(jax.vmap(init, in_axes=(None, None, None, 0, 0)))
    loop, rep = member_loop(step), member_replay(step)

    def chunk(prob, sts, ks, n):
        sts, ks = jax.vmap(lambda s, k: loop(prob, s, k, n))(sts, ks)
        return sts, ks, jax.vmap(all_finite)(sts)

    def replay(prob, sts, ks, n):
        return jax.vmap(lambda s, k: rep(prob, s, k, n))(sts, ks)

    return init_b, jax.jit(chunk), jax.jit(replay)


@functools.lru_cache(maxsize=None)
def evaluator(metrics_fn: Callable, params: Callable, kwargs: tuple = ()):
    """Jitted metrics over a member axis: ``(problem, states) -> {name: [member]}``."""
    kw = dict(kwargs)
    return jax.jit(jax.vmap(lambda p, st: metrics_fn(p, *params(st), **kw), in_axes=(None, 0)))


def initial_keys(seeds):
    """Per member: ``(init key, run key)`` = ``split(key(seed))`` (seed ``s`` always gets the
    same keys, whatever the other members)."""
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds))
    return pairs[:, 0], pairs[:, 1]


class VmapExecutor:
    """Every member on this process: ``vmap`` over members of ``solver``'s program.

    ``solver``: anything with ``program() -> (init, step, params)``; ``hp_b``: the members'
    numeric hyperparameters (leading member axis); ``metrics_fn(clean_problem, x, ŷ)``
    (default :func:`htbo.metrics.evaluate` with the problem's ``eval_options``)."""

    writes = True

    def __init__(self, problem, solver, hp_b, seeds, *, x0=None, y0=None,
                 metrics_fn: Callable | None = None, eval_options: dict | None = None):
        init, step, params = solver.program()
        self.problem, self.hp_b, self.seeds = problem, hp_b, list(seeds)
        self.x0 = problem.x0 if x0 is None else x0
        self.y0 = problem.y0 if y0 is None else y0
        self.init_b, self.chunk, self.replay_fn = programs(init, step)
        if eval_options is None:
            eval_options = dict(problem.eval_options or {})
        self.ev = evaluator(metrics_fn or evaluate, params,
                            tuple(sorted(eval_options.items())) if metrics_fn is None else ())
        self.clean = problem.replace(noise=None)
        self.compiled = None

    def agree(self, value):
        """A decision every process must share (one process here): ``value`` itself."""
        return value

    def init(self):
        ikeys, keys = initial_keys(self.seeds)
        states = self.init_b(self.problem, self.x0, self.y0, ikeys, self.hp_b)
        jax.block_until_ready(states)
        return states, keys

    def template(self):
        ikeys, _ = initial_keys(self.seeds)
        return jax.eval_shape(self.init_b, self.problem, self.x0, self.y0, ikeys, self.hp_b)

    def compile(self, states, keys):
        self.compiled = self.chunk.lower(self.problem, states, keys, np.int32(1)).compile()

    def run(self, states, keys, n: int):
        out = self.compiled(self.problem, states, keys, np.int32(n))
        jax.block_until_ready(out)
        return out[0], out[1], np.asarray(out[2])

    def replay(self, states, keys, n: int):
        return np.asarray(self.replay_fn(self.problem, states, keys, np.int32(n)))

    def metrics(self, states) -> dict:
        """Per-member metrics (host arrays); ``None`` on a process that does not write."""
        return jax.device_get(self.ev(self.clean, states))

    def host(self, states, keys):
        """``(states, keys)`` as host arrays for a checkpoint (members first)."""
        return jax.device_get(states), keys

    def load(self, states, keys):
        """Device arrays from a checkpoint's host arrays."""
        return jax.tree_util.tree_map(jnp.asarray, states), keys


# -- the loop ------------------------------------------------------------------------------------
def eval_marks(steps: int, n_evals: int) -> list[int]:
    """The evaluation steps after 0: ``n_evals`` roughly equally spaced, the last = ``steps``."""
    return sorted(set(int(round(steps * i / n_evals)) for i in range(1, n_evals + 1)))


def _to_float(v):
    v = float(v)
    return None if math.isnan(v) else v


def drive(ex, *, steps: int, n_evals: int, seeds: list[int], member_labels: list[dict],
          base: dict, sfo_per_step: int, hvp_per_step: int, counters: dict | None = None,
          writer: Callable | None = None, checkpoint: Callable | None = None,
          resume: dict | None = None, on_nonfinite: str = "raise", max_chunk_s: float = 60.0,
          progress: bool = False, progress_desc: str = "", until: int | None = None,
          on_emit: Callable | None = None, time_share: list[float] | None = None) -> RunResult:
    """Run the executor's members to ``steps`` (or ``until``); see the module docstring.

    ``on_nonfinite``: ``'raise'`` / ``'stop'`` end the run at the first failing member;
    ``'continue'`` records each failure and carries on with the others. ``time_share[i]``:
    the fraction of the batch's compiled time charged to member ``i``'s rows (default 1).
    ``on_emit(step, states, rows)`` is called after every evaluation (on every process).
    With a distributed executor every process passes the same arguments (its evaluations
    and checkpoints gather all agents); only the writing process calls ``writer`` and
    ``checkpoint``."""
    if on_nonfinite not in ("raise", "stop", "continue"):
        raise ValueError(f"on_nonfinite must be 'raise', 'stop' or 'continue', got "
                         f"{on_nonfinite!r}")
    if not max_chunk_s > 0:
        raise ValueError(f"max_chunk_s must be > 0, got {max_chunk_s}")
    until = steps if until is None else int(until)
    B = len(seeds)
    share = time_share or [1.0] * B
    compile_s = 0.0
    if resume is None:
        t0 = time.perf_counter()
        states, keys = ex.init()
        compile_s += time.perf_counter() - t0  # the first call compiles (init runs once)
        done, run_s, dead = 0, 0.0, {}
    else:
        states, keys = ex.load(resume["states"], resume["keys"])
        done, run_s = int(resume["step"]), float(resume["run_s"])
        dead = {int(i): int(s) for i, s in resume.get("dead", {}).items()}
    rows: list[dict] = []
    diverged = [dict(member_labels[i], seed=seeds[i], step=s) for i, s in sorted(dead.items())]
    nonfinite = None

    def emit(step, states, keys):
        metrics = ex.metrics(states)  # every process (a distributed executor gathers)
        new = []
        if metrics is not None:
            for i, s in enumerate(seeds):
                if i in dead:
                    continue
                r = dict(base, **member_labels[i], seed=s, step=step, sfo=step * sfo_per_step,
                         hvp=step * hvp_per_step, time_s=run_s * share[i],
                         **{k: step * c for k, c in (counters or {}).items()})
                r.update({k: _to_float(np.asarray(v)[i]) for k, v in metrics.items()})
                new.append(r)
            rows.extend(new)
            if writer is not None:
                writer(new)
        if checkpoint is not None:
            hs, hk = ex.host(states, keys)
            if ex.writes:
                checkpoint(dict(states=hs, keys=hk, step=step, run_s=run_s,
                                dead={str(i): s for i, s in dead.items()}))
        if on_emit is not None:
            on_emit(step, states, new)

    if resume is None:
        emit(0, states, keys)
    elif resume.get("emit"):  # the rows of the checkpoint's step were lost: write them again
        emit(done, states, keys)
    marks = [m for m in eval_marks(steps, n_evals) if m > done and m <= until]
    if until > done and until not in marks:
        marks.append(until)
    bar = None
    per_step = None
    last_emit = time.monotonic()
    try:
        for m in marks:
            while done < m and nonfinite is None:
                n = m - done
                n = 1 if per_step is None else min(n, max(1, int(max_chunk_s / per_step)))
                n = int(ex.agree(n))  # timing differs between processes: one decides
                if ex.compiled is None:
                    t0 = time.perf_counter()
                    ex.compile(states, keys)
                    compile_s += time.perf_counter() - t0
                if bar is None and progress and ex.writes:  # after compiling: an honest ETA
                    from tqdm.auto import tqdm
                    bar = tqdm(total=steps if until == steps else until, initial=done,
                               unit="step", leave=False, desc=progress_desc)
                t0 = time.perf_counter()
                new_states, new_keys, ok = ex.run(states, keys, n)
                dt = time.perf_counter() - t0
                per_step = dt / n
                fresh = [int(i) for i in np.flatnonzero(~ok) if int(i) not in dead]
                if fresh:
                    first = ex.replay(states, keys, n)
                    failures = sorted((done + int(first[i]) if first[i] > 0 else done + n, i)
                                      for i in fresh)
                    if on_nonfinite != "continue":
                        step, i = failures[0]
                        nonfinite = dict(seed=seeds[i], step=step)
                        diverged.append(dict(member_labels[i], seed=seeds[i], step=step))
                        break
                    for step, i in failures:
                        dead[i] = step
                        diverged.append(dict(member_labels[i], seed=seeds[i], step=step))
                run_s += dt
                states, keys, done = new_states, new_keys, done + n
                if bar is not None:
                    bar.update(n)
                if done == m or ex.agree(time.monotonic() - last_emit >= max_chunk_s):
                    emit(done, states, keys)
                    last_emit = time.monotonic()
                if len(dead) == B:
                    break
            if nonfinite is not None or len(dead) == B:
                break
    finally:
        if bar is not None:
            bar.close()
    earliest = min(diverged, key=lambda d: d["step"]) if diverged else None
    return RunResult(rows, compile_s, run_s, done, states,
                     nonfinite or (dict(seed=earliest["seed"], step=earliest["step"])
                                   if earliest else None),
                     meta=dict(base, steps=steps, seeds=list(seeds), sfo_per_step=sfo_per_step,
                               hvp_per_step=hvp_per_step, compile_s=compile_s, run_s=run_s),
                     diverged=diverged, keys=keys, dead=dict(dead))
