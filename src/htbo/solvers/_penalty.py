"""Fully first-order penalty machinery shared by N²SBA, F2SA and stochastic F2BA (§3, §4).

``L_λ(x, y) = f(x, y) + λ (g(x, y) − min_z g(x, z))``; one outer step is::

    repeat K:  z ← z − α ∇_y G(x, z; ζ_B)                      (warm start, z ≈ y*(x))
    repeat K:  y ← y − τ (∇_y F(x, y; ξ_B)/λ + ∇_y G(x, y; ζ'_B))   (y ≈ y_λ*(x))
    h = ∇_x F(x, y; ξ_B) + λ (∇_x G(x, y; ζ_B) − ∇_x G(x, z; ζ'_B))
    x ← x − update(h)

Inner steps may be normalized (``v ← v − step · d/‖d‖``). ``shared_samples`` uses the same
ζ for both ∇_x G terms (common random numbers). SFO per outer step:
``K·B_in (z) + 2K·B_in (y) + 3·B_out (h)``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..oracles import (split, grad_f, grad_f_y, grad_g_x, grad_g_y, tree_axpy, tree_normalize,
                       tree_sub)
from ..schedules import as_schedule, check_batch, check_positive
from .base import Solver, clipped, normalized, plain, program


class PenaltyState(NamedTuple):
    x: Any
    y: Any
    z: Any
    u: Any  # x-update state (momentum buffer or ())
    t: Any  # outer iteration counter
    hp: Any  # numeric hyperparameters (see htbo.solvers.base)


def inner_loop(problem, direction, v, key, steps: int, lr, normalize: bool):
    """``steps`` (warm-started) steps ``v ← P(v − lr·d)``, fresh samples each."""
    project = problem.project_y or (lambda y: y)

    def body(v, k):
        d = direction(v, k)
        if normalize:
            d = tree_normalize(d)
        return project(tree_axpy(-lr, d, v)), None

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
        return tree_axpy(1.0 / lam, grad_f_y(problem, x, v, k1, batch_in),
                         grad_g_y(problem, x, v, k2, batch_in))

    y = inner_loop(problem, dir_y, y, ky, inner_steps, tau, inner_normalized)
    fx, _ = grad_f(problem, x, y, kf, batch_out)
    gxy = grad_g_x(problem, x, y, kg1, batch_out)
    gxz = grad_g_x(problem, x, z, kg1 if shared_samples else kg2, batch_out)
    h = tree_axpy(lam, tree_sub(gxy, gxz), fx)
    return h, y, z


def penalty_solver(name: str, update: str, *, hp: dict, inner_steps: int, batch_in: int,
                   batch_out: int, shared_samples: bool, inner_normalized: bool,
                   hparams: dict, momentum: bool = False, eps: float = 1e-12) -> Solver:
    """Build a penalty-based solver: the solvers differ only in ``update`` and ``hp["lam"]``.

    ``hp`` holds schedules ``eta``, ``lam``, ``alpha``, ``tau`` (and ``momentum`` / ``clip``
    for those updates); everything else is structure.
    """
    for k in ("eta", "lam", "alpha", "tau"):
        check_positive(k, hp[k], name)
    for k, v in (("batch_in", batch_in), ("batch_out", batch_out), ("inner_steps", inner_steps)):
        check_batch(k, v, name)
    hp = {k: as_schedule(v) if k in ("eta", "lam", "alpha", "tau") else float(v)
          for k, v in hp.items()}
    init, step, params = _penalty_program(update, bool(momentum), float(eps), int(inner_steps),
                                          int(batch_in), int(batch_out), bool(shared_samples),
                                          bool(inner_normalized))
    sfo = 3 * inner_steps * batch_in + 3 * batch_out
    return Solver(name, init, step, sfo, 0, params, dict(hparams), hp)


@program
def _penalty_program(update_kind, momentum, eps, inner_steps, batch_in, batch_out,
                     shared_samples, inner_normalized):
    update = {"plain": plain, "clipped": clipped,
              "normalized": lambda: normalized(momentum, eps)}[update_kind]()

    def init(problem, x0, y0, key, hp):
        return PenaltyState(x0, y0, y0, update.init(x0), jnp.zeros((), jnp.int32), hp)

    def step(problem, s: PenaltyState, key):
        hp, t = s.hp, s.t
        h, y, z = penalty_directions(
            problem, s.x, s.y, s.z, key, lam=hp["lam"](t), alpha=hp["alpha"](t),
            tau=hp["tau"](t), inner_steps=inner_steps, batch_in=batch_in, batch_out=batch_out,
            shared_samples=shared_samples, inner_normalized=inner_normalized)
        dx, u = update.apply(h, s.u, hp["eta"](t), hp)
        return PenaltyState(tree_sub(s.x, dx), y, z, u, t + 1, hp)

    return init, step, lambda s: (s.x, s.z)


__all__ = ["PenaltyState", "inner_loop", "penalty_directions", "penalty_solver"]
