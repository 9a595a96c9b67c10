"""Symmetric Pareto noise: a random sign times Pareto(a) (x_m = 1), moments p < a."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import NOISE_LAWS, NoiseLaw, check_param


@NOISE_LAWS.register("pareto", "sign × Pareto(a), a > 1: moments p < a")
@dataclass(frozen=True)
class Pareto(NoiseLaw):
    a: float
    name = "pareto"

    def __post_init__(self):
        object.__setattr__(self, "a", check_param("pareto", "a", self.a, 1.0))

    @property
    def param(self):
        return self.a

    @property
    def tail_index(self):
        return self.a

    def standard(self, key, shape, dtype=jnp.float32):
        ks, kp = jax.random.split(key)
        sign = jax.random.rademacher(ks, shape, dtype)
        return sign * jax.random.pareto(kp, self.a, shape, dtype)
