"""Step-size and penalty schedules: callables ``t -> value`` (optax schedules also work)."""
from __future__ import annotations

import math
from typing import Callable, Union

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
ScalarOrSchedule = Union[float, Schedule]

__all__ = ["constant", "inverse_sqrt", "inverse_power", "exponential", "linear_growth", "as_schedule",
           "check_positive"]


def constant(value: float) -> Schedule:
    return lambda t: jnp.asarray(value, jnp.float32)


def inverse_power(value: float, t0: float = 100.0, power: float = 0.5) -> Schedule:
    """``value / (1 + t/t0)^power``."""
    return lambda t: value / (1.0 + t / t0) ** power


def inverse_sqrt(value: float, t0: float = 100.0) -> Schedule:
    """``value / sqrt(1 + t/t0)``: the decay normalized steps need to settle."""
    return inverse_power(value, t0, 0.5)


def exponential(value: float, rate: float) -> Schedule:
    """``value · rate^t`` (0 < rate <= 1): a fast decay for noise-free runs."""
    if not 0 < rate <= 1:
        raise ValueError(f"exponential decay rate must be in (0, 1], got {rate}")
    return lambda t: value * rate**t


def linear_growth(start: float, rate: float, stop: float = math.inf) -> Schedule:
    """``min(start + rate·t, stop)``: a growing penalty λ_t (F2SA)."""
    return lambda t: jnp.minimum(start + rate * t, stop)


def as_schedule(v: ScalarOrSchedule) -> Schedule:
    return v if callable(v) else constant(float(v))


def check_positive(name: str, v: ScalarOrSchedule, solver: str) -> None:
    """Raise if a scalar (or a schedule's first value) is not a finite positive number."""
    val = float(v(0)) if callable(v) else v
    try:
        ok = math.isfinite(float(val)) and float(val) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{solver}: {name} must be a finite positive number, got {val!r}")


def check_batch(name: str, b, solver: str) -> None:
    if isinstance(b, bool) or not isinstance(b, (int,)) or b < 1:
        raise ValueError(f"{solver}: {name} must be a positive integer, got {b!r}")
