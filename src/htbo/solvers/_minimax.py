"""Nested-loop minimax machinery shared by N²SGDA and SGDmax (ALGORITHMS.md §5).

``min_x max_y f`` is stored as the bilevel problem with ``g = −f``; one outer step is::

    repeat K:  y ← P_Y(y + τ ∇_y F(x, y; ξ_B))        (= y − τ ∇_y G; warm start)
    h = ∇_x F(x, y; ξ'_B)
    x ← x − update(h)

SFO per step: ``K·B_in + B_out``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from ..oracles import split, grad_f_x, grad_g_y, tree_sub
from ..schedules import as_schedule, check_batch, check_positive
from ._penalty import inner_loop
from .base import Solver, normalized, plain, program


class NestedState(NamedTuple):
    x: Any
    y: Any
    u: Any
    t: Any
    hp: Any


def nested_minimax(name: str, update: str, *, eta, tau, inner_steps: int, batch_in: int,
                   batch_out: int, inner_normalized: bool, hparams: dict,
                   momentum: float = 0.0, eps: float = 1e-12) -> Solver:
    check_positive("eta", eta, name)
    check_positive("tau", tau, name)
    for k, v in (("inner_steps", inner_steps), ("batch_in", batch_in), ("batch_out", batch_out)):
        check_batch(k, v, name)
    hp = dict(eta=as_schedule(eta), tau=as_schedule(tau))
    if momentum > 0:
        hp["momentum"] = float(momentum)
    init, step, params = _nested_program(update, momentum > 0, float(eps), int(inner_steps),
                                         int(batch_in), int(batch_out), bool(inner_normalized))
    return Solver(name, init, step, inner_steps * batch_in + batch_out, 0, params,
                  dict(hparams), hp, "minimax")


@program
def _nested_program(update_kind, momentum, eps, inner_steps, batch_in, batch_out,
                    inner_normalized):
    update = normalized(momentum, eps) if update_kind == "normalized" else plain()

    def init(problem, x0, y0, key, hp):
        return NestedState(x0, y0, update.init(x0), jnp.zeros((), jnp.int32), hp)

    def step(problem, s: NestedState, key):
        ky, kx = split(key)
        y = inner_loop(problem, lambda v, k: grad_g_y(problem, s.x, v, k, batch_in), s.y, ky,
                       inner_steps, s.hp["tau"](s.t), inner_normalized)
        dx, u = update.apply(grad_f_x(problem, s.x, y, kx, batch_out), s.u, s.hp["eta"](s.t),
                             s.hp)
        return NestedState(tree_sub(s.x, dx), y, u, s.t + 1, s.hp)

    return init, step, lambda s: (s.x, s.y)
