"""Plots from history rows: median curves with 20–80% quantile bands over seeds."""
from __future__ import annotations

import numpy as np

from .history import group_curves

__all__ = ["plot_histories"]

_AXES = {"sfo": "SFO calls", "time_s": "compiled-step time (s)", "step": "iteration"}


def plot_histories(rows: list[dict], path: str, metric: str = "grad_norm",
                   xs: tuple[str, ...] = ("sfo", "time_s"), title: str | None = None) -> str:
    """Write a PNG with one panel per x-axis in ``xs``; log-scale metric; returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(xs), figsize=(5.2 * len(xs), 4.0), squeeze=False)
    ylabel = {"grad_norm": r"$\|\nabla\varphi(x)\|$", "phi": r"$\varphi(x)$",
              "y_err": r"$\|\hat y - y^*(x)\|$"}.get(metric, metric)
    for ax, xname in zip(axes[0], xs):
        curves = group_curves(rows, metric, xname)
        for i, (label, (x, vals)) in enumerate(sorted(curves.items())):
            color = f"C{i % 10}"
            with np.errstate(all="ignore"):
                med = np.nanmedian(vals, axis=0)
                lo = np.nanquantile(vals, 0.2, axis=0)
                hi = np.nanquantile(vals, 0.8, axis=0)
            ax.plot(x, med, color=color, lw=1.8, label=f"{label} (n={vals.shape[0]})")
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(_AXES.get(xname, xname))
        ax.set_ylabel(ylabel)
        positive = [v for _, (_, v) in curves.items() if np.nanmin(v) > 0]
        if positive and len(positive) == len(curves):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "median over seeds, band = 20–80% quantiles", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
