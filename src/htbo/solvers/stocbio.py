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

from ..oracles import split, grad_f, grad_g_y, hvp_yy_g, jvp_xy_g, tree_add, tree_axpy, tree_scale, tree_sub
from ..schedules import ScalarOrSchedule, as_schedule, check_batch, check_positive
from .base import Solver, program


class StocBiOState(NamedTuple):
    x: Any
    y: Any
    t: Any
    hp: Any


def stocbio(*, eta: ScalarOrSchedule = 0.01, alpha: ScalarOrSchedule = 0.05,
            inner_steps: int = 5, neumann_terms: int = 10, neumann_lr: float = 0.05,
            batch_in: int = 1, batch_out: int = 8, batch_hvp: int = 8) -> Solver:
    """StocBiO with ``neumann_terms`` = Q and Neumann step ``neumann_lr`` = γ (numeric:
    eta, alpha, γ; structure: K, Q, batch sizes)."""
    for k, v in (("eta", eta), ("alpha", alpha), ("neumann_lr", neumann_lr)):
        check_positive(k, v, "stocbio")
    for k, v in (("inner_steps", inner_steps), ("neumann_terms", neumann_terms),
                 ("batch_in", batch_in), ("batch_out", batch_out), ("batch_hvp", batch_hvp)):
        check_batch(k, v, "stocbio")
    init, step, params = _stocbio_program(int(inner_steps), int(neumann_terms), int(batch_in),
                                          int(batch_out), int(batch_hvp))
    hp = dict(eta=as_schedule(eta), alpha=as_schedule(alpha), neumann_lr=float(neumann_lr))
    return Solver("stocbio", init, step, inner_steps * batch_in + batch_out,
                  (neumann_terms + 1) * batch_hvp, params,
                  dict(eta=eta, alpha=alpha, inner_steps=inner_steps,
                       neumann_terms=neumann_terms, neumann_lr=neumann_lr, batch_in=batch_in,
                       batch_out=batch_out, batch_hvp=batch_hvp), hp)


@program
def _stocbio_program(inner_steps, neumann_terms, batch_in, batch_out, batch_hvp):
    def init(problem, x0, y0, key, hp):
        return StocBiOState(x0, y0, jnp.zeros((), jnp.int32), hp)

    def step(problem, s: StocBiOState, key):
        ky, kf, kn, kj = split(key, 4)
        project = problem.project_y or (lambda y: y)
        a, gamma = s.hp["alpha"](s.t), s.hp["neumann_lr"]

        def inner(y, k):
            return project(tree_axpy(-a, grad_g_y(problem, s.x, y, k, batch_in), y)), None

        y = jax.lax.scan(inner, s.y, split(ky, inner_steps))[0]
        fx, fy = grad_f(problem, s.x, y, kf, batch_out)

        def neumann(carry, k):
            p, acc = carry
            p = tree_sub(p, tree_scale(gamma, hvp_yy_g(problem, s.x, y, p, k, batch_hvp)))
            return (p, tree_add(acc, p)), None

        (_, acc), _ = jax.lax.scan(neumann, (fy, fy), split(kn, neumann_terms))
        v = tree_scale(gamma, acc)
        h = tree_sub(fx, jvp_xy_g(problem, s.x, y, v, kj, batch_hvp))
        return StocBiOState(tree_axpy(-s.hp["eta"](s.t), h, s.x), y, s.t + 1, s.hp)

    return init, step, lambda s: (s.x, s.y)
