"""Minimax benchmark: per-iteration time and SFO-to-target of N²SGDA vs SGDA.

Part 1 (time): seconds per compiled step of N²SGDA (K = 5 ascent steps, B_in = 8,
B_out = 32: 72 SFO/step) and SGDA (batch 32: 32 SFO/step) on ``minimax-quadratic``
(dim_x = dim_y = 100) and on ``dro`` (breast_cancer, 398 training samples), through the
htbo runner (jit + fori_loop chunk, block_until_ready inside the timed region, compile time
apart), one seed, median of repeats.

Part 2 (SFO to ‖∇Φ‖ ≤ target): injected Gaussian, Student-t(2.5) and α-stable(1.5) noise of
scale ``sigma`` on every oracle call; for each method and noise, every step size of a small
grid is run on ``seeds`` seeds with an SFO cap; a seed's cost is the SFO count of the first
evaluation with ‖∇Φ‖ ≤ target (inf if never), and each method reports its best grid point
(lowest median cost). ‖∇Φ‖ is exact on both problems (closed form / exact projection).

    python benchmarks/bench_minimax.py            # full tables (a few minutes on 2 cores)
    python benchmarks/bench_minimax.py --quick    # tiny sizes, seconds
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

import htbo
from htbo.problems import dro, minimax_quadratic, with_noise
from htbo.schedules import inverse_sqrt
from htbo.solvers import n2sgda, sgda

NOISES = ("gauss", "t:2.5", "stable:1.5")


def time_per_iter(problem, solver, steps: int, repeats: int):
    """Median seconds per step (one seed) and the median compile time."""
    t, c = [], []
    for _ in range(repeats):
        res = htbo.run(problem, solver, steps=steps, seeds=[0], n_evals=1)
        t.append(res.run_s / steps)
        c.append(res.compile_s)
    return statistics.median(t), statistics.median(c)


def sfo_to_target(problem, solver, budget: int, seeds, target: float, n_evals: int):
    """Per-seed SFO of the first evaluation with grad_norm <= target (inf if none)."""
    steps = max(1, budget // solver.sfo_per_step)
    res = htbo.run(problem, solver, steps=steps, seeds=seeds, n_evals=n_evals,
                   on_nonfinite="stop")
    out = []
    for s in seeds:
        hit = [r["sfo"] for r in res.rows
               if r["seed"] == s and np.isfinite(r["grad_norm"]) and r["grad_norm"] <= target]
        out.append(min(hit) if hit else np.inf)
    return np.asarray(out, float)


def configs(prob: str):
    """(problem constructor kwargs, {method: (make(eta), eta grid)}) per problem."""
    if prob == "minimax-quadratic":
        nested = dict(tau=0.05, inner_steps=5, batch_in=8, batch_out=32)
        return dict(dim_x=10, dim_y=10, kappa=10.0), {
            "n2sgda": (lambda e: n2sgda(eta=inverse_sqrt(e, 100), **nested), (0.03, 0.1, 0.3)),
            "sgda": (lambda e: sgda(eta=e, tau=0.05, batch=32), (0.003, 0.01, 0.03, 0.1)),
        }
    nested = dict(tau=0.002, inner_steps=5, batch_in=8, batch_out=32)
    return dict(), {
        "n2sgda": (lambda e: n2sgda(eta=inverse_sqrt(e, 200), **nested), (0.02, 0.05, 0.1)),
        "sgda": (lambda e: sgda(eta=e, tau=0.002, batch=32), (0.01, 0.03, 0.1, 0.3)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.05)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--n-evals", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-time", action="store_true")
    ap.add_argument("--problems", default="minimax-quadratic,dro")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.repeats, a.budget, a.seeds, a.n_evals = 50, 1, 5000, 2, 5
    import jax
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}\n")

    if not a.skip_time:
        print("| problem | solver | SFO / iter | time / iter | µs / SFO | compile (s) |")
        print("|---|---|---|---|---|---|")
        for pname, p in (("minimax-quadratic (100×100)", minimax_quadratic(100, 100)),
                         ("dro (breast_cancer)", dro())):
            for s in (n2sgda(inner_steps=5, batch_in=8, batch_out=32, tau=0.002),
                      sgda(batch=32, tau=0.002)):
                t, c = time_per_iter(p, s, a.steps, a.repeats)
                print(f"| {pname} | {s.name} | {s.sfo_per_step} | {t * 1e6:.1f} µs | "
                      f"{t * 1e6 / s.sfo_per_step:.2f} | {c:.2f} |", flush=True)
        print()

    seeds = list(range(a.seeds))
    print(f"SFO to ‖∇Φ‖ ≤ {a.target} (median over {a.seeds} seeds, cap {a.budget:,} SFO, "
          f"noise scale {a.sigma}, each method's best step size of its grid)\n")
    print("| problem | noise | solver | best η₀ | median SFO | seeds reaching | start ‖∇Φ‖ |")
    print("|---|---|---|---|---|---|---|")
    for prob in a.problems.split(","):
        kw, methods = configs(prob)
        clean = htbo.make_problem(prob, **kw)
        start = float(htbo.metrics.evaluate(clean, clean.x0, clean.y0)["grad_norm"])
        for noise in NOISES:
            p = with_noise(clean, f"{noise}@{a.sigma}")
            for name, (make, grid) in methods.items():
                best = None
                for eta in grid:
                    c = sfo_to_target(p, make(eta), a.budget, seeds, a.target, a.n_evals)
                    med = float(np.median(c))
                    if best is None or med < best[1]:
                        best = (eta, med, int(np.isfinite(c).sum()))
                med = "not reached" if not np.isfinite(best[1]) else f"{best[1]:,.0f}"
                print(f"| {prob} | {noise} | {name} | {best[0]:g} | {med} | "
                      f"{best[2]}/{a.seeds} | {start:.2f} |", flush=True)


if __name__ == "__main__":
    main()
