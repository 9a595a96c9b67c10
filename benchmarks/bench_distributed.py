"""Distributed (one process per agent, gloo on CPU) vs simulated (vmap) decentralized runs.

For each number of agents M: run the plan with M local processes as ``htbo launch`` does
(:func:`_launch.launch_plan`) and read the compiled-step time that process 0 measured
(``runs.jsonl``: ``run_s``, clock stopped after ``block_until_ready``, compile time
separate; "chunk programs": XLA compilations of the traced-length chunk program, counted
in process 0's log); then run the same plan's network solver in the simulated mode (all
agents ``vmap``\\ ped in this process, :class:`htbo.driver.VmapExecutor`, the executor
``htbo run --network`` uses) for the same number of steps in one chunk and time it the
same way (best of 3). Reports time per iteration and per communication round (= per
iteration / ``comm_per_step``).

    PYTHONPATH=src python benchmarks/bench_distributed.py --agents 2,4,8 --steps 400
    PYTHONPATH=src python benchmarks/bench_distributed.py --problem-arg dim=100000  # messages
    PYTHONPATH=src python benchmarks/bench_distributed.py --dnsvrb          # D-NSVRB, quadratic,
        # = --problem quadratic --solver dnsvrb --noise stable:1.5

The default method is the gossip test solver of tests/test_distributed.py (``--problem
test_distributed:gossip_problem --solver test_distributed:Gossip``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from _launch import launch_plan  # noqa: E402
from htbo.decentralized import distributed as dist  # noqa: E402
from htbo.driver import VmapExecutor  # noqa: E402
from htbo.parsing import parse_assignments  # noqa: E402
from htbo.plan import Entry, Plan, jsonable_hp  # noqa: E402
from htbo.runner import cast_hp, float_dtype  # noqa: E402


def simulated_time(res, steps, reps=3):
    """Best-of-``reps`` seconds for ``steps`` vmapped steps (+ compile seconds)."""
    re = res.entries[0]
    hp_b = cast_hp(re.solver.hp, float_dtype(res.problem), len(res.seeds))
    ex = VmapExecutor(res.problem, re.solver, hp_b, res.seeds,
                      metrics_fn=re.run_kwargs["metrics_fn"])
    states, keys = ex.init()
    t0 = time.perf_counter()
    ex.compile(states, keys)
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        ex.run(states, keys, steps)  # blocks until ready
        best = min(best, time.perf_counter() - t0)
    return best, compile_s


def make_plan(args, m: int) -> Plan:
    """One seed (run_s is one run's time), ``--n-evals`` evaluation points."""
    return Plan(command="launch", problem=args.problem,
                problem_args=jsonable_hp(parse_assignments(args.problem_arg, "--problem-arg")),
                noise=args.noise, network=f"{args.network}:{m}", steps=args.steps, budget=None,
                seeds=[0], n_evals=args.n_evals,
                entries=[Entry(label=args.solver, solver=args.solver,
                               hp=jsonable_hp(parse_assignments(args.hp, "--hp")))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", default="2,4,8")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--problem", default="test_distributed:gossip_problem")
    ap.add_argument("--solver", default="test_distributed:Gossip")
    ap.add_argument("--problem-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--network", default="ring")
    ap.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--noise", default="none")
    ap.add_argument("--n-evals", type=int, default=7, help="evaluation points of the launched "
                    "run (uneven chunks: one compiled chunk program serves them all)")
    ap.add_argument("--dnsvrb", action="store_true", help="D-NSVRB on the decentralized "
                    "quadratic under stable:1.5 noise (sets --problem/--solver/--noise)")
    args = ap.parse_args()
    if args.dnsvrb:
        args.problem, args.solver, args.noise = "quadratic", "dnsvrb", "stable:1.5"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    print(f"# {args.solver} on {args.problem}, {args.network}, noise {args.noise}, "
          f"{args.steps} steps, jax {jax.__version__}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    print("| agents | mode | ms / iteration | ms / comm round | network MB / iteration "
          "| compile s | chunk programs | launch wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for m in [int(a) for a in args.agents.split(",")]:
        plan = make_plan(args, m)
        res = plan.resolve()
        re = res.entries[0]
        comm = max(1, re.dec.comm_per_step)
        mb = 1e-6 * dist.count_communication(re.dec, res.problem, re.solver.mix, m)["bytes"]
        out = launch_plan(plan, m, env=env)
        it = 1e3 * out["run_s"] / args.steps
        print(f"| {m} | distributed | {it:.3f} | {it / comm:.3f} | {mb:.3g} | "
              f"{out['compile_s']:.2f} | {out['chunk_compiles']} | {out['wall_s']:.1f} |",
              flush=True)
        sim_s, sim_c = simulated_time(res, args.steps)
        it = 1e3 * sim_s / args.steps
        print(f"| {m} | simulated | {it:.3f} | {it / comm:.3f} | {mb:.3g} | {sim_c:.2f} | 1 "
              "| - |", flush=True)


if __name__ == "__main__":
    main()
