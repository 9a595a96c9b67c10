"""Stochastic F2BA (Chen, Ma & Zhang): the penalty method with a fixed λ and a plain step.

Same directions as N²SBA (:mod:`htbo.solvers._penalty`), unnormalized outer step
``x ← x − η_t h``.
"""
from __future__ import annotations

from ._penalty import PenaltyMethod
from .base import numeric, solver, x_update
from .n2sba import EXACT


@solver("f2ba", "stochastic F2BA: penalty hypergradient, fixed λ, plain outer step",
        tests=dict(noise_free=(dict(EXACT, eta=0.1), 2000),
                   small=dict(inner_steps=2, batch_in=3, batch_out=2)))
class F2BA(PenaltyMethod):
    """Stochastic F2BA with a fixed penalty ``lam``."""

    eta: float = numeric(0.01, schedule=True)
    lam: float = numeric(30.0, schedule=True)

    def check(self):
        if callable(self.lam):
            raise ValueError("f2ba: lam is fixed; use f2sa for a growing penalty")

    def update_rule(self):
        return x_update()


f2ba = F2BA
