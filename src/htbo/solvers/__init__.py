"""Bilevel and minimax solvers: one file per algorithm, registered in :data:`SOLVERS`
(see :class:`htbo.solvers.base.Solver`)."""
from __future__ import annotations

import dataclasses

from .base import SOLVERS, Axis, Param, Solver, numeric, solver, structural, x_update
from .f2ba import F2BA, f2ba
from .f2sa import F2SA, f2sa
from .n2sba import N2SBA, n2sba
from .n2sgda import N2SGDA, n2sgda
from .sgda import SGDA, sgda
from .sgdmax import SGDmax, sgdmax
from .soba import SOBA, soba
from .stocbio import StocBiO, stocbio
from .theory import TheoryPreset, n2sba_theory, n2sgda_theory
from ..registry import import_all

import_all(__name__, __path__)  # every module of this package registers what it defines


def register_solver(name: str, constructor, summary: str = "", **meta):
    """Make a solver (a :func:`~htbo.solvers.base.solver` class or a partial of one)
    available to :func:`make_solver` and the CLI."""
    return SOLVERS.register(name, summary, constructor, **meta)


def solver_class(constructor):
    """The :class:`Solver` class behind a registered constructor (a class or a partial)."""
    return getattr(constructor, "func", constructor)


def problem_defaults(problem, name: str, registry=SOLVERS) -> dict:
    """Hyperparameters ``problem`` recommends for solver ``name`` (its ``solver_defaults``:
    the solver's own entry over ``"*"``), restricted to the solver's hyperparameters."""
    if problem is None:
        return {}
    fields = {f.name for f in dataclasses.fields(solver_class(registry.get(name)))}
    return {k: v for k, v in problem.defaults_for(name).items() if k in fields}


def make_solver(name: str, problem=None, registry=SOLVERS, **hparams) -> Solver:
    """Build a registered solver by name with keyword hyperparameters; with ``problem``, the
    problem's recommended defaults (see :func:`problem_defaults`) fill what is not given."""
    ctor = registry.get(name)
    hparams = {**problem_defaults(problem, name, registry), **hparams}
    try:
        return ctor(**hparams)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters for {name!r}: {_type_error(e)}") from None


def _type_error(e: TypeError) -> str:
    msg = str(e)
    return msg.split(".__init__() ", 1)[-1] if ".__init__() " in msg else msg


__all__ = ["Solver", "Param", "Axis", "numeric", "structural", "solver", "x_update", "SOLVERS",
           "make_solver", "register_solver", "problem_defaults", "solver_class", "N2SBA",
           "F2SA", "F2BA", "SOBA", "StocBiO", "N2SGDA", "SGDA", "SGDmax", "n2sba", "f2sa",
           "f2ba", "stocbio", "soba", "n2sgda", "sgda", "sgdmax", "TheoryPreset",
           "n2sba_theory", "n2sgda_theory"]
