"""Simulated mode: all agents in one process, stacked on a leading axis and ``vmap``\\ ped
with ``axis_name="agents"``, run by the core runner (members ``vmap``\\ ped on top).

:class:`NetworkSolver` lifts a one-agent decentralized solver to a runner-ready solver over
stacked states, so the runner's jit/loop chunks, honest timing, incremental rows and
non-finite detection apply unchanged; the distributed mode runs the very same one-agent step
under ``shard_map``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..metrics import evaluate
from ..problems.base import validate_problem
from ..runner import run
from .mixing import AXIS, make_mixer
from .problems import agent_slice, pooled_problem
from .topology import check_mixing_matrix

__all__ = ["NetworkSolver", "as_network_solver", "network_metrics", "network_evaluate",
           "network_setup", "run_network", "mixer_for"]


class NetworkSolver:
    """A one-agent solver ``dec`` on the network of ``mix``: state = every agent's state
    stacked (the agents share the numeric hyperparameters ``hp``; each agent's state holds
    a copy). Counts are per agent."""

    kind = "network"

    def __init__(self, dec, mix):
        self.dec, self.mix = dec, mix

    @property
    def name(self):
        return self.dec.name

    @property
    def hp(self):
        return self.dec.hp

    @property
    def hparams(self):
        return self.dec.hparams

    @property
    def sfo_per_step(self):
        return self.dec.sfo_per_step

    @property
    def hvp_per_step(self):
        return self.dec.hvp_per_step

    @property
    def program_key(self):
        return ("network", self.dec.program_key, id(self.mix))

    def program(self):
        return _network_program(*self.dec.program(), self.mix)

    def start(self, problem, key):
        return self.program()[0](problem, problem.x0, problem.y0, key, self.hp)


as_network_solver = NetworkSolver


@functools.lru_cache(maxsize=None)
def _network_program(dec_init, dec_step, dec_params, mix):
    """Stable functions per (one-agent program, mixer), so compiled programs are reused."""
    def init(problem, x0, y0, key, hp):
        return jax.vmap(lambda p, x, y: dec_init(p, x, y, key, hp), axis_name=AXIS)(problem, x0,
                                                                                   y0)

    def step(problem, state, key):
        return jax.vmap(lambda p, s: dec_step(p, s, key, mix), axis_name=AXIS)(problem, state)

    return init, step, jax.vmap(dec_params)


@functools.lru_cache(maxsize=64)
def _cached_mixer(w_bytes: bytes, m: int):
    return make_mixer(np.frombuffer(w_bytes, np.float64).reshape(m, m))


def mixer_for(W):
    """``make_mixer(W)``, the same object for equal matrices (so programs compile once)."""
    W = check_mixing_matrix(W)
    return _cached_mixer(W.tobytes(), len(W))


def network_metrics(problem, xs, yhats) -> dict:
    """Metrics of a stacked ``problem`` at the network averages ``x̄``, ``ȳ`` (stacked
    ``xs``, ``yhats``): ``grad_norm`` = ‖∇φ(x̄)‖, ``phi`` = φ(x̄), ``y_err`` = ‖ȳ − y*(x̄)‖,
    the problem's user metrics at (x̄, ȳ), ``consensus`` = ``(1/m) Σ ‖x_i − x̄‖²`` and, for
    each name in the ``agent_metrics`` trait, ``avg_<name>`` = ``(1/m) Σ_i metric(x_i, ŷ_i)``
    (e.g. ``avg_test_acc``, the network-average test accuracy).

    With the network closed forms (``y_star``, ``phi``, ``grad_phi``) these are used;
    otherwise (evaluation only) :func:`htbo.metrics.evaluate` runs on the pooled problem
    (:func:`pooled_problem`: L-BFGS lower solve + CG implicit gradient, with the problem's
    ``eval_options``), whose φ is the network φ when every ``f_i``, ``g_i`` is a mean over an
    equal-size shard. Jit-compatible; a module-level function, so compiled programs are
    reused."""
    mean0 = lambda t: jax.tree_util.tree_map(lambda a: jnp.mean(a, 0), t)  # noqa: E731
    xbar, ybar = mean0(xs), mean0(yhats)
    dev = jax.tree_util.tree_map(lambda a, b: a - b[None], xs, xbar)
    m = jax.tree_util.tree_leaves(xs)[0].shape[0]
    out = {"consensus": sum(jnp.sum(v**2) for v in jax.tree_util.tree_leaves(dev)) / m}
    if problem.grad_phi is not None and problem.y_star is not None and problem.phi is not None:
        out.update(grad_norm=optax.tree.norm(problem.grad_phi(xbar)), phi=problem.phi(xbar),
                   y_err=optax.tree.norm(optax.tree.sub(ybar, problem.y_star(xbar))))
        if problem.metrics is not None:
            out.update(problem.metrics(xbar, ybar))
    else:
        out.update(evaluate(pooled_problem(problem), xbar, ybar,
                            **dict(problem.eval_options or {})))
    names = tuple(problem.agent_metrics or ())
    if names and problem.metrics is not None:
        per = jax.vmap(problem.metrics)(xs, yhats)
        out.update({f"avg_{k}": jnp.mean(per[k]) for k in names})
    return out


_jit_network_metrics = jax.jit(network_metrics)


def network_evaluate(problem, xs, yhats) -> dict:
    """:func:`network_metrics` jitted, on the clean problem, from host arrays."""
    return _jit_network_metrics(problem.replace(noise=None), xs, yhats)


def network_setup(problem, dec, W, labels: dict | None = None, mode: str = "simulated"):
    """Check a stacked ``problem`` against ``W`` and lift ``dec``: returns ``(solver,
    run_kwargs)`` for :func:`htbo.run` / :func:`htbo.tune` (network metrics, communication
    counters, agent labels)."""
    W = check_mixing_matrix(W)
    m = len(W)
    lead = {np.shape(a)[0] for a in jax.tree_util.tree_leaves((problem.x0, problem.y0))}
    if lead != {m}:
        raise ValueError(f"problem {problem.name!r} is stacked over {sorted(lead)} agents but W "
                         f"is {m}×{m}")
    validate_problem(agent_slice(problem), (dec.hparams.get("batch", 1),))
    mix = mixer_for(W)
    from .distributed import count_communication  # bytes read off the traced step
    counters = {"comm_rounds": dec.comm_per_step * mix.rounds,
                "bytes_sent": count_communication(dec, problem, mix, m)["bytes"] / m}
    return NetworkSolver(dec, mix), dict(
        labels=dict(labels or {}, agents=m, mode=mode), metrics_fn=network_metrics,
        counters=counters, validate=False)


def run_network(problem, dec, W, *, steps: int, seeds=(0,), n_evals: int = 20,
                labels: dict | None = None, **run_kwargs):
    """Simulated run of the one-agent solver ``dec`` on the stacked ``problem`` over ``W``
    (other keyword arguments as :func:`htbo.run`).

    Rows carry ``sfo`` (per agent), ``comm_rounds`` and ``bytes_sent`` (per agent),
    ``consensus`` and the network-average metrics of :func:`network_metrics`.
    """
    solver, kw = network_setup(problem, dec, W, labels)
    return run(problem, solver, steps=steps, seeds=seeds, n_evals=n_evals, **kw, **run_kwargs)
