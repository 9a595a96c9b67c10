"""Decentralized method: simulated time per iteration vs agents, and STORM's gain across β.

1. Time per iteration of D-NSVRB in the simulated mode (vmap over agents, one process) on
   `decentralized_quadratic` (dims 5) over a ring, m ∈ {4, 8, 16, 32, 64}; honest timing
   through the runner, compile reported apart.
2. Variance reduction: D-NSVRB with β ∈ {0.03, 0.1, 0.3, 1} (β = 1: no STORM, half the SFO per
   step) under α-stable(1.5) noise, ring of 8, λ = 100, 6,000 SFO per agent, 5 seeds, each β
   its best x-step of {0.01, 0.03, 0.1}; median final ‖∇φ(x̄)‖.

    python benchmarks/bench_decentralized.py [--quick]
"""
from __future__ import annotations

import argparse

import numpy as np

import htbo
from htbo.decentralized import decentralized_quadratic, make_dec_solver, run_network
from htbo.decentralized.topology import ring


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    agents = (4, 8) if a.quick else (4, 8, 16, 32, 64)
    steps = 100 if a.quick else 2000
    print("| agents | time / iteration | per agent | compile (s) |\n|---|---|---|---|")
    for m in agents:
        p = decentralized_quadratic(m=m)
        res = run_network(p, make_dec_solver("dnsvrb"), ring(m), steps=steps, seeds=[0],
                          n_evals=1)
        t = res.run_s / steps
        print(f"| {m} | {t * 1e6:.0f} µs | {t * 1e6 / m:.1f} µs | {res.compile_s:.2f} |",
              flush=True)
    betas = (0.1, 1.0) if a.quick else (0.03, 0.1, 0.3, 1.0)
    budget = 600 if a.quick else 6000
    p = decentralized_quadratic(m=8).replace(noise=htbo.parse_noise("stable:1.5"))
    print("\n| β | best η_x | median final ‖∇φ(x̄)‖ [20%, 80%] |\n|---|---|---|")
    for beta in betas:
        best = None
        for eta in (0.01, 0.03, 0.1):
            s = make_dec_solver("dnsvrb", eta_x=eta, eta_y=0.05, eta_z=0.05, lam=100.0,
                                beta=beta)
            res = run_network(p, s, ring(8), steps=budget // s.sfo_per_step, seeds=range(5),
                              n_evals=1, on_nonfinite="stop")
            fin = res.final("grad_norm")
            if best is None or np.median(fin) < np.median(best[1]):
                best = (eta, fin)
        q20, q80 = np.quantile(best[1], [0.2, 0.8])
        print(f"| {beta:g} | {best[0]:g} | {np.median(best[1]):.3f} [{q20:.3f}, {q80:.3f}] |",
              flush=True)


if __name__ == "__main__":
    main()
