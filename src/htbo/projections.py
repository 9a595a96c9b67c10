"""Projections for constrained lower-level / dual variables (pure, jit-able)."""
from __future__ import annotations

import jax.numpy as jnp

__all__ = ["project_simplex", "project_ball"]


def project_simplex(v, radius: float = 1.0):
    """Euclidean projection of a vector onto ``{q >= 0, Σ q = radius}`` (sort-based, O(n log n)):
    ``q = max(v − θ, 0)`` with θ from the largest ``k`` such that ``u_k > (Σ_{j≤k} u_j − r)/k``."""
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - radius
    k = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / k > 0)
    theta = css[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def project_ball(v, radius: float = 1.0):
    """Projection onto the Euclidean ball ``{‖q‖ <= radius}``."""
    n = jnp.linalg.norm(v)
    return v * jnp.minimum(1.0, radius / jnp.maximum(n, 1e-30))
