"""E2 (central figure): final ‖∇φ‖ against the tail index α of α-stable noise, at two budgets.

`quadratic` (10×20, κ = 10) with symmetric α-stable(α) noise of scale 1 on every oracle call,
α ∈ {1.1, 1.2, 1.3, 1.5, 1.7, 2.0} at 100k SFO-equivalents and α ∈ {1.1, 1.3, 1.5, 2.0} at
400k (α = 2 is Gaussian with variance 2). The paper's N²SBA, the penalty baselines (F2BA,
F2SA, clipped F2SA), clipped SOBA and our nSOBA and nSVRB are **re-tuned at every α and
budget** by the same protocol; the 100k cells at α = 1.2 and 1.5 are E1's (the same cells).
"""
from __future__ import annotations

import numpy as np

from e1_synthetic import quadratic_cells
from report import (PENALTY, color, curves, figure, rel, save, table, time_table,
                    verdicts)

NAME = "E2"
TITLE = "E2: the α-sweep at two budgets"
ALPHAS = {100_000: (1.1, 1.2, 1.3, 1.5, 1.7, 2.0), 400_000: (1.1, 1.3, 1.5, 2.0)}
SHARED_WITH_E1 = (1.2, 1.5)   # E1's 100k quadratic cells
METHODS = ("N²SBA", "F2BA", "F2SA", "clipped F2SA", "clipped SOBA", "nSOBA", "nSVRB")


def cells(quick: bool):
    if quick:
        return quadratic_cells(NAME, ("stable:2",), 3000, 2, 2, ("N²SBA",), n_eta=1,
                               max_rounds=0, n_evals=3)
    out = []
    for budget, alphas in ALPHAS.items():
        noises = [f"stable:{a:g}" for a in alphas
                  if not (budget == 100_000 and a in SHARED_WITH_E1)]
        for c in quadratic_cells(NAME, noises, budget, 5, 10, METHODS):
            c.problem = f"quadratic, {budget // 1000}k"
            out.append(c)
    return out


def borrowed(load) -> list[dict]:
    """E1's 100k quadratic cells at the shared α, relabelled as E2's."""
    out = []
    for c in load("E1"):
        if c["problem"] == "quadratic" and c["method"] in METHODS and \
                c["noise"] in [f"stable:{a:g}" for a in SHARED_WITH_E1]:
            out.append(dict(c, problem="quadratic, 100k", exp=NAME))
    return out


def _alpha(c) -> float:
    return float(c["noise"].split(":")[1])


def report(cells, figdir, quick, probes=None) -> str:
    budgets = sorted({c["budget"] for c in cells})
    fig, axes = figure(1, len(budgets), 6.0, 4.6)
    for a, budget in zip(axes[0], budgets):
        for lab in sorted({c["method"] for c in cells}):
            cs = sorted((c for c in cells if c["method"] == lab and c["budget"] == budget),
                        key=_alpha)
            if not cs:
                continue
            x = np.array([_alpha(c) for c in cs])
            med, lo, hi = (np.array([c["fresh"][q] for c in cs], float)
                           for q in ("median", "q20", "q80"))
            ok = np.isfinite(med)
            a.plot(x[ok], med[ok], "-o", color=color(lab), label=lab, lw=1.8, ms=4)
            top = np.where(np.isfinite(hi), hi, np.nan)
            a.fill_between(x, lo, top, color=color(lab), alpha=0.15, lw=0)
        a.set_yscale("log")
        a.set_title(f"{budget:,} SFO-equivalents", fontsize=9)
        a.set_xlabel("tail index α of the injected α-stable noise (2 = Gaussian)")
        a.set_ylabel("final ‖∇φ(x)‖ on fresh seeds (median, 20–80%)")
        a.grid(True, which="both", alpha=0.3)
    f1 = save(fig, f"{figdir}/e2_alpha_sweep.png",
              "E2: each method re-tuned at every α and budget (an HVP costs one SFO), "
              f"{cells[0]['eval_seeds']} fresh seeds")
    figs = []
    for budget in budgets:
        cs_b = [c for c in cells if c["budget"] == budget]
        alphas = sorted({_alpha(c) for c in cs_b})
        for x, what in (("sfo_eq", "curves"), ("time_s", "time")):
            fig, axes = figure(2, (len(alphas) + 1) // 2)
            for ax_, al in zip(axes.ravel(), alphas):
                curves(ax_, [c for c in cs_b if _alpha(c) == al], "grad_norm", x=x)
                ax_.set_title(f"α = {al:g}", fontsize=9)
                ax_.set_ylabel("‖∇φ(x)‖")
            for ax_ in axes.ravel()[len(alphas):]:
                ax_.set_visible(False)
            figs.append(save(fig, f"{figdir}/e2_{what}_{budget // 1000}k.png",
                             f"E2, {budget:,} SFO-eq.: best point of each method at each α, "
                             f"against {'SFO-equivalents' if x == 'sfo_eq' else 'compiled time'}"))
    group = lambda c: f"α = {_alpha(c):g}, {c['budget'] // 1000}k"  # noqa: E731
    srt = sorted(cells, key=lambda c: (c["budget"], _alpha(c)))
    return "\n".join([
        __doc__.split("\n", 1)[1].strip(), "",
        "Settings as E1's `quadratic`. The budget ratio shows how the gaps move with more "
        "oracle calls.", "", f"![alpha sweep]({rel(f1)})", "",
        *[f"![curves]({rel(f)})" for f in figs], "",
        table(srt, lambda c: (c["budget"], _alpha(c), c["method"])), "",
        "Time to reach the best penalty method's final value (fresh medians):", "",
        *time_table(srt, group), "",
        "Verdicts (N²SBA against the best other method, at each α and budget):", "",
        *verdicts(srt, group), "",
        "N²SBA within the penalty family (F2BA, F2SA, clipped F2SA):", "",
        *verdicts(srt, group, among=PENALTY), "",
        "Our nSOBA and nSVRB against clipped SOBA:", "",
        *verdicts(srt, group, arms=("ours",), among=("clipped SOBA",),
                  exp_tag=f"{NAME} (ours vs clipped SOBA)"), "",
        "… and against N²SBA:", "",
        *verdicts(srt, group, arms=("ours",), among=("N²SBA",),
                  exp_tag=f"{NAME} (ours vs N²SBA)"), ""])
