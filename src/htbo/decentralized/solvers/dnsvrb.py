"""D-NSVRB: decentralized normalized STORM + gradient tracking bilevel method (§6, [R]).

Written for ONE agent; every neighbour exchange goes through ``mix`` (named-axis
collectives over ``"agents"``). Agent i's key is ``fold_in(step_key, axis_index)``.
Per variable v (x, y, z on the penalty route; x, y, v on the HVP route)::

    v ← mix(v) − η_v · dir(s^v)          dir = s/max(‖s‖,eps) | clip_c(s) | s
    D  at the new and the old point on the SAME fresh local minibatch b:
    u ← D(w_new; b) + (1 − β)(u − D(w_old; b))      # STORM (β = 1: plain minibatch)
    s ← mix(s) + u_new − u_old                      # gradient tracking (switchable)

Penalty directions: ``D^z = ∇_y G(x,z)``, ``D^y = ∇_y F(x,y)/λ + ∇_y G(x,y)``,
``D^x = ∇_x F(x,y) + λ(∇_x G(x,y) − ∇_x G(x,z))``. HVP route (strongly convex lower level):
``D^y = ∇_y G(x,y)``, ``D^v = ∇²_yy G v − ∇_y F``, ``D^x = ∇_x F − ∇²_xy G v``.
[R] switches: ``normalize``, ``clip``, ``beta``, ``tracking``, ``route``,
``shared_samples`` (same minibatch for both ∇_x G terms), per-variable step sizes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ... import oracles as O
from ...schedules import as_schedule

__all__ = ["DecSolver", "dnsvrb", "AXIS"]

AXIS = "agents"


class DecSolver(NamedTuple):
    name: str
    init: Callable
    step: Callable
    sfo_per_step: int
    comm_per_step: int
    params: Callable
    hvp_per_step: int = 0
    hparams: dict = {}


def _dir(s, mode, eps, clip):
    if mode == "normalize":
        return O.tree_scale(1.0 / jnp.maximum(O.tree_norm(s), eps), s)
    if mode == "clip":
        return O.tree_clip(s, clip)
    return s


def dnsvrb(eta_x=0.02, eta_y=0.05, eta_z=0.05, lam=10.0, beta=0.1, batch=1,
           normalize=True, clip=None, tracking=True, route="penalty", shared_samples=False,
           eps=1e-12, name=None) -> DecSolver:
    """Build the per-agent solver. ``eta_*`` are floats or schedules ``t -> η``."""
    if route not in ("penalty", "hvp"):
        raise ValueError(f"route must be 'penalty' or 'hvp', got {route!r}")
    if not 0 < beta <= 1:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    for k, v in dict(eta_x=eta_x, eta_y=eta_y, eta_z=eta_z, lam=lam).items():
        if not callable(v) and not v > 0:
            raise ValueError(f"{k} must be > 0, got {v}")
    mode = "normalize" if normalize else ("clip" if clip is not None else "plain")
    etas = dict(x=as_schedule(eta_x), y=as_schedule(eta_y), z=as_schedule(eta_z))
    storm = beta < 1

    def dirs(p, w, key):
        x, y, z = w["x"], w["y"], w["z"]
        kf, kg1, kg2 = jax.random.split(key, 3)
        kg2 = kg1 if shared_samples else kg2
        fx, fy = O.grad_f(p, x, y, kf, batch)
        if route == "penalty":
            gx_y, gy_y = O.grad_g(p, x, y, kg1, batch)
            gx_z, gy_z = O.grad_g(p, x, z, kg2, batch)
            return dict(x=O.tree_add(fx, O.tree_scale(lam, O.tree_sub(gx_y, gx_z))),
                        y=O.tree_add(O.tree_scale(1.0 / lam, fy), gy_y), z=gy_z)
        gy = O.grad_g_y(p, x, y, kg1, batch)
        hx, hy = O.hvp_both_g(p, x, y, z, kg2, batch)
        return dict(x=O.tree_sub(fx, hx), y=gy, z=O.tree_sub(hy, fy))

    def local_key(key):
        return jax.random.fold_in(key, jax.lax.axis_index(AXIS))

    def init(p, x0, y0, key):
        z0 = y0 if route == "penalty" else O.tree_zeros_like(y0)
        w = dict(x=x0, y=y0, z=z0)
        u = dirs(p, w, local_key(key))
        return dict(w=w, u=u, s=u, t=jnp.zeros((), jnp.int32))

    def step(p, st, key, mix):
        w, u, s, t = st["w"], st["u"], st["s"], st["t"]
        mw = mix(w)
        new = {v: O.tree_axpy(-etas[v](t), _dir(s[v], mode, eps, clip), mw[v]) for v in w}
        k = local_key(key)
        d_new = dirs(p, new, k)
        if storm:
            d_old = dirs(p, w, k)
            u_new = jax.tree_util.tree_map(lambda a, b, c: a + (1 - beta) * (b - c),
                                           d_new, u, d_old)
        else:
            u_new = d_new
        if tracking:
            s_new = O.tree_add(mix(s), O.tree_sub(u_new, u))
        else:
            s_new = u_new
        return dict(w=new, u=u_new, s=s_new, t=t + 1)

    def params(st):
        return st["w"]["x"], st["w"]["y"]

    calls = 3 if route == "penalty" else 2
    mult = 2 if storm else 1
    hp = dict(eta_x=eta_x, eta_y=eta_y, eta_z=eta_z, lam=lam, beta=beta, batch=batch,
              normalize=normalize, clip=clip, tracking=tracking, route=route,
              shared_samples=shared_samples)
    return DecSolver(name or "d-nsvrb", init, step, sfo_per_step=calls * batch * mult,
                     comm_per_step=2 if tracking else 1, params=params,
                     hvp_per_step=(batch * mult if route == "hvp" else 0),
                     hparams={k: v for k, v in hp.items() if not callable(v)})


def _variant(default_name, fixed, defaults, kw):
    name = kw.pop("name", default_name)
    return dnsvrb(**{**defaults, **kw, **fixed}, name=name)


_UNNORM = dict(eta_x=0.01, eta_y=0.05, eta_z=0.05)


def d_storm(**kw) -> DecSolver:
    """Baseline: the same method without normalization (STORM + gradient tracking)."""
    return _variant("d-storm", dict(normalize=False, clip=None), _UNNORM, kw)


def d_clip(clip=1.0, **kw) -> DecSolver:
    """Baseline: clipped (norm <= clip) instead of normalized directions."""
    return _variant("d-clip", dict(normalize=False, clip=clip), {}, kw)


def d_sgd(**kw) -> DecSolver:
    """Baseline: decentralized SGD bilevel: no variance reduction (β = 1), no tracking,
    no normalization."""
    return _variant("d-sgd", dict(normalize=False, clip=None, beta=1.0, tracking=False),
                    _UNNORM, kw)
