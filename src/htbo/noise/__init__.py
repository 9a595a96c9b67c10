"""Heavy-tailed noise laws and their injection into gradient oracles.

A :class:`Noise` is a law (:mod:`htbo.noise.base`, one file per law) with a scale ``sigma``.
``noise.sample(key, tree, batch)`` draws the noise of a minibatch *average* of ``batch``
i.i.d. per-sample oracles, shaped like ``tree``. Averaging is exact: Gaussian and α-stable
noise use their stability (``σ_B = σ B^{1/α − 1}``), Student-t and Pareto draw ``batch``
copies and average them.

============  ==========  ============================  =====================================
string        parameter   finite moments                sampler
============  ==========  ============================  =====================================
``gauss``     —           all                           ``σ N(0, 1)``
``t:ν``       ν > 1       p < ν                         ``σ t_ν`` (whole-array gamma)
``pareto:a``  a > 1       p < a                         ``σ · sign · Pareto(a)`` (x_m = 1)
``stable:α``  α ∈ (1, 2]  p < α (all if α = 2)          Chambers–Mallows–Stuck, β = 0
============  ==========  ============================  =====================================

With ``radial=True`` the noise of a whole pytree is ``r · u``, ``u`` uniform on the unit sphere
of the flattened tree and ``r`` the law's radius (``|scalar draw|``; χ for the Gaussian, so
radial Gaussian noise equals per-coordinate Gaussian noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .base import ALIASES, NOISE_LAWS, NoiseLaw
from .gauss import Gaussian
from .pareto import Pareto
from .stable import Stable
from .student_t import StudentT, gamma_mt
from ..registry import import_all

import_all(__name__, __path__)  # every module of this package registers what it defines

__all__ = ["Noise", "NoiseLaw", "NOISE_LAWS", "parse_noise", "gaussian", "student_t",
           "pareto", "stable"]

_gamma_mt = gamma_mt  # the name the noise tests import


def _law(law, param) -> NoiseLaw:
    if isinstance(law, NoiseLaw):
        if param is not None:
            raise ValueError("give the parameter inside the law, not beside it")
        return law
    name = ALIASES.get(str(law), str(law))
    if name not in NOISE_LAWS:
        raise ValueError(f"unknown noise law {law!r}; expected one of {NOISE_LAWS.names()}")
    cls = NOISE_LAWS.get(name)
    return cls.parse(None if param is None else str(param)) if param is not None or \
        name == "gauss" else cls.parse(None)


@dataclass(frozen=True, init=False)
class Noise:
    """A noise law with a scale: ``Noise("stable", 1.5, sigma=0.5)`` or ``Noise(Stable(1.5))``;
    usually built by :func:`parse_noise`."""

    law: NoiseLaw
    sigma: float = 1.0
    radial: bool = False

    def __init__(self, law, param=None, sigma: float = 1.0, radial: bool = False):
        object.__setattr__(self, "law", _law(law, param))
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noise scale sigma must be finite and >= 0, got {sigma}")
        object.__setattr__(self, "sigma", float(sigma))
        object.__setattr__(self, "radial", bool(radial))

    @property
    def param(self):
        return self.law.param

    @property
    def tail_index(self) -> float:
        """Supremum of the finite moment orders (``inf`` for Gaussian)."""
        return self.law.tail_index

    def __str__(self) -> str:
        s = self.law.spec()
        if self.sigma != 1.0:
            s += f"@{self.sigma:g}"
        if self.radial:
            s += "/radial"
        return s

    def __repr__(self) -> str:
        return f"Noise({str(self)!r})"

    def standard(self, key, shape, dtype=jnp.float32):
        """Unit-scale i.i.d. draws of the law (one per sample, no batch averaging)."""
        return self.law.standard(key, shape, dtype)

    def sample(self, key, tree, batch: int = 1):
        """Noise shaped like ``tree``: the mean of ``batch`` i.i.d. per-sample noises."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        flat, unravel = ravel_pytree(tree)
        if flat.size == 0 or self.sigma == 0:
            return jax.tree_util.tree_map(jnp.zeros_like, tree)
        dtype = flat.dtype
        if not self.radial:
            return unravel(self.sigma * self.law.batch_mean(key, flat.shape, batch, dtype))
        # radial: per-sample r·u, then averaged over the batch
        ku, kr = jax.random.split(key)
        u = jax.random.normal(ku, (batch, flat.size), dtype)
        u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
        r = self.law.radius(kr, (batch, 1), flat.size, dtype)
        return unravel(self.sigma * jnp.mean(r * u, axis=0))


def gaussian(sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise(Gaussian(), sigma=sigma, radial=radial)


def student_t(df: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise(StudentT(df), sigma=sigma, radial=radial)


def pareto(a: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise(Pareto(a), sigma=sigma, radial=radial)


def stable(alpha: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise(Stable(alpha), sigma=sigma, radial=radial)


def parse_noise(spec) -> Noise | None:
    """Parse ``'gauss'``, ``'t:1.5'``, ``'pareto:1.8'``, ``'stable:1.5'``, ``'none'`` (any
    registered law ``NAME[:PARAM]``).

    Optional suffixes: ``@SIGMA`` for the scale and ``/radial`` for radially symmetric noise,
    e.g. ``'stable:1.5@0.5/radial'``.
    """
    if spec is None or isinstance(spec, Noise):
        return spec
    s = str(spec).strip().lower()
    if s in ("", "none", "off", "0"):
        return None
    radial = s.endswith("/radial")
    if radial:
        s = s[: -len("/radial")]
    sigma = 1.0
    if "@" in s:
        s, sig = s.split("@", 1)
        try:
            sigma = float(sig)
        except ValueError:
            raise ValueError(f"bad noise scale in {spec!r}: {sig!r} is not a number") from None
    name, colon, par = s.partition(":")
    name = ALIASES.get(name, name)
    if name not in NOISE_LAWS:
        forms = ", ".join(f"'{n}'" if n == "gauss" else f"'{n}:P'" for n in NOISE_LAWS.names())
        raise ValueError(f"unknown noise {spec!r}: expected 'none', {forms} (optionally "
                         "'@SIGMA' and '/radial')")
    try:
        law = NOISE_LAWS.get(name).parse(par if colon else None)
        return Noise(law, sigma=sigma, radial=radial)
    except ValueError as e:
        raise ValueError(f"bad noise {spec!r}: {e}") from None
