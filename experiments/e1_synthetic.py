"""E1: every bilevel method on `quadratic` and `quadratic-data` under six noise laws.

Noise is injected on every oracle call (scale 1, per coordinate). `quadratic-data` also has
its own sampling noise, and one more column runs it with Student-t(2.5) *factors* and no
injected noise (heavy tails from the data only).
"""
from __future__ import annotations

import functools

from framework import PENALTY, Cell, Method, Probe, noise_section, tail_index

NAME = "E1"
TITLE = "E1: synthetic bilevel problems, every method, six noise laws"
NOISES = ("gauss", "t:2.5", "t:1.5", "stable:1.8", "stable:1.5", "stable:1.2")
QUAD = dict(dim_x=10, dim_y=20, kappa=10.0)
QINNER = dict(alpha=0.05, tau=0.05, inner_steps=5, batch_in=1, batch_out=8)


def bilevel_methods(inner: dict, d: float, c: dict, which=None, batch: dict | None = None):
    """The bilevel methods with their grid centres ``c`` (η₀ by method label); ``inner``: the
    penalty methods' inner loops; ``d``: their inner step, so that SOBA's ρ and StocBiO's γ
    get {d/3, d}; clipped methods tune the clip level c ∈ {3, 10} at λ₀ = 10."""
    lam = ({"lam": 10.0}, {"lam": 30.0})
    inner_d = (float(f"{d / 3:.3g}"), d)
    b = batch or dict(batch=inner.get("batch_out", 8))
    ms = [
        Method("N²SBA", "n2sba", c["N²SBA"], lam, dict(inner), normalized=True),
        Method("F2BA", "f2ba", c["F2BA"], lam, dict(inner)),
        Method("F2SA", "f2sa", c["F2SA"], lam, dict(inner), lam_growth=3.0),
        Method("clipped F2SA", "clipped-f2sa", c["clipped F2SA"],
               ({"clip": 3.0}, {"clip": 10.0}), dict(inner, lam=10.0), lam_growth=3.0),
        Method("SOBA", "soba", c["SOBA"], tuple({"rho": v} for v in inner_d), dict(b)),
        Method("clipped SOBA", "clipped-soba", c["clipped SOBA"],
               ({"clip": 3.0}, {"clip": 10.0}), dict(b, rho=d)),
        Method("StocBiO", "stocbio", c["StocBiO"], tuple({"neumann_lr": v} for v in inner_d),
               dict(alpha=d, inner_steps=inner.get("inner_steps", 5),
                    batch_in=inner.get("batch_in", 1), batch_out=inner.get("batch_out", 8),
                    batch_hvp=inner.get("batch_out", 8), neumann_terms=10)),
    ]
    return [m for m in ms if which is None or m.label in which]


# grid centres: the step sizes of the earlier benchmarks (docs/testing.md, docs/demo.md) and
# the problems' documented defaults; a best point on the edge extends the grid
QUAD_C = {"N²SBA": 0.1, "F2BA": 1e-3, "F2SA": 3e-4, "clipped F2SA": 0.03, "SOBA": 3e-3,
          "clipped SOBA": 0.03, "StocBiO": 3e-3}
DATA_C = {"N²SBA": 0.1, "F2BA": 1e-3, "F2SA": 1e-3, "clipped F2SA": 0.03, "SOBA": 3e-3,
          "clipped SOBA": 0.03, "StocBiO": 3e-3}


def problem_cell(exp, tag, name, args, noise, m, **kw):
    from htbo.problems import make_problem
    spec = dict(name=name, args=args, noise=noise)
    return Cell(exp, tag, noise, m, spec,
                lambda: make_problem(name, noise=None if noise == "none" else noise, **args),
                **kw)


def cells(quick: bool) -> list[Cell]:
    if quick:
        qm = ("N²SBA", "F2BA", "SOBA")
        kw = dict(budget=4000, seeds=2, n_eta=1, extend=0, n_evals=4)
        return [problem_cell(NAME, "quadratic", "quadratic", QUAD, n, m, **kw)
                for n in ("gauss", "stable:1.5")
                for m in bilevel_methods(QINNER, 0.05, QUAD_C, qm)]
    out = []
    kw = dict(budget=100_000, seeds=5, n_eta=3, extend=3, n_evals=20)
    for n in NOISES:
        for m in bilevel_methods(QINNER, 0.05, QUAD_C):
            out.append(problem_cell(NAME, "quadratic", "quadratic", QUAD, n, m, **kw))
    # quadratic-data: each problem's own defaults (batch 32, inner steps 1/L_32, L_32 the top
    # eigenvalue over random minibatch Hessians): 0.016 with Gaussian factors, 0.002 with
    # t factors (gauss's 0.016 made every method's inner loop diverge there)
    kw = dict(budget=400_000, seeds=5, n_eta=3, extend=3, n_evals=20)
    for n, args in [(n, {}) for n in NOISES] + [("none", dict(factors="t"))]:
        tag = "quadratic-data" + (" (t factors)" if args else "")
        d = _inner_step(args.get("factors", "gauss"))
        dinner = dict(alpha=d, tau=d, inner_steps=5, batch_in=32, batch_out=32)
        for m in bilevel_methods(dinner, d, DATA_C, batch=dict(batch=32)):
            out.append(problem_cell(NAME, tag, "quadratic-data", args, n, m, **kw))
    return out


