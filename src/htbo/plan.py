"""The plan: what to run, checked and resolved in one place.

A :class:`Plan` is what ``config.json`` holds and what every entry point builds — ``run``,
``compare``, ``tune``, ``demo``, ``diagnose``'s commands, ``launch`` and its agents (which
read it as JSON), and the experiments: a problem reference (a registered name or
``module:function``) with its arguments, the noise, the network, the budget, the seeds and
the entries (one per solver: label, solver, hyperparameters, optional grid).

:meth:`Plan.resolve` is the only place that

* applies a problem's **documented noise** when none is given (:func:`default_noise`),
* turns a **budget into steps** (:func:`steps_for_budget`: SFO per step, plus ``hvp_cost``
  SFO-equivalents per Hessian-vector product),
* builds **solvers** from names, the problem's recommended defaults and the given values
  (decentralized ones lifted to the network),

so that no two commands disagree on any of them.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from .parsing import parse_seeds, parse_value

__all__ = ["Plan", "Entry", "Resolved", "ResolvedEntry", "DEFAULT_NOISE", "default_noise",
           "steps_for_budget", "load_problem", "load_solver", "jsonable_hp", "hp_from_json",
           "check_problem_args"]

#: the noise of a problem without data when none is given (problems with data: their
#: sampling is the noise)
DEFAULT_NOISE = "stable:1.5"


# -- the rules ---------------------------------------------------------------------------------
def default_noise(problem) -> str:
    """The noise a run uses when none is given: the problem's ``default_noise`` trait;
    otherwise none for problems with data (their sampling is the noise) and
    :data:`DEFAULT_NOISE` for problems without data."""
    if problem.default_noise is not None:
        return str(problem.default_noise)
    return "none" if problem.data_f is not None or problem.data_g is not None else DEFAULT_NOISE


def steps_for_budget(solver, sfo_budget: int, hvp_cost: float = 0.0) -> int:
    """The number of steps ``solver`` can take within ``sfo_budget`` SFO calls, charging
    ``hvp_cost`` SFO-equivalents per Hessian-vector product (0: HVPs are counted apart).

    Raises ``ValueError`` when the budget does not cover a single step."""
    cost = solver.sfo_per_step + hvp_cost * solver.hvp_per_step
    if int(sfo_budget) < cost:
        unit = "SFO" if not hvp_cost else "SFO-equivalents"
        raise ValueError(f"budget {int(sfo_budget):,} {unit} is less than one step of "
                         f"{solver.name} ({cost:,.0f} {unit} per step): give at least "
                         f"{int(math.ceil(cost)):,}")
    return int(int(sfo_budget) // cost)


# -- JSON values -------------------------------------------------------------------------------
def jsonable_hp(hp: dict) -> dict:
    """Hyperparameters as JSON values (schedules as their CLI strings)."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
            for k, v in (hp or {}).items()}


def hp_from_json(hp: dict, schedules: bool = True) -> dict:
    """JSON values back to hyperparameters (schedule strings parsed)."""
    return {k: parse_value(v, schedules) if isinstance(v, str) else v
            for k, v in (hp or {}).items()}


# -- problems and solvers by reference ----------------------------------------------------------
def _import(ref: str, what: str):
    """``module:attr`` imported, the current directory searched first (as ``python -m``)."""
    mod, _, attr = ref.partition(":")
    if not mod or not attr:
        raise ValueError(f"{what} {ref!r}: expected a registered name or module:function")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} {ref}: cannot load {attr!r} from module {mod!r} "
                         f"({type(e).__name__}: {e})") from None


def check_problem_args(ctor: Callable, args: dict, what: str) -> dict:
    """``args`` checked against ``ctor``'s signature: unknown names, and values whose type
    does not fit the default's (a number where a number is expected, true/false for a
    boolean: true/false, 1/0, yes/no) are refused with a message naming the argument;
    integral floats become ints where the default is an int."""
    try:
        sig = inspect.signature(getattr(ctor, "__wrapped__", ctor))
    except (TypeError, ValueError):
        return dict(args)
    params = sig.parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    out = {}
    for k, v in args.items():
        if k not in params:
            if takes_any:
                out[k] = v
                continue
            names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                    p.KEYWORD_ONLY)]
            raise ValueError(f"{what}: unknown argument {k!r}; it takes {', '.join(names)}")
        d = params[k].default
        out[k] = _coerce(k, v, d, what)
    return out


