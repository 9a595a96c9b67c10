"""The runner: jit + loop chunks of solver steps between evaluations, ``vmap`` over *members*.

* A member is one (hyperparameter point, seed) pair. :func:`run` runs one point over several
  seeds; :func:`htbo.tuning.tune` runs a whole grid × seeds. All members run together in one
  compiled program (``vmap`` over their states, whose ``hp`` field holds each member's numeric
  hyperparameters). Seed ``s`` always gets ``jax.random.key(s)``, so a member's history does
  not depend on the other members (up to float rounding: XLA may reduce differently when
  the batch size changes).
* Compiled programs are reused: they are cached per solver structure (the solver's ``step``
  function, see :mod:`htbo.solvers.base`) and argument shapes, so runs that differ only in
  numeric hyperparameters compile once.
* Timing is honest: chunks are compiled ahead of time (compile time reported apart), the
  clock stops only after ``block_until_ready``; evaluation is outside the clock and never
  counted in SFO/HVP. ``time_s`` is the compiled-step time of the whole vmapped batch.
* Non-finite iterates are detected per member at the end of each chunk at no per-step cost;
  the chunk is then replayed from its saved start to find each failing member's first bad
  step. ``on_nonfinite``: ``'raise'`` / ``'stop'`` end the run at the first failure;
  ``'continue'`` records it and carries on with the other members.
* Rows are handed to ``writer`` as soon as they are produced, at the evaluation marks and at
  least every ``max_chunk_s`` seconds; ``checkpoint`` receives the states at the same points,
  and ``resume`` continues from such a checkpoint with identical iterates.
"""
from __future__ import annotations

import functools
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .metrics import evaluate
from .oracles import split
from .problems.base import BilevelProblem, tree_check_finite, validate_problem
from .solvers.base import Solver

__all__ = ["run", "RunResult", "NonFiniteError", "steps_for_budget", "check_seeds"]


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


def steps_for_budget(solver: Solver, sfo_budget: int, hvp_cost: float = 0.0) -> int:
    """The number of steps ``solver`` can take within ``sfo_budget`` SFO calls, charging
    ``hvp_cost`` SFO-equivalents per Hessian-vector product (0: HVPs are counted apart).

    Raises ``ValueError`` when the budget does not cover a single step."""
    cost = solver.sfo_per_step + hvp_cost * solver.hvp_per_step
    if int(sfo_budget) < cost:
        unit = "SFO" if not hvp_cost else "SFO-equivalents"
        raise ValueError(f"budget {int(sfo_budget):,} {unit} is less than one step of "
                         f"{solver.name} ({cost:,.0f} {unit} per step): give at least "
                         f"{int(math.ceil(cost)):,}")
    return int(int(sfo_budget) // cost)


def check_seeds(seeds) -> list[int]:
    """Distinct non-negative integers (``1.0`` is fine, ``0.5`` is not)."""
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer, float, np.floating)) or \
                not float(s).is_integer() or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
    return out


def _strip_hp(st):
    return st._replace(hp=()) if hasattr(st, "_replace") and hasattr(st, "hp") else st


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(_strip_hp(tree))
              if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


@functools.lru_cache(maxsize=None)
def programs(init: Callable, step: Callable):
    """Jitted ``(init, chunk, replay)`` over a leading member axis, cached per solver
    structure so that every run of that structure reuses the compiled programs.

    ``chunk(problem, states, keys, n)`` runs ``n`` (traced) steps per member and returns the
    per-member finiteness; ``replay`` runs them again and returns each member's first
    non-finite step in ``1..n`` (0 if none)."""
    init_b = jax.jit(jax.vmap(init, in_axes=(None, None, None, 0, 0)))

    def chunk(prob, sts, ks, n):
        def one(st, k):
            def body(_, c):
                st, k = c
                k, sub = split(k)
                return step(prob, st, sub), k
            return jax.lax.fori_loop(0, n, body, (st, k))
        sts, ks = jax.vmap(one)(sts, ks)
        return sts, ks, jax.vmap(_all_finite)(sts)

    def replay(prob, sts, ks, n):
        def one(st, k):
            def body(t, c):
                st, k, first = c
                k, sub = split(k)
                st = step(prob, st, sub)
                bad = jnp.logical_and(first == 0, jnp.logical_not(_all_finite(st)))
                return st, k, jnp.where(bad, t + 1, first)
            return jax.lax.fori_loop(0, n, body, (st, k, jnp.zeros((), jnp.int32)))[2]
        return jax.vmap(one)(sts, ks)

    return init_b, jax.jit(chunk), jax.jit(replay)


@functools.lru_cache(maxsize=None)
def evaluator(metrics_fn: Callable, params: Callable, kwargs: tuple = ()):
    """Jitted metrics over a member axis: ``(problem, states) -> {name: [member]}``."""
    kw = dict(kwargs)
    return jax.jit(jax.vmap(lambda p, st: metrics_fn(p, *params(st), **kw), in_axes=(None, 0)))


