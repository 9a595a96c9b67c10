"""N²SGDA: the minimax specialization of N²SBA (Liu & Luo, 2025).

K warm-started stochastic ascent steps on y, then a normalized descent step on x::

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))
    m ← β m + (1 − β) ∇_x F(x, y; ξ'_B)          (β = 0: the paper's method)
    x ← x − η_t m / max(‖m‖, eps)

[P]: the nested structure and the normalized outer step. [R]: SGD inner loop, momentum and
inner normalization options.
"""
from __future__ import annotations

from ..schedules import exponential
from ._minimax import EXACT, SMALL, NestedMinimax
from .base import numeric, solver, structural, x_update


@solver("n2sgda", "N²SGDA: K ascent steps, normalized descent step (minimax)",
        tests=dict(noise_free=(dict(EXACT, eta=exponential(0.5, 0.998)), 4000), small=SMALL))
class N2SGDA(NestedMinimax):
    """N²SGDA with outer step ``eta`` and ascent step ``tau``."""

    eta: float = numeric(0.05, schedule=True)
    momentum: float = numeric(0.0, low=0.0, high=1.0, low_closed=True, optional=True, off=0.0,
                              label="momentum beta")
    eps: float = structural(1e-12, type=float)

    def update_rule(self):
        return x_update(momentum=self.active("momentum"), normalized=True, eps=self.eps)


n2sgda = N2SGDA
