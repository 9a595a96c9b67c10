"""F2SA (Kwon et al., 2023): penalty directions, growing λ_t, plain outer step.

``λ_t = min(lam + lam_rate·t, lam_max)`` (a schedule given as ``lam`` replaces the linear
growth); ``x ← x − η_t h_t`` with ``h_t`` the penalty hypergradient estimate at λ_t.
``clip`` gives the clipped variant ``x ← x − η_t clip(h_t, c)`` (``clipped-f2sa``).
"""
from __future__ import annotations

import math
from functools import partial

from ..schedules import linear_growth
from ._penalty import PenaltyMethod
from .base import SOLVERS, numeric, solver, x_update
from .n2sba import EXACT

_EXACT = dict(EXACT, eta=0.1, lam=linear_growth(10.0, 100.0, 1e5))


@solver("f2sa", "F2SA: penalty hypergradient, λ growing linearly, plain outer step",
        tests=dict(noise_free=(_EXACT, 2000),
                   small=dict(inner_steps=2, batch_in=3, batch_out=2, shared_samples=True)))
class F2SA(PenaltyMethod):
    """F2SA; ``lam`` is the starting penalty unless it is a schedule."""

    eta: float = numeric(0.01, schedule=True)
    lam: float = numeric(10.0, schedule=True)
    lam_rate: float = numeric(0.01, low=0.0, low_closed=True, doc="growth of λ per step")
    lam_max: float = numeric(100.0, high_closed=True, doc="cap of λ_t (inf: none)")
    clip: float | None = numeric(None, optional=True, label="clipping threshold",
                                 doc="clip level c of the outer step (None: no clipping)")

    @property
    def name(self):
        return "f2sa" if self.clip is None else "clipped-f2sa"

    def check(self):
        if callable(self.lam):  # a schedule λ_t replaces the linear growth
            object.__setattr__(self, "lam_rate", 0.0)
            object.__setattr__(self, "lam_max", math.inf)
        elif not self.lam_max >= self.lam:
            raise ValueError(f"{self.name}: need lam_rate >= 0 and lam_max >= lam, got "
                             f"lam={self.lam}, lam_rate={self.lam_rate}, "
                             f"lam_max={self.lam_max}")

    @property
    def hp(self):
        """λ_t travels as one schedule: ``LinearGrowth(lam, lam_rate, lam_max)`` (its numbers
        are traced), or the schedule given as ``lam``."""
        hp = dict(super().hp)
        start, rate, stop = hp.pop("lam"), hp.pop("lam_rate"), hp.pop("lam_max")
        hp["lam"] = start if callable(self.lam) else linear_growth(
            self.lam, float(rate), float(stop))
        return hp

    def update_rule(self):
        return x_update(clip=self.active("clip"))


f2sa = F2SA
SOLVERS.register("clipped-f2sa", "F2SA with the outer step's norm clipped to c",
                 partial(F2SA, clip=1.0),
                 tests=dict(noise_free=(dict(_EXACT, clip=1.0), 2000),
                            small=dict(inner_steps=2, batch_in=3, batch_out=2)))
