"""Time of one batch-averaged noise draw per law: what an oracle call pays for its noise.

A draw of ``Noise.sample(key, zeros(d), batch=B)`` averages ``B`` per-sample draws; Gaussian
and stable noise have closed-form batch means (one draw per coordinate), Student-t and
Pareto draw all ``B·d``. Student-t is timed twice: htbo's sampler (whole-array
Marsaglia–Tsang gamma) and ``jax.random.t``, which it replaced (one key per element).
Jitted, ``block_until_ready`` inside the timed region, compile excluded; median of repeats.

    python benchmarks/bench_noise.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from htbo.noise import parse_noise


def per_call(fn, reps: int, inner: int = 20) -> float:
    f = jax.jit(fn)
    key = jax.random.key(0)
    f(key).block_until_ready()              # compile, excluded
    times = []
    for r in range(reps):
        t0 = time.perf_counter()
        for i in range(inner):
            out = f(jax.random.fold_in(key, r * inner + i))
        out.block_until_ready()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    sizes = [(100, 1), (100, 32)] if a.quick else [(100, 1), (100, 32), (1000, 32), (10_000, 8)]
    reps = 3 if a.quick else 7
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, load {os.getloadavg()[0]:.1f}")
    print("| d | batch | gauss | stable:1.5 | t:2.5 (htbo) | t:2.5 (jax.random.t) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for d, b in sizes:
        z = jnp.zeros(d)
        row = [per_call(lambda k, n=parse_noise(s): n.sample(k, z, b), reps)
               for s in ("gauss", "stable:1.5", "t:2.5")]
        old = per_call(lambda k: jnp.mean(jax.random.t(k, 2.5, (b, d)), axis=0), reps)
        cells = " | ".join(f"{t * 1e6:.0f} µs" for t in row + [old])
        print(f"| {d} | {b} | {cells} | {old / row[2]:.1f}× |")


if __name__ == "__main__":
    main()
