"""Are the defaults stable? Every built-in problem × every solver of its kind, with the
solver's defaults (plus the problem's recommended ones), without injected noise and with the
problem's documented noise; a short run per pair.

    python benchmarks/defaults_census.py [--budget 20000] [--seeds 2] [--problems a,b]

Prints one line per (problem, noise, solver): start and final metric and any divergence.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import htbo
from htbo.plan import default_noise
from htbo.problems import PROBLEMS, make_problem
from htbo.solvers import SOLVERS, make_solver

# problem -> keyword arguments for a quick census (data sets small enough for a laptop)
ARGS = {"hypercleaning": dict(dataset="digits")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--problems", default=",".join(sorted(PROBLEMS)))
    a = ap.parse_args()
    bad = 0
    for name in a.problems.split(","):
        base = make_problem(name, **ARGS.get(name, {}))
        noises = {"none", default_noise(base)}
        for noise in sorted(noises):
            p = make_problem(name, noise=None if noise == "none" else noise, **ARGS.get(name, {}))
            for sn in sorted(SOLVERS):
                s = make_solver(sn, problem=p)
                if (s.kind == "minimax") != (p.kind == "minimax"):
                    continue
                metric = p.metric
                t0 = time.perf_counter()
                r = htbo.run(p, s, steps=htbo.steps_for_budget(s, a.budget),
                             seeds=range(a.seeds), n_evals=1, on_nonfinite="continue")
                start = np.median([row[metric] for row in r.rows if row["step"] == 0])
                fin = np.median(r.final(metric))
                div = [(d["seed"], d["step"]) for d in r.diverged]
                grew = not np.isfinite(fin) or fin > 10 * start
                bad += bool(div) or grew
                print(f"{name:18s} {noise:11s} {sn:13s} {metric} start {start:9.3g} final "
                      f"{fin:9.3g}{'  DIVERGED ' + str(div) if div else ''}"
                      f"{'  GREW' if grew and not div else ''}  ({time.perf_counter() - t0:.1f} s)",
                      flush=True)
    print(f"\n{bad} unstable pair(s)")


if __name__ == "__main__":
    main()
