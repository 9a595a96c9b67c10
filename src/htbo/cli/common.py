"""Options shared by the commands, and plans built from them.

Every command that runs something builds a :class:`~htbo.plan.Plan`: from its flags, from a
``--config`` file (a ``best.json`` written by ``htbo tune``: its problem, problem arguments,
noise, budget and seeds are kept unless a flag overrides them, field by field), or from a
run directory's ``config.json`` (``--resume``).
"""
from __future__ import annotations

from ..parsing import int_like, parse_assignments
from ..jobs import Terminated  # noqa: F401 - raised by the CLI's SIGTERM handler
from ..plan import DEFAULT_NOISE, Plan, jsonable_hp

__all__ = ["add_budget", "add_problem", "add_output", "plan_from_args", "load_config",
           "Failure"]


class Failure(Exception):
    """A failure that is not the user's input (exit code 1), its message one line."""


def add_budget(p, *, seeds_help: str = "a count N (seeds 0..N-1), a list 0,3,7 or a range "
               "0-4 (default 5)") -> None:
    p.add_argument("--noise", default=None,
                   help="noise law: none, gauss, t:NU, pareto:A, stable:ALPHA (+@SIGMA, /radial); "
                        f"default: the problem's documented noise (none for problems with data, "
                        f"{DEFAULT_NOISE} without)")
    p.add_argument("--seeds", default=None, help=seeds_help)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int_like, default=None, help="outer iterations per solver")
    g.add_argument("--budget", type=int_like, default=None,
                   help="SFO budget per solver (default 100000; 1e5 is fine); steps = budget // "
                        "cost per step")
    p.add_argument("--hvp-cost", type=float, default=None,
                   help="SFO-equivalents charged per Hessian-vector product against --budget "
                        "(default 0: HVPs are counted apart, not charged)")
    p.add_argument("--n-evals", type=int_like, default=None,
                   help="evaluation points per run (default 25)")
    p.add_argument("--metric", default=None,
                   help="rank and plot by this final metric (lower is better; default the "
                        "problem's, usually grad_norm)")


def add_output(p) -> None:
    p.add_argument("--out", default="htbo-out", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_problem(p) -> None:
    p.add_argument("--problem", default=None,
                   help="a built-in problem (htbo list) or module:function, a factory of yours "
                        "returning a BilevelProblem (default quadratic)")
    p.add_argument("--problem-arg", action="append", metavar="KEY=VALUE",
                   help="problem constructor argument (repeatable)")


def load_config(path: str) -> dict:
    """A ``best.json`` (or any plan-like JSON object)."""
    from ..jobs import load_json
    cfg = load_json(path, "--config")
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {path}: expected a JSON object (a best.json written by "
                         f"htbo tune), got {type(cfg).__name__}")
    return cfg


def plan_from_args(args, command: str, config: dict | None = None, **fixed) -> Plan:
    """A plan from the flags, over ``config``'s fields (flags win field by field), over the
    library defaults. ``fixed``: fields the command sets itself (e.g. the demo's problem)."""
    config = config or {}

    def pick(flag, key, default):
        v = getattr(args, flag, None)
        return v if v is not None else config.get(key, default)

    steps, budget = getattr(args, "steps", None), getattr(args, "budget", None)
    if steps is None and budget is None:
        steps, budget = config.get("steps"), config.get("budget")
        if steps is None and budget is None:
            budget = 100_000
        elif steps is not None:
            budget = None
    elif steps is not None:
        budget = None
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if budget is not None and budget < 1:
        raise ValueError(f"--budget must be >= 1, got {budget}")
    n_evals = pick("n_evals", "n_evals", 25)
    if n_evals < 1:
        raise ValueError(f"--n-evals must be >= 1, got {n_evals}")
    problem = pick("problem", "problem", "quadratic")
    # the config's problem arguments belong to the config's problem
    pargs = dict(config.get("problem_args") or {}) if problem == config.get("problem") else {}
    pargs.update(jsonable_hp(parse_assignments(getattr(args, "problem_arg", None),
                                               "--problem-arg", schedules=False)))
    from ..parsing import parse_seeds
    seeds = pick("seeds", "seeds", 5)
    seeds = parse_seeds(",".join(map(str, seeds)) if isinstance(seeds, list) else seeds)
    kw = dict(command=command, problem=problem,
              problem_args=pargs, noise=pick("noise", "noise", None),
              network=pick("network", "network", None), steps=steps, budget=budget,
              hvp_cost=pick("hvp_cost", "hvp_cost", 0.0), seeds=seeds, n_evals=n_evals,
              metric=pick("metric", "metric", None))
    kw.update(fixed)
    return Plan(**kw)


