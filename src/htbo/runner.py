"""The runner: jit + ``lax.scan`` chunks of solver steps between evaluations, ``vmap`` over seeds.

* Seeds run together in one compiled program (``vmap`` over per-seed keys); seed ``s``
  always gets ``jax.random.key(s)``, so its history does not depend on the other seeds.
* Timing is honest: every chunk is compiled ahead of time (compile time reported
  separately), and the clock stops only after ``block_until_ready``. Evaluation is outside
  the clock and never counted in SFO/HVP. ``time_s`` is the compiled-step time of the whole
  vmapped batch of seeds.
* Non-finite iterates are detected at the end of each chunk at no per-step cost; the chunk is
  then replayed from its saved start (same keys, same steps) to find the first bad step.
* Rows are handed to ``writer`` as soon as they are produced, so an interrupted run keeps
  its data.
"""
from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .metrics import evaluate
from .problems.base import BilevelProblem, tree_check_finite, validate_problem
from .solvers.base import Solver

__all__ = ["run", "RunResult", "NonFiniteError", "steps_for_budget"]


class NonFiniteError(FloatingPointError):
    """The iterates became NaN/inf; ``step`` is the first bad step, ``seed`` its seed."""

    def __init__(self, message: str, step: int, seed: int):
        super().__init__(message)
        self.step, self.seed = step, seed


@dataclass
class RunResult:
    rows: list[dict]
    compile_s: float
    run_s: float
    steps: int
    states: Any = None
    nonfinite: dict | None = None
    meta: dict = field(default_factory=dict)

    def final(self, metric: str = "grad_norm") -> np.ndarray:
        """The metric at the last evaluation, one value per seed (inf for diverged seeds)."""
        last = max(r["step"] for r in self.rows)
        vals = {r["seed"]: r[metric] for r in self.rows if r["step"] == last}
        if self.nonfinite is not None:
            vals[self.nonfinite["seed"]] = math.inf
        return np.array([vals[s] for s in sorted(vals)], float)


