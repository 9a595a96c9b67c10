"""Parsing of command-line values shared by every subcommand (no imports of the CLIs).

* values: ``true``/``false``/``none``, integers, floats, schedules ``isqrt:V0:T0``,
  ``power:V0:T0:P``, ``linear:START:RATE:STOP``, ``exp:V0:RATE``, else the string itself;
* ``KEY=VALUE`` assignments (``--hp``, ``--problem-arg``);
* seeds: a count ``5`` (seeds 0–4), a list ``0,3,7``, a range ``0-4``, or a mix ``0-2,7``.
"""
from __future__ import annotations

__all__ = ["parse_value", "parse_assignments", "parse_seeds", "parse_list", "int_like"]

_SCHEDULES = {"isqrt": ("inverse_sqrt", 1, 2), "power": ("inverse_power", 1, 3),
              "linear": ("linear_growth", 2, 3), "exp": ("exponential", 2, 2)}


def parse_value(text: str, schedules: bool = True):
    """Parse one CLI value: bool/none, int, float, schedule string, else the string
    (``schedules=False``, for problem arguments: ``'dirichlet:0.3'`` stays a string)."""
    from . import schedules as sched_mod

    t = str(text).strip()
    low = t.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    if ":" in t and schedules:
        kind, *nums = t.split(":")
        if kind not in _SCHEDULES:
            raise ValueError(f"bad schedule {text!r}: expected isqrt:V0:T0, power:V0:T0:P, "
                             "linear:START:RATE:STOP or exp:V0:RATE")
        try:
            vals = [float(n) for n in nums]
        except ValueError:
            raise ValueError(f"bad schedule {text!r}: arguments must be numbers") from None
        fn, lo, hi = _SCHEDULES[kind]
        if not lo <= len(vals) <= hi:
            raise ValueError(f"bad schedule {text!r}: {kind} takes {lo} to {hi} numbers")
        return getattr(sched_mod, fn)(*vals)
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_assignments(items: list[str] | None, what: str, schedules: bool = True) -> dict:
    """``['eta=0.1', 'lam=10']`` → ``{'eta': 0.1, 'lam': 10}`` (dashes in keys → underscores;
    ``schedules``: as in :func:`parse_value`)."""
    out = {}
    for it in items or []:
        k, eq, v = str(it).partition("=")
        if not eq or not k.strip():
            raise ValueError(f"{what}: expected KEY=VALUE, got {it!r}")
        out[k.strip().replace("-", "_")] = parse_value(v, schedules)
    return out


def parse_list(text: str, what: str) -> list:
    """``'V1,V2,...'`` → parsed values; empty items are an error naming the item."""
    items = str(text).split(",")
    if any(not s.strip() for s in items):
        raise ValueError(f"{what}: empty value in {text!r}")
    out = []
    for s in items:
        try:
            out.append(parse_value(s))
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    return out


def parse_seeds(text) -> list[int]:
    """``'5'`` → 0..4; ``'0,3,7'`` → those; ``'0-4'`` → 0..4; ``'0-2,7'`` → 0, 1, 2, 7."""
    bad = ValueError(f"--seeds: expected a count N >= 1, a list like 0,3,7 or a range like "
                     f"0-4, got {text!r}")
    s = str(text).strip()
    try:
        if s.isdigit():
            n = int(s)
            if n < 1:
                raise bad
            return list(range(n))
        seeds = []
        for part in s.split(","):
            part = part.strip()
            a, dash, b = part.partition("-")
            if dash:
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise bad
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise bad from None
    if not seeds or min(seeds) < 0:
        raise bad
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: duplicate seeds in {text!r}")
    return seeds


def int_like(text) -> int:
    """An integer written as ``100000``, ``1e5`` or ``100_000`` (argparse ``type``); a value
    that is not integral is refused."""
    import argparse
    t = str(text).strip().replace("_", "")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not v.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(v)
