"""Follow `htbo diagnose` on every built-in problem, as a user would, in Python form.

For each registered problem (small instances; the problem's documented default noise):
``diagnose(problem)`` then ``htbo.tune(problem, **rec["tune"], budget=B, seeds=S)`` — the
race the printed command line runs (tests/test_diagnostics.py checks that the two agree).
Reported: the candidates, how many searched points had a diverged seed, the winner and its
fresh-seed median final metric against the start. On `quadratic-data` the winner is also
compared with every candidate run at the problem's own defaults (no search) on the same
fresh seeds and budget.

    python benchmarks/diagnose_route.py [--budget 20000] [--seeds 3] [--only quadratic,dro]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import htbo
from htbo.diagnostics import diagnose
from htbo.metrics import evaluate
from htbo.plan import default_noise

SMALL = {"quadratic": {}, "quadratic-data": {}, "l2reg": {}, "ridge-t": {},
         "hypercleaning": dict(dataset="digits"), "minimax-quadratic": {}, "dro": {}}


def start_metric(p, metric):
    m = evaluate(p.replace(noise=None), p.x0, p.y0)
    return float(m[metric]) if metric in m else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only")
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else list(SMALL)
    print(f"# diagnose's route, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"budget {a.budget:,} SFO-eq, {a.seeds} selection + {a.seeds} fresh seeds\n")
    print("| problem | noise | race | points with a diverged seed | winner (best point) | "
          "fresh median / start | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        p = htbo.make_problem(name, **SMALL[name])
        noise = htbo.parse_noise(default_noise(p))
        p = p.replace(noise=noise)
        d = diagnose(p, n_samples=2000, n_boot=50, problem_args=SMALL[name], budget=a.budget,
                     seeds=a.seeds)
        rec = d.recommendation
        t = htbo.tune(p, **rec["tune"], budget=a.budget, seeds=a.seeds)
        bad = sum(1 for row in t.table if row["diverged"])
        w = t.solvers[t.winner]
        s0 = start_metric(p, t.metric)
        print(f"| {name} | {noise if noise is not None else 'none'} | "
              f"{', '.join(rec['solvers'])} | {bad}/{len(t.table)} | {w['best']['label']} | "
              f"{w['fresh']['median']:.4g} / {s0:.4g} = {w['fresh']['median'] / s0:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)
        if name == "quadratic-data":
            from htbo.solvers import make_solver
            for s in rec["solvers"]:
                solver = make_solver(s, problem=p)
                r = htbo.run(p, solver, steps=htbo.steps_for_budget(solver, a.budget,
                                                                    hvp_cost=t.hvp_cost),
                             seeds=list(t.eval_seeds), n_evals=2, on_nonfinite="continue")
                print(f"|  | | {s} at the problem's defaults | | | "
                      f"{np.median(r.final(t.metric)):.4g} / {s0:.4g} | |", flush=True)


if __name__ == "__main__":
    main()
