"""Decentralized stochastic bilevel optimization: topologies, named-axis mixing, per-agent
solvers, simulated (vmap) and distributed (shard_map, see ``distributed.py``) execution."""
from __future__ import annotations

from .mixing import make_mixer
from .problems import DEC_PROBLEMS
from .solvers import DecSolver, d_clip, d_sgd, d_storm, dnsvrb
from .topology import check_mixing_matrix, edge_coloring, parse_network, spectral_gap

__all__ = ["DEC_SOLVERS", "DEC_PROBLEMS", "DecSolver", "make_mixer", "parse_network",
           "spectral_gap", "edge_coloring", "check_mixing_matrix", "decentralized_spec"]

DEC_SOLVERS = {"d-nsvrb": dnsvrb, "d-storm": d_storm, "d-clip": d_clip, "d-sgd": d_sgd}


def decentralized_spec(agents, problem, solver, noise=None, network="ring", hp=None, seed=0):
    """Spec used by ``htbo launch``: stacked problem, per-agent solver, mixer, evaluator."""
    from ..problems.base import with_noise
    from .metrics import evaluate_network
    if problem not in DEC_PROBLEMS:
        raise ValueError(f"unknown decentralized problem {problem!r}; choose from "
                         f"{sorted(DEC_PROBLEMS)}")
    if solver not in DEC_SOLVERS:
        raise ValueError(f"unknown decentralized solver {solver!r}; choose from "
                         f"{sorted(DEC_SOLVERS)}")
    W = parse_network(network if ":" in str(network) else f"{network}:{agents}")
    if len(W) != agents:
        raise ValueError(f"network {network!r} has {len(W)} agents, expected {agents}")
    prob = with_noise(DEC_PROBLEMS[problem](agents=agents, seed=seed), noise)
    return dict(problem=prob, solver=DEC_SOLVERS[solver](**(hp or {})), mix=make_mixer(W),
                evaluate=lambda p, xs, ys: {k: v for k, v in evaluate_network(p, xs, ys).items()
                                            if k != "consensus"},
                labels=dict(network=str(network)))
