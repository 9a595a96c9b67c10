"""Nested-loop minimax machinery shared by N²SGDA and SGDmax.

``min_x max_y f`` is stored as the bilevel problem with ``g = −f``; one outer step is::

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))        (= y − τ ∇_y G; warm start)
    h = ∇_x F(x, y; ξ'_B)
    x ← x − update(h)

SFO per step: ``K·B_in + B_out``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from ..oracles import grad_f_x, grad_g_y, split
from ..schedules import ScalarOrSchedule
from ._penalty import inner_loop
from .base import Solver, family, numeric, structural

# noise-free settings of the generic solver tests: minimax_quadratic(5, 5, κ = 2) in float64
# (start ‖∇Φ‖ = 5.3), K = 10 ascent steps of τ = 0.3
EXACT = dict(tau=0.3, inner_steps=10)
SMALL = dict(inner_steps=2, batch_in=3, batch_out=2)


class NestedState(NamedTuple):
    x: Any
    y: Any
    u: Any
    t: Any
    hp: Any


@family
class NestedMinimax(Solver):
    """Fields and step of the nested minimax methods (not registered itself)."""

    kind = "minimax"
    eta: ScalarOrSchedule = numeric(0.01, schedule=True, doc="descent step η_t")
    tau: ScalarOrSchedule = numeric(0.05, schedule=True, doc="ascent step τ_t")
    inner_steps: int = structural(5)
    batch_in: int = structural(1)
    batch_out: int = structural(8)
    inner_normalized: bool = structural(False, type=bool)

    def update_rule(self):
        raise NotImplementedError

    @property
    def sfo_per_step(self) -> int:
        return self.inner_steps * self.batch_in + self.batch_out

    def init(self, problem, x0, y0, key, hp):
        return NestedState(x0, y0, self.update_rule().init(x0), jnp.zeros((), jnp.int32), hp)

    def step(self, problem, s: NestedState, key):
        ky, kx = split(key)
        y = inner_loop(problem, lambda v, k: grad_g_y(problem, s.x, v, k, self.batch_in), s.y,
                       ky, self.inner_steps, s.hp["tau"](s.t), self.inner_normalized)
        dx, u = self.update_rule().update(grad_f_x(problem, s.x, y, kx, self.batch_out), s.u,
                                          hp=s.hp, t=s.t)
        return NestedState(optax.tree.sub(s.x, dx), y, u, s.t + 1, s.hp)