def _coerce(k, v, default, what):
    if default is inspect.Parameter.empty or default is None or v is None:
        return v
    if isinstance(default, bool):
        if isinstance(v, bool):
            return v
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise ValueError(f"{what}: argument {k} must be true or false (or 1/0, yes/no), "
                         f"got {v!r}")
    if isinstance(default, (int, float)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{what}: argument {k} must be a number, got {v!r}")
        if isinstance(default, int) and isinstance(v, float):
            if not v.is_integer():
                raise ValueError(f"{what}: argument {k} must be an integer, got {v!r}")
            return int(v)
        return v
    if isinstance(default, str) and not isinstance(v, str):
        return str(v)
    return v


def load_problem(ref: str, args: dict | None = None, network: str | None = None):
    """``(problem, W)``: a registered problem, a user factory ``module:function`` returning a
    :class:`~htbo.problems.BilevelProblem`, or (with ``network``) a decentralized problem
    stacked over the network's agents (``W`` its mixing matrix). No noise is added here."""
    from .problems import PROBLEMS, BilevelProblem
    args = dict(args or {})
    if network:
        from .decentralized import DEC_PROBLEMS, parse_network
        W = parse_network(network)
        if ref not in DEC_PROBLEMS and ":" in ref:  # a factory of yours: (m=agents, **args)
            ctor = _import(ref, "--problem")
        else:
            ctor = DEC_PROBLEMS.get(ref)
        args = check_problem_args(ctor, args, f"decentralized problem {ref!r}")
        try:
            return ctor(m=len(W), **args), W
        except TypeError as e:
            raise ValueError(f"bad arguments for decentralized problem {ref!r}: {e}") from None
    if ref in PROBLEMS:
        ctor, what = PROBLEMS.get(ref), f"problem {ref!r}"
    elif ":" in ref:
        ctor, what = _import(ref, "--problem"), f"--problem {ref}"
    else:
        PROBLEMS.get(ref)  # the "unknown problem" error, with the names
    args = check_problem_args(ctor, args, what)
    try:
        problem = ctor(**args)
    except TypeError as e:
        raise ValueError(f"bad arguments for {what}: {e}") from None
    if not isinstance(problem, BilevelProblem):
        raise ValueError(f"{what}: the factory must return a BilevelProblem, got "
                         f"{type(problem).__name__}")
    return problem, None


def load_solver(name: str, network: bool = False):
    """The constructor of a registered solver (decentralized with ``network``) or of a user
    solver class ``module:Class``."""
    from .decentralized import DEC_SOLVERS
    from .solvers import SOLVERS
    reg = DEC_SOLVERS if network else SOLVERS
    if name not in reg and ":" in name:
        return _import(name, "--solver")
    return reg.get(name)


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Entry:
    """One solver of a plan: ``label`` (distinct), registered ``solver``, hyperparameters
    ``hp`` and an optional ``grid`` ``{key: [values]}`` (JSON values; schedules as strings)."""

    label: str
    solver: str
    hp: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)


