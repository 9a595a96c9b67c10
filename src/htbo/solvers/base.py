"""Declarative solvers: one declaration per hyperparameter, from which everything else follows.

A solver is a frozen dataclass (built with :func:`solver`) whose fields are its
hyperparameters, each declared once:

* :func:`numeric` — a number (or, with ``schedule=True``, a schedule ``t -> value``) that
  the compiled step reads as **data**: it lives in ``state.hp``, so runs that differ only in
  numeric hyperparameters share one compiled program and a grid of them is ``vmap``\\ ped.
  ``optional=True`` with an ``off`` value (``clip=None``, ``momentum=0``) makes *whether* it
  is active structural: an inactive numeric is not in ``hp`` and costs nothing.
* :func:`structural` — batch sizes, loop lengths, switches: part of the compile key.

From the declarations follow :attr:`Solver.hp` (the numeric values as a pytree),
:attr:`Solver.hparams` (every value as given, for records), validation with one-line
messages (``n2sba: eta must be a finite positive number, got 0.0``), the search bounds of
every numeric axis (:meth:`Solver.axes`) and the compile key (:attr:`Solver.program_key`).

A solver class implements ``init(problem, x0, y0, key, hp) -> state`` (``state.hp = hp``),
``step(problem, state, key) -> state`` (decentralized: ``step(problem_i, state_i, key,
mix)``), ``params(state) -> (x, ŷ)`` and the per-step oracle counts ``sfo_per_step`` /
``hvp_per_step`` (they follow from batch sizes and loop lengths, so the runner multiplies
instead of counting inside compiled code). The step must read numeric hyperparameters from
``state.hp`` only: the functions the runner compiles belong to a *canonical* instance of the
structure whose numeric fields raise on use.

The x-update of most solvers is an Optax chain built by :func:`x_update` (clip the global
norm, momentum average, normalize, scale by the step-size schedule), so options compose.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import numpy as np
import optax

from ..registry import Registry
from ..schedules import as_schedule, initial_value
from ..tree import clip_norm, normalize

__all__ = ["Solver", "Param", "numeric", "structural", "solver", "family", "SOLVERS",
           "x_update", "Axis"]

#: name -> solver class (or a partial of one: a registered variant such as ``clipped-soba``)
SOLVERS = Registry("solver")


# -- declarations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """How one hyperparameter is checked, stored and searched."""

    kind: str                    # "numeric" | "structural"
    low: float = 0.0             # numeric: allowed range (and the search's bounds)
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False
    schedule: bool = False       # numeric: a schedule t -> value is allowed
    optional: bool = False       # numeric: the ``off`` value disables it (structure)
    off: Any = None
    label: str = ""              # the name used in messages (default: the field's)
    type: type | tuple = int     # structural: int, bool, float or str
    choices: tuple = ()          # structural: allowed values
    minimum: int = 1             # structural ints
    doc: str = ""


def numeric(default, *, low: float = 0.0, high: float = math.inf, low_closed: bool = False,
            high_closed: bool = False, schedule: bool = False, optional: bool = False,
            off=None, label: str = "", doc: str = ""):
    """A numeric (traced) hyperparameter in ``(low, high)`` (closed ends as given)."""
    return dataclasses.field(default=default, metadata={"htbo": Param(
        "numeric", low, high, low_closed, high_closed, schedule, optional, off, label,
        doc=doc)})


def structural(default, *, type=int, choices: tuple = (), minimum: int = 1, label: str = "",
               doc: str = ""):
    """A structural hyperparameter (part of the compile key)."""
    return dataclasses.field(default=default, metadata={"htbo": Param(
        "structural", type=type, choices=tuple(choices), minimum=minimum, label=label,
        doc=doc)})


class Axis(NamedTuple):
    """A numeric axis for the search: its bounds and whether it may be a schedule."""

    name: str
    low: float
    high: float
    low_closed: bool
    high_closed: bool
    schedule: bool


class _Numeric:
    """Stands for a numeric field in a canonical instance: using it is a bug (the step must
    read ``state.hp``)."""

    def __init__(self, name):
        self.name = name

    def _fail(self, *a, **k):
        raise TypeError(f"numeric hyperparameter {self.name!r} read from the solver inside "
                        "the compiled step; read it from state.hp")

    __call__ = __float__ = __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = \
        __truediv__ = __rtruediv__ = __lt__ = __gt__ = __le__ = __ge__ = __bool__ = _fail

    def __repr__(self):
        return f"<numeric {self.name}>"


# -- the base class ----------------------------------------------------------------------------
class Solver:
    """Base of the declarative solvers (see the module docstring). Subclasses are built with
    :func:`solver`; ``name`` may depend on the options (``clipped-soba``)."""

    kind: ClassVar[str] = "bilevel"       # "bilevel" | "minimax" | "decentralized"
    comm_per_step: ClassVar[int] = 0      # mixing calls per step (decentralized)
    base_name: ClassVar[str] = ""

    # -- declarations --------------------------------------------------------------------------
    @classmethod
    def declarations(cls) -> dict[str, Param]:
        return {f.name: f.metadata["htbo"] for f in dataclasses.fields(cls)
                if "htbo" in f.metadata}

    @classmethod
    def axes(cls) -> dict[str, Axis]:
        """Every numeric hyperparameter with its bounds (what a search may extend)."""
        return {k: Axis(k, p.low, p.high, p.low_closed, p.high_closed, p.schedule)
                for k, p in cls.declarations().items() if p.kind == "numeric"}

    def __post_init__(self):
        for k, p in self.declarations().items():
            v = getattr(self, k)
            if p.kind == "numeric":
                if p.optional and _is_off(v, p.off):
                    continue
                object.__setattr__(self, k, _check_numeric(self.name, k, v, p))
            else:
                object.__setattr__(self, k, _check_structural(self.name, k, v, p))
        self.check()

    def check(self) -> None:
        """Cross-field checks of a subclass (raise ``ValueError``)."""

    @property
    def name(self) -> str:
        return self.base_name

    # -- derived -------------------------------------------------------------------------------
    def active(self, key: str) -> bool:
        """Whether numeric ``key`` is active (an optional one at its ``off`` value is not)."""
        p = self.declarations()[key]
        return not (p.optional and _is_off(getattr(self, key), p.off))

    @property
    def hp(self) -> dict:
        """The active numeric hyperparameters: schedules as schedule pytrees, numbers as
        floats (traced data, stored in ``state.hp``)."""
        out = {}
        for k, p in self.declarations().items():
            if p.kind != "numeric" or not self.active(k):
                continue
            v = getattr(self, k)
            out[k] = as_schedule(v) if p.schedule else float(v)
        return out

    @property
    def hparams(self) -> dict:
        """Every hyperparameter as given (for records and tables)."""
        return {k: getattr(self, k) for k in self.declarations()}

    @property
    def program_key(self) -> tuple:
        """What the compiled program depends on: the class, the structural values and which
        optional numerics are active."""
        decl = self.declarations()
        return (type(self), tuple((k, getattr(self, k)) for k, p in decl.items()
                                  if p.kind == "structural"),
                tuple(k for k, p in decl.items() if p.kind == "numeric" and self.active(k)))

    def program(self) -> tuple[Callable, Callable, Callable]:
        """``(init, step, params)`` of the canonical instance of this structure: the same
        function objects for every solver of the same structure (so compiled programs are
        shared, whatever the numeric values)."""
        return _program(self.program_key)

    def replace(self, **changes) -> "Solver":
        return dataclasses.replace(self, **changes)

    def start(self, problem, key, x0=None, y0=None):
        """``init`` with this solver's ``hp`` at the problem's start (or ``x0``, ``y0``)."""
        init = self.program()[0]
        return init(problem, problem.x0 if x0 is None else x0,
                    problem.y0 if y0 is None else y0, key, self.hp)

    # -- to implement --------------------------------------------------------------------------
    sfo_per_step: int
    hvp_per_step: int = 0

    def init(self, problem, x0, y0, key, hp):
        raise NotImplementedError

    def step(self, problem, state, key, *mix):
        raise NotImplementedError

    def params(self, state):
        return state.x, state.y


@functools.lru_cache(maxsize=None)
def _program(key):
    cls, structure, active = key
    inst = object.__new__(cls)
    for k, p in cls.declarations().items():
        if p.kind == "structural":
            continue
        object.__setattr__(inst, k, _Numeric(k) if k in active else p.off)
    for k, v in structure:
        object.__setattr__(inst, k, v)
    return inst.init, inst.step, inst.params


def solver(name: str, summary: str = "", registry: Registry | None = None, **meta):
    """Class decorator: a frozen keyword-only dataclass registered in ``registry`` (default
    :data:`SOLVERS`) under ``name`` (``meta``: e.g. ``tests=...``, the settings the generic
    solver tests use)."""
    def wrap(cls):
        cls.base_name = name
        cls = family(cls)
        (SOLVERS if registry is None else registry).register(
            name, summary or (cls.__doc__ or "").strip().split("\n")[0], cls, **meta)
        return cls
    return wrap


def family(cls):
    """Class decorator for a base class whose fields several solvers share (not registered):
    a frozen keyword-only dataclass."""
    return dataclass(frozen=True, kw_only=True, eq=True)(cls)


# -- validation --------------------------------------------------------------------------------
def _is_off(v, off) -> bool:
    if isinstance(v, _Numeric):
        return False
    if v is None or off is None:
        return v is off
    try:
        return not callable(v) and float(v) == float(off)
    except (TypeError, ValueError):
        return False


def _check_numeric(solver_name: str, key: str, v, p: Param):
    label = p.label or key
    if callable(v) and not isinstance(v, bool):
        if not p.schedule:
            raise ValueError(f"{solver_name}: {label} must be a number, not a schedule")
        try:
            x = initial_value(v)
        except Exception:  # noqa: BLE001 - a user schedule that fails at t = 0
            x = math.nan
        shown = x
    else:
        try:
            x = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            x = math.nan
        shown = v
    lo_ok = x >= p.low if p.low_closed else x > p.low
    hi_ok = x <= p.high if p.high_closed else x < p.high
    # an axis closed at +∞ (a cap that may be "none") accepts inf itself
    finite = math.isfinite(x) or (x == math.inf and p.high == math.inf and p.high_closed)
    if not (finite and lo_ok and hi_ok):
        if p.low == 0 and not p.low_closed and p.high == math.inf:
            what = "a positive number or inf" if p.high_closed else "a finite positive number"
        else:
            hi = "" if p.high == math.inf else (f", {p.high:g}" + ("]" if p.high_closed else ")"))
            what = f"in {'[' if p.low_closed else '('}{p.low:g}{hi or ', ∞)'}"
        raise ValueError(f"{solver_name}: {label} must be {what}, got {shown!r}")
    return v if callable(v) else float(x)


def _check_structural(solver_name: str, key: str, v, p: Param):
    label = p.label or key
    if p.type is bool:
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            return bool(v)
        raise ValueError(f"{solver_name}: {label} must be true or false (or 1/0, yes/no), "
                         f"got {v!r}")
    if p.choices:
        if v not in p.choices:
            raise ValueError(f"{solver_name}: {label} must be one of "
                             f"{', '.join(map(repr, p.choices))}, got {v!r}")
        return v
    if p.type is int:
        ok = not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= p.minimum
        if isinstance(v, float) and v.is_integer() and v >= p.minimum:
            return int(v)
        if not ok:
            raise ValueError(f"{solver_name}: {label} must be a positive integer, got {v!r}"
                             if p.minimum == 1 else
                             f"{solver_name}: {label} must be an integer >= {p.minimum}, "
                             f"got {v!r}")
        return int(v)
    if p.type is float:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise ValueError(f"{solver_name}: {label} must be a finite positive number, "
                             f"got {v!r}")
        return x
    return v


# -- the x-update as an Optax chain ------------------------------------------------------------
def _hp_transform(update) -> optax.GradientTransformationExtraArgs:
    """A stateless transformation ``update(h, hp, t) -> h'`` (hp and t are extra args)."""
    return optax.GradientTransformationExtraArgs(
        lambda params: optax.EmptyState(),
        lambda h, state, params=None, *, hp, t, **_: (update(h, hp, t), state))


