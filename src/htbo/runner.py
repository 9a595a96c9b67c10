"""``htbo.run``: one solver, several seeds, one compiled program.

* A member is one (hyperparameter point, seed) pair. :func:`run` runs one point over several
  seeds; :func:`htbo.tuning.tune` runs a whole grid × seeds. All members run together in one
  compiled program (``vmap`` over their states, whose ``hp`` field holds each member's numeric
  hyperparameters). Seed ``s`` always gets ``jax.random.key(s)``, so a member's history does
  not depend on the other members (up to float rounding: XLA may reduce differently when
  the batch size changes).
* Compiled programs are reused: they are cached per solver structure (its canonical
  ``step``, see :mod:`htbo.solvers.base`) and argument shapes, so runs that differ only in
  numeric hyperparameters compile once.
* The loop itself (evaluation marks, honest timing, non-finite detection and replay, rows,
  checkpoints, resume) is :func:`htbo.driver.drive`, shared with the distributed mode.
"""
from __future__ import annotations

import uuid
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .driver import NonFiniteError, RunResult, VmapExecutor, drive
from .problems.base import BilevelProblem, tree_check_finite, validate_problem

__all__ = ["run", "execute", "RunResult", "NonFiniteError", "check_seeds", "cast_hp",
           "float_dtype", "batch_sizes"]


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


def batch_sizes(solver) -> tuple[int, ...]:
    """The solver's minibatch sizes (its integer ``batch*`` hyperparameters)."""
    return tuple(v for k, v in getattr(solver, "hparams", {}).items()
                 if k.startswith("batch") and isinstance(v, int) and not isinstance(v, bool))


def _check_kind(problem, solver):
    if getattr(solver, "kind", "bilevel") == "minimax" and problem.kind != "minimax":
        raise ValueError(f"{solver.name} is a minimax solver (min_x max_y f) but problem "
                         f"{problem.name!r} is a bilevel problem: build it with "
                         "htbo.problems.minimax_problem, or use a bilevel solver")
    if getattr(solver, "kind", "bilevel") == "decentralized":
        raise ValueError(f"{solver.name} is a decentralized solver (written for one agent): "
                         "run it on a network (htbo.decentralized.run_network, or --network)")


def run(problem: BilevelProblem, solver, *, steps: int, seeds: Sequence[int] = (0,),
        n_evals: int = 20, x0=None, y0=None, writer: Callable[[list[dict]], None] | None = None,
        progress: bool = False, on_nonfinite: str = "raise", run_id: str | None = None,
        labels: dict | None = None, eval_options: dict | None = None,
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
    metrics (:func:`htbo.metrics.evaluate`, with ``eval_options``, by default the problem's);
    ``counters`` are per-step counts added to rows as ``step × count``. ``checkpoint(ck)``
    receives a dict with the states, keys, step and timing at every evaluation; ``resume=ck``
    continues from it. ``hp`` overrides the solver's numeric hyperparameters.
    """
    seeds = check_seeds(seeds)
    hp_b = cast_hp(solver.hp if hp is None else hp, float_dtype(problem), len(seeds))
    return execute(problem, solver, hp_b, seeds, [dict(labels or {}) for _ in seeds],
                   steps=steps, n_evals=n_evals, x0=x0, y0=y0, writer=writer,
                   progress=progress, on_nonfinite=on_nonfinite, run_id=run_id,
                   eval_options=eval_options, metrics_fn=metrics_fn, counters=counters,
                   validate=validate, max_chunk_s=max_chunk_s, checkpoint=checkpoint,
                   resume=resume)


def execute(problem, solver, hp_b, seeds: list[int], member_labels: list[dict], *, steps: int,
            n_evals: int = 20, x0=None, y0=None, writer=None, progress: bool = False,
            on_nonfinite: str = "raise", run_id: str | None = None, eval_options=None,
            metrics_fn=None, counters=None, validate: bool = True, max_chunk_s: float = 60.0,
            checkpoint=None, resume=None, progress_desc: str | None = None,
            until: int | None = None, time_share=None) -> RunResult:
    """Run the members ``i`` (hyperparameters ``hp_b[i]``, seed ``seeds[i]``, extra row
    columns ``member_labels[i]``) together on this process; see :func:`run`."""
    for name, v in (("steps", steps), ("n_evals", n_evals)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    _check_kind(problem, solver)
    if validate:
        validate_problem(problem, batch_sizes(solver))
    x0 = problem.x0 if x0 is None else x0
    y0 = problem.y0 if y0 is None else y0
    tree_check_finite(x0, f"problem {problem.name!r}: x0")
    tree_check_finite(y0, f"problem {problem.name!r}: y0")
    ex = VmapExecutor(problem, solver, hp_b, seeds, x0=x0, y0=y0, metrics_fn=metrics_fn,
                      eval_options=eval_options)
    base = dict(run_id=run_id or uuid.uuid4().hex[:8], solver=solver.name,
                problem=problem.name, noise=str(problem.noise) if problem.noise else "none")
    from .metrics import curvature_watch
    watch = curvature_watch(problem, solver.program()[2], metrics_fn)
    result = drive(ex, steps=steps, n_evals=n_evals, seeds=list(seeds),
                   member_labels=member_labels, base=base, sfo_per_step=solver.sfo_per_step,
                   hvp_per_step=solver.hvp_per_step, counters=counters, writer=writer,
                   checkpoint=checkpoint, resume=resume, on_nonfinite=on_nonfinite,
                   max_chunk_s=max_chunk_s, progress=progress,
                   progress_desc=progress_desc or f"{solver.name} on {problem.name}",
                   until=until, time_share=time_share, on_emit=watch)
    result.meta["hparams"] = dict(getattr(solver, "hparams", {}))
    if result.nonfinite is not None and on_nonfinite == "raise":
        nf = result.nonfinite
        raise NonFiniteError(
            f"{solver.name} on {problem.name}: iterates became non-finite (NaN/inf) at step "
            f"{nf['step']} for seed {nf['seed']}; the history up to step {result.steps} "
            "was kept (error.result). Try smaller step sizes.", nf["step"], nf["seed"], result)
    return result
