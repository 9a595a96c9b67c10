"""Distributed (one process per agent, gloo on CPU) vs simulated (vmap) decentralized runs.

For each number of agents M: launch M local processes with ``htbo.decentralized.launch`` and
read the compiled-step time that process 0 measured (``meta.json``: ``run_s``, clock stopped
after ``block_until_ready``, compile time separate, ``chunk_compiles``: XLA compilations of
the chunk program); then run the same per-agent chunk (:func:`agent_loop`, chunk length
traced, as the distributed runner) under ``vmap(axis_name="agents")`` in this process and
time it the same way (best of 3). Reports time per iteration and per communication round
(= per iteration / ``comm_per_step``).

    PYTHONPATH=src python benchmarks/bench_distributed.py --agents 2,4,8 --steps 400
    PYTHONPATH=src python benchmarks/bench_distributed.py --hp dim=100000   # bigger messages
    PYTHONPATH=src python benchmarks/bench_distributed.py --dnsvrb          # D-NSVRB, quadratic,
        # = --factory htbo.decentralized.cli:registry_spec --problem quadratic \
        #   --solver dnsvrb --noise stable:1.5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from htbo.decentralized import distributed as dist  # noqa: E402
from htbo.decentralized.cli import _parse_hp, load_factory  # noqa: E402
from htbo.decentralized.launch import launch  # noqa: E402


def simulated_time(spec, steps, reps=3):
    """Best-of-``reps`` seconds for ``steps`` vmapped steps (+ compile seconds)."""
    solver, prob = spec["solver"], spec["problem"]
    loop = dist.agent_loop(solver, spec["mix"])
    fn = jax.jit(jax.vmap(loop, in_axes=(0, 0, None, None), out_axes=(0, None),
                          axis_name="agents"))
    n = jnp.int32(steps)
    pair = jax.random.split(jax.random.key(0))
    init = jax.jit(jax.vmap(
        lambda p, x0, y0, k: solver.init(p, x0, y0, jax.random.wrap_key_data(k), solver.hp),
        in_axes=(0, 0, 0, None), axis_name="agents"))
    kd = [jax.random.key_data(k) for k in pair]
    st = init(prob, jnp.asarray(prob.x0), jnp.asarray(prob.y0), kd[0])
    t0 = time.perf_counter()
    comp = fn.lower(prob, st, kd[1], n).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(comp(prob, st, kd[1], n))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s


def distributed_time(args, m, steps):
    with tempfile.TemporaryDirectory() as tmp:
        wargs = ["--factory", args.factory, "--problem", args.problem, "--solver", args.solver,
                 "--network", f"{args.network}:{m}", "--steps", str(steps),
                 "--n-evals", str(args.n_evals),
                 "--seeds", "1", "--noise", args.noise]  # one seed: run_s is one run's time
        for h in args.hp:
            wargs += ["--hp", h]
        env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
        t0 = time.perf_counter()
        launch(m, wargs, tmp, timeout_s=600, env=env, quiet=True)
        wall = time.perf_counter() - t0
        meta = json.loads((Path(tmp) / "meta.json").read_text())
    return meta["run_s"], meta["compile_s"], wall, meta.get("chunk_compiles")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="2,4,8")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--factory", default="test_distributed:gossip_spec")
    ap.add_argument("--problem", default="gossip")
    ap.add_argument("--solver", default="gossip")
    ap.add_argument("--network", default="ring")
    ap.add_argument("--hp", action="append", default=[])
    ap.add_argument("--noise", default="none")
    ap.add_argument("--n-evals", type=int, default=7, help="evaluation points of the launched "
                    "run (uneven chunks: one compiled chunk program serves them all)")
    ap.add_argument("--dnsvrb", action="store_true", help="D-NSVRB on the decentralized "
                    "quadratic under stable:1.5 noise (sets --factory/--problem/--solver/--noise)")
    args = ap.parse_args()
    if args.dnsvrb:
        args.factory, args.problem = "htbo.decentralized.cli:registry_spec", "quadratic"
        args.solver, args.noise = "dnsvrb", "stable:1.5"
    factory = load_factory(args.factory)
    print(f"# {args.solver} on {args.problem}, {args.network}, noise {args.noise}, "
          f"{args.steps} steps, jax {jax.__version__}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    print("| agents | mode | ms / iteration | ms / comm round | network MB / iteration "
          "| compile s | chunk programs | launch wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for m in [int(a) for a in args.agents.split(",")]:
        spec = factory(agents=m, problem=args.problem, solver=args.solver,
                       noise=None if args.noise == "none" else args.noise,
                       network=args.network, hp=_parse_hp(args.hp))
        comm = max(1, spec["solver"].comm_per_step)
        mb = 1e-6 * dist.count_communication(spec["solver"], spec["problem"], spec["mix"],
                                             m)["bytes"]
        run_s, comp_s, wall, nprog = distributed_time(args, m, args.steps)
        it = 1e3 * run_s / args.steps
        print(f"| {m} | distributed | {it:.3f} | {it / comm:.3f} | {mb:.3g} | {comp_s:.2f} "
              f"| {nprog} | {wall:.1f} |", flush=True)
        sim_s, sim_c = simulated_time(spec, args.steps)
        it = 1e3 * sim_s / args.steps
        print(f"| {m} | simulated | {it:.3f} | {it / comm:.3f} | {mb:.3g} | {sim_c:.2f} | 1 "
              "| - |", flush=True)


if __name__ == "__main__":
    main()
