"""Neighbour averaging ``Σ_j W_ij x_j`` for ONE agent, with named-axis collectives.

Inside ``jax.vmap(..., axis_name="agents")`` (simulated) or ``shard_map`` over a mesh axis
``"agents"`` (one process per agent) the same code runs: each edge-colour matching is one
``jax.lax.ppermute`` in which matched agents swap values, so mixing costs
``#colours ≤ Δ + 1`` exchanges (Δ: the largest degree) and no all-gather::

    mix(x)_i = W_ii x_i + Σ_c W_{i, p_c(i)} x_{p_c(i)}     (p_c(i): i's partner in colour c)

``vmap`` needs each ``ppermute`` to be a full permutation, so agents left out of a matching
"send" to themselves with weight 0. Those self-pairs are no traffic: ``mix.edges`` counts the
graph's undirected edges only (each edge carries one message each way per exchange).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .topology import check_mixing_matrix, edge_coloring, max_degree

__all__ = ["make_mixer", "make_dense_mixer", "AXIS"]

AXIS = "agents"


def make_mixer(W, axis_name: str = AXIS):
    """``mix(tree) -> tree``: this agent's ``Σ_j W_ij x_j``.

    Attributes: ``rounds`` (exchanges per call = edge colours, at most ``max_degree + 1``),
    ``edges`` (undirected edges of W's graph; a call sends ``2 · edges`` messages per
    exchange: the leaves of ``tree`` travel packed in one vector per dtype), ``max_degree`` (Δ).
    """
    W = check_mixing_matrix(W)
    m = len(W)
    perms, weights = [], []
    for matching in edge_coloring(W):
        perm = [(i, j) for i, j in matching] + [(j, i) for i, j in matching]
        matched = {a for pair in matching for a in pair}
        perm += [(k, k) for k in range(m) if k not in matched]  # full permutation; weight 0
        w = np.zeros(m)
        for i, j in matching:
            w[i], w[j] = W[i, j], W[j, i]
        perms.append(perm)
        weights.append(w)
    self_w = np.diag(W).copy()

    def one(x, i):
        out = jnp.asarray(self_w, x.dtype)[i] * x
        for perm, w in zip(perms, weights):
            out = out + jnp.asarray(w, x.dtype)[i] * jax.lax.ppermute(x, axis_name, perm)
        return out

    def mix(tree):
        return _packed(one, tree, jax.lax.axis_index(axis_name))

    mix.rounds = len(perms)
    mix.edges = sum(1 for p in perms for i, j in p if i < j)
    mix.max_degree = max_degree(W)
    return mix


def _packed(one, tree, i):
    """``one(v, i)`` applied to the leaves of ``tree`` packed into one flat vector per dtype,
    so a mixing call sends ONE message per exchange whatever the number of leaves (the
    arithmetic per element is unchanged: the same result as leaf by leaf)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = [None] * len(leaves)
    groups: dict = {}
    for k, a in enumerate(leaves):
        groups.setdefault(jnp.asarray(a).dtype, []).append(k)
    for ks in groups.values():
        flat = jnp.concatenate([jnp.ravel(leaves[k]) for k in ks]) if len(ks) > 1 else \
            jnp.ravel(leaves[ks[0]])
        mixed, start = one(flat, i), 0
        for k in ks:
            n = int(np.size(leaves[k]))
            out[k] = jnp.reshape(mixed[start:start + n], jnp.shape(leaves[k]))
            start += n
    return jax.tree_util.tree_unflatten(treedef, out)


def make_dense_mixer(W, axis_name: str = AXIS):
    """Fallback: all-gather every agent's value and apply this agent's row of W."""
    W = check_mixing_matrix(W)

    def mix(tree):
        i = jax.lax.axis_index(axis_name)

        def one(x):
            allx = jax.lax.all_gather(x, axis_name)
            return jnp.tensordot(jnp.asarray(W, x.dtype)[i], allx, axes=1)
        return jax.tree_util.tree_map(one, tree)

    mix.rounds = 1
    mix.edges = int((np.count_nonzero(W) - np.count_nonzero(np.diag(W))) // 2)
    mix.max_degree = max_degree(W)
    return mix