def float_dtype(problem: BilevelProblem):
    """The floating dtype of the problem's iterates (hyperparameters are cast to it)."""
    for a in jax.tree_util.tree_leaves((problem.x0, problem.y0)):
        if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating):
            return jnp.asarray(a).dtype
    return jnp.zeros(()).dtype


def cast_hp(hp, dtype, members: int | None = None):
    """``hp`` leaves as arrays of ``dtype``; with ``members``, broadcast to a leading axis."""
    def one(v):
        a = jnp.asarray(v, dtype)
        return a if members is None else jnp.broadcast_to(a, (members, *a.shape))
    return jax.tree_util.tree_map(one, hp)


def _to_float(v):
    v = float(v)
    return None if math.isnan(v) else v


def _check_kind(problem, solver):
    if getattr(solver, "problem_kind", "bilevel") == "minimax" and \
            not problem.info.get("minimax"):
        raise ValueError(f"{solver.name} is a minimax solver (min_x max_y f) but problem "
                         f"{problem.name!r} is a bilevel problem: build it with "
                         "htbo.problems.minimax_problem, or use a bilevel solver")


def run(problem: BilevelProblem, solver: Solver, *, steps: int, seeds: Sequence[int] = (0,),
        n_evals: int = 20, x0=None, y0=None, writer: Callable[[list[dict]], None] | None = None,
        progress: bool = False, on_nonfinite: str = "raise", run_id: str | None = None,
        labels: dict | None = None, eval_kwargs: dict | None = None,
        metrics_fn: Callable | None = None, counters: dict | None = None,
        validate: bool = True, max_chunk_s: float = 60.0,
        checkpoint: Callable[[dict], None] | None = None, resume: dict | None = None,
        hp=None) -> RunResult:
    """Run ``solver`` on ``problem`` for ``steps`` steps and every seed in ``seeds``.

    Evaluates at step 0 and at ``n_evals`` roughly equally spaced points (the last is
    ``steps``), and at least every ``max_chunk_s`` seconds. ``on_nonfinite``: ``'raise'``
    (:class:`NonFiniteError` after writing the rows so far; ``error.result`` holds them),
    ``'stop'`` (return what was done; ``result.nonfinite`` says where) or ``'continue'``
    (the other seeds go on; ``result.diverged`` lists the failures). ``labels`` are extra
    columns for every row. ``metrics_fn(clean_problem, x, ŷ) -> dict`` replaces the default
    metrics (:func:`htbo.metrics.evaluate`, with ``eval_kwargs``, by default the problem's
    ``info["eval_kwargs"]``); ``counters`` are per-step
    counts added to rows as ``step × count``. ``checkpoint(ck)`` receives a dict with the
    states, keys, step and timing at every evaluation; ``resume=ck`` continues from it.
    ``hp`` overrides the solver's numeric hyperparameters.
    """
    seeds = check_seeds(seeds)
    hp_b = cast_hp(solver.hp if hp is None else hp, float_dtype(problem), len(seeds))
    return execute(problem, solver, hp_b, seeds, [dict(labels or {}) for _ in seeds],
                   steps=steps, n_evals=n_evals, x0=x0, y0=y0, writer=writer,
                   progress=progress, on_nonfinite=on_nonfinite, run_id=run_id,
                   eval_kwargs=eval_kwargs, metrics_fn=metrics_fn, counters=counters,
                   validate=validate, max_chunk_s=max_chunk_s, checkpoint=checkpoint,
                   resume=resume)


