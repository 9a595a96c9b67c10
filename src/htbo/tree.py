"""Pytree arithmetic the library needs beyond ``optax.tree``: global-norm normalization and
clipping (``optax.tree`` gives add, sub, scale, norm, zeros_like, ...)."""
from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["axpy", "normalize", "clip_norm"]


def axpy(s, x, y):
    """``s * x + y``."""
    return optax.tree.add_scale(y, s, x)


def normalize(a, eps: float = 1e-12):
    """``a / max(‖a‖, eps)`` with the global norm over all leaves."""
    return optax.tree.scale(1.0 / jnp.maximum(optax.tree.norm(a), eps), a)


def clip_norm(a, c):
    """``a · min(1, c/‖a‖)``: the global norm clipped to at most ``c``."""
    n = optax.tree.norm(a)
    return optax.tree.scale(jnp.minimum(1.0, c / jnp.maximum(n, 1e-30)), a)
