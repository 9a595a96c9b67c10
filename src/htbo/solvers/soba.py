"""SOBA (Dagréou et al., 2022): single-loop bilevel with a linear-system variable v.

One step on independent minibatches (``z`` ≈ y*(x), ``v`` ≈ −[∇²_yy g]⁻¹∇_y f)::

    z ← z − ρ_t ∇_y G(x, z)
    v ← v − ρ_t (∇²_yy G(x, z) v + ∇_y F(x, z))
    x ← x − update(∇_x F(x, z) + ∇²_xy G(x, z) v)       (plain: η_t h; clipped: η_t clip(h, c))

Cost per step: SFO ``batch (∇_y G) + batch (∇F)``; HVP ``batch`` (one joint
Hessian-vector product gives both ∇²_yy G v and ∇²_xy G v).
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from ..oracles import grad_f, grad_g_y, hvp_both_g, split
from ..schedules import ScalarOrSchedule
from ..tree import axpy
from .base import SOLVERS, Solver, numeric, solver, structural, x_update


class SobaState(NamedTuple):
    x: Any
    z: Any
    v: Any
    u: Any
    t: Any
    hp: Any


_EXACT = dict(eta=0.1, rho=0.3)


@solver("soba", "SOBA: single loop, linear-system variable v by Hessian-vector products",
        tests=dict(noise_free=(_EXACT, 2000), small=dict(batch=3)))
class SOBA(Solver):
    """SOBA with outer step ``eta`` and inner / linear-system step ``rho``."""

    eta: ScalarOrSchedule = numeric(0.01, schedule=True, doc="outer step η_t")
    rho: ScalarOrSchedule = numeric(0.05, schedule=True, doc="step of z and v")
    clip: float | None = numeric(None, optional=True, label="clipping threshold",
                                 doc="clip level c of the outer step (None: no clipping)")
    batch: int = structural(8)

    @property
    def name(self):
        return "soba" if self.clip is None else "clipped-soba"

    @property
    def sfo_per_step(self) -> int:
        return 2 * self.batch

    @property
    def hvp_per_step(self) -> int:
        return self.batch

    def update_rule(self):
        return x_update(clip=self.active("clip"))

    def init(self, problem, x0, y0, key, hp):
        return SobaState(x0, y0, optax.tree.zeros_like(y0), self.update_rule().init(x0),
                         jnp.zeros((), jnp.int32), hp)

    def step(self, problem, s: SobaState, key):
        k1, k2, k3 = split(key, 3)
        rho_t = s.hp["rho"](s.t)
        fx, fy = grad_f(problem, s.x, s.z, k1, self.batch)
        hxv, hyv = hvp_both_g(problem, s.x, s.z, s.v, k2, self.batch)
        gy = grad_g_y(problem, s.x, s.z, k3, self.batch)
        z = axpy(-rho_t, gy, s.z)
        if problem.project_y is not None:
            z = problem.project_y(z)
        v = axpy(-rho_t, optax.tree.add(hyv, fy), s.v)
        dx, u = self.update_rule().update(optax.tree.add(fx, hxv), s.u, hp=s.hp, t=s.t)
        return SobaState(optax.tree.sub(s.x, dx), z, v, u, s.t + 1, s.hp)

    def params(self, s):
        return s.x, s.z


soba = SOBA
SOLVERS.register("clipped-soba", "SOBA with the outer step's norm clipped to c",
                 partial(SOBA, clip=1.0),
                 tests=dict(noise_free=(dict(_EXACT, clip=1.0), 2000), small=dict(batch=3)))
