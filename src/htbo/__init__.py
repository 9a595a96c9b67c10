"""htbo: stochastic bilevel, minimax and decentralized bilevel optimization under
heavy-tailed gradient noise, in JAX."""
from __future__ import annotations

from .diagnostics import diagnose
from .noise import Noise, parse_noise
from .plan import Plan, steps_for_budget
from .problems import BilevelProblem, make_problem, with_noise
from .runner import NonFiniteError, RunResult, run
from .solvers import make_solver
from .tuning import TuneResult, tune

__version__ = "0.1.0"

__all__ = ["Noise", "parse_noise", "BilevelProblem", "make_problem", "with_noise", "run",
           "RunResult", "NonFiniteError", "steps_for_budget", "make_solver", "tune", "TuneResult",
           "diagnose", "Plan",
           "__version__"]
