"""SGDmax (Jin, Netrapalli & Jordan, 2020): K ascent steps on y, then a plain SGD step on x.

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))
    x ← x − η_t ∇_x F(x, y; ξ'_B)
"""
from __future__ import annotations

from ..schedules import ScalarOrSchedule
from ._minimax import nested_minimax
from .base import Solver


def sgdmax(*, eta: ScalarOrSchedule = 0.01, tau: ScalarOrSchedule = 0.05, inner_steps: int = 5,
           batch_in: int = 1, batch_out: int = 8) -> Solver:
    hp = dict(eta=eta, tau=tau, inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out)
    return nested_minimax("sgdmax", "plain", eta=eta, tau=tau, inner_steps=inner_steps,
                          batch_in=batch_in, batch_out=batch_out, inner_normalized=False,
                          hparams=hp)
