"""The measured evidence behind ``htbo diagnose``'s advice, as data.

``evidence.json`` (shipped with the package) is written by the experiments
(``experiments/run.py``) from their stored cells, never by hand: one row per measured
setting with the methods ranked by their fresh-seed median (the seeds that did not choose
the hyperparameters) and their 20–80% bands. Library code holds no measured numbers; the
advice quotes these rows and says when none matches the diagnosed setting.

Row fields: ``experiment``, ``setting`` (readable), ``problem``, ``kind`` (``bilevel`` /
``minimax``), ``noise`` (the law as run, ``none`` for the data's own noise),
``noise_class`` (``heavy`` / ``moderate`` / ``light`` / ``deterministic``: the class
:func:`htbo.diagnostics.recommend.classify` gives), ``budget`` (SFO-equivalents),
``metric``, ``ranking`` (``[{method, solver, hp, median, q20, q80}]``, best first),
``winner``, ``verdict`` (``win``: the winner's band lies below every other method's;
``tie``: the methods in ``tied`` overlap it), ``tied``, ``date``, ``source``.
"""
from __future__ import annotations

import functools
import json
from importlib import resources

__all__ = ["load", "matching", "noise_class_of", "contenders", "HEAVY_MAX", "LIGHT_MIN"]

#: a law whose tail index is at most this is "heavy" (infinite variance, clearly)
HEAVY_MAX = 1.6
#: from this tail index on (finite variance) a law is "light"
LIGHT_MIN = 2.0


def noise_class_of(tail_index: float | None) -> str:
    """The class of a noise law from its tail index (``None``: no noise at all)."""
    if tail_index is None:
        return "deterministic"
    if tail_index <= HEAVY_MAX:
        return "heavy"
    return "light" if tail_index >= LIGHT_MIN else "moderate"


@functools.lru_cache(maxsize=1)
def _rows() -> tuple:
    try:
        text = resources.files("htbo.diagnostics").joinpath("evidence.json").read_text()
    except FileNotFoundError:
        return ()
    return tuple(json.loads(text).get("rows", ()))


def load() -> list[dict]:
    """Every evidence row (empty when the package ships none)."""
    return [dict(r) for r in _rows()]


def matching(kind: str, noise_class: str, rows=None) -> list[dict]:
    """The rows measured on a problem of ``kind`` under noise of ``noise_class``."""
    rows = load() if rows is None else rows
    return [r for r in rows if r.get("kind") == kind and r.get("noise_class") == noise_class]


def contenders(rows: list[dict]) -> list[str]:
    """Solvers that won, or tied the winner, in any of ``rows`` (the race's candidates the
    evidence supports), most frequent first."""
    count: dict[str, int] = {}
    for r in rows:
        for name in [r["ranking"][0]["solver"]] + [t["solver"] for t in r.get("tied", [])]:
            count[name] = count.get(name, 0) + 1
    return sorted(count, key=lambda n: (-count[n], n))
