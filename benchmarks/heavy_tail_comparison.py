"""Where normalization wins and where it does not: N²SBA vs F2SA, F2BA and clipped F2SA on the
10×20 quadratic (κ = 10) under α-stable noise with α ∈ {1.3, 1.5, 2} (α = 2 is Gaussian).

Every method: K = 5, α = τ = 0.05, B_in = 1, B_out = 8, λ = 10 (F2SA: λ_t = min(10 + 0.01t, 30)),
independent samples for the two ∇_x G terms, the same SFO budget, its best outer step size
from a small grid (median final ‖∇φ‖ over the seeds). Prints a markdown table.

    python benchmarks/heavy_tail_comparison.py [--budget 100000] [--seeds 10] [--quick]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import htbo
from htbo.problems import quadratic, with_noise
from htbo.schedules import inverse_sqrt
from htbo.solvers import f2ba, f2sa, n2sba

COMMON = dict(lam=10.0, alpha=0.05, tau=0.05, inner_steps=5, batch_in=1, batch_out=8)
METHODS = {
    "N²SBA": (lambda eta: n2sba(eta=inverse_sqrt(eta, 200), **COMMON), (0.03, 0.1, 0.3, 1.0)),
    "F2BA": (lambda eta: f2ba(eta=eta, **COMMON), (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)),
    "F2SA": (lambda eta: f2sa(eta=eta, lam_rate=0.01, lam_max=30.0, **COMMON),
             (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)),
    "clipped F2SA (c=3)": (lambda eta: f2sa(eta=eta, lam_rate=0.01, lam_max=30.0, clip=3.0,
                                            **COMMON), (0.01, 0.03, 0.1)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--alphas", default="1.3,1.5,2")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script")
    a = ap.parse_args()
    if a.quick:
        a.budget, a.seeds, a.alphas = 2000, 2, "1.5"
    alphas = [float(x) for x in a.alphas.split(",")]
    print(f"budget {a.budget:,} SFO, {a.seeds} seeds; cell = median final ‖∇φ‖ "
          "[20%, 80%] (best η)\n")
    print("| α | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    t0 = time.perf_counter()
    for alpha in alphas:
        p = with_noise(quadratic(dim_x=10, dim_y=20, kappa=10.0), f"stable:{alpha:g}")
        cells = []
        for make, etas in METHODS.values():
            best = htbo.tune(p, make, {"eta": etas}, budget=a.budget, seeds=a.seeds,
                             n_evals=1).best
            finals, eta = np.array(best["finals"]), best["params"]["eta"]
            q20, q80 = np.quantile(finals, [0.2, 0.8])
            cells.append(f"{np.median(finals):.3g} [{q20:.3g}, {q80:.3g}] (η={eta:g})")
        print(f"| {alpha:g} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nstart ‖∇φ‖ = {float(np.linalg.norm(p.grad_phi(p.x0))):.3g}; "
          f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
