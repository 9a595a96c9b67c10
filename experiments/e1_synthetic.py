"""E1: synthetic bilevel problems, every method, five noise laws.

Noise is injected on every oracle call (scale 1, per coordinate): Gaussian, Student-t(2.5),
Student-t(1.5), α-stable(1.5) and α-stable(1.2). `quadratic-data` also has its own sampling
noise, and one more column runs it with Student-t(2.5) *factors* and no injected noise
(heavy-looking data; the two ∇ₓG terms on shared samples there, independent samples where
noise is injected).
"""
from __future__ import annotations

import functools

from methods import OURS, bilevel
from protocol import Cell
from report import PENALTY, noise_section, verdicts

NAME = "E1"
TITLE = "E1: synthetic bilevel problems, every method"
NOISES = ("gauss", "t:2.5", "t:1.5", "stable:1.5", "stable:1.2")
QUAD = dict(dim_x=10, dim_y=20, kappa=10.0)
# outer-step centres: the step sizes of the earlier benchmarks (docs/demo.md) and the
# problems' documented defaults; normalized steps move x by η, so they share one centre
QUAD_C = {"N²SBA": 0.1, "F2BA": 1e-3, "F2SA": 3e-4, "clipped F2SA": 0.03, "SOBA": 3e-3,
          "clipped SOBA": 0.03, "StocBiO": 3e-3, "nSOBA": 0.1, "nSVRB": 0.1}
DATA_C = dict(QUAD_C, F2SA=1e-3)


def noise_class(noise: str) -> str:
    from htbo.diagnostics.evidence import noise_class_of
    from htbo.noise import parse_noise
    n = parse_noise(None if noise == "none" else noise)
    return "light" if n is None else noise_class_of(n.tail_index)


def quad_steps(budget: int) -> int:
    """A K = 5, B_in = 1, B_out = 8 penalty run's steps (F2SA's λ_t spans the run)."""
    return budget // (3 * 5 * 1 + 3 * 8)


@functools.lru_cache(maxsize=None)
def data_inner(factors: str) -> float:
    """`quadratic-data`'s documented inner step for these factors (1/L_32)."""
    from htbo.problems import make_problem
    return make_problem("quadratic-data", factors=factors).solver_defaults["*"]["alpha"]


def cell(exp, tag, problem, args, noise, m, shared, **kw):
    spec = dict(problem=problem, args=args, noise=noise)
    kw.setdefault("noise_class", "light" if noise == "none" else noise_class(noise))
    return Cell(exp, tag, noise, m, spec, **kw)


def quadratic_cells(exp, noises, budget, seeds, eval_seeds, which=None, **kw):
    ms = bilevel(0.05, QUAD_C, batch_in=1, batch_out=8, batch=8, shared=False,
                 steps=quad_steps(budget), which=which)
    return [cell(exp, "quadratic", "quadratic", QUAD, n, m, False, budget=budget, seeds=seeds,
                 eval_seeds=eval_seeds, **kw) for n in noises for m in ms]


def cells(quick: bool):
    if quick:
        return quadratic_cells(NAME, ("stable:1.5",), 3000, 2, 2, ("nSOBA",),
                               n_eta=2, max_rounds=1, n_evals=3)
    out = quadratic_cells(NAME, NOISES, 100_000, 5, 10)
    budget = 400_000
    for n, args in [(n, {}) for n in NOISES] + [("none", dict(factors="t"))]:
        tag = "quadratic-data" + (" (t factors)" if args else "")
        d = data_inner(args.get("factors", "gauss"))
        ms = bilevel(d, DATA_C, batch_in=32, batch_out=32, batch=32, shared=bool(args),
                     steps=budget // (3 * 5 * 32 + 3 * 32))
        out += [cell(NAME, tag, "quadratic-data", args, n, m, bool(args), budget=budget,
                     seeds=5, eval_seeds=10, noise_class="light" if args else None)
                for m in ms]
    return [c if c.noise_class else _with_class(c) for c in out]


def _with_class(c):
    c.noise_class = noise_class(c.noise)
    return c


def report(cells, figdir, quick, probes=None) -> str:
    lines = [__doc__.split("\n", 1)[1].strip(), "",
             "`quadratic`: 10×20, κ = 10; penalty methods B_in = 1, B_out = 8, α = τ = 0.05 "
             "(and the structural options K ∈ {5, 10}, inner normalization on/off); SOBA, "
             "nSOBA, nSVRB batch 8. `quadratic-data`: the problem's defaults (1024 samples, "
             "100×100, batch 32, inner steps 1/L_32, L_32 the sharpest 32-sample lower "
             "Hessian).", ""]
    for p in sorted({c["problem"] for c in cells}):
        cs = [c for c in cells if c["problem"] == p]
        noises = [n for n in NOISES + ("none",) if any(c["noise"] == n for c in cs)]
        group = lambda c: f"{c['problem']}, {c['noise']}"  # noqa: E731
        v = ["Verdicts (N²SBA against the best other method):", "",
             *verdicts(cs, group), "",
             "N²SBA against the penalty methods only (the same estimator, only the step "
             "differs):", "", *verdicts(cs, group, among=PENALTY), "",
             "Our normalized HVP methods (nSOBA, nSVRB) against clipped SOBA:", "",
             *verdicts(cs, group, arms=("ours",), among=("clipped SOBA",),
                       exp_tag=f"{NAME} (ours vs clipped SOBA)"), "",
             "… and against N²SBA:", "",
             *verdicts(cs, group, arms=("ours",), among=("N²SBA",),
                       exp_tag=f"{NAME} (ours vs N²SBA)"), ""]
        lines += noise_section(cs, noises, figdir, p, "‖∇φ(x)‖", v)
    return "\n".join(lines)


__all__ = ["cells", "report", "NAME", "TITLE", "OURS"]