def clip_by_hp(key: str = "clip") -> optax.GradientTransformationExtraArgs:
    """``h · min(1, c/‖h‖)``, ``c = hp[key]``: clip the global norm (the heavy-tail remedy)."""
    return _hp_transform(lambda h, hp, t: clip_norm(h, hp[key]))


def momentum_by_hp(key: str = "momentum") -> optax.GradientTransformationExtraArgs:
    """``m ← β m + (1 − β) h``, ``β = hp[key]``; returns ``m``."""
    def init(params):
        return optax.tree.zeros_like(params)

    def update(h, m, params=None, *, hp, t, **_):
        m = optax.tree.update_moment(h, m, hp[key], 1)
        return m, m
    return optax.GradientTransformationExtraArgs(init, update)


def normalize_global(eps: float = 1e-12) -> optax.GradientTransformationExtraArgs:
    """``h / max(‖h‖, eps)`` with the global norm of the pytree."""
    return _hp_transform(lambda h, hp, t: normalize(h, eps))


def scale_by_hp(key: str = "eta") -> optax.GradientTransformationExtraArgs:
    """``η_t h`` with ``η = hp[key]`` a schedule: the step to subtract from x."""
    return _hp_transform(lambda h, hp, t: optax.tree.scale(hp[key](t), h))


def x_update(*, clip: bool = False, momentum: bool = False, normalized: bool = False,
             eps: float = 1e-12, eta: str = "eta") -> optax.GradientTransformationExtraArgs:
    """The outer step as a chain: [clip] → [momentum] → [normalize] → scale by ``η_t``.

    ``update(h, state, hp=..., t=...)`` returns the step ``s`` (x ← x − s): plain SGD
    ``η h``; clipped ``η clip(h, c)``; normalized ``η h/‖h‖``; normalized with momentum
    ``η m/‖m‖`` with ``m ← β m + (1 − β) h`` — and any combination."""
    parts = ([clip_by_hp()] if clip else []) + ([momentum_by_hp()] if momentum else []) + \
        ([normalize_global(eps)] if normalized else []) + [scale_by_hp(eta)]
    return optax.chain(*parts)

