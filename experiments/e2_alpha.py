"""E2 (central figure): final ‖∇φ‖ against the tail index α of α-stable noise.

`quadratic` (10×20, κ = 10) with symmetric α-stable(α) noise of scale 1 on every oracle call,
α ∈ {1.1, 1.2, 1.3, 1.5, 1.7, 2.0} (α = 2 is Gaussian with variance 2). The normalized
method (N²SBA), the unnormalized penalty methods (F2BA, F2SA) and the clipped methods
(clipped F2SA, clipped SOBA) are **re-tuned at every α** on the same grid rule, budget and
seeds.
"""
from __future__ import annotations

import numpy as np
from e1_synthetic import (QINNER, QUAD, QUAD_C, bilevel_methods, floor_lines, floor_probes,
                          problem_cell)
from framework import PENALTY, color, curves, figure, rel, save, table, verdicts

NAME = "E2"
TITLE = "E2: the α-sweep"
ALPHAS = (1.1, 1.2, 1.3, 1.5, 1.7, 2.0)
METHODS = ("N²SBA", "F2BA", "F2SA", "clipped F2SA", "clipped SOBA")


def cells(quick: bool):
    alphas, kw = ALPHAS, dict(budget=100_000, seeds=10, n_eta=4, extend=3, n_evals=20)
    which = METHODS
    if quick:
        alphas, which = (1.2, 2.0), ("N²SBA", "F2BA")
        kw = dict(budget=4000, seeds=2, n_eta=1, extend=0, n_evals=4)
    return [problem_cell(NAME, "quadratic", "quadratic", QUAD, f"stable:{a:g}", m, **kw)
            for a in alphas for m in bilevel_methods(QINNER, 0.05, QUAD_C, which)]


def probes(quick: bool):
    return [] if quick else floor_probes(NAME, [("quadratic", "quadratic", QUAD)])


def _alpha(c) -> float:
    return float(c["noise"].split(":")[1])


def report(cells, probes, figdir, quick) -> str:
    alphas = sorted({_alpha(c) for c in cells})
    fig, ax = figure(1, 1, 7.5, 4.8)
    a = ax[0][0]
    for lab in sorted({c["method"] for c in cells}):
        cs = sorted((c for c in cells if c["method"] == lab), key=_alpha)
        x = np.array([_alpha(c) for c in cs])
        med, lo, hi = (np.array([c["best"][q] for c in cs], float) for q in ("median", "q20", "q80"))
        ok = np.isfinite(med)
        a.plot(x[ok], med[ok], "-o", color=color(lab), label=lab, lw=1.8, ms=4)
        top = np.where(np.isfinite(hi), hi, np.nan)
        a.fill_between(x, lo, top, color=color(lab), alpha=0.18, lw=0)
        for xi in x[~ok]:
            a.plot(xi, np.nanmax(top) if np.isfinite(top).any() else 1, "x", color=color(lab), ms=9)
    a.set_yscale("log")
    a.set_xlabel("tail index α of the injected α-stable noise (2 = Gaussian)")
    a.set_ylabel("final ‖∇φ(x)‖ (median, band 20–80%)")
    a.grid(True, which="both", alpha=0.3)
    f1 = save(fig, f"{figdir}/e2_alpha_sweep.png",
              f"E2: each method re-tuned at every α, {cells[0]['budget']:,} SFO-equivalents (an HVP costs one SFO), "
              f"{cells[0]['seeds']} seeds")
    fig, axes = figure(2, (len(alphas) + 1) // 2)
    for ax_, al in zip(axes.ravel(), alphas):
        curves(ax_, [c for c in cells if _alpha(c) == al], "grad_norm")
        ax_.set_title(f"α = {al:g}", fontsize=9)
        ax_.set_ylabel("‖∇φ(x)‖")
    f2 = save(fig, f"{figdir}/e2_curves.png", "E2: best point of each method at each α")
    return "\n".join([
        __doc__.split("\n", 1)[1].strip(), "",
        "Settings as E1's `quadratic` (K = 5, α = τ = 0.05, B_in = 1, B_out = 8, independent "
        "samples). Every method's grid has 4 values of η₀ (ratio 3), each constant and "
        "decaying, times 2 values of its second hyperparameter (16 points), extended when "
        "the best η₀ lies on an edge.", "", *floor_lines(probes), "",
        f"![alpha sweep]({rel(f1)})", "", f"![curves]({rel(f2)})", "",
        table(cells, lambda c: (_alpha(c), c["method"])), "",
        "Verdicts (N²SBA against the best baseline at each α):", "",
        *verdicts(sorted(cells, key=_alpha), lambda c: f"α = {_alpha(c):g}"), "",
        "Within the penalty family (F2BA, F2SA, clipped F2SA: the same first-order "
        "hypergradient estimator as N²SBA, so only the step differs; clipped SOBA uses "
        "Hessian-vector products and has no penalty bias):", "",
        *verdicts(sorted(cells, key=_alpha), lambda c: f"α = {_alpha(c):g}",
                  among=PENALTY), ""])
