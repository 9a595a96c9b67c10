"""Symmetric α-stable noise (β = 0, unit scale), α ∈ (1, 2]: moments of order p < α.

``stable:2`` with scale 1 is a Gaussian of variance 2 (scipy's convention). The mean of B
i.i.d. draws is exact by stability: ``σ_B = σ B^{1/α − 1}``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import ALIASES, NOISE_LAWS, NoiseLaw, check_param


@NOISE_LAWS.register("stable", "symmetric α-stable, α ∈ (1, 2]: moments p < α (CMS "
                     "sampler)")
@dataclass(frozen=True)
class Stable(NoiseLaw):
    alpha: float
    name = "stable"

    def __post_init__(self):
        object.__setattr__(self, "alpha", check_param("stable", "alpha", self.alpha, 1.0, 2.0, True))

    @property
    def param(self):
        return self.alpha

    @property
    def tail_index(self):
        return math.inf if self.alpha == 2 else self.alpha

    def standard(self, key, shape, dtype=jnp.float32):
        return cms(key, self.alpha, shape, dtype)

    def batch_mean(self, key, shape, batch: int, dtype=jnp.float32):
        return cms(key, self.alpha, shape, dtype) * batch ** (1.0 / self.alpha - 1.0)


def cms(key, alpha: float, shape, dtype):
    """Symmetric α-stable draws (β = 0, unit scale) by Chambers–Mallows–Stuck.

    ``V = π(U − ½)`` with ``cos V`` computed as ``sin(π·min(U, 1 − U))``: near ``V = ±π/2``
    a float32 ``V`` can round past ``π/2`` and make ``cos V`` ≤ 0, which would turn a
    ~1e5 draw into ~1e25. ``U`` is kept in ``[2⁻²⁵, 1 − 2⁻²⁵]`` and ``W > 0``.
    """
    ku, kw = jax.random.split(key)
    u = jax.random.uniform(ku, shape, dtype)
    edge = jnp.minimum(u, 1.0 - u)
    edge = jnp.maximum(edge, jnp.asarray(2.0**-25, dtype))
    v = jnp.asarray(math.pi, dtype) * (u - 0.5)
    cos_v = jnp.sin(jnp.asarray(math.pi, dtype) * edge)
    w = jnp.maximum(jax.random.exponential(kw, shape, dtype), jnp.finfo(dtype).tiny)
    if alpha == 2.0:  # CMS at α = 2 reduces to 2 sin(V) sqrt(W): a N(0, 2) draw
        return 2.0 * jnp.sin(v) * jnp.sqrt(w)
    a = alpha
    return (jnp.sin(a * v) / cos_v ** (1.0 / a)) * (jnp.cos(v - a * v) / w) ** ((1.0 - a) / a)


ALIASES.update({"alpha-stable": "stable", "levy": "stable"})
