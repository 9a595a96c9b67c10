"""Decentralized bilevel optimization: topologies, neighbour mixing, the normalized
variance-reduced method and its baselines, simulated and multi-process execution."""
from __future__ import annotations

from ..noise import parse_noise
from .mixing import make_dense_mixer, make_mixer
from .problems import (DEC_PROBLEMS, decentralized_hypercleaning, decentralized_pl,
                       decentralized_quadratic, pooled_problem)
from .simulate import (NetworkSolver, as_network_solver, mixer_for, network_evaluate,
                       network_metrics, network_setup, run_network)
from .solvers import DEC_SOLVERS, DNSVRB, dnsvrb
from .topology import TOPOLOGIES, check_mixing_matrix, parse_network, spectral_gap

__all__ = ["DEC_PROBLEMS", "DEC_SOLVERS", "TOPOLOGIES", "DNSVRB", "dnsvrb",
           "decentralized_quadratic", "decentralized_pl", "decentralized_hypercleaning",
           "pooled_problem", "make_mixer", "make_dense_mixer", "mixer_for", "parse_network",
           "spectral_gap", "check_mixing_matrix", "NetworkSolver", "as_network_solver",
           "network_metrics", "network_evaluate", "network_setup", "run_network",
           "make_network_problem", "make_dec_solver"]


def make_network_problem(name: str, agents: int, noise=None, **kwargs):
    """A registered decentralized problem stacked over ``agents``, with injected ``noise``."""
    ctor = DEC_PROBLEMS.get(name)
    try:
        p = ctor(m=agents, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for decentralized problem {name!r}: {e}") from None
    return p.replace(noise=parse_noise(noise)) if noise is not None else p


def make_dec_solver(name: str, **hp):
    """A registered one-agent decentralized solver with keyword hyperparameters."""
    from ..solvers import make_solver
    return make_solver(name, registry=DEC_SOLVERS, **hp)
