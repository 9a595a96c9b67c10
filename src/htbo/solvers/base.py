"""The solver protocol and the x-update rules shared by several solvers.

A solver is a :class:`Solver`: ``init(problem, x0, y0, key) -> state`` and a pure
``step(problem, state, key) -> state`` that the runner ``jit``\\ s and ``lax.scan``\\ s, plus
*static* oracle counts per step (they follow from batch sizes and loop lengths, so the runner
multiplies instead of counting inside compiled code) and ``params(state) -> (x, ŷ)`` where
``ŷ`` is the solver's estimate of ``y*(x)`` (used only for metrics).

An :class:`Update` turns a hypergradient estimate ``h`` into an x-step (optax-style
``init``/``apply`` pair): :func:`plain` ``η h``, :func:`normalized` ``η m/‖m‖`` with
``m = β m + (1−β) h``, :func:`clipped` ``η · clip(h, c)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from ..oracles import tree_axpy, tree_clip, tree_normalize, tree_scale, tree_zeros_like

__all__ = ["Solver", "Update", "plain", "normalized", "clipped"]


class Solver(NamedTuple):
    name: str
    init: Callable[..., Any]
    step: Callable[..., Any]
    sfo_per_step: int
    hvp_per_step: int
    params: Callable[[Any], tuple]
    hparams: dict


class Update(NamedTuple):
    """``init(x) -> ustate``; ``apply(h, ustate, eta) -> (step, ustate)``; x ← x − step."""
    init: Callable
    apply: Callable
    label: str


def plain() -> Update:
    """``step = η h`` (SGD)."""
    return Update(lambda x: (), lambda h, s, eta: (tree_scale(eta, h), s), "plain")


def normalized(beta: float = 0.0, eps: float = 1e-12) -> Update:
    """``m ← β m + (1 − β) h``, ``step = η m / max(‖m‖, eps)`` (β = 0: plain normalization)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum beta must be in [0, 1), got {beta}")
    if beta == 0.0:
        return Update(lambda x: (), lambda h, s, eta: (tree_scale(eta, tree_normalize(h, eps)), s),
                      "normalized")

    def apply(h, m, eta):
        m = tree_axpy(beta, m, tree_scale(1.0 - beta, h))
        return tree_scale(eta, tree_normalize(m, eps)), m

    return Update(tree_zeros_like, apply, f"normalized(beta={beta:g})")


def clipped(c: float) -> Update:
    """``step = η h · min(1, c/‖h‖)``: the standard heavy-tail remedy."""
    if not (c > 0 and jnp.isfinite(c)):
        raise ValueError(f"clipping threshold must be a finite positive number, got {c}")
    return Update(lambda x: (), lambda h, s, eta: (tree_scale(eta, tree_clip(h, c)), s),
                  f"clipped(c={c:g})")
