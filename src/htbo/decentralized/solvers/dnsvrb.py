"""D-NSVRB: decentralized normalized STORM bilevel method with gradient tracking.

Written for ONE agent ``i``; every exchange is a named-axis collective (``mix``), so the same
step runs under ``vmap(axis_name="agents")`` and under ``shard_map`` across processes. Agent
``i``'s randomness is ``fold_in(key, i)``. Variables ``w = (x, y, z)`` (penalty route) or
``(x, y, v)`` (HVP route); one step::

    w⁺ = Σ_j W_ij w_j − η_v · T(d_v)   per variable v   (d = s with tracking, else u)
         T = d/max(‖d‖, eps) ("normalized"), d ("plain") or clip(d, c) ("clip")
    u⁺ = D(w⁺; b) + (1 − β)(u − D(w; b))           STORM, the same local minibatch b twice
    s⁺ = Σ_j W_ij s_j + u⁺ − u                      gradient tracking

Penalty directions (default): ``D^z = ∇_y G(x,z)``, ``D^y = ∇_y F(x,y)/λ + ∇_y G(x,y)``,
``D^x = ∇_x F(x,y) + λ(∇_x G(x,y) − ∇_x G(x,z))`` (no strongly convex lower level needed).
HVP route (``route="hvp"``, needs one): ``D^y = ∇_y G``, ``D^v = ∇²_yy G v + ∇_y F``,
``D^x = ∇_x F + ∇²_xy G v``. [R]: the whole update is a reconstruction (docs/algorithms.md);
its switches are ``route``, ``beta`` (β = 1: no variance reduction), ``update`` (x) and
``inner_update`` (y, z), ``tracking``, ``shared_samples`` (the two ∇ₓG terms on one sample
set or on independent ones), per-variable step sizes. SFO per agent per step: ``3B``
(penalty, shared samples; ``4B`` independent) or ``2B`` + ``B`` HVP, doubled by STORM (β < 1).
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ...oracles import grad_f, grad_g, grad_g_x, grad_g_y, hvp_both_g, split
from ...registry import Registry
from ...schedules import ScalarOrSchedule
from ...solvers.base import Solver, numeric, solver, structural
from ...tree import axpy, clip_norm, normalize

__all__ = ["DecState", "DNSVRB", "dnsvrb", "DEC_SOLVERS", "AXIS"]

AXIS = "agents"
_UPDATES = ("normalized", "plain", "clip")

#: name -> one-agent decentralized solver (class or registered variant)
DEC_SOLVERS = Registry("decentralized solver")


class DecState(NamedTuple):
    w: dict
    u: dict
    s: dict
    t: Any
    hp: Any


def _penalty_dirs(problem, w, key, lam, batch, shared):
    kf, kg = split(key)
    fx, fy = grad_f(problem, w["x"], w["y"], kf, batch)
    gxy, gyy = grad_g(problem, w["x"], w["y"], kg, batch)
    if shared:  # the same sample b as at (x, y): injected noise cancels in ∇ₓG(y) − ∇ₓG(z)
        gxz, gyz = grad_g(problem, w["x"], w["z"], kg, batch)
    else:       # ∇_y G(x, z) on b (it only drives z); an independent b' for ∇ₓG(x, z)
        gyz = grad_g_y(problem, w["x"], w["z"], kg, batch)
        gxz = grad_g_x(problem, w["x"], w["z"], jax.random.fold_in(kg, 1), batch)
    return {"x": axpy(lam, optax.tree.sub(gxy, gxz), fx), "y": axpy(1.0 / lam, fy, gyy),
            "z": gyz}


def _hvp_dirs(problem, w, key, lam, batch, shared):
    kf, kg, kh = split(key, 3)
    fx, fy = grad_f(problem, w["x"], w["y"], kf, batch)
    gy = grad_g_y(problem, w["x"], w["y"], kg, batch)
    hx, hy = hvp_both_g(problem, w["x"], w["y"], w["v"], kh, batch)
    return {"x": optax.tree.add(fx, hx), "y": gy, "v": optax.tree.add(hy, fy)}


@solver("dnsvrb", "D-NSVRB: STORM + gradient tracking + normalized steps, penalty or HVP "
        "route", registry=DEC_SOLVERS, tests=dict(small=dict(batch=2)))
class DNSVRB(Solver):
    """The decentralized method; ``eta_z`` is the step of z (penalty) or v (HVP route).

    ``update`` transforms the x-direction, ``inner_update`` (default: the same) those of the
    inner variables, so ``update="normalized", inner_update="plain"`` normalizes x only (the
    analogue of N²SBA)."""

    kind = "decentralized"
    comm_per_step = 1
    eta_x: ScalarOrSchedule = numeric(0.02, schedule=True)
    eta_y: ScalarOrSchedule = numeric(0.05, schedule=True)
    eta_z: ScalarOrSchedule = numeric(0.05, schedule=True, doc="step of z (penalty) or v (HVP)")
    lam: float = numeric(10.0, doc="penalty λ (penalty route)")
    beta: float = numeric(0.1, low=0.0, high=1.0, high_closed=True, optional=True, off=1.0,
                          doc="STORM weight (1: no variance reduction)")
    clip: float = numeric(1.0, label="clipping threshold", doc="clip level of 'clip' updates")
    batch: int = structural(1)
    route: str = structural("penalty", type=str, choices=("penalty", "hvp"))
    update: str = structural("normalized", type=str, choices=_UPDATES)
    inner_update: str | None = structural(None, type=str, choices=_UPDATES + (None,))
    tracking: bool = structural(True, type=bool)
    shared_samples: bool = structural(True, type=bool)
    eps: float = structural(1e-12, type=float)

    @property
    def name(self):
        inner = self.inner_update or self.update
        if self.update == "plain" and inner == "plain" and not self.active("beta") and \
                not self.tracking:
            return "dsgd-bilevel"
        return {"normalized": "dnsvrb", "plain": "dsvrb", "clip": "dsvrb-clip"}[self.update]

    @property
    def sfo_per_step(self) -> int:
        per_eval = (3 if self.shared_samples else 4) * self.batch if self.route == "penalty" \
            else 2 * self.batch
        return (2 if self.active("beta") else 1) * per_eval

    @property
    def hvp_per_step(self) -> int:
        return (2 if self.active("beta") else 1) * self.batch if self.route == "hvp" else 0

    def _dirs(self, problem, w, key, lam):
        fn = _penalty_dirs if self.route == "penalty" else _hvp_dirs
        return fn(problem, w, key, lam, self.batch, self.shared_samples)

    def _transform(self, kind, d, hp):
        if kind == "normalized":
            return normalize(d, self.eps)
        return clip_norm(d, hp["clip"]) if kind == "clip" else d

    def init(self, problem, x0, y0, key, hp):
        third = "z" if self.route == "penalty" else "v"
        w = {"x": x0, "y": y0, third: y0 if self.route == "penalty" else
             jax.tree_util.tree_map(jnp.zeros_like, y0)}
        u = self._dirs(problem, w, _agent_key(key), hp["lam"])
        return DecState(w, u, u, jnp.zeros((), jnp.int32), hp)

    def step(self, problem, st: DecState, key, mix):
        hp, t = st.hp, st.t
        third = "z" if self.route == "penalty" else "v"
        eta_key = {"x": "eta_x", "y": "eta_y", third: "eta_z"}
        inner = self.inner_update or self.update
        d = st.s if self.tracking else st.u
        w_mix, s_mix = mix((st.w, st.s)) if self.tracking else (mix(st.w), st.s)
        w = {k: axpy(-hp[eta_key[k]](t),
                     self._transform(self.update if k == "x" else inner, d[k], hp), w_mix[k])
             for k in w_mix}
        k = _agent_key(key)
        u = self._dirs(problem, w, k, hp["lam"])
        if self.active("beta"):
            old = self._dirs(problem, st.w, k, hp["lam"])
            u = jax.tree_util.tree_map(lambda a, b, c: a + (1.0 - hp["beta"]) * (b - c), u,
                                       st.u, old)
        s = jax.tree_util.tree_map(lambda a, b, c: a + b - c, s_mix, u, st.u) \
            if self.tracking else u
        return DecState(w, u, s, t + 1, hp)

    def params(self, st):
        return st.w["x"], st.w["z" if self.route == "penalty" else "y"]


def _agent_key(key):
    return jax.random.fold_in(key, jax.lax.axis_index(AXIS))


dnsvrb = DNSVRB
DEC_SOLVERS.register("dsvrb", "DSVRB: D-NSVRB without normalization (STORM + tracking)",
                     partial(DNSVRB, update="plain"), tests=dict(small=dict(batch=2)))
DEC_SOLVERS.register("dsvrb-clip", "DSVRB with clipped directions",
                     partial(DNSVRB, update="clip"), tests=dict(small=dict(batch=2)))
DEC_SOLVERS.register("dsgd-bilevel", "decentralized SGD bilevel: no STORM, no tracking",
                     partial(DNSVRB, update="plain", beta=1.0, tracking=False),
                     tests=dict(small=dict(batch=2)))
