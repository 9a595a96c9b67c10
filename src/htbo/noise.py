"""Heavy-tailed noise laws and their injection into gradient oracles.

A :class:`Noise` is a law with a scale ``sigma``. ``noise.sample(key, tree, batch)`` draws
the noise of a minibatch *average* of ``batch`` i.i.d. per-sample oracles, shaped like
``tree``. Averaging is exact: Gaussian and α-stable noise use their stability
(``σ_B = σ B^{1/α − 1}``), Student-t and Pareto draw ``batch`` copies and average them.

Laws (all symmetric, mean zero when the mean exists):

============  ==========  ============================  =====================================
string        parameter   finite moments                sampler
============  ==========  ============================  =====================================
``gauss``     —           all                           ``σ N(0, 1)``
``t:ν``       ν > 1       p < ν                         ``σ t_ν``
``pareto:a``  a > 1       p < a                         ``σ · sign · Pareto(a)`` (x_m = 1)
``stable:α``  α ∈ (1, 2]  p < α (all if α = 2)          Chambers–Mallows–Stuck, β = 0
============  ==========  ============================  =====================================

``stable:2`` with scale 1 is a Gaussian of variance 2 (scipy's convention). With
``radial=True`` the noise of a whole pytree is ``r · u``, ``u`` uniform on the unit sphere of
the flattened tree and ``r = |scalar draw of the law|`` (for a Gaussian law ``r`` is drawn as a
χ-distributed norm instead, so radial Gaussian noise equals per-coordinate Gaussian noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

#: Bumped when a law's sampler changes its draws (same law, another random stream), so stored
#: results made with the old draws can be told apart. Student-t: 2 = whole-array gamma,
#: 3 = the same with ``out`` as its only state (2 could leave a rare element at 0).
DRAWS_VERSION = {"t": 3}

__all__ = ["Noise", "parse_noise", "gaussian", "student_t", "pareto", "stable"]

_LAWS = ("gauss", "t", "pareto", "stable")


@dataclass(frozen=True)
class Noise:
    """A symmetric noise law. Build with :func:`parse_noise` or the helper constructors."""

    law: str
    param: float | None = None
    sigma: float = 1.0
    radial: bool = False

    def __post_init__(self):
        if self.law not in _LAWS:
            raise ValueError(f"unknown noise law {self.law!r}; expected one of {_LAWS}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"noise scale sigma must be finite and >= 0, got {self.sigma}")
        p = self.param
        if self.law == "gauss":
            if p is not None:
                raise ValueError("the Gaussian law takes no parameter")
        elif p is None or not math.isfinite(p):
            raise ValueError(f"noise law {self.law!r} needs a finite parameter")
        elif self.law in ("t", "pareto") and p <= 1:
            raise ValueError(f"{self.law} noise needs parameter > 1 for a finite mean, got {p}")
        elif self.law == "stable" and not (1 < p <= 2):
            raise ValueError(f"stable noise needs alpha in (1, 2], got {p}")

    # -- description -------------------------------------------------------------------------
    def __str__(self) -> str:
        s = self.law if self.param is None else f"{self.law}:{self.param:g}"
        if self.sigma != 1.0:
            s += f"@{self.sigma:g}"
        if self.radial:
            s += "/radial"
        return s

    @property
    def tail_index(self) -> float:
        """Supremum of the finite moment orders (``inf`` for Gaussian)."""
        if self.law == "gauss" or (self.law == "stable" and self.param == 2):
            return math.inf
        return float(self.param)

    # -- sampling ----------------------------------------------------------------------------
    def standard(self, key, shape, dtype=jnp.float32):
        """Unit-scale i.i.d. draws of the law (one per sample, no batch averaging)."""
        if self.law == "gauss":
            return jax.random.normal(key, shape, dtype)
        if self.law == "t":
            return _student_t(key, self.param, shape, dtype)
        if self.law == "pareto":
            ks, kp = jax.random.split(key)
            sign = jax.random.rademacher(ks, shape, dtype)
            return sign * jax.random.pareto(kp, self.param, shape, dtype)
        return _stable_cms(key, self.param, shape, dtype)

    def _batch_mean(self, key, shape, batch: int, dtype):
        """Noise of the mean of ``batch`` i.i.d. draws, exact in law."""
        if self.law == "gauss":
            return jax.random.normal(key, shape, dtype) / math.sqrt(batch)
        if self.law == "stable":
            return _stable_cms(key, self.param, shape, dtype) * batch ** (1.0 / self.param - 1.0)
        if batch == 1:
            return self.standard(key, shape, dtype)
        return jnp.mean(self.standard(key, (batch, *shape), dtype), axis=0)

    def sample(self, key, tree, batch: int = 1):
        """Noise shaped like ``tree``: the mean of ``batch`` i.i.d. per-sample noises."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        flat, unravel = ravel_pytree(tree)
        if flat.size == 0 or self.sigma == 0:
            return jax.tree_util.tree_map(jnp.zeros_like, tree)
        dtype = flat.dtype
        if not self.radial:
            return unravel(self.sigma * self._batch_mean(key, flat.shape, batch, dtype))
        # radial: per-sample r·u, then averaged over the batch
        ku, kr = jax.random.split(key)
        u = jax.random.normal(ku, (batch, flat.size), dtype)
        u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
        if self.law == "gauss":
            r = jnp.sqrt(jax.random.chisquare(kr, flat.size, (batch, 1), dtype))
        else:
            r = jnp.abs(self.standard(kr, (batch, 1), dtype))
        return unravel(self.sigma * jnp.mean(r * u, axis=0))


