"""``htbo launch`` (supervised local multi-process run) and the hidden ``agent`` worker.

``configure(subparsers)`` adds ``launch`` to the main CLI; ``python -m
htbo.decentralized.cli launch|agent ...`` works on its own too (the launcher runs ``agent``,
which is not listed in any help).

A run is described by a *spec factory* ``module:function`` called as
``factory(agents=M, problem=, solver=, noise=, network=, hp={...})`` that returns a dict
with ``problem`` (stacked over agents), ``solver`` (a DecSolver), ``mix`` (the per-agent
mixing function) and optionally ``evaluate(problem, xs, ys) -> dict``, ``labels`` and
``comm_bytes_per_step``. The default factory builds these from the registries of
:mod:`htbo.decentralized`. The launcher builds the spec once itself (no
``jax.distributed``), so bad arguments are reported before any agent starts.

:func:`write_outputs` writes ``summary.md``, ``runs.jsonl`` and ``plot.png`` of a finished
decentralized run, simulated or distributed alike.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from ..parsing import DEFAULT_NOISE, parse_assignments, parse_seeds

__all__ = ["configure", "main", "load_factory", "registry_spec", "write_outputs"]

DEFAULT_FACTORY = "htbo.decentralized.cli:registry_spec"


def load_factory(text: str):
    mod, _, fn = text.partition(":")
    if not mod or not fn:
        raise ValueError(f"--factory must be module:function, got {text!r}")
    try:
        return getattr(importlib.import_module(mod), fn)
    except AttributeError:
        raise ValueError(f"--factory {text}: module {mod!r} has no {fn!r}") from None


def registry_spec(agents, problem, solver, noise=None, network="ring", hp=None, seed=0,
                  problem_args=None):
    """The default spec: problem, solver, topology and mixing from :mod:`htbo.decentralized`."""
    from . import decentralized_spec  # provided by the decentralized package
    return decentralized_spec(agents=agents, problem=problem, solver=solver, noise=noise,
                              network=network, hp=hp or {}, seed=seed,
                              problem_args=problem_args)


def _parse_hp(items):
    return parse_assignments(items, "--hp")


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


def _build_spec(args, name: str, m: int) -> dict:
    """The factory's spec for this run; ValueError (one line) for bad arguments.

    ``--problem-arg`` values reach the factory as ``problem_args={...}`` (only when given,
    so factories without that parameter keep working). Without ``--noise`` the problem's
    documented ``info["noise"]`` is used, else ``DEFAULT_NOISE`` (as ``htbo run
    --network``); ``args.noise`` is set to the noise used."""
    factory = load_factory(args.factory)
    pargs = parse_assignments(args.problem_arg, "--problem-arg", schedules=False)
    kw = dict(agents=m, problem=args.problem, solver=args.solver, network=name,
              hp=_parse_hp(args.hp), **({"problem_args": pargs} if pargs else {}))
    if args.noise is None:
        info = getattr(factory(noise=None, **kw)["problem"], "info", None) or {}
        args.noise = str(info.get("noise") or DEFAULT_NOISE)
    return factory(noise=args.noise, **kw)


def _steps(args, solver) -> int:
    """``--steps``, or ``--budget // SFO per step``: ``htbo run``'s rule."""
    from ..runner import steps_for_budget
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        return args.steps
    return steps_for_budget(solver, args.budget)


