"""Bias table of htbo's tail-index estimators on draws of known laws (docs/diagnostics.md).

For each law, ``--reps`` independent sets of ``--n`` draws (scipy's ``levy_stable``, NumPy's
Student-t and Gaussian: samplers independent of htbo's) of a ``d``-dimensional vector with
i.i.d. coordinates; on each set: the block-sum estimator on the pooled coordinates, on
randomly signed norms and on raw norms, and Hill on the norms (k = ⌈√n⌉). Printed per law
and estimator: mean α̂, bias, standard deviation, the fraction of sets with |α̂ − α| ≤ 0.15,
and the coverage of the 95% bootstrap interval. "α" is the stable index: ν for t(ν < 2),
2 for t(3) and the Gaussian (the block-sum target); Hill's own target is the tail exponent,
ν for Student-t and ∞ for the Gaussian, and its rows are scored against that.

A second table compares Hill's fixed rule k = ⌈√n⌉ with a stable-region rule (the largest k
of a log grid whose estimate stays within 1.5 standard errors α̂/√k_j of the estimate at
every smaller grid point k_j), without bootstrap.

    python benchmarks/tail_estimators.py               # d = 1 and d = 20, 10⁴ draws, 50 sets
    python benchmarks/tail_estimators.py --reps 20 --dims 1
    python benchmarks/tail_estimators.py --only-hill-rules
    python benchmarks/tail_estimators.py --k2-sweep     # block sums with K2 = 8 … 64 blocks
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from htbo.diagnostics.tail import (block_sum_alpha, block_sum_estimate, hill_alpha,
                                   hill_estimate, hill_k, symmetrize)

LAWS = [("stable", 1.2), ("stable", 1.5), ("stable", 1.8), ("t", 1.5), ("t", 3.0),
        ("gauss", None)]


def target(law, estimator: str) -> float:
    """Block sums target the stable index min(tail, 2); Hill the tail exponent itself."""
    kind, p = law
    if estimator.startswith("Hill"):
        return math.inf if kind == "gauss" else p
    return p if kind == "stable" or (kind == "t" and p < 2) else 2.0


def draw(law, shape, rng):
    kind, p = law
    if kind == "stable":
        return stats.levy_stable.rvs(p, 0.0, size=shape, random_state=rng)
    if kind == "t":
        return rng.standard_t(p, shape)
    return rng.standard_normal(shape)


def name(law) -> str:
    kind, p = law
    return "Gaussian" if kind == "gauss" else (
        f"α-stable {p:g}" if kind == "stable" else f"Student-t ν={p:g}")


def stable_region_hill(z, z_tol: float = 1.5) -> float:
    """Hill at the largest k of a log grid consistent with every smaller grid k."""
    n = len(z)
    ks = np.unique(np.geomspace(max(10, n // 1000), n // 5, 25).astype(int))
    a = np.array([hill_alpha(z, k) for k in ks])
    best = 0
    for j in range(len(ks)):
        if np.all(np.abs(a[: j + 1] - a[j]) <= z_tol * a[j] / np.sqrt(ks[: j + 1])):
            best = j
    return float(a[best])


def hill_rules(args, rng):
    print(f"\nHill's k rule, n = {args.n}, {args.reps} sets: mean ± sd (target = tail exponent)"
          "\n\n| law | d | k = ⌈√n⌉ | stable region |\n|---|---|---|---|")
    for d in [int(v) for v in args.dims.split(",")]:
        for law in LAWS:
            fixed, region = [], []
            for _ in range(args.reps):
                nrm = np.linalg.norm(draw(law, (args.n, d), rng), axis=1)
                fixed.append(hill_alpha(nrm))
                region.append(stable_region_hill(nrm))
            print(f"| {name(law)} | {d} | {np.mean(fixed):.2f} ± {np.std(fixed):.2f} | "
                  f"{np.mean(region):.2f} ± {np.std(region):.2f} |")


def k2_sweep(args, rng):
    print(f"\nblock sums (d = 1, n = {args.n}, {args.reps} sets) with K2 blocks of K1 = n/K2: "
          "mean bias ± sd\n\n| law | K2 = 8 | 16 | 32 | 64 |\n|---|---|---|---|---|")
    for law in [("stable", 1.8), ("t", 1.5)]:
        a = target(law, "block-sum")
        cells = []
        for k2 in (8, 16, 32, 64):
            v = np.array([block_sum_alpha(draw(law, args.n, rng), k1=args.n // k2, rng=rng)
                          for _ in range(args.reps)])
            cells.append(f"{np.mean(v) - a:+.3f} ± {np.std(v):.3f}")
        print(f"| {name(law)} | " + " | ".join(cells) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--dims", default="1,20")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-hill-rules", action="store_true")
    ap.add_argument("--k2-sweep", action="store_true", help="only the K2 sweep")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    if args.k2_sweep:
        k2_sweep(args, rng)
        return
    if args.only_hill_rules:
        hill_rules(args, rng)
        print(f"\n({time.perf_counter() - t0:.0f} s)")
        return
    for d in [int(v) for v in args.dims.split(",")]:
        print(f"\nd = {d}, n = {args.n} draws, {args.reps} sets, 95% bootstrap "
              f"({args.boot} resamples); Hill k = {hill_k(args.n)}\n")
        print("| law | estimator | target | mean α̂ | bias | sd | |err| ≤ 0.15 | CI coverage |")
        print("|---|---|---|---|---|---|---|---|")
        for law in LAWS:
            res = {}
            for _ in range(args.reps):
                x = draw(law, (args.n, d), rng)
                nrm = np.linalg.norm(x, axis=1)
                ests = {"block-sum, coordinates": block_sum_estimate(x, n_boot=args.boot, rng=rng),
                        "Hill, norms": hill_estimate(nrm, n_boot=args.boot, rng=rng)}
                if d > 1:
                    ests["block-sum, signed norms"] = block_sum_estimate(
                        symmetrize(nrm, rng), n_boot=args.boot, rng=rng)
                    ests["block-sum, raw norms"] = block_sum_alpha(nrm, rng=rng)
                for k, e in ests.items():
                    res.setdefault(k, []).append(e)
            for k, es in res.items():
                a = target(law, k)
                v = np.array([getattr(e, "value", e) for e in es])
                if math.isinf(a):  # no finite target (Hill on a Gaussian)
                    bias = within = cov = "—"
                else:
                    bias = f"{np.mean(v) - a:+.3f}"
                    within = f"{np.mean(np.abs(v - a) <= 0.15):.0%}"
                    cov = ("—" if not hasattr(es[0], "lo") else
                           f"{np.mean([e.lo <= a <= e.hi for e in es]):.0%}")
                print(f"| {name(law)} | {k} | {a:g} | {np.mean(v):.3f} | {bias} | "
                      f"{np.std(v):.3f} | {within} | {cov} |")
    hill_rules(args, rng)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
