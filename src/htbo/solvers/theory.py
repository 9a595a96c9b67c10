"""Parameter choices of the analyses of N²SBA and N²SGDA ("theory presets").

These follow the orders of the stated complexities with every hidden constant set to 1;
they are **far more conservative than the practical defaults** (λ and the batch sizes grow
like powers of κ/ε): use them to see what the guarantee costs, not as settings to run. The
measured practical settings are in ``docs/demo.md`` and what ``htbo diagnose`` suggests.

Inputs: ``ell`` = ℓ, the smoothness of f and g; ``kappa`` = κ = ℓ/μ of the lower level
(minimax: of −f(x, ·)); ``sigma`` = σ with E‖noise‖^p ≤ σ^p for one sample; ``p`` ∈ (1, 2]
the moment order; ``eps`` = ε, the target ‖∇φ‖; ``delta`` = δ, the accuracy parameter of the
inner loops (K ≍ κ log(1/δ)); ``gap`` = Δ = φ(x₀) − inf φ (1 unless known). With
``q = p/(p−1)``:

N²SBA (stated SFO Õ(κ^{(7p−3)/(p−1)} σ^q ε^{−(4p−2)/(p−1)}), κ¹¹ε⁻⁶ at p = 2)::

    λ = max(ℓκ³/ε, 2κ)     penalty: bias O(ℓκ³/λ) ≤ ε, and λ ≥ 2κ for the penalty bound
    η = ε/(ℓκ³)            normalized outer step (φ is O(ℓκ³)-smooth)
    T = ⌈Δ ℓκ³/ε²⌉         outer steps (each decreases φ by ≈ ηε)
    K = ⌈κ log(1/δ)⌉       inner steps (warm started), step sizes α = τ = 1/ℓ
    B_out = ⌈(λσ/ε)^q⌉     the λ-amplified noise of h averaged down to ε (p-th moment rate
                           B^{(1−p)/p} of a minibatch mean)
    B_in = ⌈κ^{1/(p−1)} B_out⌉   [R] chosen so that T·(3K·B_in + 3B_out) has the stated order
    SFO/step = 3K·B_in + 3B_out

N²SGDA (stated SFO Õ(κ^{(2p−1)/(p−1)} σ^q ε^{−(3p−2)/(p−1)}), κ³ε⁻⁴ at p = 2)::

    η = ε/(ℓκ),  T = ⌈Δ ℓκ/ε²⌉        Φ is O(ℓκ)-smooth
    K = ⌈κ log(1/δ)⌉,  τ = 1/ℓ
    B_out = ⌈(σ/ε)^q⌉,  B_in = ⌈κ^{1/(p−1)} B_out⌉   [R], as above
    SFO/step = K·B_in + B_out

The papers' full texts are not available offline: the structure (λ, η, K, B_out) is stated
[P]; B_in and the unit constants are our reconstruction [R].
"""
from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["TheoryPreset", "n2sba_theory", "n2sgda_theory"]


class TheoryPreset(NamedTuple):
    """Parameters of the analysis; ``hparams()`` gives keyword arguments of the solver."""

    solver: str
    eta: float
    lam: float | None
    alpha: float | None
    tau: float
    inner_steps: int
    batch_in: int
    batch_out: int
    steps: int
    sfo_per_step: int
    sfo_total: float
    complexity: float  # the stated order with unit constants, for comparison with sfo_total
    inputs: dict

    def hparams(self) -> dict:
        hp = dict(eta=self.eta, tau=self.tau, inner_steps=self.inner_steps,
                  batch_in=self.batch_in, batch_out=self.batch_out)
        if self.lam is not None:
            hp.update(lam=self.lam, alpha=self.alpha)
        return hp

    def to_dict(self) -> dict:
        return self._asdict()


def _check(ell, kappa, sigma, p, eps, delta, gap):
    for k, v in (("ell", ell), ("eps", eps), ("gap", gap)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"theory preset: {k} must be a finite number > 0, got {v!r}")
    if not (math.isfinite(kappa) and kappa >= 1):
        raise ValueError(f"theory preset: kappa must be finite and >= 1, got {kappa!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"theory preset: sigma must be finite and >= 0, got {sigma!r}")
    if not 1 < p <= 2:
        raise ValueError(f"theory preset: p must be in (1, 2], got {p!r}")
    if not 0 < delta < 1:
        raise ValueError(f"theory preset: delta must be in (0, 1), got {delta!r}")


def _pow(base: float, e: float) -> float:
    """``base**e`` for base ≥ 0, ``inf`` instead of an OverflowError."""
    if base <= 0:
        return 0.0
    v = e * math.log(base)
    return math.inf if v > 709 else math.exp(v)


def _batch(v: float) -> int:
    if not math.isfinite(v):
        raise ValueError("theory preset: the batch size overflows a float; the target eps is "
                         "too small (or p too close to 1) for these constants")
    return max(1, math.ceil(v))


def n2sba_theory(ell: float, kappa: float, sigma: float, p: float, eps: float,
                 delta: float = 0.01, gap: float = 1.0) -> TheoryPreset:
    """N²SBA's parameter choices at target ε (formulas in the module docstring)."""
    _check(ell, kappa, sigma, p, eps, delta, gap)
    q = p / (p - 1)
    k3 = ell * kappa**3
    lam = max(k3 / eps, 2 * kappa)
    K = max(1, math.ceil(kappa * math.log(1 / delta)))
    b_out = _batch(_pow(lam * sigma / eps, q))
    b_in = _batch(_pow(kappa, 1 / (p - 1)) * b_out)
    steps = max(1, math.ceil(gap * k3 / eps**2))
    sfo = 3 * K * b_in + 3 * b_out
    cplx = (_pow(kappa, (7 * p - 3) / (p - 1)) * _pow(sigma, q)
            * _pow(1 / eps, (4 * p - 2) / (p - 1)))
    return TheoryPreset("n2sba", eps / k3, lam, 1 / ell, 1 / ell, K, b_in, b_out, steps, sfo,
                        float(steps) * sfo, cplx,
                        dict(ell=ell, kappa=kappa, sigma=sigma, p=p, eps=eps, delta=delta,
                             gap=gap))


def n2sgda_theory(ell: float, kappa: float, sigma: float, p: float, eps: float,
                  delta: float = 0.01, gap: float = 1.0) -> TheoryPreset:
    """N²SGDA's parameter choices at target ε (formulas in the module docstring)."""
    _check(ell, kappa, sigma, p, eps, delta, gap)
    q = p / (p - 1)
    lk = ell * kappa
    K = max(1, math.ceil(kappa * math.log(1 / delta)))
    b_out = _batch(_pow(sigma / eps, q))
    b_in = _batch(_pow(kappa, 1 / (p - 1)) * b_out)
    steps = max(1, math.ceil(gap * lk / eps**2))
    sfo = K * b_in + b_out
    cplx = (_pow(kappa, (2 * p - 1) / (p - 1)) * _pow(sigma, q)
            * _pow(1 / eps, (3 * p - 2) / (p - 1)))
    return TheoryPreset("n2sgda", eps / lk, None, None, 1 / ell, K, b_in, b_out, steps, sfo,
                        float(steps) * sfo, cplx,
                        dict(ell=ell, kappa=kappa, sigma=sigma, p=p, eps=eps, delta=delta,
                             gap=gap))
