"""``htbo launch`` (supervised local multi-process run) and the hidden ``agent`` worker.

``configure(subparsers)`` adds both subcommands to the main CLI; ``python -m
htbo.decentralized.cli launch|agent ...`` works on its own too (the launcher uses it).

A run is described by a *spec factory* ``module:function`` called as
``factory(agents=M, problem=, solver=, noise=, network=, hp={...})`` that returns a dict
with ``problem`` (stacked over agents), ``solver`` (a DecSolver), ``mix`` (the per-agent
mixing function) and optionally ``evaluate(problem, xs, ys) -> dict``, ``labels`` and
``comm_bytes_per_step``. The default factory builds these from the registries of
:mod:`htbo.decentralized`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from ..parsing import parse_assignments, parse_seeds

__all__ = ["configure", "main", "load_factory", "registry_spec"]

DEFAULT_FACTORY = "htbo.decentralized.cli:registry_spec"


def load_factory(text: str):
    mod, _, fn = text.partition(":")
    if not mod or not fn:
        raise ValueError(f"--factory must be module:function, got {text!r}")
    return getattr(importlib.import_module(mod), fn)


def registry_spec(agents, problem, solver, noise=None, network="ring", hp=None, seed=0):
    """The default spec: problem, solver, topology and mixing from :mod:`htbo.decentralized`."""
    from . import decentralized_spec  # provided by the decentralized package
    return decentralized_spec(agents=agents, problem=problem, solver=solver, noise=noise,
                              network=network, hp=hp or {}, seed=seed)


def _parse_hp(items):
    return parse_assignments(items, "--hp")


def _seeds(text: str) -> list[int]:
    return parse_seeds(text)


def _network(text: str, agents: int | None) -> tuple[str, int]:
    name, _, m = text.partition(":")
    if m:
        if not m.isdigit() or int(m) < 1:
            raise ValueError(f"--network NAME:M needs a positive M, got {text!r}")
        if agents is not None and int(m) != agents:
            raise ValueError(f"--network {text} has {m} agents but --agents is {agents}")
        return name, int(m)
    if agents is None:
        raise ValueError("give the number of agents with --agents or --network NAME:M")
    return name, agents


def _common(p):
    p.add_argument("--problem", required=True)
    p.add_argument("--solver", required=True)
    p.add_argument("--noise", default=None)
    p.add_argument("--network", default="ring", help="topology NAME or NAME:M (default ring)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seeds", default="1", help="a count N (seeds 0..N-1), a list 0,3,7 or a "
                   "range 0-4 (run one after another)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--n-evals", type=int, default=20)
    p.add_argument("--factory", default=DEFAULT_FACTORY, help=argparse.SUPPRESS)
    p.add_argument("--save-iterates", action="store_true", help=argparse.SUPPRESS)


def configure(subparsers) -> None:
    """Add ``launch`` and the hidden ``agent`` subcommand."""
    p = subparsers.add_parser("launch", help="run a decentralized method with one local "
                              "process per agent (supervised)")
    p.add_argument("--agents", type=int, default=None)
    _common(p)
    p.add_argument("--out", required=True, help="output directory (history.jsonl, logs/)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--heartbeat", type=int, default=10,
                   help="seconds without heartbeat before a peer counts as dead")
    p.set_defaults(func=cmd_launch)
    a = subparsers.add_parser("agent", help=argparse.SUPPRESS)
    _common(a)
    a.add_argument("--out", required=True)
    a.add_argument("--fail-agent", type=int, default=None, help=argparse.SUPPRESS)
    a.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)
    a.set_defaults(func=cmd_agent)


def _worker_args(args) -> list[str]:
    out = ["--problem", args.problem, "--solver", args.solver, "--network", args.network,
           "--steps", str(args.steps), "--seeds", args.seeds, "--n-evals", str(args.n_evals),
           "--factory", args.factory]
    if args.noise:
        out += ["--noise", args.noise]
    for h in args.hp:
        out += ["--hp", h]
    if args.save_iterates:
        out.append("--save-iterates")
    return out


def cmd_launch(args) -> int:
    from .launch import AgentFailed, launch
    _, m = _network(args.network, args.agents)
    _seeds(args.seeds)
    try:
        out = launch(m, _worker_args(args), args.out, timeout_s=args.timeout,
                     heartbeat_s=args.heartbeat)
    except AgentFailed as e:
        print(str(e), file=sys.stderr)
        return 1
    hist = Path(out) / "history.jsonl"
    if hist.exists():
        last = [json.loads(line) for line in hist.read_text().splitlines()][-1]
        gn = last.get("grad_norm")
        print(f"final step {last['step']}: grad_norm={gn}, consensus={last['consensus']:.3g}, "
              f"time_s={last['time_s']:.3f}; history: {hist}")
    return 0


def cmd_agent(args) -> int:
    from . import distributed as dist
    cfg = dist.config_from_env()
    me = cfg.process_id
    name, m = _network(args.network, cfg.num_processes)
    print(f"[htbo-agent {me}] joining {m} agents at {cfg.coordinator}", flush=True)
    dist.initialize(cfg)
    spec = load_factory(args.factory)(agents=m, problem=args.problem, solver=args.solver,
                                      noise=args.noise, network=name, hp=_parse_hp(args.hp))
    out = Path(args.out)
    hist = out / "history.jsonl"
    if me == 0:
        out.mkdir(parents=True, exist_ok=True)
        hist.write_text("")

    def writer(rows):
        with hist.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

    reached = [0]

    def on_eval(step):
        reached[0] = step
        print(f"[htbo-agent {me}] step {step}", flush=True)
        if me == args.fail_agent and args.fail_at_step is not None and step >= args.fail_at_step:
            print(f"[htbo-agent {me}] injected failure at step {step}", flush=True)
            os._exit(3)

    try:
        res = dist.run_distributed(
            spec["problem"], spec["solver"], spec["mix"], steps=args.steps,
            seeds=_seeds(args.seeds), n_evals=args.n_evals, evaluate=spec.get("evaluate"),
            writer=writer if me == 0 else None,
            labels={**spec.get("labels", {}), "network": f"{name}:{m}"},
            comm_bytes_per_step=spec.get("comm_bytes_per_step"), on_eval=on_eval,
            keep_iterates=args.save_iterates)
    except Exception as e:  # typically a collective failing because a peer died
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"[htbo-agent {me}] failed after step {reached[0]}: {type(e).__name__}: {first}",
              flush=True)
        return 1
    if me == 0:
        meta = dict(run_id=res["run_id"], compile_s=res["compile_s"], run_s=res["run_s"],
                    agents=m, steps=args.steps, solver=args.solver, problem=args.problem)
        (out / "meta.json").write_text(json.dumps(meta))
        if args.save_iterates:
            _save_iterates(out / "iterates.npz", res["iterates"])
    print(f"[htbo-agent {me}] done", flush=True)
    return 0


def _save_iterates(path, iterates) -> None:
    """``seed{S}_step{T}_leaf{I}``: leaf I of all agents' x at step T of seed S."""
    import jax
    import numpy as np
    np.savez(path, **{f"seed{seed}_step{step}_leaf{i}": np.asarray(leaf)
                      for seed, traj in iterates.items() for step, xs in traj
                      for i, leaf in enumerate(jax.tree_util.tree_leaves(xs))})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m htbo.decentralized.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    configure(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
