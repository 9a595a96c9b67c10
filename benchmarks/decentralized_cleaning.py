"""D-NSVRB on decentralized data hyper-cleaning: simulated runs per topology, and one
multi-process ``htbo launch`` run next to the simulated mode of the same task.

1. Simulated mode (all agents in this process, ``run_network``): ``--agents`` agents on each
   of ``--networks``, the training/validation sets split ``--split``; final network-average
   metrics (φ(x̄), ‖∇φ(x̄)‖, ‖ȳ − y*(x̄)‖ by the evaluation-only route on the pooled problem,
   test accuracy and F1 at (x̄, ȳ), the network-average test accuracy over the agents' own
   (x_i, ŷ_i), consensus) and time per step.
2. ``--launch K``: the same task on a ring of K agents, one process per agent (the plan run
   as ``htbo launch`` runs it, :func:`_launch.launch_plan`), against the simulated mode on
   the same ring (same steps, seed, evaluation points). Per-step time = compiled-chunk time
   / steps (process 0's clock, stopped after ``block_until_ready``; compile and evaluation
   excluded) in both modes; "wall": for the launch, from starting the agents to their end
   (process start, ``jax.distributed`` handshake, building the problem in every process,
   compile, steps, evaluation, history and checkpoints); simulated: building the problem,
   compile, steps and evaluation.

    PYTHONPATH=src python benchmarks/decentralized_cleaning.py                 # digits
    PYTHONPATH=src python benchmarks/decentralized_cleaning.py --dataset mnist --steps 2000 \\
        --no-launch
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import jax  # noqa: E402

from htbo.decentralized import (decentralized_hypercleaning, make_dec_solver,  # noqa: E402
                                parse_network, run_network, spectral_gap)
from htbo.plan import Entry, Plan  # noqa: E402
from _launch import launch_plan  # noqa: E402

# D-NSVRB: the best x-/y-steps of `htbo tune --network ring:8 --problem hypercleaning
# --problem-arg dataset=digits --hp batch=32 --grid eta_x=0.3,1,3 --grid eta_y=0.05,0.2
# --steps 1000 --seeds 1 --metric phi` (MNIST: --grid eta_x=1,3,10, 2000 steps; 3 and 10 tie)
HPS = {"digits": dict(batch=32, eta_x=1.0, eta_y=0.05),
       "mnist": dict(batch=32, eta_x=3.0, eta_y=0.05)}
HP = dict(HPS["digits"])
COLS = ("phi", "grad_norm", "y_err", "test_acc", "avg_test_acc", "f1", "consensus")


def _fmt(v, k):
    if v is None:
        return "-"
    return f"{v:.3g}" if k in ("grad_norm", "consensus", "y_err") else f"{v:.4f}"


def simulated(problem_args, network, m, steps, seed, n_evals):
    """``(final row, first row, run_s, compile_s, wall_s)`` of one simulated run."""
    t0 = time.perf_counter()
    p = decentralized_hypercleaning(m, **problem_args)
    res = run_network(p, make_dec_solver("dnsvrb", **HP), parse_network(f"{network}:{m}"),
                      steps=steps, seeds=[seed], n_evals=n_evals)
    wall = time.perf_counter() - t0
    return res.rows[-1], res.rows[0], res.run_s, res.compile_s, wall


def distributed(problem_args, m, steps, seed, n_evals):
    """``(final row, run_s, compile_s, wall_s, chunk_compiles)`` of the launch on ring:m."""
    plan = Plan(command="launch", problem="hypercleaning", problem_args=problem_args,
                noise="none", network=f"ring:{m}", steps=steps, budget=None, seeds=[seed],
                n_evals=n_evals, entries=[Entry(label="dnsvrb", solver="dnsvrb", hp=dict(HP))])
    out = launch_plan(plan, m, timeout_s=1800)
    return out["rows"][-1], out["run_s"], out["compile_s"], out["wall_s"], out["chunk_compiles"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--split", default="iid", help="iid or dirichlet:ALPHA")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--networks", default="ring,exponential", help="'' = launch part only")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-evals", type=int, default=5)
    ap.add_argument("--launch", type=int, default=4, help="agents (= processes) of the launch")
    ap.add_argument("--no-launch", action="store_true")
    a = ap.parse_args()
    pargs = dict(dataset=a.dataset, split=a.split)
    HP.clear()
    HP.update(HPS[a.dataset])
    print(f"# D-NSVRB {HP} on hypercleaning {pargs}, {a.steps} steps, seed {a.seed}, "
          f"jax {jax.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    head = "| " + " | ".join(COLS) + " |"
    nets = [n for n in a.networks.split(",") if n]
    if nets:
        print(f"\n| network | gap | step {head} ms / step | compile s | wall s |")
        print("|---" * (len(COLS) + 6) + "|")
    for net in nets:
        last, first, run_s, comp, wall = simulated(pargs, net, a.agents, a.steps, a.seed,
                                                   a.n_evals)
        gap = spectral_gap(parse_network(f"{net}:{a.agents}"))
        for r in ((first, last) if net == nets[0] else (last,)):
            vals = " | ".join(_fmt(r.get(k), k) for k in COLS)
            tail = (f"{1e3 * run_s / a.steps:.3f} | {comp:.1f} | {wall:.1f}"
                    if r is last else "- | - | -")
            print(f"| {net}:{a.agents} | {gap:.3f} | {r['step']} | {vals} | {tail} |",
                  flush=True)
    if a.no_launch:
        return
    m = a.launch
    print(f"\n| mode (ring:{m}) | steps | ms / step | compile s | wall s | phi | avg_test_acc "
          "| chunk programs |\n|---|---|---|---|---|---|---|---|")
    last, run_s, comp, wall, nprog = distributed(pargs, m, a.steps, a.seed, a.n_evals)
    print(f"| distributed ({m} processes) | {a.steps} | {1e3 * run_s / a.steps:.3f} | "
          f"{comp:.1f} | {wall:.1f} | {last['phi']:.4f} | {last['avg_test_acc']:.4f} "
          f"| {nprog} |", flush=True)
    last, _, run_s, comp, wall = simulated(pargs, "ring", m, a.steps, a.seed, a.n_evals)
    print(f"| simulated (1 process) | {a.steps} | {1e3 * run_s / a.steps:.3f} | {comp:.1f} | "
          f"{wall:.1f} | {last['phi']:.4f} | {last['avg_test_acc']:.4f} | 1 |", flush=True)


if __name__ == "__main__":
    main()