def _gamma_mt(key, a: float, shape, dtype):
    """Gamma(a, 1) draws by Marsaglia–Tsang, rejecting on the whole array at once.

    Each round proposes ``d·v`` with ``v = (1 + c·x)³``, ``x ~ N(0, 1)``, ``d = a − ⅓``,
    ``c = 1/√(9d)`` for every element and keeps it where ``log U < x²/2 + d − d·v + d·log v``
    and none was kept before; rounds repeat until every element holds a draw (≥ 95% accept
    per round, so about log n / 3 rounds). For ``a < 1``: ``Gamma(a) = Gamma(a + 1)·U^{1/a}``.
    Exact in law. ``jax.random.gamma`` runs the same rejection with one key per element,
    which made batch-averaged Student-t noise 57× slower than stable noise at d = 1000,
    B = 32 (`benchmarks/bench_noise.py`, 2026-11-23).
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


def _student_t(key, df: float, shape, dtype):
    """Student-t(ν) draws ``Z / √(2G/ν)`` with ``Z ~ N(0, 1)`` and ``G ~ Gamma(ν/2)``."""
    kz, kg = jax.random.split(key)
    g = _gamma_mt(kg, 0.5 * df, shape, dtype)
    g = jnp.maximum(g, jnp.finfo(dtype).tiny)
    return jax.random.normal(kz, shape, dtype) * jnp.sqrt(df / (2.0 * g))


def _stable_cms(key, alpha: float, shape, dtype):
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


# -- constructors ------------------------------------------------------------------------------
def gaussian(sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise("gauss", None, sigma, radial)


def student_t(df: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise("t", float(df), sigma, radial)


def pareto(a: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise("pareto", float(a), sigma, radial)


def stable(alpha: float, sigma: float = 1.0, radial: bool = False) -> Noise:
    return Noise("stable", float(alpha), sigma, radial)


def parse_noise(spec: str | Noise | None) -> Noise | None:
    """Parse ``'gauss'``, ``'t:1.5'``, ``'pareto:1.8'``, ``'stable:1.5'``, ``'none'``.

    Optional suffixes: ``@SIGMA`` for the scale and ``/radial`` for radially symmetric noise,
    e.g. ``'stable:1.5@0.5/radial'``.
    """
    if spec is None or isinstance(spec, Noise):
        return spec
    s = spec.strip().lower()
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
    law, _, par = s.partition(":")
    law = {"gaussian": "gauss", "normal": "gauss", "student": "t", "student-t": "t",
           "alpha-stable": "stable", "levy": "stable"}.get(law, law)
    if law not in _LAWS:
        raise ValueError(
            f"unknown noise {spec!r}: expected 'none', 'gauss', 't:NU', 'pareto:A' or "
            f"'stable:ALPHA' (optionally '@SIGMA' and '/radial')")
    if law == "gauss":
        if par:
            raise ValueError(f"bad noise {spec!r}: 'gauss' takes no parameter")
        return Noise("gauss", None, sigma, radial)
    if not par:
        raise ValueError(f"bad noise {spec!r}: {law!r} needs a parameter, e.g. '{law}:1.5'")
    try:
        p = float(par)
    except ValueError:
        raise ValueError(f"bad noise {spec!r}: parameter {par!r} is not a number") from None
    return Noise(law, p, sigma, radial)
