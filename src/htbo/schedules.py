"""Step-size and penalty schedules as *data*: small pytrees ``t -> value``.

A built-in schedule's numbers are pytree leaves, so a compiled solver step takes them as
inputs: two runs that differ only in a schedule's numbers (or a grid of them, ``vmap``\\ ped)
share one compiled program. The family (the class) is structure. A constant is the
``power`` family with exponent 0, so constant and decaying step sizes of a grid compile
together::

    InversePower(v, t0, p)(t) = v / (1 + t/t0)^p      "0.1" (p = 0), "isqrt:V:T0", "power:V:T0:P"
    LinearGrowth(a, r, b)(t)  = min(a + r t, b)       "linear:START:RATE:STOP"
    Exponential(v, r)(t)      = v r^t                 "exp:V:RATE"

Any other callable (an optax schedule, a lambda) still works: :func:`as_schedule` wraps it
in :class:`Static`, a leafless node that keeps it in the program's structure, so each such
callable compiles on its own. ``repr`` of a built-in schedule is its CLI string.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

Schedule = Callable[[Any], Any]
ScalarOrSchedule = Union[float, Schedule]

__all__ = ["InversePower", "LinearGrowth", "Exponential", "Static", "constant", "inverse_sqrt",
           "inverse_power", "exponential", "linear_growth", "as_schedule", "initial_value",
           "check_positive", "check_batch", "is_builtin"]


def _fmt(v) -> str:
    try:
        return f"{float(v):g}"
    except TypeError:  # a traced or batched leaf
        return "?"


class _Sched:
    """Base of the built-in schedules: a pytree whose children are its numbers."""

    _fields: tuple[str, ...] = ()

    def __init__(self, *vals):
        for k, v in zip(self._fields, vals):
            object.__setattr__(self, k, v)

    def __setattr__(self, k, v):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def tree_flatten(self):
        return tuple(getattr(self, k) for k in self._fields), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __eq__(self, other):
        return type(self) is type(other) and all(
            np.array_equal(np.asarray(getattr(self, k)), np.asarray(getattr(other, k)))
            for k in self._fields)

    def __hash__(self):
        return hash((type(self).__name__,) + tuple(_fmt(getattr(self, k)) for k in self._fields))

    #: the fields that scale with the schedule's values (``scaled(c)(t) = c · self(t)``)
    _magnitudes: tuple[str, ...] = ()

    def scaled(self, c: float):
        """The schedule ``t -> c · self(t)`` (same family, the other numbers kept)."""
        return type(self)(*(float(c) * float(getattr(self, k)) if k in self._magnitudes
                            else getattr(self, k) for k in self._fields))


@jax.tree_util.register_pytree_node_class
class InversePower(_Sched):
    """``value / (1 + t/t0)^power``; ``power = 0`` is the constant ``value``."""

    _fields = ("value", "t0", "power")
    _magnitudes = ("value",)

    def __call__(self, t):
        return self.value / (1.0 + t / self.t0) ** self.power

    def __repr__(self):
        v, t0, p = (_fmt(getattr(self, k)) for k in self._fields)
        if p == "0":
            return v
        return f"isqrt:{v}:{t0}" if p == "0.5" else f"power:{v}:{t0}:{p}"


@jax.tree_util.register_pytree_node_class
class LinearGrowth(_Sched):
    """``min(start + rate·t, stop)``: a growing penalty λ_t (F2SA)."""

    _fields = ("start", "rate", "stop")
    _magnitudes = ("start", "rate", "stop")

    def __call__(self, t):
        return jnp.minimum(self.start + self.rate * t, self.stop)

    def __repr__(self):
        return "linear:" + ":".join(_fmt(getattr(self, k)) for k in self._fields)


@jax.tree_util.register_pytree_node_class
class Exponential(_Sched):
    """``value · rate^t`` (0 < rate <= 1): a fast decay for noise-free runs."""

    _fields = ("value", "rate")
    _magnitudes = ("value",)

    def __call__(self, t):
        return self.value * self.rate ** t

    def __repr__(self):
        return "exp:" + ":".join(_fmt(getattr(self, k)) for k in self._fields)


@jax.tree_util.register_pytree_node_class
class Static:
    """A user callable kept as structure (no leaves): programs compile per callable."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, t):
        return self.fn(t)

    def tree_flatten(self):
        return (), self.fn

    @classmethod
    def tree_unflatten(cls, fn, children):
        return cls(fn)

    def __eq__(self, other):
        return isinstance(other, Static) and other.fn is self.fn

    def __hash__(self):
        return hash(id(self.fn))

    def __repr__(self):
        return repr(self.fn)


def constant(value: float) -> InversePower:
    return InversePower(float(value), 1.0, 0.0)


def inverse_power(value: float, t0: float = 100.0, power: float = 0.5) -> InversePower:
    """``value / (1 + t/t0)^power``."""
    if not t0 > 0:
        raise ValueError(f"schedule t0 must be > 0, got {t0}")
    return InversePower(float(value), float(t0), float(power))


def inverse_sqrt(value: float, t0: float = 100.0) -> InversePower:
    """``value / sqrt(1 + t/t0)``: the decay normalized steps need to settle."""
    return inverse_power(value, t0, 0.5)


def exponential(value: float, rate: float) -> Exponential:
    """``value · rate^t`` (0 < rate <= 1)."""
    if not 0 < rate <= 1:
        raise ValueError(f"exponential decay rate must be in (0, 1], got {rate}")
    return Exponential(float(value), float(rate))


def linear_growth(start: float, rate: float, stop: float = math.inf) -> LinearGrowth:
    """``min(start + rate·t, stop)``."""
    return LinearGrowth(float(start), float(rate), float(stop))


def is_builtin(v) -> bool:
    return isinstance(v, _Sched)


def as_schedule(v: ScalarOrSchedule):
    """A number becomes :func:`constant`; a built-in schedule stays; any other callable is
    wrapped in :class:`Static`."""
    if isinstance(v, (_Sched, Static)):
        return v
    if callable(v):
        return Static(v)
    return constant(v)


def initial_value(v) -> float:
    """The value at ``t = 0`` of a number or schedule."""
    return float(v(0)) if callable(v) else float(v)


def check_positive(name: str, v: ScalarOrSchedule, solver: str) -> None:
    """Raise if a scalar (or a schedule's first value) is not a finite positive number."""
    try:
        val = initial_value(v)
        ok = math.isfinite(val) and val > 0
    except (TypeError, ValueError):
        val, ok = v, False
    if not ok:
        raise ValueError(f"{solver}: {name} must be a finite positive number, got {val!r}")


def check_batch(name: str, b, solver: str) -> None:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise ValueError(f"{solver}: {name} must be a positive integer, got {b!r}")
