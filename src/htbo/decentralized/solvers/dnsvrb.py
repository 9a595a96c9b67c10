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
``route``, ``beta`` (β = 1: no variance reduction), ``update`` (x) and ``inner_update``
(y, z), ``tracking``, ``shared_samples`` (the two ∇ₓG terms on one sample set or on
independent ones), per-variable step sizes. SFO per agent per step: ``3B`` (penalty, shared
samples; ``4B`` independent) or ``2B`` + ``B`` HVP, doubled by STORM (β < 1).
Numeric hyperparameters live in ``state.hp`` (see :mod:`htbo.solvers.base`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ...oracles import (split, grad_f, grad_g, grad_g_x, grad_g_y, hvp_both_g, tree_add, tree_axpy,
                        tree_clip, tree_normalize, tree_sub)
from ...schedules import as_schedule, check_batch, check_positive
from ...solvers.base import check_clip, program

__all__ = ["DecSolver", "DecState", "dnsvrb"]

AXIS = "agents"
_UPDATES = ("normalized", "plain", "clip")


class DecSolver(NamedTuple):
    name: str
    init: Callable    # (problem_i, x0, y0, key, hp) -> state_i
    step: Callable    # (problem_i, state_i, key, mix) -> state_i
    sfo_per_step: int
    comm_per_step: int  # mixing calls per step (each costs mix.rounds exchanges)
    params: Callable  # state_i -> (x_i, ŷ_i)
    hvp_per_step: int = 0
    hparams: dict = {}
    hp: dict = {}     # numeric hyperparameters (traced; stored in the state)


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
    return {"x": tree_axpy(lam, tree_sub(gxy, gxz), fx), "y": tree_axpy(1.0 / lam, fy, gyy),
            "z": gyz}


def _hvp_dirs(problem, w, key, lam, batch, shared):
    kf, kg, kh = split(key, 3)
    fx, fy = grad_f(problem, w["x"], w["y"], kf, batch)
    gy = grad_g_y(problem, w["x"], w["y"], kg, batch)
    hx, hy = hvp_both_g(problem, w["x"], w["y"], w["v"], kh, batch)
    return {"x": tree_add(fx, hx), "y": gy, "v": tree_add(hy, fy)}


def dnsvrb(*, eta_x=0.02, eta_y=0.05, eta_z=0.05, lam: float = 10.0, beta: float = 0.1,
           batch: int = 1, route: str = "penalty", update: str = "normalized",
           inner_update: str | None = None, clip: float = 1.0, tracking: bool = True,
           shared_samples: bool = True, eps: float = 1e-12) -> DecSolver:
    """The decentralized method; ``eta_z`` is the step of z (penalty) or v (HVP route).

    ``update`` transforms the x-direction, ``inner_update`` (default: the same) those of the
    inner variables, so ``update="normalized", inner_update="plain"`` normalizes x only (the
    analogue of N²SBA). ``shared_samples`` (penalty route): one sample set for both ∇ₓG
    terms (default) or independent ones. Numeric (traced): eta_x/y/z, lam, beta, clip."""
    inner_update = update if inner_update is None else inner_update
    for k, v in (("update", update), ("inner_update", inner_update)):
        if v not in _UPDATES:
            raise ValueError(f"{k} must be 'normalized', 'plain' or 'clip', got {v!r}")
    name = {"normalized": "dnsvrb", "plain": "dsvrb", "clip": "dsvrb-clip"}[update]
    if update == "plain" and inner_update == "plain" and beta == 1.0 and not tracking:
        name = "dsgd-bilevel"
    if route not in ("penalty", "hvp"):
        raise ValueError(f"route must be 'penalty' or 'hvp', got {route!r}")
    try:
        beta_ok = 0 < float(beta) <= 1
    except (TypeError, ValueError):
        beta_ok = False
    if not beta_ok:
        raise ValueError(f"{name}: beta must be in (0, 1] (1 = no variance reduction), got {beta}")
    for k, v in (("eta_x", eta_x), ("eta_y", eta_y), ("eta_z", eta_z), ("lam", lam)):
        check_positive(k, v, name)
    check_clip(clip, name)
    check_batch("batch", batch, name)
    hp = dict(eta_x=as_schedule(eta_x), eta_y=as_schedule(eta_y), eta_z=as_schedule(eta_z),
              lam=float(lam), clip=float(clip))
    storm = beta < 1.0
    if storm:
        hp["beta"] = float(beta)
    init, step, params = _dnsvrb_program(route, update, inner_update, bool(tracking), storm,
                                         int(batch), bool(shared_samples), float(eps))
    per_eval = (3 if shared_samples else 4) * batch if route == "penalty" else 2 * batch
    mult = 2 if storm else 1
    return DecSolver(name, init, step, mult * per_eval, 1, params,
                     mult * batch if route == "hvp" else 0,
                     dict(eta_x=eta_x, eta_y=eta_y, eta_z=eta_z, lam=lam, beta=beta,
                          batch=batch, route=route, update=update, inner_update=inner_update,
                          clip=clip, tracking=tracking, shared_samples=shared_samples), hp)


@program
def _dnsvrb_program(route, update, inner_update, tracking, storm, batch, shared, eps):
    third = "z" if route == "penalty" else "v"
    eta_key = {"x": "eta_x", "y": "eta_y", third: "eta_z"}  # eta_z also steps v (HVP route)
    dirs = _penalty_dirs if route == "penalty" else _hvp_dirs

    def transform(kind, d, hp):
        if kind == "normalized":
            return tree_normalize(d, eps)
        return tree_clip(d, hp["clip"]) if kind == "clip" else d

    def agent_key(key):
        return jax.random.fold_in(key, jax.lax.axis_index(AXIS))

    def init(problem, x0, y0, key, hp):
        w = {"x": x0, "y": y0, third: y0 if route == "penalty" else jax.tree_util.tree_map(
            jnp.zeros_like, y0)}
        u = dirs(problem, w, agent_key(key), hp["lam"], batch, shared)
        return DecState(w, u, u, jnp.zeros((), jnp.int32), hp)

    def step(problem, st: DecState, key, mix):
        hp, t = st.hp, st.t
        d = st.s if tracking else st.u
        w_mix, s_mix = mix((st.w, st.s)) if tracking else (mix(st.w), st.s)
        w = {k: tree_axpy(-hp[eta_key[k]](t),
                          transform(update if k == "x" else inner_update, d[k], hp), w_mix[k])
             for k in w_mix}
        k = agent_key(key)
        u = dirs(problem, w, k, hp["lam"], batch, shared)
        if storm:
            old = dirs(problem, st.w, k, hp["lam"], batch, shared)
            u = jax.tree_util.tree_map(lambda a, b, c: a + (1.0 - hp["beta"]) * (b - c), u,
                                       st.u, old)
        s = jax.tree_util.tree_map(lambda a, b, c: a + b - c, s_mix, u, st.u) if tracking else u
        return DecState(w, u, s, t + 1, hp)

    return init, step, lambda st: (st.w["x"], st.w["z" if route == "penalty" else "y"])
