"""A 4-solver race against the N²SBA grid alone: wall time, compile time apart.

The quadratic of the experiments (10×20, κ = 10) under α-stable(1.5) noise, 100k
SFO-equivalents per point (one HVP = one SFO), 10 selection seeds (and 10 fresh ones).
In one process, each search after clearing JAX's and htbo's compilation caches:

1. ``race``: ``htbo.tune(problem, ["n2sba", "clipped-soba", "soba", "f2ba"], ...)`` with its
   defaults: each solver's default grid (18 points), edges extended (≤ 3 rounds),
   successive halving, each solver's best rerun on 10 fresh seeds;
2. ``n2sba``: N²SBA's default grid alone with the same defaults (halving: 18 points);
3. ``n2sba, full grid``: N²SBA's grid alone, every point the full budget, no extension and
   no fresh seeds (the search before halving and extension existed).

    python benchmarks/bench_race.py [--budget 100000] [--seeds 10] [--dims 10x20]
"""
from __future__ import annotations

import argparse
import platform
import time

import jax

import htbo
from htbo.driver import evaluator, programs
from htbo.problems import make_problem

RACE = ["n2sba", "clipped-soba", "soba", "f2ba"]


def clear():
    jax.clear_caches()
    programs.cache_clear()
    evaluator.cache_clear()
    from htbo.search import engine
    engine._COMPILED.clear()
    engine._STEP_S.clear()


def timed(problem, solvers, **kw):
    clear()
    t0 = time.perf_counter()
    res = htbo.tune(problem, solvers, None, **kw)
    return time.perf_counter() - t0, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--dims", default="10x20", help="dim_x x dim_y of the quadratic")
    a = ap.parse_args()
    dx, dy = (int(v) for v in a.dims.split("x"))
    problem = make_problem("quadratic", noise="stable:1.5", dim_x=dx, dim_y=dy, kappa=10.0)
    cpu = platform.processor() or platform.machine()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform} ({cpu}); quadratic {a.dims}, "
          f"{a.budget:,} SFO-eq per point, {a.seeds} seeds; {time.strftime('%Y-%m-%d')}\n",
          flush=True)
    kw = dict(budget=a.budget, seeds=a.seeds, n_evals=10)
    runs = [("race of 4 (defaults)", RACE, {}),
            ("n2sba grid alone (defaults)", "n2sba", {}),
            ("n2sba grid alone, full grid (no halving, extension or fresh seeds)", "n2sba",
             dict(halving=False, extend=False, eval_seeds=0))]
    out = []
    for name, solvers, extra in runs:
        wall, res = timed(problem, solvers, **kw, **extra)
        out.append((name, wall, res))
        print(f"{name}: {wall:.1f} s", flush=True)
    base = out[1][2]
    full = out[2][2]
    print("\n| search | points | wall (s) | compile (s) | run (s) | SFO-eq spent | wall / run "
          "vs n2sba alone | wall / run vs n2sba full grid |\n|---|---|---|---|---|---|---|---|")
    for name, wall, res in out:
        print(f"| {name} | {len(res.table)} | {wall:.1f} | {res.compile_s:.1f} | "
              f"{res.run_s:.1f} | {res.spent['sfo_eq'] + res.spent['eval_sfo_eq']:,.0f} | "
              f"{wall / out[1][1]:.2f}× / {res.run_s / base.run_s:.2f}× | "
              f"{wall / out[2][1]:.2f}× / {res.run_s / full.run_s:.2f}× |")
    race = out[0][2]
    print("\nrace result (median final ‖∇φ‖):")
    print(race.format_race())
    for e in race.edges:
        print(f"edge: {e['solver']} {e['axis']} {e['side']} at {e['value']}: {e['reason']}")


if __name__ == "__main__":
    main()
