"""Two-time-scale SGDA and its clipped / normalized-momentum variants (single loop).

One minibatch per step gives both partial gradients; simultaneous updates::

    (g_x, g_y) = (∇_x F, ∇_y F)(x, y; ξ_B)
    y ← P_Y(y + τ_t g_y)
    x ← x − update(g_x)     plain: η_t g_x;  clip=c: η_t clip(g_x, c);
                            momentum=β (normalized SGDA with momentum): m ← βm + (1−β)g_x,
                            η_t m/‖m‖; both: the clipped gradient enters the average
SFO per step: ``batch``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from ..oracles import grad_f
from ..schedules import ScalarOrSchedule, exponential
from ..tree import axpy
from .base import SOLVERS, Solver, numeric, solver, structural, x_update


class SgdaState(NamedTuple):
    x: Any
    y: Any
    u: Any
    t: Any
    hp: Any


_EXACT = dict(eta=0.05, tau=0.3)


@solver("sgda", "two-time-scale SGDA (minimax)",
        tests=dict(noise_free=(_EXACT, 4000), small=dict(batch=3)))
class SGDA(Solver):
    """SGDA; ``clip`` gives clipped SGDA, ``momentum`` normalized SGDA with momentum."""

    kind = "minimax"
    eta: ScalarOrSchedule = numeric(0.01, schedule=True, doc="descent step η_t")
    tau: ScalarOrSchedule = numeric(0.05, schedule=True, doc="ascent step τ_t")
    clip: float | None = numeric(None, optional=True, label="clipping threshold")
    momentum: float | None = numeric(None, low=0.0, high=1.0, low_closed=True, optional=True,
                                     label="momentum beta",
                                     doc="β: normalized steps with momentum (None: plain)")
    batch: int = structural(8)

    @property
    def name(self):
        parts = (["clipped"] if self.clip is not None else []) + \
            (["nsgda-m"] if self.momentum is not None else ["sgda"])
        return "-".join(parts)

    @property
    def sfo_per_step(self) -> int:
        return self.batch

    def update_rule(self):
        m = self.active("momentum")
        return x_update(clip=self.active("clip"), momentum=m, normalized=m)

    def init(self, problem, x0, y0, key, hp):
        return SgdaState(x0, y0, self.update_rule().init(x0), jnp.zeros((), jnp.int32), hp)

    def step(self, problem, s: SgdaState, key):
        gx, gy = grad_f(problem, s.x, s.y, key, self.batch)
        y = axpy(s.hp["tau"](s.t), gy, s.y)
        if problem.project_y is not None:
            y = problem.project_y(y)
        dx, u = self.update_rule().update(gx, s.u, hp=s.hp, t=s.t)
        return SgdaState(optax.tree.sub(s.x, dx), y, u, s.t + 1, s.hp)


sgda = SGDA
SOLVERS.register("clipped-sgda", "SGDA with the descent step's norm clipped to c",
                 partial(SGDA, clip=1.0),
                 tests=dict(noise_free=(dict(_EXACT, clip=1.0), 4000), small=dict(batch=3)))
SOLVERS.register("nsgda-m", "normalized SGDA with momentum (minimax)",
                 partial(SGDA, momentum=0.9),
                 tests=dict(noise_free=(dict(eta=exponential(0.2, 0.998), tau=0.3,
                                             momentum=0.5), 4000), small=dict(batch=3)))
