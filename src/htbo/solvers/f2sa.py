"""F2SA (Kwon et al., 2023): penalty directions, growing λ_t, plain outer step.

``λ_t = min(lam + lam_rate·t, lam_max)`` (or any schedule passed as ``lam``);
``x ← x − η_t h_t`` with ``h_t`` the penalty hypergradient estimate at λ_t.
``clip`` gives the clipped variant ``x ← x − η_t clip(h_t, c)``.
"""
from __future__ import annotations

import math

from ..schedules import ScalarOrSchedule, linear_growth
from ._penalty import penalty_solver
from .base import Solver, check_clip


def f2sa(*, eta: ScalarOrSchedule = 0.01, lam: ScalarOrSchedule = 10.0, lam_rate: float = 0.01,
         lam_max: float = 100.0, alpha: ScalarOrSchedule = 0.05, tau: ScalarOrSchedule = 0.05,
         inner_steps: int = 5, batch_in: int = 1, batch_out: int = 8,
         shared_samples: bool = False, clip: float | None = None) -> Solver:
    """F2SA; ``lam`` is the starting penalty unless it is already a schedule.

    Numeric: eta, λ_t's start/rate/max, alpha, tau, clip. Structure: K, batch sizes,
    clipped or not, sample sharing."""
    name = "f2sa" if clip is None else "clipped-f2sa"
    if not callable(lam):
        if not (lam_rate >= 0 and lam_max >= lam and not math.isnan(lam_max)):
            raise ValueError(f"{name}: need lam_rate >= 0 and lam_max >= lam, got "
                             f"lam={lam}, lam_rate={lam_rate}, lam_max={lam_max}")
    hp = dict(eta=eta, lam=lam if callable(lam) else linear_growth(lam, lam_rate, lam_max),
              alpha=alpha, tau=tau)
    if clip is not None:
        check_clip(clip, name)
        hp["clip"] = clip
    hparams = dict(eta=eta, lam=lam, lam_rate=lam_rate, lam_max=lam_max, alpha=alpha, tau=tau,
                   inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out,
                   shared_samples=shared_samples, clip=clip)
    return penalty_solver(name, "plain" if clip is None else "clipped", hp=hp,
                          inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out,
                          shared_samples=shared_samples, inner_normalized=False,
                          hparams=hparams)