def steps_for_budget(solver: Solver, sfo_budget: int) -> int:
    """The number of steps ``solver`` can take within ``sfo_budget`` SFO calls (>= 1)."""
    return max(1, int(sfo_budget) // solver.sfo_per_step)


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _batch_sizes(solver: Solver) -> tuple[int, ...]:
    return tuple(v for k, v in solver.hparams.items()
                 if k.startswith("batch") and isinstance(v, int))


def _to_float(v):
    v = float(v)
    return v if math.isfinite(v) else (None if math.isnan(v) else v)


def run(problem: BilevelProblem, solver: Solver, *, steps: int, seeds: Sequence[int] = (0,),
        n_evals: int = 20, x0=None, y0=None, writer: Callable[[list[dict]], None] | None = None,
        progress: bool = False, on_nonfinite: str = "raise", run_id: str | None = None,
        labels: dict | None = None, eval_kwargs: dict | None = None,
        evaluate_fn: Callable | None = None, counters: dict | None = None,
        validate: bool = True) -> RunResult:
    """Run ``solver`` on ``problem`` for ``steps`` steps and every seed in ``seeds``.

    Evaluates at step 0 and at ``n_evals`` roughly equally spaced points (the last is
    ``steps``). ``on_nonfinite``: ``'raise'`` (:class:`NonFiniteError` after writing the rows
    so far) or ``'stop'`` (return what was done; ``result.nonfinite`` says where).
    ``labels`` are extra columns for every row (e.g. a tuned configuration's name).
    ``evaluate_fn(clean_problem, state) -> dict`` replaces the default metrics (used by the
    decentralized layer); ``counters`` are per-step counts added to rows as ``step × count``
    (e.g. communication rounds); ``validate=False`` skips :func:`validate_problem` for
    callers that validate themselves.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if n_evals < 1:
        raise ValueError(f"n_evals must be >= 1, got {n_evals}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    if on_nonfinite not in ("raise", "stop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'stop', got {on_nonfinite!r}")
    if validate:
        validate_problem(problem, _batch_sizes(solver))
    x0 = problem.x0 if x0 is None else x0
    y0 = problem.y0 if y0 is None else y0
    tree_check_finite(x0, f"problem {problem.name!r}: x0")
    tree_check_finite(y0, f"problem {problem.name!r}: y0")
    run_id = run_id or uuid.uuid4().hex[:8]
    clean = problem.replace(noise=None)
    eval_kwargs = eval_kwargs or {}

    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds))
    init_keys, keys = pairs[:, 0], pairs[:, 1]
    states = jax.jit(jax.vmap(solver.init, in_axes=(None, None, None, 0)))(problem, x0, y0,
                                                                          init_keys)

    def chunk(prob, sts, ks, n):  # n is traced: one compile serves every chunk length
        def one(st, k):
            def body(_, c):
                st, k = c
                k, sub = jax.random.split(k)
                return solver.step(prob, st, sub), k
            return jax.lax.fori_loop(0, n, body, (st, k))
        sts, ks = jax.vmap(one)(sts, ks)
        return sts, ks, jax.vmap(_all_finite)(sts)

    def replay(prob, st, k, n):  # one seed, per-step finiteness, only used after a failure
        def body(c, _):
            st, k = c
            k, sub = jax.random.split(k)
            st = solver.step(prob, st, sub)
            return (st, k), _all_finite(st)
        return jax.lax.scan(body, (st, k), None, length=n)[1]

    evaluate_fn = evaluate_fn or (lambda p, st: evaluate(p, *solver.params(st), **eval_kwargs))
    ev = jax.jit(jax.vmap(evaluate_fn, in_axes=(None, 0)))
    marks = sorted(set(int(round(steps * i / n_evals)) for i in range(1, n_evals + 1)))
    compiled = None
    compile_s = run_s = 0.0
    rows: list[dict] = []
    base = dict(run_id=run_id, solver=solver.name, problem=problem.name,
                noise=str(problem.noise) if problem.noise else "none", **(labels or {}))

    def emit(step, metrics):
        metrics = jax.device_get(metrics)
        new = []
        for i, s in enumerate(seeds):
            r = dict(base, seed=s, step=step, sfo=step * solver.sfo_per_step,
                     hvp=step * solver.hvp_per_step, time_s=run_s,
                     **{k: step * c for k, c in (counters or {}).items()})
            r.update({k: _to_float(np.asarray(v)[i]) for k, v in metrics.items()})
            new.append(r)
        rows.extend(new)
        if writer is not None:
            writer(new)

    emit(0, ev(clean, states))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"{solver.name} on {problem.name}", unit="step",
                   leave=False)
    done, nonfinite = 0, None
    try:
        for m in marks:
            n = m - done
            if compiled is None:
                t0 = time.perf_counter()
                compiled = jax.jit(chunk).lower(problem, states, keys, np.int32(n)).compile()
                compile_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            new_states, new_keys, ok = compiled(problem, states, keys, np.int32(n))
            jax.block_until_ready((new_states, new_keys, ok))
            run_s += time.perf_counter() - t0
            ok = np.asarray(ok)
            if not ok.all():
                first = []  # (first bad step, seed) of every failing seed; report the earliest
                for i in np.flatnonzero(~ok):
                    st_i = jax.tree_util.tree_map(lambda a: a[i], states)
                    flags = np.asarray(jax.jit(replay, static_argnums=3)(problem, st_i,
                                                                         keys[i], n))
                    first.append((done + int(np.argmin(flags)) + 1, seeds[i]))
                bad, seed = min(first)
                nonfinite = dict(seed=seed, step=bad)
                break
            states, keys, done = new_states, new_keys, m
            emit(done, ev(clean, states))
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    result = RunResult(rows, compile_s, run_s, done, states, nonfinite,
                       meta=dict(base, steps=steps, seeds=seeds, sfo_per_step=solver.sfo_per_step,
                                 hvp_per_step=solver.hvp_per_step, compile_s=compile_s,
                                 run_s=run_s, hparams={k: repr(v) for k, v in
                                                       solver.hparams.items()}))
    if nonfinite is not None and on_nonfinite == "raise":
        raise NonFiniteError(
            f"{solver.name} on {problem.name}: iterates became non-finite (NaN/inf) at step "
            f"{nonfinite['step']} for seed {nonfinite['seed']}; the history up to step {done} "
            "was kept. Try smaller step sizes.", nonfinite["step"], nonfinite["seed"])
    return result
