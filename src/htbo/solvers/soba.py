"""SOBA (Dagréou et al., 2022): single-loop bilevel with a linear-system variable v.

One step on independent minibatches (``z`` ≈ y*(x), ``v`` ≈ −[∇²_yy g]⁻¹∇_y f)::

    z ← z − ρ_t ∇_y G(x, z)
    v ← v − ρ_t (∇²_yy G(x, z) v + ∇_y F(x, z))
    x ← x − update(∇_x F(x, z) + ∇²_xy G(x, z) v)       (plain: η_t h; clipped: η_t clip(h, c))

Cost per step: SFO ``batch (∇_y G) + batch (∇F)``; HVP ``batch`` (one joint
Hessian-vector product gives both ∇²_yy G v and ∇²_xy G v).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from ..oracles import split, grad_f, grad_g_y, hvp_both_g, tree_add, tree_axpy, tree_sub, tree_zeros_like
from ..schedules import ScalarOrSchedule, as_schedule, check_batch, check_positive
from .base import Solver, check_clip, clipped, plain, program


class SobaState(NamedTuple):
    x: Any
    z: Any
    v: Any
    u: Any
    t: Any
    hp: Any


def soba(*, eta: ScalarOrSchedule = 0.01, rho: ScalarOrSchedule = 0.05, batch: int = 8,
         clip: float | None = None) -> Solver:
    """SOBA with outer step ``eta`` and inner/linear-system step ``rho`` (numeric: eta, rho,
    clip; structure: batch, clipped or not)."""
    name = "soba" if clip is None else "clipped-soba"
    check_positive("eta", eta, name)
    check_positive("rho", rho, name)
    check_batch("batch", batch, name)
    hp = dict(eta=as_schedule(eta), rho=as_schedule(rho))
    if clip is not None:
        check_clip(clip, name)
        hp["clip"] = float(clip)
    init, step, params = _soba_program(int(batch), clip is not None)
    return Solver(name, init, step, 2 * batch, batch, params,
                  dict(eta=eta, rho=rho, batch=batch, clip=clip), hp)


@program
def _soba_program(batch, is_clipped):
    update = clipped() if is_clipped else plain()

    def init(problem, x0, y0, key, hp):
        return SobaState(x0, y0, tree_zeros_like(y0), update.init(x0), jnp.zeros((), jnp.int32),
                         hp)

    def step(problem, s: SobaState, key):
        k1, k2, k3 = split(key, 3)
        rho_t = s.hp["rho"](s.t)
        fx, fy = grad_f(problem, s.x, s.z, k1, batch)
        hxv, hyv = hvp_both_g(problem, s.x, s.z, s.v, k2, batch)
        gy = grad_g_y(problem, s.x, s.z, k3, batch)
        z = tree_axpy(-rho_t, gy, s.z)
        if problem.project_y is not None:
            z = problem.project_y(z)
        v = tree_axpy(-rho_t, tree_add(hyv, fy), s.v)
        dx, u = update.apply(tree_add(fx, hxv), s.u, s.hp["eta"](s.t), s.hp)
        return SobaState(tree_sub(s.x, dx), z, v, u, s.t + 1, s.hp)

    return init, step, lambda s: (s.x, s.z)
