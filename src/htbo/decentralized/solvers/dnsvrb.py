"""D-NSVRB: decentralized normalized STORM bilevel method with gradient tracking (ALGORITHMS.md §6).

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
``D^x = ∇_x F + ∇²_xy G v``. [R]: the whole update is a reconstruction; its switches are
``route``, ``beta`` (β = 1: no variance reduction), ``update``, ``tracking``, per-variable
step sizes. SFO per agent per step: ``3B`` (penalty) or ``2B`` + ``B`` HVP, doubled by
STORM (β < 1).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ...oracles import (grad_f, grad_g, grad_g_y, hvp_both_g, tree_add, tree_axpy, tree_clip,
                        tree_normalize, tree_sub)
from ...schedules import as_schedule, check_batch, check_positive

__all__ = ["DecSolver", "DecState", "dnsvrb"]

AXIS = "agents"


class DecSolver(NamedTuple):
    name: str
    init: Callable    # (problem_i, x0, y0, key) -> state_i
    step: Callable    # (problem_i, state_i, key, mix) -> state_i
    sfo_per_step: int
    comm_per_step: int  # mixing calls per step (each costs mix.rounds exchanges)
    params: Callable  # state_i -> (x_i, ŷ_i)
    hvp_per_step: int = 0
    hparams: dict = {}


class DecState(NamedTuple):
    w: dict
    u: dict
    s: dict
    t: Any


def _penalty_dirs(problem, w, key, lam, batch):
    kf, kg = jax.random.split(key)
    fx, fy = grad_f(problem, w["x"], w["y"], kf, batch)
    gxy, gyy = grad_g(problem, w["x"], w["y"], kg, batch)
    gxz, gyz = grad_g(problem, w["x"], w["z"], kg, batch)  # same sample b as at (x, y)
    return {"x": tree_axpy(lam, tree_sub(gxy, gxz), fx), "y": tree_axpy(1.0 / lam, fy, gyy),
            "z": gyz}


def _hvp_dirs(problem, w, key, lam, batch):
    kf, kg, kh = jax.random.split(key, 3)
    fx, fy = grad_f(problem, w["x"], w["y"], kf, batch)
    gy = grad_g_y(problem, w["x"], w["y"], kg, batch)
    hx, hy = hvp_both_g(problem, w["x"], w["y"], w["v"], kh, batch)
    return {"x": tree_add(fx, hx), "y": gy, "v": tree_add(hy, fy)}


def dnsvrb(*, eta_x=0.02, eta_y=0.05, eta_z=0.05, lam: float = 10.0, beta: float = 0.1,
           batch: int = 1, route: str = "penalty", update: str = "normalized",
           clip: float = 1.0, tracking: bool = True, eps: float = 1e-12) -> DecSolver:
    """The decentralized method; ``eta_z`` is the step of z (penalty) or v (HVP route)."""
    name = {"normalized": "dnsvrb", "plain": "dsvrb", "clip": "dsvrb-clip"}.get(update)
    if name is None:
        raise ValueError(f"update must be 'normalized', 'plain' or 'clip', got {update!r}")
    if update == "plain" and beta == 1.0 and not tracking:
        name = "dsgd-bilevel"
    if route not in ("penalty", "hvp"):
        raise ValueError(f"route must be 'penalty' or 'hvp', got {route!r}")
    if not 0 < beta <= 1:
        raise ValueError(f"{name}: beta must be in (0, 1] (1 = no variance reduction), got {beta}")
    for k, v in (("eta_x", eta_x), ("eta_y", eta_y), ("eta_z", eta_z), ("lam", lam),
                 ("clip", clip)):
        check_positive(k, v, name)
    check_batch("batch", batch, name)
    third = "z" if route == "penalty" else "v"
    etas = {"x": as_schedule(eta_x), "y": as_schedule(eta_y), third: as_schedule(eta_z)}
    dirs = _penalty_dirs if route == "penalty" else _hvp_dirs
    transform = {"normalized": lambda d: tree_normalize(d, eps), "plain": lambda d: d,
                 "clip": lambda d: tree_clip(d, clip)}[update]

    def agent_key(key):
        return jax.random.fold_in(key, jax.lax.axis_index(AXIS))

    def init(problem, x0, y0, key):
        w = {"x": x0, "y": y0, third: y0 if route == "penalty" else jax.tree_util.tree_map(
            jnp.zeros_like, y0)}
        u = dirs(problem, w, agent_key(key), lam, batch)
        return DecState(w, u, u, jnp.zeros((), jnp.int32))

    def step(problem, st: DecState, key, mix):
        d = st.s if tracking else st.u
        w_mix, s_mix = mix((st.w, st.s)) if tracking else (mix(st.w), st.s)
        w = {k: tree_axpy(-etas[k](st.t), transform(d[k]), w_mix[k]) for k in w_mix}
        k = agent_key(key)
        u = dirs(problem, w, k, lam, batch)
        if beta < 1.0:
            old = dirs(problem, st.w, k, lam, batch)
            u = jax.tree_util.tree_map(lambda a, b, c: a + (1.0 - beta) * (b - c), u, st.u, old)
        s = jax.tree_util.tree_map(lambda a, b, c: a + b - c, s_mix, u, st.u) if tracking else u
        return DecState(w, u, s, st.t + 1)

    per_eval = 3 * batch if route == "penalty" else 2 * batch
    mult = 2 if beta < 1.0 else 1
    return DecSolver(name, init, step, mult * per_eval, 1,
                     lambda st: (st.w["x"], st.w["z" if route == "penalty" else "y"]),
                     mult * batch if route == "hvp" else 0,
                     dict(eta_x=eta_x, eta_y=eta_y, eta_z=eta_z, lam=lam, beta=beta,
                          batch=batch, route=route, update=update, clip=clip,
                          tracking=tracking))
