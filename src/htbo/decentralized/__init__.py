"""Decentralized bilevel optimization: topologies, neighbour mixing, the normalized
variance-reduced method and its baselines, simulated and multi-process execution."""
from __future__ import annotations

from ..noise import parse_noise
from .mixing import make_dense_mixer, make_mixer
from .problems import (DEC_PROBLEMS, decentralized_hypercleaning, decentralized_pl,
                       decentralized_quadratic, pooled_problem)
from .simulate import as_network_solver, network_evaluate, network_metrics, run_network
from .solvers import DEC_SOLVERS, DecSolver, dnsvrb
from .topology import check_mixing_matrix, parse_network, spectral_gap

__all__ = ["DEC_PROBLEMS", "DEC_SOLVERS", "DecSolver", "dnsvrb", "decentralized_quadratic",
           "decentralized_pl", "decentralized_hypercleaning", "pooled_problem", "make_mixer",
           "make_dense_mixer", "parse_network", "spectral_gap", "check_mixing_matrix",
           "as_network_solver", "network_metrics", "network_evaluate", "run_network",
           "make_network_problem", "make_dec_solver", "decentralized_spec"]


def make_network_problem(name: str, agents: int, noise=None, **kwargs):
    try:
        ctor = DEC_PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown decentralized problem {name!r}; available: "
                         f"{sorted(DEC_PROBLEMS)}") from None
    try:
        p = ctor(m=agents, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for decentralized problem {name!r}: {e}") from None
    return p.replace(noise=parse_noise(noise)) if noise is not None else p


def make_dec_solver(name: str, **hp) -> DecSolver:
    try:
        ctor = DEC_SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown decentralized solver {name!r}; available: "
                         f"{sorted(DEC_SOLVERS)}") from None
    try:
        return ctor(**hp)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters for {name!r}: {e}") from None


def decentralized_spec(agents, problem, solver, noise=None, network="ring", hp=None, seed=0,
                       problem_args=None):
    """Everything one agent process needs (used by ``htbo launch``): the stacked problem
    (``problem_args``: its constructor's keyword arguments), the one-agent solver, the mixer
    and the network-average ``evaluate(problem, xs, ys)`` (:func:`network_evaluate`: the
    same metrics as the simulated mode)."""
    p = make_network_problem(problem, agents, noise=noise, **{"seed": seed,
                                                               **(problem_args or {})})
    mix = make_mixer(parse_network(network, agents))
    return dict(problem=p, solver=make_dec_solver(solver, **(hp or {})), mix=mix,
                evaluate=network_evaluate)
