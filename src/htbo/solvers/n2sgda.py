"""N²SGDA: the minimax specialization of N²SBA (Liu & Luo, 2025; ALGORITHMS.md §5).

K warm-started stochastic ascent steps on y, then a normalized descent step on x::

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))
    m ← β m + (1 − β) ∇_x F(x, y; ξ'_B)          (β = 0: the paper's method)
    x ← x − η_t m / max(‖m‖, eps)

[P]: the nested structure and the normalized outer step. [R]: SGD inner loop, momentum and
inner normalization options.
"""
from __future__ import annotations

from ..schedules import ScalarOrSchedule
from ._minimax import nested_minimax
from .base import Solver, check_unit


def n2sgda(*, eta: ScalarOrSchedule = 0.05, tau: ScalarOrSchedule = 0.05, inner_steps: int = 5,
           batch_in: int = 1, batch_out: int = 8, momentum: float = 0.0,
           inner_normalized: bool = False, eps: float = 1e-12) -> Solver:
    """N²SGDA with outer step ``eta`` and ascent step ``tau``."""
    check_unit("momentum beta", momentum, "n2sgda")
    hp = dict(eta=eta, tau=tau, inner_steps=inner_steps, batch_in=batch_in,
              batch_out=batch_out, momentum=momentum, inner_normalized=inner_normalized)
    return nested_minimax("n2sgda", "normalized", eta=eta, tau=tau, inner_steps=inner_steps,
                          batch_in=batch_in, batch_out=batch_out,
                          inner_normalized=inner_normalized, hparams=hp, momentum=momentum,
                          eps=eps)
