"""Stochastic F2BA (Chen, Ma & Zhang): the penalty method with a fixed λ and a plain step.

Same directions as N²SBA (:mod:`htbo.solvers._penalty`), unnormalized outer step
``x ← x − η_t h``.
"""
from __future__ import annotations

from ..schedules import ScalarOrSchedule
from ._penalty import penalty_solver
from .base import Solver


def f2ba(*, eta: ScalarOrSchedule = 0.01, lam: float = 30.0, alpha: ScalarOrSchedule = 0.05,
         tau: ScalarOrSchedule = 0.05, inner_steps: int = 5, batch_in: int = 1,
         batch_out: int = 8, shared_samples: bool = False) -> Solver:
    """Stochastic F2BA with fixed penalty ``lam``."""
    if callable(lam):
        raise ValueError("f2ba: lam is fixed; use f2sa for a growing penalty")
    hparams = dict(eta=eta, lam=lam, alpha=alpha, tau=tau, inner_steps=inner_steps,
                   batch_in=batch_in, batch_out=batch_out, shared_samples=shared_samples)
    return penalty_solver("f2ba", "plain", hp=dict(eta=eta, lam=lam, alpha=alpha, tau=tau),
                          inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out,
                          shared_samples=shared_samples, inner_normalized=False,
                          hparams=hparams)
