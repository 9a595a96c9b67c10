"""E5: minimax (nonconvex–strongly-concave) at noise scales 0.1 and 1.

`minimax-quadratic` (10×10, κ = 10) and `dro` (χ²-penalized DRO logistic regression on
breast_cancer, simplex-constrained q). Noise of scale σ ∈ {0.1, 1} on every oracle call,
laws Gaussian, Student-t(2.5) and α-stable(1.5). The paper's N²SGDA against SGDA, clipped
SGDA, normalized SGDA with momentum (NSGDA-M: a normalized baseline) and SGDmax, each tuned
on its outer step, the ascent step τ and its own numeric options (clip level, momentum).
Metric: exact ‖∇Φ(x)‖ (Danskin).
"""
from __future__ import annotations

from protocol import Cell, Method
from report import noise_section, verdicts

NAME = "E5"
TITLE = "E5: minimax"
LAWS = ("gauss", "t:2.5", "stable:1.5")
SCALES = (0.1, 1.0)
PROBLEMS = {"minimax-quadratic": dict(dim_x=10, dim_y=10, kappa=10.0), "dro": {}}
# centres: docs/minimax.md's grids; τ: its ascent steps (0.05 quadratic, 0.002 dro)
CENTRES = {"minimax-quadratic": dict(n2sgda=0.1, sgda=0.03, tau=0.05),
           "dro": dict(n2sgda=0.05, sgda=0.03, tau=0.002)}


def methods(problem: str):
    c = CENTRES[problem]
    tau = [float(f"{v:.3g}") for v in (c["tau"] / 3, c["tau"])]
    nested = dict(inner_steps=5, batch_in=8, batch_out=32)
    return [Method("N²SGDA", "n2sgda", c["n2sgda"], {"tau": tau}, dict(nested), arm="paper",
                   family="minimax"),
            Method("SGDmax", "sgdmax", c["sgda"], {"tau": tau}, dict(nested), family="minimax"),
            Method("SGDA", "sgda", c["sgda"], {"tau": tau}, dict(batch=32), family="minimax"),
            Method("clipped SGDA", "clipped-sgda", c["sgda"], {"tau": tau, "clip": [1.0, 3.0]},
                   dict(batch=32), family="minimax"),
            Method("NSGDA-M", "nsgda-m", c["n2sgda"], {"tau": tau, "momentum": [0.5, 0.9]},
                   dict(batch=32), family="minimax")]


def cells(quick: bool):
    from e1_synthetic import noise_class
    out = []
    for name, args in PROBLEMS.items():
        budget = 100_000 if name == "minimax-quadratic" else 50_000
        kw = dict(seeds=5, eval_seeds=10, n_evals=20)
        noises = [f"{law}@{s:g}" for s in SCALES for law in LAWS]
        ms = methods(name)
        if quick:
            if name == "dro":
                continue
            noises, ms, budget = ["stable:1.5@1"], ms[2:3], 3000
            kw = dict(seeds=2, eval_seeds=2, n_evals=3, n_eta=1, max_rounds=0)
        out += [Cell(NAME, name, n, m, dict(problem=name, args=args, noise=n), budget=budget,
                     noise_class=noise_class(n), **kw) for n in noises for m in ms]
    return out


def report(cells, figdir, quick, probes=None) -> str:
    lines = [__doc__.split("\n", 1)[1].strip(), "",
             "N²SGDA and SGDmax: K = 5 ascent steps of batch 8, outer batch 32; SGDA, clipped "
             "SGDA, NSGDA-M: batch 32.", ""]
    for p in PROBLEMS:
        cs = [c for c in cells if c["problem"] == p]
        if not cs:
            continue
        noises = [n for n in (f"{law}@{s:g}" for s in SCALES for law in LAWS)
                  if any(c["noise"] == n for c in cs)]
        v = ["Verdicts (N²SGDA against the best other method; NSGDA-M counts as a "
             "baseline):", "", *verdicts(cs, lambda c: f"{c['problem']}, {c['noise']}"), ""]
        lines += noise_section(cs, noises, figdir, p, "‖∇Φ(x)‖", v)
    return "\n".join(lines)
