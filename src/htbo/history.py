"""History files (JSON lines, one row per seed per evaluation point) and summaries.

Rows are appended and flushed as they are produced, so an interrupted run keeps every
evaluation it finished; plots and tables read only these files.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Iterable

import numpy as np

__all__ = ["JsonlWriter", "read_jsonl", "group_curves", "summarize", "format_table", "quantile",
           "bands"]


class JsonlWriter:
    """Append rows to ``path`` as JSON lines, flushing after every call."""

    def __init__(self, path: str):
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")

    def __call__(self, rows: Iterable[dict]) -> None:
        for r in rows:
            self._fh.write(json.dumps(r, default=_jsonable, allow_nan=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return repr(v)


def read_jsonl(path: str, warn: bool = False) -> list[dict]:
    """Read a history file; unreadable lines (a truncated last line from a crash) are
    skipped, with a warning on stderr when ``warn``."""
    import sys
    rows, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                skipped += 1
    if skipped and warn:
        print(f"htbo: warning: {path}: skipped {skipped} unreadable line(s) (a truncated "
              "last row is rewritten by --resume)", file=sys.stderr)
    return rows


def _label(r: dict) -> str:
    return r.get("label") or r["solver"]


def group_curves(rows: list[dict], metric: str = "grad_norm", x: str = "sfo") -> dict:
    """``{label: (xs, values[seed, point])}`` for rows sharing an evaluation grid.

    Per label, the x-axis is the median over seeds of ``x`` at each evaluation step (SFO is
    identical across seeds; time is shared by vmapped seeds). Seeds that stopped early (e.g.
    diverged) are padded with NaN.
    """
    by = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if metric in r and r[metric] is not None:
            by[_label(r)][r["seed"]][r["step"]] = (r[x], r[metric])
    out = {}
    for label, seeds in by.items():
        steps = sorted({s for d in seeds.values() for s in d})
        vals = np.full((len(seeds), len(steps)), np.nan)
        xs = np.full((len(seeds), len(steps)), np.nan)
        for i, d in enumerate(seeds.values()):
            for j, st in enumerate(steps):
                if st in d:
                    xs[i, j], vals[i, j] = d[st]
        out[label] = (np.nanmedian(xs, axis=0), vals)
    return out


def summarize(rows: list[dict], metric: str = "grad_norm",
              diverged: dict | None = None) -> list[dict]:
    """Per label: median and 20/80% quantiles of the final ``metric`` over seeds, plus the
    SFO and compiled time at the end. A seed counts as ``inf`` when its iterates diverged
    (``diverged``: ``{label: [(seed, step)]}``), when its last row stops before the label's
    last step, or when its final value is missing; ``diverged`` lists them per label."""
    if rows and not any(metric in r for r in rows):
        have = sorted({k for r in rows for k in r} - _META)
        raise ValueError(f"unknown metric {metric!r}; the history has {have}")
    diverged = diverged or {}
    last = defaultdict(dict)
    for r in rows:
        key = (_label(r), r["seed"])
        if key not in last or r["step"] > last[key]["step"]:
            last[key] = r
    per = defaultdict(list)
    for (label, _), r in last.items():
        per[label].append(r)
    out = []
    for label, rs in per.items():
        end = max(r["step"] for r in rs)
        dead = dict(diverged.get(label, []))
        for r in rs:
            if r["step"] < end and r["seed"] not in dead:
                dead[r["seed"]] = None  # stopped early: a failure whose step is unknown
        v = np.array([math.inf if r["seed"] in dead or r.get(metric) is None
                      else float(r[metric]) for r in rs])
        out.append(dict(label=label, seeds=len(rs), median=float(np.median(v)),
                        q20=quantile(v, 0.2), q80=quantile(v, 0.8),
                        sfo=max(r["sfo"] for r in rs), time_s=max(r["time_s"] for r in rs),
                        steps=end, diverged=sorted(dead.items(), key=lambda t: t[0])))
    return sorted(out, key=lambda d: (d["median"], d["q80"]))


_META = {"run_id", "solver", "problem", "noise", "seed", "step", "sfo", "hvp", "time_s",
         "label", "point", "agents", "mode", "network"}


def quantile(v, q: float) -> float:
    """Quantile that stays an observed value, so an inf (diverged seed) never becomes NaN."""
    return float(np.quantile(np.asarray(v, float), q, method="inverted_cdf"))


def format_table(summary: list[dict], metric: str = "grad_norm") -> str:
    """A markdown table of :func:`summarize` output (diverged seeds named with their step)."""
    head = (f"| solver | seeds | steps | SFO | time (s) | median final {metric} | 20% | 80% | "
            "diverged |")
    lines = [head, "|" + "---|" * 9]
    for s in summary:
        dv = s.get("diverged") or []
        what = "" if not dv else f"{len(dv)}/{s['seeds']}: " + ", ".join(
            f"seed {seed}" + ("" if step is None else f" at step {step}") for seed, step in dv)
        lines.append(f"| {s['label']} | {s['seeds']} | {s['steps']} | {s['sfo']:,} | "
                     f"{s['time_s']:.3f} | {s['median']:.4g} | {s['q20']:.4g} | "
                     f"{s['q80']:.4g} | {what} |")
    return "\n".join(lines)


def bands(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(median, q20, q80)`` over seeds along ``axis`` — the rule of every table and every
    plotted band: a missing value (NaN: a seed that stopped, diverged) counts as ``inf``,
    and quantiles are observed values (``inverted_cdf``), so a band never hides a failure."""
    v = np.where(np.isnan(np.asarray(values, float)), np.inf, np.asarray(values, float))
    med = np.median(v, axis=axis)
    q20 = np.quantile(v, 0.2, axis=axis, method="inverted_cdf")
    q80 = np.quantile(v, 0.8, axis=axis, method="inverted_cdf")
    return med, q20, q80
