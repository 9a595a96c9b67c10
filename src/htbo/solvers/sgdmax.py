"""SGDmax (Jin, Netrapalli & Jordan, 2020): K ascent steps on y, then a plain SGD step on x.

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))
    x ← x − η_t ∇_x F(x, y; ξ'_B)
"""
from __future__ import annotations

from ._minimax import EXACT, SMALL, NestedMinimax
from .base import solver, x_update


@solver("sgdmax", "SGDmax: K ascent steps, plain descent step (minimax)",
        tests=dict(noise_free=(dict(EXACT, eta=0.1), 4000), small=SMALL))
class SGDmax(NestedMinimax):
    """SGDmax with descent step ``eta`` and ascent step ``tau``."""

    def update_rule(self):
        return x_update()


sgdmax = SGDmax