def _common(p):
    """The options of ``htbo run`` that apply here, with the same defaults."""
    p.add_argument("--problem", default="quadratic")
    p.add_argument("--solver", default="dnsvrb")
    p.add_argument("--problem-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="problem constructor argument (repeatable), e.g. dataset=digits")
    p.add_argument("--noise", default=None,
                   help="noise law: none, gauss, t:NU, pareto:A, stable:ALPHA (+@SIGMA, "
                        f"/radial); default the problem's documented one, else {DEFAULT_NOISE}")
    p.add_argument("--network", default="ring", help="topology NAME or NAME:M (default ring)")
    p.add_argument("--seeds", default="5", help="a count N (seeds 0..N-1), a list 0,3,7 or a "
                   "range 0-4 (run one after another)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="iterations per seed")
    g.add_argument("--budget", type=int, default=100_000,
                   help="SFO budget per agent (default 100000); steps = budget // SFO per step")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--n-evals", type=int, default=25, help="evaluation points per seed")
    p.add_argument("--factory", default=DEFAULT_FACTORY, help=argparse.SUPPRESS)
    p.add_argument("--save-iterates", action="store_true", help=argparse.SUPPRESS)


def configure(subparsers) -> None:
    """Add ``launch`` (the per-process ``agent`` worker is added by :func:`main` only)."""
    p = subparsers.add_parser("launch", help="run a decentralized method with one local "
                              "process per agent (supervised)")
    p.add_argument("--agents", type=int, default=None)
    _common(p)
    p.add_argument("--out", default="htbo-out", help="output directory")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--heartbeat", type=int, default=10,
                   help="seconds without heartbeat before a peer counts as dead")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.set_defaults(func=cmd_launch)


def _configure_agent(subparsers) -> None:
    a = subparsers.add_parser("agent")  # no help=: not listed
    _common(a)
    a.add_argument("--out", required=True)
    a.add_argument("--fail-agent", type=int, default=None, help=argparse.SUPPRESS)
    a.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)
    a.set_defaults(func=cmd_agent)


def _worker_args(args, steps: int) -> list[str]:
    out = ["--problem", args.problem, "--solver", args.solver, "--network", args.network,
           "--steps", str(steps), "--seeds", args.seeds, "--n-evals", str(args.n_evals),
           "--factory", args.factory, "--noise", args.noise]
    for h in args.hp:
        out += ["--hp", h]
    for a in args.problem_arg:
        out += ["--problem-arg", a]
    if args.save_iterates:
        out.append("--save-iterates")
    return out


def cmd_launch(args) -> int:
    from .launch import AgentFailed, Interrupted, launch
    name, m = _network(args.network, args.agents)
    seeds = parse_seeds(args.seeds)
    if args.n_evals < 1:
        raise ValueError(f"--n-evals must be >= 1, got {args.n_evals}")
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    if args.heartbeat < 1:
        raise ValueError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    spec = _build_spec(args, name, m)  # the agents' first step, here, before starting any
    solver, problem = spec["solver"], spec["problem"]
    steps = _steps(args, solver)
    from ..outputs import prepare_out
    out = prepare_out(args.out, overwrite=args.overwrite)
    if not args.no_progress:
        print(f"[htbo launch] {solver.name} on {problem.name}, {name}:{m}: {steps} steps x "
              f"{len(seeds)} seeds, noise {problem.noise or 'none'}; logs: {out / 'logs'}",
              file=sys.stderr, flush=True)
    try:
        launch(m, _worker_args(args, steps), out, timeout_s=args.timeout,
               heartbeat_s=args.heartbeat, quiet=args.no_progress)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum
    except AgentFailed as e:
        print(str(e), file=sys.stderr)
        return 1
    from ..history import read_jsonl
    agent_meta = json.loads((out / "meta.json").read_text())
    meta = dict(run_id=agent_meta.get("run_id"), solver=solver.name, problem=problem.name,
                noise=str(problem.noise) if problem.noise else "none", network=f"{name}:{m}",
                agents=m, mode="distributed", steps=steps, seeds=seeds,
                sfo_per_step=solver.sfo_per_step,
                hvp_per_step=getattr(solver, "hvp_per_step", 0),
                problem_args=parse_assignments(args.problem_arg, "--problem-arg", schedules=False),
                comm_rounds_per_step=solver.comm_per_step * getattr(spec["mix"], "rounds", 1),
                compile_s=agent_meta.get("compile_s"), run_s=agent_meta.get("run_s"),
                hparams=dict(getattr(solver, "hparams", {})))
    rows = read_jsonl(str(out / "history.jsonl"))
    print(write_outputs(out, rows, meta))
    last = max(rows, key=lambda r: (r["step"], r["seed"]))
    print(f"consensus {last['consensus']:.3g}, {last['comm_rounds']} communication rounds, "
          f"{last['bytes_sent']:,.0f} bytes sent per agent")
    print(f"history: {out / 'history.jsonl'}\nplot:    {out / 'plot.png'}")
    return 0


