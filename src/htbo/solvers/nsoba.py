"""NSOBA: SOBA's single loop with a normalized momentum outer step (a method of ours: no
paper cited here defines it; no heavy-tailed analysis of it is known to us).

One step on independent minibatches (``z`` ≈ y*(x), ``v`` ≈ −[∇²_yy g]⁻¹∇_y f), every
oracle at the current ``(x, z, v)``::

    z ← z − ρ_t T(∇_y G(x, z; ζ))
    v ← P_R(v − ρ_t T(∇²_yy G(x, z; ζ′) v + ∇_y F(x, z; ξ)))
    D = ∇_x F(x, z; ξ) + ∇²_xy G(x, z; ζ′) v
    m ← β m + (1 − β) D,    x ← x − η_t m / max(‖m‖, eps)

``T`` (``inner_update``) is the identity (``"plain"``), ``d · min(1, c/‖d‖)`` (``"clip"``,
``c = inner_clip``) or ``d / max(‖d‖, eps)`` (``"normalized"``), applied to z's and v's
directions separately; ``P_R`` scales v back to ``‖v‖ ≤ R`` (``v_radius``; None: no
projection). β = 0 is the plain normalized step. Cost per step as SOBA: SFO
``2 · batch``, HVP ``batch``.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

from ..oracles import grad_f, grad_g_y, hvp_both_g, split
from ..schedules import ScalarOrSchedule, exponential
from ..tree import axpy, clip_norm, normalize
from .base import Solver, numeric, solver, structural, x_update
from .soba import SobaState

_INNER = ("plain", "clip", "normalized")

# noise-free settings of the generic solver tests: a normalized step needs a decaying η
_EXACT = dict(eta=exponential(0.5, 0.996), rho=0.3)


@solver("nsoba", "NSOBA (ours): SOBA's z and v, momentum and a normalized outer step",
        tests=dict(noise_free=(_EXACT, 3000), small=dict(batch=3)))
class NSOBA(Solver):
    """NSOBA: ``eta`` outer step, ``rho`` step of z and v, ``momentum`` β, ``inner_update``
    (plain, clip or normalized z and v steps; ``inner_clip`` its level), ``v_radius`` R."""

    eta: ScalarOrSchedule = numeric(0.01, schedule=True, doc="outer step η_t (the length "
                                                           "of every x step)")
    rho: ScalarOrSchedule = numeric(0.05, schedule=True, doc="step of z and v")
    momentum: float = numeric(0.9, low=0.0, high=1.0, low_closed=True, label="momentum beta",
                              doc="β of the momentum average (0: plain normalized step)")
    inner_clip: float | None = numeric(None, optional=True, label="inner clipping threshold",
                                       doc="clip level of z and v steps (inner_update='clip')")
    v_radius: float | None = numeric(None, optional=True, doc="radius R of the projection "
                                                             "‖v‖ ≤ R (None: none)")
    batch: int = structural(8)
    inner_update: str = structural("plain", type=str, choices=_INNER,
                                   doc="T of the z and v steps")
    eps: float = structural(1e-12, type=float, doc="floor of the norms")

    def check(self):
        if self.inner_update == "clip" and not self.active("inner_clip"):
            raise ValueError("nsoba: inner_update='clip' needs a clip level inner_clip, got none")
        if self.inner_update != "clip" and self.active("inner_clip"):
            raise ValueError(f"nsoba: inner_clip={self.inner_clip!r} is used only with "
                             f"inner_update='clip', got inner_update={self.inner_update!r}")

    @property
    def sfo_per_step(self) -> int:
        return 2 * self.batch

    @property
    def hvp_per_step(self) -> int:
        return self.batch

    def update_rule(self):
        return x_update(momentum=True, normalized=True, eps=self.eps, eta="eta")

    def init(self, problem, x0, y0, key, hp):
        return SobaState(x0, y0, optax.tree.zeros_like(y0), self.update_rule().init(x0),
                         jnp.zeros((), jnp.int32), hp)

    def _inner(self, d, hp):
        if self.inner_update == "normalized":
            return normalize(d, self.eps)
        return clip_norm(d, hp["inner_clip"]) if self.inner_update == "clip" else d

    def step(self, problem, s: SobaState, key):
        k1, k2, k3 = split(key, 3)
        rho_t = s.hp["rho"](s.t)
        fx, fy = grad_f(problem, s.x, s.z, k1, self.batch)
        hxv, hyv = hvp_both_g(problem, s.x, s.z, s.v, k2, self.batch)
        gy = grad_g_y(problem, s.x, s.z, k3, self.batch)
        z = axpy(-rho_t, self._inner(gy, s.hp), s.z)
        if problem.project_y is not None:
            z = problem.project_y(z)
        v = axpy(-rho_t, self._inner(optax.tree.add(hyv, fy), s.hp), s.v)
        if self.active("v_radius"):
            v = clip_norm(v, s.hp["v_radius"])
        dx, u = self.update_rule().update(optax.tree.add(fx, hxv), s.u, hp=s.hp, t=s.t)
        return SobaState(optax.tree.sub(s.x, dx), z, v, u, s.t + 1, s.hp)

    def params(self, s):
        return s.x, s.z


nsoba = NSOBA
