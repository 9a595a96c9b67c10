"""N²SBA: nested-loop normalized stochastic bilevel approximation (Liu & Luo, 2025).

Penalty hypergradient ``h`` from two warm-started inner SGD loops (see
:mod:`htbo.solvers._penalty`), then a **normalized** outer step::

    m ← β m + (1 − β) h          (β = 0: the paper's method)
    x ← x − η_t m / max(‖m‖, eps)

[P]: nested loops, normalized outer step, first-order oracles only. [R]: the inner solvers
(minibatch SGD with warm starts), the momentum option, inner normalization and growing λ.
Theory preset: λ ≍ ℓκ³/ε, η ≍ ε/(ℓκ³), K ≍ κ log(1/δ), B_out ≍ (λσ/ε)^{p/(p−1)}.
"""
from __future__ import annotations

from ..schedules import ScalarOrSchedule
from ._penalty import penalty_solver
from .base import Solver, check_unit


def n2sba(*, eta: ScalarOrSchedule = 0.05, lam: ScalarOrSchedule = 30.0,
          alpha: ScalarOrSchedule = 0.05, tau: ScalarOrSchedule = 0.05, inner_steps: int = 5,
          batch_in: int = 1, batch_out: int = 8, momentum: float = 0.0,
          shared_samples: bool = False, inner_normalized: bool = False,
          eps: float = 1e-12) -> Solver:
    """N²SBA. ``eta`` outer step (float or schedule ``t -> η_t``), ``lam`` penalty λ,
    ``alpha``/``tau`` inner step sizes for z (≈ y*) and y (≈ y_λ*), ``inner_steps`` K.

    Numeric: eta, lam, alpha, tau, momentum β (when > 0). Structure: K, batch sizes,
    ``momentum > 0``, sample sharing, inner normalization."""
    check_unit("momentum beta", momentum, "n2sba")
    hp = dict(eta=eta, lam=lam, alpha=alpha, tau=tau)
    if momentum > 0:
        hp["momentum"] = momentum
    hparams = dict(eta=eta, lam=lam, alpha=alpha, tau=tau, inner_steps=inner_steps,
                   batch_in=batch_in, batch_out=batch_out, momentum=momentum,
                   shared_samples=shared_samples, inner_normalized=inner_normalized)
    return penalty_solver("n2sba", "normalized", hp=hp, momentum=momentum > 0, eps=eps,
                          inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out,
                          shared_samples=shared_samples, inner_normalized=inner_normalized,
                          hparams=hparams)
