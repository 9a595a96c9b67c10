"""Write a diagnosis: ``diagnosis.json``, ``diagnosis.md`` and ``survival.png``."""
from __future__ import annotations

import json
import math
import os

from .tail import survival

__all__ = ["write_report", "markdown", "plot_survival"]


def _g(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}g}"


def _a(v: float) -> str:
    """A tail index: two decimals, or three significant digits when large."""
    return "∞" if math.isinf(v) else (f"{v:.2f}" if abs(v) < 100 else f"{v:.3g}")


def _est(e) -> str:
    return "—" if e is None else f"{_a(e.value)} [{_a(e.lo)}, {_a(e.hi)}]"


def markdown(diag) -> str:
    """The human-readable report."""
    rec, th = diag.recommendation, diag.theory
    lines = [f"# htbo diagnose: {diag.problem}", "",
             f"Point: {diag.point} (x, y); injected noise: {diag.noise}; {diag.n_samples:,} "
             f"draws per oracle at minibatch size B = {diag.batch} (averaging B samples "
             f"changes the noise scale, not its tail index); {diag.elapsed_s:.1f} s.", "",
             "## Gradient noise", "",
             "| oracle | α̂ block sums, coordinates | α̂ block sums, signed norms | "
             "α̂ Hill, norms (k) | median ‖noise‖ | ‖∇‖ full data | noise/‖∇‖ |",
             "|---|---|---|---|---|---|---|"]
    for t in diag.tails.values():
        name = "∇F (f)" if t.oracle == "f" else "∇G (g)"
        if t.status == "deterministic":
            lines.append(f"| {name} | deterministic | — | — | 0 | {_g(t.grad_norm)} | 0 |")
            continue
        hk = f"{_est(t.hill)} (k = {t.hill.details['k']})"
        lines.append(f"| {name} | {_est(t.block_sum)} | {_est(t.block_sum_norms)} | {hk} | "
                     f"{_g(t.noise_norm_quantiles['50%'])} | {_g(t.grad_norm)} | "
                     f"{_g(t.noise_to_gradient, 2)} |")
    ok = [t for t in diag.tails.values() if t.status == "ok"]
    if ok:
        t = ok[0]
        lines += ["", f"Intervals: {int(100 * t.block_sum.level)}% percentile bootstrap "
                  f"({t.block_sum.details['n_boot']} resamples). Block sums: K1 = "
                  f"{t.block_sum.details['K1']}, K2 = {t.block_sum.details['K2']}, "
                  f"{t.block_sum.details['regroupings']} random regroupings, "
                  + ", ".join(f"{x.coordinates_used} of {x.dim} coordinates ({x.oracle})"
                              for x in ok)
                  + "; Hill: k = ⌈√n⌉. α̂ = 2 is the Gaussian; α̂ < 2 means infinite "
                  "variance. See docs/diagnostics.md for the measured bias of each estimator."]
    lines += ["", "## Lower-level conditioning (∇²_yy g, full data, Lanczos on HVPs)", "",
              "| point | L̂ | μ̂ | κ̂ | dim y | Lanczos steps |", "|---|---|---|---|---|---|"]
    for k, c in diag.conditioning.items():
        lines.append(f"| {k} | {_g(c.L)} | {_g(c.mu)} | {_g(c.kappa)} | {c.dim} | {c.iters} |")
    if diag.minimax:
        lines += ["", "Minimax: g = −f, so these describe −f(x, ·) (its strong concavity)."]
    if diag.grad_phi_norm is not None:
        lines += ["", f"‖∇φ(x)‖ = {_g(diag.grad_phi_norm)} (noise-free, full data)."]
    if diag.penalty_bias:
        lines += ["", "Penalty bias ‖∇L_λ*(x) − ∇φ(x)‖ at this point (decreases like 1/λ; "
                  "the noise of λ(∇_x G(x,y) − ∇_x G(x,z)) grows like λ):", "",
                  "| λ | " + " | ".join(_g(b["lam"]) for b in diag.penalty_bias) + " |",
                  "|---|" + "---|" * len(diag.penalty_bias),
                  "| bias | " + " | ".join(_g(b["bias"]) for b in diag.penalty_bias) + " |"]
        b = [r["bias"] for r in diag.penalty_bias]
        stop = next((i for i in range(1, len(b)) if b[i] >= b[i - 1]), None)
        if stop is not None:
            lines += ["", f"The measured bias stops falling at λ = "
                      f"{_g(diag.penalty_bias[stop]['lam'])}: there the float32 full-data "
                      "solves, whose error λ multiplies, limit the measurement (the true bias "
                      "keeps falling like 1/λ)."]
    lines += ["", "## Recommendation: a race", "",
              f"Noise class *{rec['noise_class']}*: {rec['reason']}.", "",
              f"Candidates ({rec['kind']}): **{', '.join(rec['solvers'])}**, each over its "
              "default grid (extended at its edges), budgets in SFO-equivalents, the winner "
              "measured again on fresh seeds.", ""]
    if rec["evidence"]:
        lines += ["Measured evidence for this kind of problem and noise class (fresh-seed "
                  "medians [20%, 80%], docs/results.md):", ""]
        lines += [f"- {e}" for e in rec["evidence"]]
    else:
        lines += ["No measured setting matches this kind of problem and noise class."]
    lines += ["", f"- inner steps: {rec['inner_steps_rule']}", f"- penalty: {rec['lam_rule']}"]
    lines += [f"- {n}" for n in rec["notes"]]
    lines += ["", f"The race ({rec['budget']:,} SFO-equivalents, {rec['seeds']} seeds):", "",
              "```"] + rec["commands"] + ["```", "", "The same from Python:", "", "```python",
                                           "htbo.tune(problem, **diagnosis.recommendation"
                                           f"['tune'], budget={rec['budget']}, "
                                           f"seeds={rec['seeds']})", "```"]
    if th:
        lines += ["", "## Theory preset (the analysis' choices, for comparison)", ""]
        if "error" in th:
            lines.append(f"Not available: {th['error']}.")
        else:
            lam = "" if th["lam"] is None else f"λ = {_g(th['lam'])}, "
            inp = th["inputs"]
            lines += [f"At ε = {_g(inp['eps'])} with ℓ = {_g(inp['ell'])}, κ = "
                      f"{_g(inp['kappa'])}, σ = {_g(inp['sigma'])}, p = {_g(inp['p'])}: "
                      f"{lam}η = {_g(th['eta'])}, K = {th['inner_steps']}, B_in = "
                      f"{_g(float(th['batch_in']))}, B_out = {_g(float(th['batch_out']))}; "
                      f"{_g(float(th['sfo_per_step']))} SFO per step, {_g(float(th['steps']))} "
                      f"steps, {_g(float(th['sfo_total']))} SFO in all (per unit Δ = φ(x₀) − "
                      "inf φ).", "",
                      f"Rule: {th['rule']}. These are the orders of the analysis with unit "
                      "constants: far more conservative than the practical suggestion above "
                      "(which a 200k-SFO tuning run checks directly)."]
    return "\n".join(lines) + "\n"


