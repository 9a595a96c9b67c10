"""N²SBA: nested-loop normalized stochastic bilevel approximation (Liu & Luo, 2025).

Penalty hypergradient ``h`` from two warm-started inner SGD loops (see
:mod:`htbo.solvers._penalty`), then a **normalized** outer step::

    m ← β m + (1 − β) h          (β = 0: the paper's method)
    x ← x − η_t m / max(‖m‖, eps)

[P]: nested loops, normalized outer step, first-order oracles only. [R]: the inner solvers
(minibatch SGD with warm starts), the momentum option, inner normalization and growing λ.
Theory preset (:mod:`htbo.solvers.theory`): λ ≍ ℓκ³/ε, η ≍ ε/(ℓκ³), K ≍ κ log(1/δ),
B_out ≍ (λσ/ε)^{p/(p−1)}.
"""
from __future__ import annotations

from ..schedules import exponential
from ._penalty import PenaltyMethod
from .base import numeric, solver, structural, x_update

# noise-free settings of the generic solver tests (tests/test_solvers.py): quadratic, κ = 2,
# float64; the penalty bias ≈ 18/λ, so λ = 1e5 puts the floor at 1.8e-4; a normalized step
# needs a decaying η to settle
EXACT = dict(alpha=0.3, tau=0.3, inner_steps=10, lam=1e5)


@solver("n2sba", "N²SBA: penalty hypergradient, warm-started inner SGD, normalized outer step",
        tests=dict(noise_free=(dict(EXACT, eta=exponential(0.5, 0.998)), 6000),
                   small=dict(inner_steps=2, batch_in=3, batch_out=2)))
class N2SBA(PenaltyMethod):
    """N²SBA. ``eta`` outer step (float or schedule), ``lam`` penalty λ, ``alpha``/``tau``
    inner steps for z (≈ y*) and y (≈ y_λ*), ``inner_steps`` K, ``momentum`` β."""

    momentum: float = numeric(0.0, low=0.0, high=1.0, low_closed=True, optional=True, off=0.0,
                              label="momentum beta", doc="β of the momentum average (0: none)")
    eps: float = structural(1e-12, type=float, doc="floor of the norm")

    def update_rule(self):
        return x_update(momentum=self.active("momentum"), normalized=True, eps=self.eps)


n2sba = N2SBA
