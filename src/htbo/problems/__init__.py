"""Bilevel problems: the :class:`BilevelProblem` API and the built-in problems, registered in
:data:`PROBLEMS` (one file each)."""
from __future__ import annotations

from .base import PROBLEMS, BilevelProblem, validate_problem, with_noise
from .dro import dro
from .hypercleaning import hypercleaning
from .l2reg import l2reg
from .minimax import minimax_problem, minimax_quadratic
from .quadratic import quadratic, quadratic_data
from .ridge_t import ridge_t
from ..registry import import_all

import_all(__name__, __path__)  # every module of this package registers what it defines


def register_problem(name: str, constructor, summary: str = ""):
    """Make a problem constructor available to :func:`make_problem` and the CLI (memoized on
    its arguments, like the built-ins); returns the registered constructor."""
    return PROBLEMS.register(name, summary, constructor)


def make_problem(name: str, noise=None, **kwargs) -> BilevelProblem:
    """Build a registered problem by name, optionally with injected ``noise``."""
    ctor = PROBLEMS.get(name)
    try:
        problem = ctor(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for problem {name!r}: {e}") from None
    return with_noise(problem, noise) if noise is not None else problem


__all__ = ["minimax_problem", "minimax_quadratic", "dro", "BilevelProblem", "validate_problem",
           "with_noise", "quadratic", "quadratic_data", "l2reg", "hypercleaning", "ridge_t",
           "PROBLEMS", "make_problem", "register_problem"]