@dataclass
class Plan:
    """What to run (see the module docstring). ``noise=None``: the problem's documented
    noise; exactly one of ``steps`` and ``budget``."""

    command: str = "run"
    problem: str = "quadratic"
    problem_args: dict = field(default_factory=dict)
    noise: str | None = None
    network: str | None = None
    steps: int | None = None
    budget: int | None = 100_000
    hvp_cost: float = 0.0
    seeds: Any = 5
    n_evals: int = 25
    metric: str | None = None
    entries: list = field(default_factory=list)
    search: dict = field(default_factory=dict)   # options of tune's search

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """A plan from ``config.json`` (unknown keys refused, naming them)."""
        if not isinstance(d, dict):
            raise ValueError(f"a plan must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise ValueError(f"unknown plan field(s) {extra}; a plan has {sorted(names)}")
        kw = dict(d)
        entries = []
        for e in kw.pop("entries", []) or []:
            if not isinstance(e, dict) or "solver" not in e:
                raise ValueError(f"a plan entry needs at least a 'solver', got {e!r}")
            entries.append(Entry(label=e.get("label") or e["solver"], solver=e["solver"],
                                 hp=dict(e.get("hp") or {}), grid=dict(e.get("grid") or {})))
        return cls(**kw, entries=entries)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["seeds"] = list(parse_seeds(self.seeds)) if not isinstance(self.seeds, list) \
            else list(self.seeds)
        return d

    def seed_list(self) -> list[int]:
        return self.seeds if isinstance(self.seeds, list) else parse_seeds(self.seeds)

    def resolve_problem(self):
        """``(problem, W)``: the problem with the plan's noise (the problem's documented noise
        when the plan gives none) and the network's mixing matrix (``None``)."""
        from .problems import with_noise
        clean, W = load_problem(self.problem, hp_from_json(self.problem_args, False),
                                self.network)
        noise = default_noise(clean) if self.noise is None else self.noise
        return with_noise(clean, None if str(noise).lower() == "none" else noise), W

    def resolve(self) -> "Resolved":
        """Build and check everything (problem, noise, network, seeds, solvers, steps)
        before anything is run or written."""
        if (self.steps is None) == (self.budget is None):
            raise ValueError("give exactly one of steps and budget")
        for k in ("steps", "budget", "n_evals"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.hvp_cost, (int, float)) and math.isfinite(self.hvp_cost)
                and self.hvp_cost >= 0):
            raise ValueError(f"hvp_cost must be a finite number >= 0, got {self.hvp_cost!r}")
        problem, W = self.resolve_problem()
        seeds = self.seed_list()
        labels = [e.label for e in self.entries]
        dup = sorted({n for n in labels if labels.count(n) > 1})
        if dup:
            raise ValueError(f"solver labels must be distinct, got {dup} more than once "
                             "(compare the same solver twice with --config files or a grid)")
        if not self.entries:
            raise ValueError("a plan needs at least one entry (solver)")
        res = Resolved(self, problem, str(problem.noise) if problem.noise else "none", W,
                       seeds, self.metric or problem.metric, [])
        for e in self.entries:
            res.entries.append(res.entry(e))
        return res


@dataclass
class ResolvedEntry:
    entry: Entry
    hp: dict                 # parsed hyperparameters
    grid: dict               # parsed grid {key: [values]}
    solver: Any              # the built solver (runner-ready; lifted to the network)
    dec: Any                 # the one-agent solver of a network run (else None)
    steps: int
    make: Callable           # **hp -> runner-ready solver
    run_kwargs: dict         # network metrics, counters, labels

    @property
    def label(self) -> str:
        return self.entry.label


@dataclass
class Resolved:
    plan: Plan
    problem: Any
    noise: str
    W: Any
    seeds: list[int]
    metric: str
    entries: list

    def maker(self, name: str):
        """``(make(**hp) -> solver, setup(hp) -> (solver, one-agent solver, run_kwargs))``."""
        from .solvers import SOLVERS, make_solver
        network = self.plan.network
        ctor = load_solver(name, bool(network))
        if not network:
            def build(**hp):
                if name in SOLVERS:  # the problem's recommended defaults under the values
                    return make_solver(name, problem=self.problem, **hp)
                try:
                    return ctor(**hp)
                except TypeError as e:
                    raise ValueError(f"bad hyperparameters for {name!r}: {e}") from None

            def setup(hp):
                return build(**hp), None, {}
            return build, setup
        from .decentralized.simulate import network_setup

        def setup(hp):
            try:
                dec = ctor(**hp)
            except TypeError as e:
                raise ValueError(f"bad hyperparameters for {name!r}: {e}") from None
            solver, kw = network_setup(self.problem, dec, self.W, {"network": network})
            return solver, dec, kw
        return (lambda **hp: setup(hp)[0]), setup

    def steps_for(self, solver) -> int:
        p = self.plan
        return int(p.steps) if p.steps is not None else steps_for_budget(
            solver, int(p.budget), p.hvp_cost)

    def entry(self, e: Entry) -> ResolvedEntry:
        from .tuning import expand_grid, point_label
        make, setup = self.maker(e.solver)
        hp = hp_from_json(e.hp)
        grid = {k.replace("-", "_"): [parse_value(v) if isinstance(v, str) else v for v in vals]
                for k, vals in (e.grid or {}).items()}
        if grid:
            for point in expand_grid(grid):
                try:
                    make(**{**hp, **point})
                except ValueError as err:
                    raise ValueError(f"{point_label(e.solver, point)}: {err}") from None
        solver, dec, kw = setup(hp)
        if not self.plan.network:  # (network_setup checks one agent's problem)
            from .problems.base import validate_problem
            from .runner import batch_sizes
            validate_problem(self.problem, batch_sizes(solver))
        return ResolvedEntry(e, hp, grid, solver, dec, self.steps_for(solver), make, kw)
