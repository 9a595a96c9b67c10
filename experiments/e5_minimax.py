"""E5: minimax (nonconvex–strongly-concave) at noise scales 0.1 and 1.

`minimax-quadratic` (10×10, κ = 10) and `dro` (χ²-penalized DRO logistic regression on
breast_cancer, simplex-constrained q). Noise of scale σ ∈ {0.1, 1} on every oracle call,
laws Gaussian, Student-t(2.5) and α-stable(1.5). N²SGDA against SGDA, clipped SGDA (c = 1),
normalized SGDA with momentum (NSGDA-M, β = 0.9: a normalized baseline) and SGDmax.
Metric: exact ‖∇Φ(x)‖ (Danskin).
"""
from __future__ import annotations

from e1_synthetic import problem_cell
from framework import Method, noise_section

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
    tau = tuple({"tau": float(f"{v:.3g}")} for v in (c["tau"] / 3, c["tau"]))
    nested = dict(inner_steps=5, batch_in=8, batch_out=32)
    return [Method("N²SGDA", "n2sgda", c["n2sgda"], tau, dict(nested), normalized=True),
            Method("SGDmax", "sgdmax", c["sgda"], tau, dict(nested)),
            Method("SGDA", "sgda", c["sgda"], tau, dict(batch=32)),
            Method("clipped SGDA", "clipped-sgda", c["sgda"], tau, dict(batch=32, clip=1.0)),
            Method("NSGDA-M", "nsgda-m", c["n2sgda"], tau, dict(batch=32, momentum=0.9))]


def cells(quick: bool):
    out = []
    for name, args in PROBLEMS.items():
        kw = dict(budget=100_000 if name == "minimax-quadratic" else 50_000, seeds=5, n_eta=3,
                  extend=3, n_evals=20)
        noises = [f"{law}@{s:g}" for s in SCALES for law in LAWS]
        ms = methods(name)
        if quick:
            if name == "dro":
                continue
            noises, ms = ["stable:1.5@1"], ms[:3]
            kw.update(budget=4000, seeds=2, n_eta=1, extend=0, n_evals=4)
        out += [problem_cell(NAME, name, name, args, n, m, **kw) for n in noises for m in ms]
    return out


def report(cells, probes, figdir, quick) -> str:
    lines = [__doc__.split("\n", 1)[1].strip(), "",
             "N²SGDA and SGDmax: K = 5 ascent steps of batch 8, outer batch 32; SGDA, clipped "
             "SGDA, NSGDA-M: batch 32. Second grid axis for every method: the ascent step τ "
             "(quadratic {0.0167, 0.05}; dro {0.00067, 0.002}).", ""]
    for p in PROBLEMS:
        cs = [c for c in cells if c["problem"] == p]
        if not cs:
            continue
        noises = [n for n in (f"{law}@{s:g}" for s in SCALES for law in LAWS)
                  if any(c["noise"] == n for c in cs)]
        lines += noise_section(cs, noises, figdir, p, "‖∇Φ(x)‖", "N²SGDA; NSGDA-M counts as a baseline")
    return "\n".join(lines)
