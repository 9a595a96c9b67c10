"""The solver protocol and the x-update rules shared by several solvers.

A solver is a :class:`Solver`: ``init(problem, x0, y0, key, hp) -> state`` and a pure
``step(problem, state, key) -> state`` that the runner ``jit``\\ s and loops, plus *static*
oracle counts per step (they follow from batch sizes and loop lengths, so the runner
multiplies instead of counting inside compiled code) and ``params(state) -> (x, ŷ)`` where
``ŷ`` is the solver's estimate of ``y*(x)`` (used only for metrics).

**Hyperparameters are data.** As in ``optax.inject_hyperparams``, the numeric
hyperparameters ``hp`` (step sizes, λ, momentum, clip threshold, and the numbers inside
schedules, see :mod:`htbo.schedules`) are a small pytree that ``init`` stores in the state
(``state.hp``) and ``step`` reads from it. Structural choices (batch sizes, loop lengths,
update kind, sample sharing) are fixed when the solver is built; solvers built with the same
structure share the *same* ``init``/``step`` functions (:func:`program` caches them), so a
compiled program serves every value of ``hp`` — and a grid of values ``vmap``\\ ped at once.

An :class:`Update` turns a hypergradient estimate ``h`` into an x-step (optax-style
``init``/``apply`` pair): :func:`plain` ``η h``, :func:`normalized` ``η m/‖m‖`` with
``m = β m + (1−β) h`` (β read from ``hp["momentum"]``), :func:`clipped` ``η · clip(h, c)``
(c read from ``hp["clip"]``).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

from ..oracles import tree_axpy, tree_clip, tree_normalize, tree_scale, tree_zeros_like

__all__ = ["Solver", "Update", "plain", "normalized", "clipped", "program", "check_unit"]


class Solver(NamedTuple):
    name: str
    init: Callable        # (problem, x0, y0, key, hp) -> state, with state.hp = hp
    step: Callable        # (problem, state, key) -> state
    sfo_per_step: int
    hvp_per_step: int
    params: Callable      # state -> (x, ŷ)
    hparams: dict         # every hyperparameter as given (for records and tables)
    hp: dict = {}         # the numeric ones, passed to init (traced, vmappable)
    problem_kind: str = "bilevel"   # "minimax": needs a problem built by minimax_problem

    def start(self, problem, key, x0=None, y0=None):
        """``init`` with this solver's ``hp`` at the problem's start (or ``x0``, ``y0``)."""
        return self.init(problem, problem.x0 if x0 is None else x0,
                         problem.y0 if y0 is None else y0, key, self.hp)


def program(build: Callable) -> Callable:
    """Cache ``build(*static) -> (init, step, params)`` per static configuration, so that
    solvers of the same structure share function objects (and compiled programs)."""
    return functools.lru_cache(maxsize=None)(build)


class Update(NamedTuple):
    """``init(x) -> ustate``; ``apply(h, ustate, eta, hp) -> (step, ustate)``; x ← x − step."""
    init: Callable
    apply: Callable
    kind: str


def plain() -> Update:
    """``step = η h`` (SGD)."""
    return Update(lambda x: (), lambda h, s, eta, hp: (tree_scale(eta, h), s), "plain")


def normalized(momentum: bool = False, eps: float = 1e-12) -> Update:
    """``step = η h / max(‖h‖, eps)``; with ``momentum``: ``m ← β m + (1 − β) h``,
    ``step = η m / max(‖m‖, eps)``, β = ``hp["momentum"]``."""
    if not momentum:
        return Update(lambda x: (),
                      lambda h, s, eta, hp: (tree_scale(eta, tree_normalize(h, eps)), s),
                      "normalized")

    def apply(h, m, eta, hp):
        beta = hp["momentum"]
        m = tree_axpy(beta, m, tree_scale(1.0 - beta, h))
        return tree_scale(eta, tree_normalize(m, eps)), m

    return Update(tree_zeros_like, apply, "normalized-momentum")


def clipped() -> Update:
    """``step = η h · min(1, c/‖h‖)``, c = ``hp["clip"]``: the standard heavy-tail remedy."""
    return Update(lambda x: (), lambda h, s, eta, hp: (tree_scale(eta, tree_clip(h, hp["clip"])), s),
                  "clipped")


def check_unit(name: str, v, solver: str, *, closed_low: bool = True,
               closed_high: bool = False) -> None:
    """Raise unless ``v`` is a number in [0, 1) (bounds configurable)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    lo_ok = x >= 0 if closed_low else x > 0
    hi_ok = x <= 1 if closed_high else x < 1
    if not (lo_ok and hi_ok):
        rng = f"{'[' if closed_low else '('}0, 1{']' if closed_high else ')'}"
        raise ValueError(f"{solver}: {name} must be in {rng}, got {v!r}")


def check_clip(c, solver: str) -> None:
    try:
        ok = math.isfinite(float(c)) and float(c) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{solver}: clipping threshold must be a finite positive number, "
                         f"got {c!r}")
