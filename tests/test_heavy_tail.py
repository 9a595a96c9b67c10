"""Where normalization wins: N²SBA vs the unnormalized penalty methods under α-stable noise.

Setting (ALGORITHMS.md §4's prototype, smaller budget): quadratic 10×20, κ = 10, i.i.d.
per-coordinate symmetric α-stable(1.5) noise of scale 1 added to every oracle call,
independent samples for the two ∇_x G terms, 60,000 SFO per method, seeds 0–4; every method
uses K = 5, α = τ = 0.05, B_in = 1, B_out = 8, λ = 10 (F2SA grows λ from 10 to 30) and its
best outer step size from a small grid. The Gaussian case is measured in
benchmarks/heavy_tail_comparison.py and reported in docs/testing.md; it is a tie, not a win.
"""
import numpy as np

from htbo.problems import quadratic, with_noise
from htbo.schedules import inverse_sqrt
from htbo.solvers import f2ba, f2sa, n2sba
from htbo.tuning import best_of_grid

COMMON = dict(lam=10.0, alpha=0.05, tau=0.05, inner_steps=5, batch_in=1, batch_out=8)
BUDGET, SEEDS = 60_000, range(5)


def test_n2sba_beats_f2sa_and_f2ba_under_stable_noise():
    p = with_noise(quadratic(dim_x=10, dim_y=20, kappa=10.0), "stable:1.5")
    start = float(np.linalg.norm(p.grad_phi(p.x0)))
    res = {}
    res["n2sba"] = best_of_grid(p, lambda eta: n2sba(eta=inverse_sqrt(eta, 200), **COMMON),
                                [dict(eta=e) for e in (0.03, 0.1, 0.3, 1.0)], BUDGET, SEEDS)
    res["f2ba"] = best_of_grid(p, lambda eta: f2ba(eta=eta, **COMMON),
                               [dict(eta=e) for e in (0.0001, 0.0003, 0.001, 0.003)], BUDGET, SEEDS)
    res["f2sa"] = best_of_grid(p, lambda eta: f2sa(eta=eta, lam_rate=0.01, lam_max=30.0,
                                                   **COMMON),
                               [dict(eta=e) for e in (0.00003, 0.0001, 0.0003, 0.001)], BUDGET, SEEDS)
    med = {k: float(np.median(v[1])) for k, v in res.items()}
    # fairness: each baseline's best step size lies inside its grid, not at an edge
    for k in ("f2ba", "f2sa"):
        etas = [d["eta"] for d, _ in res[k][2]]
        assert etas[0] < res[k][0]["eta"] < etas[-1], (k, res[k][2])
    for k, v in res.items():
        print(k, [(d["eta"], round(m, 3)) for d, m in v[2]])
    assert med["n2sba"] < start / 3, (med, start)
    assert med["n2sba"] < 0.7 * med["f2ba"], med
    assert med["n2sba"] < 0.7 * med["f2sa"], med
