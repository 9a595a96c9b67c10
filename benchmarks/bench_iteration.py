"""Per-iteration time, peak memory and seed scaling on `quadratic-data`.

Sizes follow the public bilevel benchmark's "simulated" quadratic: n_inner = n_outer = 1024,
dim_x = dim_y = 100, batch 64, no injected noise (the data are the noise).
One iteration is:
  SOBA          one step: ∇_y G, ∇F, one joint HVP, each on 64 samples (128 SFO + 64 HVP)
  F2SA, N²SBA   K = 10 warm-started inner steps on z and on y (batch 64), then the outer
                penalty hypergradient (3 × 64): 3·10·64 + 3·64 = 2,112 SFO
Time is the compiled-step time through the htbo runner (jit + fori_loop chunk,
block_until_ready inside the timed region, AOT compile reported apart), median of repeats.

    python benchmarks/bench_iteration.py            # time table + memory + seed scaling
    python benchmarks/bench_iteration.py --quick    # tiny sizes, a few seconds

Only htbo's own numbers: for the comparison with the public bilevel benchmark, run both in
the same process tree with ``benchmarks/vs_benchmark_bilevel.py``.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import numpy as np

import htbo
from _workload import add_workload_args, solvers
from htbo.runner import cast_hp
from htbo.problems import quadratic_data


def time_per_iter(problem, solver, steps: int, seeds: int, repeats: int):
    """Median seconds per iteration (all seeds together) and the first call's compile time
    (later calls reuse the compiled program)."""
    times, comp = [], []
    for r in range(repeats):
        res = htbo.run(problem, solver, steps=steps, seeds=range(seeds), n_evals=1)
        times.append(res.run_s / steps)
        comp.append(res.compile_s)
    return statistics.median(times), comp[0]


class WithConstantHp:
    """The same solver with its hyperparameters folded into the program as constants (how
    htbo compiled before hyperparameters became data), to time against the traced ones: its
    ``program()`` step replaces ``state.hp`` by the solver's values before each step."""

    def __init__(self, solver):
        self.solver = solver
        init, step, params = solver.program()
        hp = cast_hp(solver.hp, np.float32)
        self._program = (init, lambda prob, st, k: step(prob, st._replace(hp=hp), k), params)

    def program(self):
        return self._program

    def __getattr__(self, name):  # name, hp, sfo_per_step, ... of the solver
        return getattr(self.solver, name)


def memory_child(n: int, dim: int, batch: int, k: int, name: str):
    """Run in a fresh process: build the problem, run 50 steps, print peak RSS in MB."""
    p = quadratic_data(n_inner=n, n_outer=n, dim_x=dim, dim_y=dim)
    htbo.run(p, solvers(batch, k)[name], steps=50, seeds=[0], n_evals=1)
    print(json.dumps(dict(rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_workload_args(ap, 2000)
    ap.add_argument("--mem-n", type=int, default=32768)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        return memory_child(a.mem_n, a.dim, a.batch, a.inner_steps, a.memory_child)
    if a.quick:
        a.n, a.dim, a.steps, a.repeats, a.mem_n = 128, 10, 50, 1, 512
    import jax
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}; n_inner = n_outer = {a.n}, "
          f"dims {a.dim}, batch {a.batch}, K = {a.inner_steps}\n")
    p = quadratic_data(n_inner=a.n, n_outer=a.n, dim_x=a.dim, dim_y=a.dim)
    sv = solvers(a.batch, a.inner_steps)
    print("| solver | SFO / iter | time / iter | µs / SFO | compile (s) |")
    print("|---|---|---|---|---|")
    for name, s in sv.items():
        t, c = time_per_iter(p, s, a.steps, 1, a.repeats)
        print(f"| {name} | {s.sfo_per_step:,} | {t * 1e6:.1f} µs | "
              f"{t * 1e6 / s.sfo_per_step:.3f} | {c:.2f} |", flush=True)
    print("\nHyperparameters as data (traced, the default) vs folded in as constants, the same "
          "run, 1 seed:\n")
    print("| solver | as data | as constants | data ÷ constants |\n|---|---|---|---|")
    for name, s in sv.items():
        td, _ = time_per_iter(p, s, a.steps, 1, a.repeats)
        tc, _ = time_per_iter(p, WithConstantHp(s), a.steps, 1, a.repeats)
        print(f"| {name} | {td * 1e6:.1f} µs | {tc * 1e6:.1f} µs | {td / tc:.2f} |", flush=True)
    print(f"\nPeak resident memory, n_inner = n_outer = {a.mem_n}, dims {a.dim} "
          "(fresh process each, build + 50 steps):\n")
    print("| solver | peak RSS (MB) |\n|---|---|")
    for name in sv:
        out = subprocess.run([sys.executable, __file__, "--memory-child", name,
                              "--mem-n", str(a.mem_n), "--dim", str(a.dim),
                              "--batch", str(a.batch), "--inner-steps", str(a.inner_steps)],
                             capture_output=True, text=True, check=True)
        print(f"| {name} | {json.loads(out.stdout.strip().splitlines()[-1])['rss_mb']:.0f} |",
              flush=True)
    print("\nSeed scaling (vmapped seeds in one compiled program):\n")
    print("| solver | 1 seed: iter/s | 32 seeds: seed-iter/s | throughput gain |\n|---|---|---|---|")
    for name, s in sv.items():
        steps = a.steps  # long enough to amortize the first execution of a 32-member program
        t1, _ = time_per_iter(p, s, steps, 1, max(1, a.repeats // 2))
        t32, _ = time_per_iter(p, s, steps, 32, max(1, a.repeats // 2))
        print(f"| {name} | {1 / t1:,.0f} | {32 / t32:,.0f} | {t1 * 32 / t32:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