@functools.lru_cache(maxsize=None)
def _inner_step(factors: str) -> float:
    """The inner step of `quadratic-data`'s documented defaults for these factors."""
    from htbo.problems import make_problem
    return make_problem("quadratic-data", factors=factors).solver_defaults["*"]["alpha"]


def _floor(name: str, args: dict) -> dict:
    """Start ‖∇φ(x0)‖ and the penalty bias ‖∇L_λ*(x*) − ∇φ(x*)‖ at the solution x*: to first
    order the ‖∇φ‖ at which a penalty method with exact inner loops and no noise stops."""
    import jax
    import jax.numpy as jnp
    from htbo.diagnostics import penalty_bias
    from htbo.problems import make_problem
    p = make_problem(name, **args)
    xs = p.x0 - jnp.linalg.solve(jax.jacfwd(p.grad_phi)(p.x0), p.grad_phi(p.x0))
    bias = penalty_bias(p, xs, p.y_star(xs), (10.0, 30.0, 90.0), p.grad_phi(xs))
    return dict(start=float(jnp.linalg.norm(p.grad_phi(p.x0))),
                at_xstar=float(jnp.linalg.norm(p.grad_phi(xs))), bias=bias)


def floor_probes(exp: str, problems) -> list[Probe]:
    return [Probe(exp, f"floor {tag}", dict(name=name, args=args),
                  lambda n=name, a=args: _floor(n, a)) for tag, name, args in problems]


def floor_lines(probes: dict) -> list[str]:
    out = []
    for k, r in sorted(probes.items()):
        if k.startswith("floor "):
            d = r["result"]
            b = ", ".join(f"λ = {e['lam']:g}: {e['bias']:.3g}" for e in d["bias"])
            out.append(f"- {k[6:]}: ‖∇φ(x0)‖ = {d['start']:.3g}; noise-free penalty floor "
                       f"‖∇L_λ*(x*) − ∇φ(x*)‖ at the solution x*: {b}.")
    return out


def _data_tails(args: dict) -> dict:
    from htbo.problems import make_problem
    p = make_problem("quadratic-data", **args)
    return tail_index(p, p.y_star(p.x0))


def probes(quick: bool):
    if quick:
        return []
    return floor_probes(NAME, [("quadratic", "quadratic", QUAD),
                               ("quadratic-data", "quadratic-data", {})]) + \
        [Probe(NAME, f"tails {f} factors", dict(factors=f), lambda f=f: _data_tails(
            dict(factors=f))) for f in ("gauss", "t")]


def report(cells, probes, figdir, quick) -> str:
    lines = [__doc__.split("\n", 1)[1].strip(), "",
             "`quadratic`: 10×20, κ = 10, K = 5, α = τ = 0.05, B_in = 1, B_out = 8 (SOBA, "
             "StocBiO: batch 8); `quadratic-data`: the problem's defaults (1024 samples, "
             "100×100, batch 32, inner steps 1/L_32: 0.016 with Gaussian factors, 0.002 with t "
             "factors, L_32 being the top eigenvalue over random 32-sample Hessians; at 0.016 "
             "every method's inner loop diverged on the t factors). Independent samples for the two "
             "∇ₓG terms (`shared_samples=False`). Metric: exact ‖∇φ(x)‖.", "",
             "Where the penalty methods (N²SBA, F2BA, F2SA and clipped F2SA) can stop at "
             "best (F2SA's λ grows to 3λ₀):", "", *floor_lines(probes), "",
             "Tail index of `quadratic-data`'s own sampling noise (`htbo.diagnostics`, Hill "
             "estimate, k = ⌈√n⌉ / ⌈n/10⌉, per-sample gradients w.r.t. y at (x0, y*(x0))):", "",
             *[f"- {k[6:]}: " + "; ".join(f"{w} level α̂ = {d[w]['sqrt']:.2f} / "
                                          f"{d[w]['tenth']:.2f}" for w in ("g", "f"))
               for k, d in ((k, r["result"]) for k, r in sorted(probes.items()))
               if k.startswith("tails ")], ""]
    probs = sorted({c["problem"] for c in cells})
    for p in probs:
        cs = [c for c in cells if c["problem"] == p]
        noises = [n for n in NOISES + ("none",) if any(c["noise"] == n for c in cs)]
        lines += noise_section(cs, noises, figdir, p, "‖∇φ(x)‖", "N²SBA", among=PENALTY)
    return "\n".join(lines)
