"""Plots from history rows: median curves with 20–80% quantile bands over seeds."""
from __future__ import annotations

import warnings

import numpy as np

from .history import _META, bands, group_curves

__all__ = ["plot_histories"]

_AXES = {"sfo": "SFO calls", "time_s": "compiled-step time (s)", "step": "iteration",
         "comm_rounds": "communication rounds"}
_YLABEL = {"grad_norm": r"$\|\nabla\varphi(x)\|$", "phi": r"$\varphi(x)$",
           "y_err": r"$\|\hat y - y^*(x)\|$"}


def plot_histories(rows: list[dict], path: str, metric: str = "grad_norm",
                   xs: tuple[str, ...] = ("sfo", "time_s"), title: str | None = None,
                   diverged: dict | None = None) -> str:
    """Write a PNG with one panel per x-axis in ``xs``; log-scale metric; returns ``path``.

    Median and 20–80% band per evaluation follow the tables' rule (:func:`htbo.history.bands`:
    a seed that stopped counts as ``inf``; where the median or a quantile is infinite, that
    part of the curve or band is not drawn). Seeds that diverged (``diverged``: ``{label: [(seed, step)]}``, or rows that stop before
    the label's last step) are counted in the legend and their last finite value is marked
    with an ×; a curve with a single point is drawn as a marker so it stays visible."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("nothing to plot: no history rows")
    if not any(metric in r for r in rows):
        have = sorted({k for r in rows for k in r} - _META)
        raise ValueError(f"unknown metric {metric!r}; the history has {have}")
    diverged = diverged or {}
    fig, axes = plt.subplots(1, len(xs), figsize=(5.4 * len(xs), 4.2), squeeze=False)
    for ax, xname in zip(axes[0], xs):
        curves = group_curves(rows, metric, xname)
        for i, (label, (x, vals)) in enumerate(sorted(curves.items())):
            color = f"C{i % 10}"
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med, lo, hi = bands(vals)  # the tables' rule: a stopped seed counts as inf
            med, lo, hi = (np.where(np.isfinite(a), a, np.nan) for a in (med, lo, hi))
            finite_end = np.isfinite(vals[:, -1])
            n_div = max(len(diverged.get(label, [])), int(np.sum(~finite_end)))
            tag = f"{label} (n={vals.shape[0]}" + (f", {n_div} diverged)" if n_div else ")")
            style = dict(marker="o", ms=4) if np.sum(np.isfinite(med)) <= 1 else {}
            ax.plot(x, med, color=color, lw=1.8, label=tag, **style)
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
            for row in vals[~finite_end]:  # where each diverged seed's curve ends
                ok = np.flatnonzero(np.isfinite(row))
                if ok.size:
                    ax.plot(x[ok[-1]], row[ok[-1]], "x", color=color, ms=8, mew=2)
        ax.set_xlabel(_AXES.get(xname, xname))
        ax.set_ylabel(_YLABEL.get(metric, metric))
        positive = [v for _, (_, v) in curves.items() if np.nanmin(v) > 0]
        if positive and len(positive) == len(curves):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "median over seeds, band = 20–80% quantiles"
                 + (" (× = last value before divergence)" if diverged else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
