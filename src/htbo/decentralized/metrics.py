"""Decentralized metrics: hypergradient at the network average and consensus error."""
from __future__ import annotations

import jax
import numpy as np

from ..metrics import evaluate as core_evaluate

__all__ = ["consensus", "evaluate_network"]


def consensus(xs) -> float:
    """``(1/m) Σ_i ‖x_i − x̄‖²`` over stacked pytrees (leading axis = agents)."""
    leaves = [np.asarray(a, float) for a in jax.tree_util.tree_leaves(xs)]
    return float(sum(np.sum((a - a.mean(0)) ** 2) for a in leaves) / leaves[0].shape[0])


def evaluate_network(problem, xs, ys) -> dict:
    """Core metrics (exact ‖∇φ‖ where the problem gives it) at ``x̄``, ``ȳ``; the stacked
    problem's closed forms refer to the network average. Adds ``consensus``."""
    xbar = jax.tree_util.tree_map(lambda a: np.asarray(a).mean(0), xs)
    ybar = jax.tree_util.tree_map(lambda a: np.asarray(a).mean(0), ys)
    p0 = jax.tree_util.tree_map(lambda a: a[0], problem)
    out = {k: float(v) for k, v in core_evaluate(p0, xbar, ybar).items()}
    out["consensus"] = consensus(xs)
    return out
