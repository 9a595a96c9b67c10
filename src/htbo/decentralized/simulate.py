"""Simulated decentralized runs: all agents in one process, ``jax.vmap(axis_name="agents")``
of the per-agent step inside ``jit`` + ``lax.scan`` chunks between evaluation points."""
from __future__ import annotations

import time
import uuid

import jax
import numpy as np

from .metrics import evaluate_network
from .mixing import make_mixer

__all__ = ["sim_step", "sim_init", "run_simulated", "DivergenceError"]

AXIS = "agents"


class DivergenceError(FloatingPointError):
    pass


def sim_init(solver):
    """jitted ``(problem, key) -> states`` (stacked over agents)."""
    return jax.jit(jax.vmap(lambda p, k: solver.init(p, p.x0, p.y0, k), in_axes=(0, None),
                            axis_name=AXIS))


def sim_step(solver, mix):
    """jitted ``(problem, states, key) -> states``: one step of every agent (shared key)."""
    return jax.jit(jax.vmap(lambda p, s, k: solver.step(p, s, k, mix), in_axes=(0, 0, None),
                            axis_name=AXIS))


def _chunk(solver, mix, n):
    step = jax.vmap(lambda p, s, k: solver.step(p, s, k, mix), in_axes=(0, 0, None),
                    axis_name=AXIS)

    def chunk(p, st, key):
        def body(c, _):
            s, k = c
            k, sub = jax.random.split(k)
            return (step(p, s, sub), k), None
        (st, key), _ = jax.lax.scan(body, (st, key), None, length=n)
        return st, key
    return jax.jit(chunk)


def _finite(tree):
    return all(bool(np.isfinite(np.asarray(a)).all()) for a in jax.tree_util.tree_leaves(tree))


def run_simulated(problem, solver, W, *, steps, seeds=(0,), n_evals=20, writer=None,
                  labels=None, evaluate=evaluate_network, dense=False, on_nonfinite="raise"):
    """Run ``solver`` on the stacked ``problem`` over the network ``W``. Keys: per seed
    ``ikey, key = split(key(seed))``; step keys ``key, sub = split(key)`` (the distributed
    mode uses the same stream). Rows: run_id, solver, problem, noise, seed, step, sfo (per
    agent), hvp, time_s, comm_rounds, bytes_sent (per agent), metrics at x̄, consensus.
    A non-finite state raises :class:`DivergenceError` (``on_nonfinite='stop'``: stop
    that seed and record ``diverged``)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    m = len(W)
    lead = {np.shape(a)[0] for a in jax.tree_util.tree_leaves((problem.x0, problem.y0))}
    if lead != {m}:
        raise ValueError(f"problem is stacked over {sorted(lead)} agents but W is {m}x{m}")
    mix = make_mixer(W, AXIS, dense=dense)
    init = sim_init(solver)
    params = jax.jit(jax.vmap(solver.params))
    deg = (np.asarray(W) != 0).sum(1) - 1
    n_edges_max, mean_degree = int(deg.max()), float(deg.mean())
    run_id = uuid.uuid4().hex[:8]
    base = dict(run_id=run_id, solver=solver.name, problem=problem.name,
                noise=str(problem.noise) if problem.noise else "none", mode="simulated",
                agents=m, **(labels or {}))
    marks = sorted(set(int(round(steps * i / n_evals)) for i in range(1, n_evals + 1)))
    chunks, rows = {}, []
    compile_s = 0.0
    for seed in seeds:
        ikey, key = jax.random.split(jax.random.key(int(seed)))
        states = init(problem, ikey)
        # per agent and step: each mixed tree (w, and s with tracking) goes to every
        # neighbour once; averaged over agents
        per_msg = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(states["w"])) / m
        bytes_step = per_msg * solver.comm_per_step * mean_degree
        t_run, done = 0.0, 0

        def emit(step, states):
            xs, ys = params(states)
            r = dict(base, seed=int(seed), step=step, sfo=step * solver.sfo_per_step,
                     hvp=step * solver.hvp_per_step, time_s=t_run,
                     comm_rounds=step * solver.comm_per_step,
                     bytes_sent=step * bytes_step, neighbours_max=n_edges_max)
            r.update(evaluate(problem, xs, ys))
            rows.append(r)
            if writer is not None:
                writer([r])

        emit(0, states)
        for mk in marks:
            n = mk - done
            if n not in chunks:
                t0 = time.perf_counter()
                chunks[n] = _chunk(solver, mix, n).lower(problem, states, key).compile()
                compile_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            new, key = chunks[n](problem, states, key)
            jax.block_until_ready(new)
            t_run += time.perf_counter() - t0
            if not _finite(new):
                msg = (f"{solver.name} diverged (non-finite iterates) between steps {done} "
                       f"and {mk} (seed {seed}); reduce the step sizes or use normalize=True")
                if on_nonfinite == "raise":
                    raise DivergenceError(msg)
                rows.append(dict(base, seed=int(seed), step=mk, diverged=True, message=msg))
                break
            states, done = new, mk
            emit(done, states)
    return rows