def execute(problem, solver, hp_b, seeds: list[int], member_labels: list[dict], *, steps: int,
            n_evals: int = 20, x0=None, y0=None, writer=None, progress: bool = False,
            on_nonfinite: str = "raise", run_id: str | None = None, eval_kwargs=None,
            metrics_fn=None, counters=None, validate: bool = True, max_chunk_s: float = 60.0,
            checkpoint=None, resume=None, progress_desc: str | None = None) -> RunResult:
    """Run the members ``i`` (hyperparameters ``hp_b[i]``, seed ``seeds[i]``, extra row
    columns ``member_labels[i]``) together; see :func:`run`."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(n_evals, bool) or not isinstance(n_evals, (int, np.integer)) or n_evals < 1:
        raise ValueError(f"n_evals must be a positive integer, got {n_evals!r}")
    if on_nonfinite not in ("raise", "stop", "continue"):
        raise ValueError(f"on_nonfinite must be 'raise', 'stop' or 'continue', got "
                         f"{on_nonfinite!r}")
    if not max_chunk_s > 0:
        raise ValueError(f"max_chunk_s must be > 0, got {max_chunk_s}")
    _check_kind(problem, solver)
    if validate:
        validate_problem(problem, tuple(v for k, v in solver.hparams.items()
                                        if k.startswith("batch") and isinstance(v, int)))
    x0 = problem.x0 if x0 is None else x0
    y0 = problem.y0 if y0 is None else y0
    tree_check_finite(x0, f"problem {problem.name!r}: x0")
    tree_check_finite(y0, f"problem {problem.name!r}: y0")
    run_id = run_id or uuid.uuid4().hex[:8]
    clean = problem.replace(noise=None)
    init_b, chunk, replay = programs(solver.init, solver.step)
    if eval_kwargs is None:  # a problem may say how accurately to evaluate it
        eval_kwargs = dict(problem.info.get("eval_kwargs", ()) or ())
    ev = evaluator(metrics_fn or evaluate, solver.params,
                   tuple(sorted(eval_kwargs.items())) if metrics_fn is None else ())
    B = len(seeds)
    base = dict(run_id=run_id, solver=solver.name, problem=problem.name,
                noise=str(problem.noise) if problem.noise else "none")
    compile_s = 0.0
    if resume is None:
        pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds))
        keys = pairs[:, 1]
        t0 = time.perf_counter()
        states = init_b(problem, x0, y0, pairs[:, 0], hp_b)
        jax.block_until_ready(states)
        compile_s += time.perf_counter() - t0  # first call compiles (init runs once)
        done, run_s, dead = 0, 0.0, {}
    else:
        states, keys = resume["states"], resume["keys"]
        done, run_s = int(resume["step"]), float(resume["run_s"])
        dead = {int(i): int(s) for i, s in resume.get("dead", {}).items()}
    rows: list[dict] = []
    diverged: list[dict] = [dict(member_labels[i], seed=seeds[i], step=s)
                            for i, s in dead.items()]
    nonfinite = None

    def emit(step, states, keys):
        metrics = jax.device_get(ev(clean, states))
        new = []
        for i, s in enumerate(seeds):
            if i in dead:
                continue
            r = dict(base, **member_labels[i], seed=s, step=step,
                     sfo=step * solver.sfo_per_step, hvp=step * solver.hvp_per_step,
                     time_s=run_s, **{k: step * c for k, c in (counters or {}).items()})
            r.update({k: _to_float(np.asarray(v)[i]) for k, v in metrics.items()})
            new.append(r)
        rows.extend(new)
        if writer is not None:
            writer(new)
        if checkpoint is not None:
            checkpoint(dict(states=states, keys=keys, step=step, run_s=run_s,
                            dead={str(i): s for i, s in dead.items()}))

    if resume is None:
        emit(0, states, keys)
    marks = [m for m in sorted(set(int(round(steps * i / n_evals)) for i in range(1, n_evals + 1)))
             if m > done]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=done, unit="step", leave=False,
                   desc=progress_desc or f"{solver.name} on {problem.name}")
    compiled = None
    per_step = None
    last_emit = time.monotonic()
    try:
        for m in marks:
            while done < m and nonfinite is None:
                n = m - done
                n = 1 if per_step is None else min(n, max(1, int(max_chunk_s / per_step)))
                if compiled is None:
                    t0 = time.perf_counter()
                    compiled = chunk.lower(problem, states, keys, np.int32(n)).compile()
                    compile_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                new_states, new_keys, ok = compiled(problem, states, keys, np.int32(n))
                jax.block_until_ready((new_states, new_keys, ok))
                dt = time.perf_counter() - t0
                per_step = dt / n
                ok = np.asarray(ok)
                fresh = [i for i in np.flatnonzero(~ok) if i not in dead]
                if fresh:
                    first = np.asarray(replay(problem, states, keys, np.int32(n)))
                    failures = sorted((done + int(first[i]) if first[i] > 0 else done + n, i)
                                      for i in fresh)
                    if on_nonfinite != "continue":
                        step, i = failures[0]
                        nonfinite = dict(seed=seeds[i], step=step)
                        diverged.append(dict(member_labels[i], seed=seeds[i], step=step))
                        break
                    for step, i in failures:
                        dead[int(i)] = step
                        diverged.append(dict(member_labels[i], seed=seeds[i], step=step))
                run_s += dt
                states, keys, done = new_states, new_keys, done + n
                if bar is not None:
                    bar.update(n)
                if done == m or time.monotonic() - last_emit >= max_chunk_s:
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
    result = RunResult(rows, compile_s, run_s, done, states,
                       nonfinite or (dict(seed=earliest["seed"], step=earliest["step"])
                                     if earliest else None),
                       meta=dict(base, steps=steps, seeds=seeds, sfo_per_step=solver.sfo_per_step,
                                 hvp_per_step=solver.hvp_per_step, compile_s=compile_s,
                                 run_s=run_s, hparams=dict(solver.hparams)),
                       diverged=diverged, keys=keys)
    if nonfinite is not None and on_nonfinite == "raise":
        raise NonFiniteError(
            f"{solver.name} on {problem.name}: iterates became non-finite (NaN/inf) at step "
            f"{nonfinite['step']} for seed {nonfinite['seed']}; the history up to step {done} "
            "was kept (error.result). Try smaller step sizes.", nonfinite["step"],
            nonfinite["seed"], result)
    return result
