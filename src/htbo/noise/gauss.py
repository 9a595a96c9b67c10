"""Gaussian noise ``N(0, 1)``: all moments finite (the light-tailed control)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import ALIASES, NOISE_LAWS, NoiseLaw


@NOISE_LAWS.register("gauss", "Gaussian N(0, 1): every moment finite")
@dataclass(frozen=True)
class Gaussian(NoiseLaw):
    name = "gauss"

    def standard(self, key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype)

    def batch_mean(self, key, shape, batch: int, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) / math.sqrt(batch)

    def radius(self, key, shape, dim: int, dtype=jnp.float32):
        """χ-distributed norms, so radial Gaussian noise equals per-coordinate noise."""
        return jnp.sqrt(jax.random.chisquare(key, dim, shape, dtype))

    @classmethod
    def parse(cls, param):
        if param:
            raise ValueError("'gauss' takes no parameter")
        return cls()


ALIASES.update(gaussian="gauss", normal="gauss")
