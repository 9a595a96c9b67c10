"""Bilevel problems: the :class:`BilevelProblem` API and the built-in problems."""
from __future__ import annotations

from .base import BilevelProblem, validate_problem, with_noise
from .l2reg import l2reg
from .dro import dro
from .hypercleaning import hypercleaning
from .ridge_t import ridge_t
from .minimax import minimax_problem, minimax_quadratic
from .quadratic import quadratic, quadratic_data

# name -> constructor taking keyword arguments
PROBLEMS = {
    "quadratic": quadratic,
    "quadratic-data": quadratic_data,
    "l2reg": l2reg,
    "minimax-quadratic": minimax_quadratic,
    "dro": dro,
    "hypercleaning": hypercleaning,
    "ridge-t": ridge_t,
}


def register_problem(name: str, constructor) -> None:
    """Make a problem constructor available to :func:`make_problem` and the CLI."""
    PROBLEMS[name] = constructor


def make_problem(name: str, noise=None, **kwargs) -> BilevelProblem:
    """Build a registered problem by name, optionally with injected ``noise``."""
    try:
        ctor = PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; available: {sorted(PROBLEMS)}") from None
    try:
        problem = ctor(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for problem {name!r}: {e}") from None
    return with_noise(problem, noise) if noise is not None else problem


__all__ = ["minimax_problem", "minimax_quadratic", "dro", "BilevelProblem", "validate_problem", "with_noise", "quadratic", "quadratic_data",
           "l2reg", "hypercleaning", "ridge_t", "PROBLEMS", "make_problem", "register_problem"]