# -- outputs ---------------------------------------------------------------------------------
def _title(meta: dict, n_seeds: int) -> str:
    return (f"{meta.get('solver', '?')} on {meta.get('problem', '?')}, "
            f"{meta.get('network', '?')} ({meta.get('mode', '?')}), noise "
            f"{meta.get('noise', 'none')}: median over {n_seeds} seeds, band 20–80%")


def write_outputs(out_dir, rows: list[dict], meta, title: str | None = None,
                  metric: str = "grad_norm") -> str:
    """Write a finished decentralized run's files; return the summary table (markdown).

    ``meta`` (a dict or a list of them: solver, problem, noise, network, agents, mode, steps,
    seeds, compile_s, run_s, hparams, ...) is appended to ``runs.jsonl`` (hyperparameters as
    JSON values: numbers stay numbers, a schedule becomes its CLI string); ``summary.md`` and
    ``plot.png`` are written by :func:`htbo.outputs.write_summary`, as for every other run.
    """
    from ..history import JsonlWriter
    from ..outputs import write_summary
    if not rows:
        raise ValueError(f"no history rows to summarize in {out_dir}")
    out = Path(out_dir)
    metas = [meta] if isinstance(meta, dict) else list(meta)
    with JsonlWriter(str(out / "runs.jsonl")) as w:
        w([dict(x) for x in metas])
    seeds = len({r["seed"] for r in rows})
    return write_summary(out, rows, title or _title(metas[0] if metas else {}, seeds), metric)


# -- the per-process worker ----------------------------------------------------------------
def _progress(me: int, step: int, steps: int, seed: int, k: int, n: int, row: dict | None):
    line = f"[htbo-agent {me}] step {step}/{steps} seed {seed} ({k}/{n})"
    if row is not None:
        vals = [f"{key} {row[key]:.4g}" for key in ("grad_norm", "consensus")
                if isinstance(row.get(key), (int, float))]
        line += ": " + ", ".join(vals + [f"{row['time_s']:.2f} s"])
    return line


def cmd_agent(args) -> int:
    from . import distributed as dist
    cfg = dist.config_from_env()
    me = cfg.process_id
    name, m = _network(args.network, cfg.num_processes)
    seeds = parse_seeds(args.seeds)
    print(f"[htbo-agent {me}] pid {os.getpid()}: joining {m} agents at {cfg.coordinator}",
          flush=True)
    dist.initialize(cfg)
    spec = _build_spec(args, name, m)
    steps = _steps(args, spec["solver"])
    out = Path(args.out)
    hist = out / "history.jsonl"
    if me == 0:
        out.mkdir(parents=True, exist_ok=True)
        hist.write_text("")
    last = [None]

    def writer(rows):
        with hist.open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        last[0] = rows[-1]

    reached = [0]
    seed_at = iter(seeds)
    current = [None, 0]  # seed, its position

    def on_eval(step):
        if step <= reached[0] or current[0] is None:  # the first evaluation of a new seed
            current[0], current[1] = next(seed_at), current[1] + 1
        reached[0] = step
        print(_progress(me, step, steps, current[0], current[1], len(seeds), last[0]),
              flush=True)
        if me == args.fail_agent and args.fail_at_step is not None and step >= args.fail_at_step:
            print(f"[htbo-agent {me}] injected failure at step {step}", flush=True)
            os._exit(3)

    try:
        res = dist.run_distributed(
            spec["problem"], spec["solver"], spec["mix"], steps=steps,
            seeds=seeds, n_evals=args.n_evals, evaluate=spec.get("evaluate"),
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
                    chunk_compiles=res["chunk_compiles"],
                    agents=m, steps=steps, solver=args.solver, problem=args.problem)
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
