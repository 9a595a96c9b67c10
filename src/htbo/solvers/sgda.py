"""Two-time-scale SGDA and its clipped / normalized-momentum variants (single loop).

One minibatch per step gives both partial gradients; simultaneous updates::

    (g_x, g_y) = (∇_x F, ∇_y F)(x, y; ξ_B)
    y ← P_Y(y + τ_t g_y)
    x ← x − update(g_x)     plain: η_t g_x;  clip=c: η_t clip(g_x, c);
                            momentum=β (normalized SGDA with momentum): m ← βm + (1−β)g_x,
                            η_t m/‖m‖
SFO per step: ``batch``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from ..oracles import grad_f, tree_axpy, tree_sub
from ..schedules import ScalarOrSchedule, as_schedule, check_batch, check_positive
from .base import Solver, check_clip, check_unit, clipped, normalized, plain, program


class SgdaState(NamedTuple):
    x: Any
    y: Any
    u: Any
    t: Any
    hp: Any


def sgda(*, eta: ScalarOrSchedule = 0.01, tau: ScalarOrSchedule = 0.05, batch: int = 8,
         clip: float | None = None, momentum: float | None = None) -> Solver:
    """SGDA; ``clip`` gives clipped SGDA, ``momentum`` normalized SGDA with momentum."""
    if clip is not None and momentum is not None:
        raise ValueError("sgda: choose clip or momentum (normalized), not both")
    name = "sgda" if clip is None and momentum is None else (
        "clipped-sgda" if clip is not None else "nsgda-m")
    check_positive("eta", eta, name)
    check_positive("tau", tau, name)
    check_batch("batch", batch, name)
    hp = dict(eta=as_schedule(eta), tau=as_schedule(tau))
    kind = "plain"
    if clip is not None:
        check_clip(clip, name)
        hp["clip"], kind = float(clip), "clipped"
    elif momentum is not None:
        check_unit("momentum beta", momentum, name)
        hp["momentum"], kind = float(momentum), "normalized"
    init, step, params = _sgda_program(int(batch), kind)
    return Solver(name, init, step, batch, 0, params,
                  dict(eta=eta, tau=tau, batch=batch, clip=clip, momentum=momentum), hp,
                  "minimax")


@program
def _sgda_program(batch, kind):
    update = {"plain": plain, "clipped": clipped,
              "normalized": lambda: normalized(momentum=True)}[kind]()

    def init(problem, x0, y0, key, hp):
        return SgdaState(x0, y0, update.init(x0), jnp.zeros((), jnp.int32), hp)

    def step(problem, s: SgdaState, key):
        gx, gy = grad_f(problem, s.x, s.y, key, batch)
        y = tree_axpy(s.hp["tau"](s.t), gy, s.y)
        if problem.project_y is not None:
            y = problem.project_y(y)
        dx, u = update.apply(gx, s.u, s.hp["eta"](s.t), s.hp)
        return SgdaState(tree_sub(s.x, dx), y, u, s.t + 1, s.hp)

    return init, step, lambda s: (s.x, s.y)
