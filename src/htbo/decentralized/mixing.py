"""Neighbour averaging ``Σ_j W_ij x_j`` with named-axis collectives (one code path for the
simulated ``vmap`` and the distributed ``shard_map`` modes).

:func:`make_mixer` sends one ``ppermute`` per colour of :func:`~.topology.edge_coloring`
(pairs of a matching swap their values), so an agent only ever talks to its neighbours;
``dense=True`` uses ``all_gather`` + a row of W instead (a fallback for small m).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .topology import check_mixing_matrix, edge_coloring

__all__ = ["make_mixer", "comm_rounds"]


def comm_rounds(W, dense: bool = False) -> int:
    """Collective calls per mixed variable: number of colours (or 1 all_gather)."""
    return 1 if dense else len(edge_coloring(W))


def make_mixer(W, axis_name: str = "agents", dense: bool = False):
    """``mix(tree) -> tree``: this agent's ``Σ_j W_ij x_j`` inside vmap/shard_map over
    ``axis_name`` (agent index from ``jax.lax.axis_index``)."""
    W = check_mixing_matrix(W)
    m = len(W)
    diag = jnp.asarray(np.diag(W), jnp.float32)
    if dense:
        Wj = jnp.asarray(W, jnp.float32)

        def mix_dense(tree):
            i = jax.lax.axis_index(axis_name)

            def one(a):
                allv = jax.lax.all_gather(a, axis_name)
                return jnp.tensordot(Wj[i].astype(a.dtype), allv, axes=1)
            return jax.tree_util.tree_map(one, tree)
        return mix_dense

    perms, weights = [], []
    for match in edge_coloring(W):
        perm = [(i, j) for i, j in match] + [(j, i) for i, j in match]
        # vmap's ppermute needs a full permutation: unmatched agents keep their value
        # (weight 0 below); a self-pair sends nothing over the network
        busy = {k for e in match for k in e}
        perm += [(k, k) for k in range(m) if k not in busy]
        w = np.zeros(m)
        for i, j in match:
            w[i], w[j] = W[i, j], W[j, i]
        perms.append(perm)
        weights.append(w)
    weights = jnp.asarray(np.array(weights).reshape(len(perms), m), jnp.float32)

    def mix(tree):
        i = jax.lax.axis_index(axis_name)

        def one(a):
            out = diag[i].astype(a.dtype) * a
            for c, perm in enumerate(perms):
                out = out + weights[c, i].astype(a.dtype) * jax.lax.ppermute(a, axis_name, perm)
            return out
        return jax.tree_util.tree_map(one, tree)
    return mix
