"""Bilevel solvers: one file per algorithm; see :class:`htbo.solvers.base.Solver`."""
from __future__ import annotations

import inspect
from functools import partial

from .base import Solver, Update, clipped, normalized, plain
from .f2ba import f2ba
from .f2sa import f2sa
from .n2sba import n2sba
from .n2sgda import n2sgda
from .sgda import sgda
from .sgdmax import sgdmax
from .soba import soba
from .stocbio import stocbio
from .theory import TheoryPreset, n2sba_theory, n2sgda_theory

# name -> constructor taking keyword hyperparameters
SOLVERS = {
    "n2sba": n2sba,
    "f2sa": f2sa,
    "f2ba": f2ba,
    "stocbio": stocbio,
    "soba": soba,
    "clipped-f2sa": partial(f2sa, clip=1.0),
    "clipped-soba": partial(soba, clip=1.0),
    # minimax (problems built with htbo.problems.minimax_problem)
    "n2sgda": n2sgda,
    "sgda": sgda,
    "sgdmax": sgdmax,
    "clipped-sgda": partial(sgda, clip=1.0),
    "nsgda-m": partial(sgda, momentum=0.9),
}


def register_solver(name: str, constructor) -> None:
    """Make a solver constructor available to :func:`make_solver` and the CLI."""
    SOLVERS[name] = constructor


def problem_defaults(problem, name: str) -> dict:
    """Hyperparameters a problem recommends for solver ``name`` (``problem.info
    ["solver_defaults"]``: ``{"*": {...}, name: {...}}``), restricted to those the solver's
    constructor accepts."""
    table = dict((problem.info or {}).get("solver_defaults", ()) or ()) if problem else {}
    merged = {**dict(table.get("*", ())), **dict(table.get(name, ()))}
    if not merged or name not in SOLVERS:
        return {}
    params = inspect.signature(SOLVERS[name]).parameters
    return {k: v for k, v in merged.items() if k in params}


def make_solver(name: str, problem=None, **hparams) -> Solver:
    """Build a registered solver by name with keyword hyperparameters; with ``problem``, the
    problem's recommended defaults (see :func:`problem_defaults`) fill what is not given."""
    try:
        ctor = SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; available: {sorted(SOLVERS)}") from None
    hparams = {**problem_defaults(problem, name), **hparams}
    try:
        return ctor(**hparams)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters for solver {name!r}: {e}") from None


__all__ = ["Solver", "Update", "plain", "normalized", "clipped", "n2sba", "f2sa", "f2ba",
           "stocbio", "soba", "n2sgda", "sgda", "sgdmax", "SOLVERS", "make_solver", "register_solver",
           "problem_defaults", "TheoryPreset", "n2sba_theory", "n2sgda_theory"]
