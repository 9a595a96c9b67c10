"""StocBiO (Ji, Yang & Liang, 2021): inner SGD plus a Neumann-series hypergradient.

One step::

    repeat K:  y ← y − α ∇_y G(x, y; ζ_B)                       (warm start)
    p_0 = ∇_y F(x, y; ξ),  p_q = (I − γ ∇²_yy G(x, y; ζ_q)) p_{q−1},  v = γ Σ_{q=0}^{Q} p_q
    h = ∇_x F(x, y; ξ) − ∇²_xy G(x, y; ζ) v                      (v ≈ [∇²_yy g]⁻¹ ∇_y f)
    x ← x − η_t h

γ must satisfy γ ≤ 1/ℓ for the series to converge. Cost per step: SFO ``K·B_in + B_out``;
HVP ``Q·B_hvp + B_hvp``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..oracles import grad_f, grad_g_y, hvp_yy_g, jvp_xy_g, split
from ..schedules import ScalarOrSchedule
from ..tree import axpy
from .base import Solver, numeric, solver, structural


class StocBiOState(NamedTuple):
    x: Any
    y: Any
    t: Any
    hp: Any


@solver("stocbio", "StocBiO: inner SGD, Neumann-series hypergradient (HVPs)",
        tests=dict(noise_free=(dict(eta=0.1, alpha=0.3, inner_steps=10, neumann_terms=40,
                                    neumann_lr=0.4), 2000),
                   small=dict(inner_steps=2, neumann_terms=3, batch_in=2, batch_out=3,
                              batch_hvp=4)))
class StocBiO(Solver):
    """StocBiO with ``neumann_terms`` = Q and Neumann step ``neumann_lr`` = γ."""

    eta: ScalarOrSchedule = numeric(0.01, schedule=True, doc="outer step η_t")
    alpha: ScalarOrSchedule = numeric(0.05, schedule=True, doc="inner step")
    neumann_lr: float = numeric(0.05, doc="γ ≤ 1/ℓ of the Neumann series")
    inner_steps: int = structural(5)
    neumann_terms: int = structural(10)
    batch_in: int = structural(1)
    batch_out: int = structural(8)
    batch_hvp: int = structural(8)

    @property
    def sfo_per_step(self) -> int:
        return self.inner_steps * self.batch_in + self.batch_out

    @property
    def hvp_per_step(self) -> int:
        return (self.neumann_terms + 1) * self.batch_hvp

    def init(self, problem, x0, y0, key, hp):
        return StocBiOState(x0, y0, jnp.zeros((), jnp.int32), hp)

    def step(self, problem, s: StocBiOState, key):
        ky, kf, kn, kj = split(key, 4)
        project = problem.project_y or (lambda y: y)
        a, gamma = s.hp["alpha"](s.t), s.hp["neumann_lr"]

        def inner(y, k):
            return project(axpy(-a, grad_g_y(problem, s.x, y, k, self.batch_in), y)), None

        y = jax.lax.scan(inner, s.y, split(ky, self.inner_steps))[0]
        fx, fy = grad_f(problem, s.x, y, kf, self.batch_out)

        def neumann(carry, k):
            p, acc = carry
            p = optax.tree.sub(p, optax.tree.scale(
                gamma, hvp_yy_g(problem, s.x, y, p, k, self.batch_hvp)))
            return (p, optax.tree.add(acc, p)), None

        (_, acc), _ = jax.lax.scan(neumann, (fy, fy), split(kn, self.neumann_terms))
        v = optax.tree.scale(gamma, acc)
        h = optax.tree.sub(fx, jvp_xy_g(problem, s.x, y, v, kj, self.batch_hvp))
        return StocBiOState(axpy(-s.hp["eta"](s.t), h, s.x), y, s.t + 1, s.hp)


stocbio = StocBiO
