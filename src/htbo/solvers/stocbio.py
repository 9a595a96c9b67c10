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

from ..oracles import grad_f, grad_g_y, hvp_yy_g, jvp_xy_g, tree_add, tree_axpy, tree_scale, tree_sub
from ..schedules import ScalarOrSchedule, as_schedule, check_batch, check_positive
from .base import Solver, plain


class StocBiOState(NamedTuple):
    x: Any
    y: Any
    t: Any


def stocbio(*, eta: ScalarOrSchedule = 0.01, alpha: ScalarOrSchedule = 0.05,
            inner_steps: int = 5, neumann_terms: int = 10, neumann_lr: float = 0.05,
            batch_in: int = 1, batch_out: int = 8, batch_hvp: int = 8) -> Solver:
    """StocBiO with ``neumann_terms`` = Q and Neumann step ``neumann_lr`` = γ."""
    for k, v in (("eta", eta), ("alpha", alpha), ("neumann_lr", neumann_lr)):
        check_positive(k, v, "stocbio")
    for k, v in (("inner_steps", inner_steps), ("neumann_terms", neumann_terms),
                 ("batch_in", batch_in), ("batch_out", batch_out), ("batch_hvp", batch_hvp)):
        check_batch(k, v, "stocbio")
    eta_s, alpha_s = as_schedule(eta), as_schedule(alpha)
    update = plain()

    def init(problem, x0, y0, key=None):
        return StocBiOState(x0, y0, jnp.zeros((), jnp.int32))

    def step(problem, s: StocBiOState, key):
        ky, kf, kn, kj = jax.random.split(key, 4)
        project = problem.project_y or (lambda y: y)
        a = alpha_s(s.t)

        def inner(y, k):
            return project(tree_axpy(-a, grad_g_y(problem, s.x, y, k, batch_in), y)), None

        y = jax.lax.scan(inner, s.y, jax.random.split(ky, inner_steps))[0]
        fx, fy = grad_f(problem, s.x, y, kf, batch_out)

        def neumann(carry, k):
            p, acc = carry
            p = tree_sub(p, tree_scale(neumann_lr, hvp_yy_g(problem, s.x, y, p, k, batch_hvp)))
            return (p, tree_add(acc, p)), None

        (_, acc), _ = jax.lax.scan(neumann, (fy, fy), jax.random.split(kn, neumann_terms))
        v = tree_scale(neumann_lr, acc)
        h = tree_sub(fx, jvp_xy_g(problem, s.x, y, v, kj, batch_hvp))
        dx, _ = update.apply(h, (), eta_s(s.t))
        return StocBiOState(tree_sub(s.x, dx), y, s.t + 1)

    return Solver("stocbio", init, step, inner_steps * batch_in + batch_out,
                  (neumann_terms + 1) * batch_hvp, lambda s: (s.x, s.y),
                  dict(eta=eta, alpha=alpha, inner_steps=inner_steps,
                       neumann_terms=neumann_terms, neumann_lr=neumann_lr, batch_in=batch_in,
                       batch_out=batch_out, batch_hvp=batch_hvp))
