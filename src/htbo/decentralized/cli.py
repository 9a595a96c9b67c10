"""``htbo launch`` (a supervised local multi-process run) and the hidden ``agent`` worker.

``launch`` is a run like the others: it resolves the plan (every argument checked before any
agent starts), claims the output directory (its lock, held until the end, and
``config.json``), prepares a ``--resume``, then starts one agent process per agent with
``python -m htbo.decentralized.cli agent --plan DIR/config.json``. Each agent reads that plan,
joins ``jax.distributed`` and runs every entry through the one run loop with the
distributed executor (process 0 writes rows and checkpoints); agents end when the launcher
dies. When all agents are done the launcher writes ``summary.md`` and ``plot.png``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..parsing import parse_assignments
from ..plan import Entry, jsonable_hp

__all__ = ["configure", "main"]


def _network(text: str, agents: int | None) -> str:
    """``NAME:M`` from ``--network`` and ``--agents``."""
    name, _, m = text.partition(":")
    if m:
        if not m.isdigit() or int(m) < 1:
            raise ValueError(f"--network NAME:M needs a positive M, got {text!r}")
        if agents is not None and int(m) != agents:
            raise ValueError(f"--network {text} has {m} agents but --agents is {agents}")
        return text
    if agents is None:
        raise ValueError("give the number of agents with --agents or --network NAME:M")
    return f"{name}:{agents}"


def _plan(args):
    from ..cli.common import plan_from_args
    from ..jobs import read_plan
    if args.resume:
        plan = read_plan(args.resume)
        if plan.command != "launch" or not plan.network:
            raise ValueError(f"--resume {args.resume}: not a launch directory (it holds a "
                             f"{plan.command}); continue it with: htbo run --resume "
                             f"{args.resume}")
        return plan
    args.network = _network(args.network, args.agents)
    plan = plan_from_args(args, "launch")
    hp = jsonable_hp(parse_assignments(args.hp, "--hp"))
    plan.entries = [Entry(label=args.solver, solver=args.solver, hp=hp)]
    return plan


def cmd_launch(args) -> int:
    from ..jobs import claim_run_dir, prepare_resume, summarize, summarize_quietly
    from .launch import AgentFailed, Interrupted, launch
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    if args.heartbeat < 1:
        raise ValueError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    plan = _plan(args)
    res = plan.resolve()  # the agents' first step, here, before starting any
    m = len(res.W)
    out = args.resume or args.out
    with claim_run_dir(out, plan, resume=bool(args.resume), overwrite=args.overwrite,
                       command="htbo launch") as path:
        if args.resume:
            prepare_resume(res, path, truncate=True)
        re = res.entries[0]
        if not args.no_progress:
            print(f"[htbo launch] {re.solver.name} on {res.problem.name}, {plan.network}: "
                  f"{re.steps} steps x {len(res.seeds)} seeds, noise {res.noise}; logs: "
                  f"{path / 'logs'}", file=sys.stderr, flush=True)
        worker = ["--plan", str(path / "config.json")]
        worker += ["--resume"] if args.resume else []
        worker += ["--save-iterates"] if args.save_iterates else []
        worker += [a for k, v in (("--fail-agent", args.fail_agent),
                                  ("--fail-at-step", args.fail_at_step)) if v is not None
                   for a in (k, str(v))]
        try:
            launch(m, worker, path, timeout_s=args.timeout, heartbeat_s=args.heartbeat,
                   quiet=args.no_progress)
        except AgentFailed as e:
            summarize_quietly(res, path)  # unfinished solvers marked incomplete
            print(f"{e}; continue with: htbo launch --resume {path}", file=sys.stderr)
            return 128 + e.signum if isinstance(e, Interrupted) else 1
        summarize(res, path)
    return 0


# -- the per-process worker ----------------------------------------------------------------
def _progress(me, step, steps, seed, k, n, row) -> str:
    line = f"[htbo-agent {me}] step {step}/{steps} seed {seed} ({k}/{n})"
    if row is not None:
        vals = [f"{key} {row[key]:.4g}" for key in ("grad_norm", "consensus")
                if isinstance(row.get(key), (int, float))]
        line += ": " + ", ".join(vals + [f"{row['time_s']:.2f} s"])
    return line


def cmd_agent(args) -> int:
    import jax

    from ..jobs import read_plan, run_entries
    from ..locks import die_with_parent
    from . import distributed as dist
    parent = os.environ.get("HTBO_PARENT_PID")
    die_with_parent(parent=int(parent) if parent else None)
    cfg = dist.config_from_env()
    me = cfg.process_id
    print(f"[htbo-agent {me}] pid {os.getpid()}: joining {cfg.num_processes} agents at "
          f"{cfg.coordinator}", flush=True)
    dist.initialize(cfg)
    out = Path(args.plan).parent
    res = read_plan(str(out)).resolve()
    steps = {re.label: re.steps for re in res.entries}
    iterates: dict = {}

    def on_emit(step, states, rows):
        total = max(steps.values())
        by_seed = {r["seed"]: r for r in rows}
        for k, seed in enumerate(res.seeds, 1):
            print(_progress(me, step, total, seed, k, len(res.seeds), by_seed.get(seed)),
                  flush=True)
        if args.save_iterates:
            xs = dist.gather(states.w["x"] if hasattr(states, "w") else states)
            for i, seed in enumerate(res.seeds):
                iterates[f"seed{seed}_step{step}_leaf0"] = jax.tree_util.tree_leaves(xs)[0][:, i]
        if me == args.fail_agent and args.fail_at_step is not None and step >= args.fail_at_step:
            print(f"[htbo-agent {me}] injected failure at step {step}", flush=True)
            os._exit(3)

    try:
        run_entries(res, out, resume=args.resume, progress=False, distributed=True,
                    on_emit=on_emit)
    except Exception as e:  # typically a collective failing because a peer died
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"[htbo-agent {me}] failed: {type(e).__name__}: {first}", flush=True)
        return 1
    if me == 0 and args.save_iterates:
        import numpy as np
        np.savez(out / "iterates.npz", **iterates)
    print(f"[htbo-agent {me}] done", flush=True)
    return 0


def configure(subparsers) -> None:
    """Add ``launch`` (the per-process ``agent`` worker is added by :func:`main` only)."""
    from ..cli.common import add_budget, add_output
    p = subparsers.add_parser("launch", help="run a decentralized method with one local "
                              "process per agent (supervised)")
    p.add_argument("--agents", type=int, default=None)
    p.add_argument("--problem", default="quadratic", help="a decentralized problem (htbo list)")
    p.add_argument("--solver", default="dnsvrb", help="a decentralized solver (htbo list)")
    p.add_argument("--problem-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="problem constructor argument (repeatable), e.g. dataset=digits")
    p.add_argument("--network", default="ring", help="topology NAME or NAME:M (default ring)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    add_budget(p)
    add_output(p)
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the launch in DIR from its checkpoints (other flags ignored)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--heartbeat", type=int, default=10,
                   help="seconds without heartbeat before a peer counts as dead")
    p.add_argument("--save-iterates", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fail-agent", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_launch)


def _configure_agent(subparsers) -> None:
    a = subparsers.add_parser("agent")  # no help=: not listed
    a.add_argument("--plan", required=True, help="the run directory's config.json")
    a.add_argument("--resume", action="store_true")
    a.add_argument("--save-iterates", action="store_true")
    a.add_argument("--fail-agent", type=int, default=None)
    a.add_argument("--fail-at-step", type=int, default=None)
    a.set_defaults(func=cmd_agent)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htbo.decentralized.cli")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{launch}")
    configure(sub)
    _configure_agent(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as e:
        print(f"htbo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
