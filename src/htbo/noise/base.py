"""The noise-law protocol: a symmetric law of unit scale, registered by name.

A law is a small frozen dataclass registered in :data:`NOISE_LAWS`; it draws unit-scale
i.i.d. samples (:meth:`NoiseLaw.standard`), the exact noise of a minibatch mean
(:meth:`NoiseLaw.batch_mean`), the radius of radially symmetric noise
(:meth:`NoiseLaw.radius`), and knows its tail index and its parameter parser. Adding a law is
one file: a subclass plus ``@NOISE_LAWS.register(name)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from ..registry import Registry

__all__ = ["NoiseLaw", "NOISE_LAWS", "ALIASES"]

#: name -> law class (its ``parse(param)`` builds an instance)
NOISE_LAWS = Registry("noise law")
#: other spellings accepted by :func:`htbo.noise.parse_noise`
ALIASES: dict[str, str] = {}


@dataclass(frozen=True)
class NoiseLaw:
    """A symmetric law of unit scale (mean zero when the mean exists)."""

    name: ClassVar[str] = ""
    #: bumped when the sampler changes its draws (same law, another random stream), so that
    #: stored results made with older draws can be told apart
    draws_version: ClassVar[int] = 1

    @property
    def param(self) -> float | None:
        """The law's parameter (``None`` for a law without one)."""
        return None

    @property
    def tail_index(self) -> float:
        """Supremum of the finite moment orders (``inf`` for a light tail)."""
        return math.inf

    def standard(self, key, shape, dtype=jnp.float32):
        """Unit-scale i.i.d. draws (one per sample, no batch averaging)."""
        raise NotImplementedError

    def batch_mean(self, key, shape, batch: int, dtype=jnp.float32):
        """The mean of ``batch`` i.i.d. draws, exact in law (by default: draw and average)."""
        if batch == 1:
            return self.standard(key, shape, dtype)
        return jnp.mean(self.standard(key, (batch, *shape), dtype), axis=0)

    def radius(self, key, shape, dim: int, dtype=jnp.float32):
        """Norms of radially symmetric noise in ``dim`` dimensions: ``|scalar draw|``."""
        return jnp.abs(self.standard(key, shape, dtype))

    def spec(self) -> str:
        """The string :func:`htbo.noise.parse_noise` reads back (without scale)."""
        p = self.param
        return self.name if p is None else f"{self.name}:{p:g}"

    @classmethod
    def parse(cls, param: str | None) -> "NoiseLaw":
        """An instance from the text after ``NAME:`` (``None`` when there is none)."""
        if param is None or param == "":
            raise ValueError(f"{cls.name!r} needs a parameter, e.g. '{cls.name}:1.5'")
        try:
            value = float(param)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {param!r} is not a number") from None
        return cls(value)


def check_param(name: str, what: str, p, lo: float, hi: float = math.inf,
                hi_closed: bool = False) -> float:
    """``p`` as a float in ``(lo, hi)`` (``(lo, hi]`` with ``hi_closed``) or a ValueError
    naming the law and its parameter ``what``."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        v = math.nan
    ok = math.isfinite(v) and v > lo and (v <= hi if hi_closed else v < hi)
    if not ok:
        rng = (f"in ({lo:g}, {hi:g}{']' if hi_closed else ')'}" if math.isfinite(hi)
               else f"> {lo:g}")
        raise ValueError(f"{name} noise needs {what} {rng}, got {p!r}")
    return v
