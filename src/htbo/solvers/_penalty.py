"""The fully first-order penalty machinery shared by N²SBA, F2SA and stochastic F2BA.

``L_λ(x, y) = f(x, y) + λ (g(x, y) − min_z g(x, z))``; one outer step is::

    repeat K:  z ← z − α ∇_y G(x, z; ζ_B)                      (warm start, z ≈ y*(x))
    repeat K:  y ← y − τ (∇_y F(x, y; ξ_B)/λ + ∇_y G(x, y; ζ'_B))   (y ≈ y_λ*(x))
    h = ∇_x F(x, y; ξ_B) + λ (∇_x G(x, y; ζ_B) − ∇_x G(x, z; ζ'_B))
    x ← x − update(h)

Inner steps may be normalized (``v ← v − step · d/‖d‖``). ``shared_samples`` uses the same
ζ for both ∇_x G terms (common random numbers). SFO per outer step:
``K·B_in (z) + 2K·B_in (y) + 3·B_out (h)``. The methods differ in ``update`` (an Optax
chain, :func:`htbo.solvers.base.x_update`) and in how λ_t is formed (:meth:`lam_at`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..oracles import grad_f, grad_f_y, grad_g_x, grad_g_y, split
from ..schedules import ScalarOrSchedule
from ..tree import axpy, normalize
from .base import Solver, family, numeric, structural

__all__ = ["PenaltyState", "PenaltyMethod", "inner_loop", "penalty_directions"]


class PenaltyState(NamedTuple):
    x: Any
    y: Any
    z: Any
    u: Any   # x-update state (the Optax chain's)
    t: Any   # outer iteration counter
    hp: Any  # numeric hyperparameters


def inner_loop(problem, direction, v, key, steps: int, lr, normalized: bool):
    """``steps`` (warm-started) steps ``v ← P(v − lr·d)``, fresh samples each."""
    project = problem.project_y or (lambda y: y)

    def body(v, k):
        d = direction(v, k)
        if normalized:
            d = normalize(d)
        return project(axpy(-lr, d, v)), None

    return jax.lax.scan(body, v, split(key, steps))[0]


def penalty_directions(problem, x, y, z, key, *, lam, alpha, tau, inner_steps: int,
                       batch_in: int, batch_out: int, shared_samples: bool,
                       inner_normalized: bool):
    """Run both inner loops, return ``(h, y, z)`` with h the penalty hypergradient estimate."""
    kz, ky, kf, kg1, kg2 = split(key, 5)
    z = inner_loop(problem, lambda v, k: grad_g_y(problem, x, v, k, batch_in),
                   z, kz, inner_steps, alpha, inner_normalized)

    def dir_y(v, k):
        k1, k2 = split(k)
        return axpy(1.0 / lam, grad_f_y(problem, x, v, k1, batch_in),
                    grad_g_y(problem, x, v, k2, batch_in))

    y = inner_loop(problem, dir_y, y, ky, inner_steps, tau, inner_normalized)
    fx, _ = grad_f(problem, x, y, kf, batch_out)
    gxy = grad_g_x(problem, x, y, kg1, batch_out)
    gxz = grad_g_x(problem, x, z, kg1 if shared_samples else kg2, batch_out)
    h = axpy(lam, optax.tree.sub(gxy, gxz), fx)
    return h, y, z


@family
class PenaltyMethod(Solver):
    """Fields and step shared by the penalty methods (not registered itself)."""

    eta: ScalarOrSchedule = numeric(0.05, schedule=True, doc="outer step η_t")
    lam: ScalarOrSchedule = numeric(30.0, schedule=True, doc="penalty λ")
    alpha: ScalarOrSchedule = numeric(0.05, schedule=True, doc="inner step of z (≈ y*)")
    tau: ScalarOrSchedule = numeric(0.05, schedule=True, doc="inner step of y (≈ y_λ*)")
    inner_steps: int = structural(5, doc="K, steps of each inner loop")
    batch_in: int = structural(1)
    batch_out: int = structural(8)
    shared_samples: bool = structural(False, type=bool,
                                      doc="one sample set for both ∇ₓG terms")
    inner_normalized: bool = structural(False, type=bool, doc="normalized inner steps")

    def update_rule(self) -> optax.GradientTransformationExtraArgs:
        raise NotImplementedError

    def lam_at(self, hp, t):
        return hp["lam"](t)

    @property
    def sfo_per_step(self) -> int:
        return 3 * self.inner_steps * self.batch_in + 3 * self.batch_out

    def init(self, problem, x0, y0, key, hp):
        return PenaltyState(x0, y0, y0, self.update_rule().init(x0), jnp.zeros((), jnp.int32),
                            hp)

    def step(self, problem, s: PenaltyState, key):
        hp, t = s.hp, s.t
        h, y, z = penalty_directions(
            problem, s.x, s.y, s.z, key, lam=self.lam_at(hp, t), alpha=hp["alpha"](t),
            tau=hp["tau"](t), inner_steps=self.inner_steps, batch_in=self.batch_in,
            batch_out=self.batch_out, shared_samples=self.shared_samples,
            inner_normalized=self.inner_normalized)
        dx, u = self.update_rule().update(h, s.u, hp=hp, t=t)
        return PenaltyState(optax.tree.sub(s.x, dx), y, z, u, t + 1, hp)

    def params(self, s):
        return s.x, s.z
