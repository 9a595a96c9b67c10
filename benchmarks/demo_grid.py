"""Regenerate docs/demo.md's table: the grids the `htbo demo` presets were picked from.

The demo problem (quadratic 10×20, κ = 10, α-stable(1.5) noise of scale 1, independent
samples), 100k SFO per point, 5 seeds, K = 5, α = τ = 0.05, B_in = 1, B_out = 8; every grid
runs through ``htbo.tune`` (one compiled program per solver).

    python benchmarks/demo_grid.py [--budget 100000] [--seeds 5]
"""
from __future__ import annotations

import argparse
import time

import jax

import htbo
from htbo.cli.commands import DEMO_NOISE, DEMO_PROBLEM
from htbo.problems import make_problem
from htbo.schedules import inverse_sqrt

INNER = dict(alpha=0.05, tau=0.05, inner_steps=5, batch_in=1, batch_out=8)
LAM_T = dict(lam=10.0, lam_rate=0.01, lam_max=30.0)
GRIDS = [
    ("N²SBA, η_t = η₀/√(1+t/200)", "n2sba", INNER,
     {"eta": [inverse_sqrt(v, 200) for v in (0.03, 0.1, 0.3, 1.0)], "lam": [10.0, 30.0]}),
    ("F2BA", "f2ba", INNER, {"eta": [0.003, 0.01, 0.03], "lam": [10.0, 30.0]}),
    ("F2SA, λ_t = min(10 + 0.01t, 30)", "f2sa", dict(INNER, **LAM_T),
     {"eta": [0.0003, 0.001, 0.003, 0.01, 0.03]}),
    ("clipped F2SA, same λ_t", "clipped-f2sa", dict(INNER, **LAM_T),
     {"eta": [0.01, 0.03, 0.1], "clip": [3.0, 10.0]}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    p = make_problem("quadratic", noise=DEMO_NOISE, **DEMO_PROBLEM)
    print(f"{time.strftime('%Y-%m-%d')}, JAX {jax.__version__}; {a.budget:,} SFO, "
          f"{a.seeds} seeds\n")
    print("| solver | point | median final ‖∇φ‖ | 20% | 80% |\n|---|---|---|---|---|")
    for title, name, hp, grid in GRIDS:
        t0 = time.perf_counter()
        res = htbo.tune(p, name, grid, budget=a.budget, seeds=a.seeds, hp=hp, n_evals=1)
        for t in sorted(res.table, key=lambda t: t["point"]):
            star = "**" if t is res.best else ""
            pt = ", ".join(f"{k}={v!r}" if not isinstance(v, float) else f"{k}={v:g}"
                           for k, v in t["params"].items())
            print(f"| {title} | {star}{pt}{star} | {star}{t['median']:.3g}{star} | "
                  f"{t['q20']:.3g} | {t['q80']:.3g} |")
        for n in res.notes:
            print(f"| {title} | note: {n} | | | |")
        print(f"<!-- {name}: {time.perf_counter() - t0:.1f} s, {res.groups} compiled group -->")


if __name__ == "__main__":
    main()