def plot_survival(diag, path: str) -> str | None:
    """Log–log empirical survival ``P(‖noise‖ > u)`` per oracle with Hill's fitted tail."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [t for t in diag.tails.values() if t.status == "ok" and t.norms is not None]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    colors = {"f": "tab:blue", "g": "tab:orange"}
    for t in ok:
        s = survival(t.norms, t.hill.value, t.hill.details["k"])
        lab = "∇F" if t.oracle == "f" else "∇G"
        ax.loglog(s["u"], s["s"], ".", ms=3, color=colors[t.oracle],
                  label=f"{lab} noise norms (n = {len(t.norms):,})")
        if len(s["fit_u"]):
            ax.loglog(s["fit_u"], s["fit_s"], "-", lw=2, color=colors[t.oracle], alpha=0.7,
                      label=f"{lab} Hill fit, slope −{t.hill.value:.2f} (top k = "
                            f"{t.hill.details['k']})")
    if not ok:
        ax.text(0.5, 0.5, "deterministic gradients: no noise", ha="center", va="center",
                transform=ax.transAxes, fontsize=13)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("u  (norm of minibatch gradient − full-data gradient)", fontsize=11)
    ax.set_ylabel("P(‖noise‖ > u)", fontsize=11)
    ax.set_title(f"{diag.problem}, noise {diag.noise}, B = {diag.batch}: noise-norm tail",
                 fontsize=12)
    ax.grid(True, which="both", alpha=0.3)
    if ok:
        ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(diag, out_dir: str) -> dict:
    """Write ``diagnosis.json``, ``diagnosis.md`` and ``survival.png`` into ``out_dir``;
    return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in
             (("json", "diagnosis.json"), ("md", "diagnosis.md"), ("png", "survival.png"))}
    with open(paths["json"], "w") as fh:
        json.dump(diag.to_dict(), fh, indent=2)
    with open(paths["md"], "w") as fh:
        fh.write(markdown(diag))
    plot_survival(diag, paths["png"])
    return paths
