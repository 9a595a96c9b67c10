"""Student-t(ν) noise, ν > 1: moments of order p < ν.

Draws are ``Z / √(2G/ν)`` with ``Z ~ N(0, 1)`` and ``G ~ Gamma(ν/2)`` from a whole-array
Marsaglia–Tsang sampler (:func:`gamma_mt`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import ALIASES, NOISE_LAWS, NoiseLaw, check_param


@NOISE_LAWS.register("t", "Student-t(ν), ν > 1: moments p < ν")
@dataclass(frozen=True)
class StudentT(NoiseLaw):
    df: float
    name = "t"
    # 2 = whole-array gamma, 3 = the same with ``out`` as its only state (2 could leave a
    # rare element at 0)
    draws_version = 3

    def __post_init__(self):
        object.__setattr__(self, "df", check_param("t", "df", self.df, 1.0))

    @property
    def param(self):
        return self.df

    @property
    def tail_index(self):
        return self.df

    def standard(self, key, shape, dtype=jnp.float32):
        kz, kg = jax.random.split(key)
        g = gamma_mt(kg, 0.5 * self.df, shape, dtype)
        g = jnp.maximum(g, jnp.finfo(dtype).tiny)
        return jax.random.normal(kz, shape, dtype) * jnp.sqrt(self.df / (2.0 * g))


def gamma_mt(key, a: float, shape, dtype):
    """Gamma(a, 1) draws by Marsaglia–Tsang, rejecting on the whole array at once.

    Each round proposes ``d·v`` with ``v = (1 + c·x)³``, ``x ~ N(0, 1)``, ``d = a − ⅓``,
    ``c = 1/√(9d)`` for every element and keeps it where ``log U < x²/2 + d − d·v + d·log v``
    and none was kept before; rounds repeat until every element holds a draw (≥ 95% accept
    per round, so about log n / 3 rounds). For ``a < 1``: ``Gamma(a) = Gamma(a + 1)·U^{1/a}``.
    Exact in law. ``jax.random.gamma`` runs the same rejection with one key per element,
    which is far slower for batch-averaged noise (docs/benchmarks.md).
    """
    boost = a < 1.0
    d = (a + 1.0 if boost else a) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    tiny = jnp.finfo(dtype).tiny
    key, kb = jax.random.split(key)

    # ``out`` is the only state: 0 = no draw yet (every kept draw is > tiny). A separate
    # "done" mask can disagree with ``out``: XLA may evaluate the acceptance test in two
    # fusions that round ``log`` differently, marking an element done without a draw.
    def body(s):
        k, out = s
        k, kx, ku = jax.random.split(k, 3)
        x = jax.random.normal(kx, shape, dtype)
        v = (1.0 + c * x) ** 3
        ok = (v > tiny) & (jnp.log(jax.random.uniform(ku, shape, dtype))
                           < 0.5 * x * x + d - d * v + d * jnp.log(jnp.maximum(v, tiny)))
        return k, jnp.where(ok & (out == 0), d * v, out)

    _, g = jax.lax.while_loop(lambda s: jnp.any(s[1] == 0), body,
                              (key, jnp.zeros(shape, dtype)))
    if boost:  # U in (0, 1] so that no draw is exactly 0
        u = 1.0 - jax.random.uniform(kb, shape, dtype)
        g = g * u ** (1.0 / a)
    return g


ALIASES.update({"student": "t", "student-t": "t"})
