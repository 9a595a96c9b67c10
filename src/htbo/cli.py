"""Command-line interface: ``htbo demo | run | compare | plot | list``.

Hyperparameters are ``--hp KEY=VALUE`` (``compare``: ``--hp SOLVER.KEY=VALUE``); a value is
a number, ``true``/``false``/``none``, or a schedule: ``isqrt:V0:T0`` (V0/sqrt(1+t/T0)),
``power:V0:T0:P`` or ``linear:START:RATE:STOP``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["main", "parse_value", "parse_assignments"]


from .parsing import parse_assignments, parse_list, parse_seeds, parse_value  # noqa: E402


# -- commands ---------------------------------------------------------------------------------------
def _problem(args):
    from .problems import make_problem
    return make_problem(args.problem, noise=args.noise,
                        **parse_assignments(args.problem_arg, "--problem-arg"))


def _steps(args, solver):
    from .runner import steps_for_budget
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        return args.steps
    if args.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {args.budget}")
    return steps_for_budget(solver, args.budget)


def _run_many(problem, solvers, args, out_dir, banner=True):
    """Run each ``(label, solver)`` for the same SFO budget; write history, table, plot."""
    from .history import JsonlWriter, format_table, read_jsonl, summarize
    from .plots import plot_histories
    from .runner import run

    os.makedirs(out_dir, exist_ok=True)
    hist = os.path.join(out_dir, "history.jsonl")
    meta_path = os.path.join(out_dir, "runs.jsonl")
    seeds = parse_seeds(args.seeds)
    failed = []
    with JsonlWriter(hist) as writer, JsonlWriter(meta_path) as meta_writer:
        for label, solver in solvers:
            steps = _steps(args, solver)
            if banner:
                print(f"[htbo] {label}: {steps} steps x {len(seeds)} seeds "
                      f"({solver.sfo_per_step} SFO/step) on {problem.name}, noise "
                      f"{problem.noise or 'none'}", file=sys.stderr)
            res = run(problem, solver, steps=steps, seeds=seeds, n_evals=args.n_evals,
                      writer=writer, progress=not args.no_progress, on_nonfinite="stop",
                      labels={"label": label})
            meta = dict(res.meta, label=label, nonfinite=res.nonfinite)
            meta_writer([meta])
            if res.nonfinite is not None:
                failed.append((label, res.nonfinite))
                print(f"[htbo] {label}: iterates became non-finite at step "
                      f"{res.nonfinite['step']} (seed {res.nonfinite['seed']}); history up to "
                      f"step {res.steps} kept", file=sys.stderr)
            elif banner:
                print(f"[htbo] {label}: compile {res.compile_s:.2f} s, run {res.run_s:.3f} s "
                      f"({1e6 * res.run_s / steps:.1f} µs/step for {len(seeds)} seeds)",
                      file=sys.stderr)
    rows = read_jsonl(hist)
    summary = summarize(rows)
    table = format_table(summary)
    best = _best_per_solver(summary, {label: s.name for label, s in solvers})
    if len(best) < len(summary):  # a grid: plot each solver's best configuration only
        table += "\n\nbest of each solver's grid: " + ", ".join(sorted(best))
        rows = [r for r in rows if r.get("label") in best]
    png = plot_histories(rows, os.path.join(out_dir, "plot.png"),
                         title=f"{problem.name}, noise {problem.noise or 'none'}: median over "
                               f"{len(seeds)} seeds, band 20–80%")
    with open(os.path.join(out_dir, "summary.md"), "w") as fh:
        fh.write(table + "\n")
    print(table)
    print(f"\nhistory: {hist}\nplot:    {png}")
    return 1 if failed else 0


def _best_per_solver(summary: list[dict], solver_of: dict) -> set:
    """Labels of the configuration with the lowest median final metric, per solver."""
    best = {}
    for s in summary:  # sorted by median, so the first seen per solver is its best
        best.setdefault(solver_of.get(s["label"], s["label"]), s["label"])
    return set(best.values())


def _expand_grid(name: str, hp: dict, grid: dict) -> list[tuple[str, dict]]:
    """``[(label, hparams)]`` over the Cartesian product of ``grid`` (``{key: [values]}``)."""
    configs = [("", dict(hp))]
    for key, values in grid.items():
        configs = [(f"{lab},{key}={v!r}" if lab else f"{key}={v!r}", dict(h, **{key: v}))
                   for lab, h in configs for v in values]
    return [(f"{name}[{lab}]" if lab else name, h) for lab, h in configs]


def cmd_run_network(args):
    """``htbo run --network ring:8``: the simulated decentralized mode."""
    from .decentralized import make_dec_solver, make_network_problem, parse_network, run_network
    from .history import JsonlWriter, format_table, read_jsonl, summarize
    from .plots import plot_histories
    W = parse_network(args.network)
    problem = make_network_problem(args.problem, len(W), noise=args.noise,
                                   **parse_assignments(args.problem_arg, "--problem-arg"))
    solver = make_dec_solver(args.solver, **parse_assignments(args.hp, "--hp"))
    steps = _steps(args, solver)
    os.makedirs(args.out, exist_ok=True)
    hist = os.path.join(args.out, "history.jsonl")
    with JsonlWriter(hist) as writer:
        res = run_network(problem, solver, W, steps=steps, seeds=parse_seeds(args.seeds),
                          n_evals=args.n_evals, writer=writer, progress=not args.no_progress,
                          on_nonfinite="stop", labels={"network": args.network})
    rows = read_jsonl(hist)
    print(format_table(summarize(rows)))
    last = max(rows, key=lambda r: r["step"])
    print(f"consensus {last['consensus']:.3g}, {last['comm_rounds']} communication rounds, "
          f"{last['bytes_sent']:,.0f} bytes sent per agent")
    print(f"history: {hist}\nplot:    "
          f"{plot_histories(rows, os.path.join(args.out, 'plot.png'))}")
    if res.nonfinite is not None:
        print(f"htbo: iterates became non-finite at step {res.nonfinite['step']} "
              f"(seed {res.nonfinite['seed']}); history kept", file=sys.stderr)
        return 1
    return 0


def cmd_run(args):
    if args.network:
        return cmd_run_network(args)
    from .solvers import make_solver
    problem = _problem(args)
    solver = make_solver(args.solver, **parse_assignments(args.hp, "--hp"))
    return _run_many(problem, [(args.solver, solver)], args, args.out)


def cmd_compare(args):
    from .solvers import make_solver
    problem = _problem(args)
    names = [s.strip() for s in args.solvers.split(",") if s.strip()]
    if not names:
        raise ValueError("--solvers: give at least one solver name")
    hp = {n: {} for n in names}
    for k, v in parse_assignments(args.hp, "--hp").items():
        name, dot, key = k.partition(".")
        if not dot or name not in hp:
            raise ValueError(f"--hp for compare must be SOLVER.KEY=VALUE with SOLVER one of "
                             f"{names}, got {k!r}")
        hp[name][key] = v
    grid = {n: {} for n in names}
    for item in args.grid or []:
        k, eq, vals = item.partition("=")
        name, dot, key = k.strip().partition(".")
        if not eq or not dot or name not in grid or not vals:
            raise ValueError(f"--grid must be SOLVER.KEY=V1,V2,... with SOLVER one of {names}, "
                             f"got {item!r}")
        grid[name][key.replace("-", "_")] = [parse_value(v) for v in vals.split(",")]
    solvers = [(label, make_solver(n, **h)) for n in names
               for label, h in _expand_grid(n, hp[n], grid[n])]
    return _run_many(problem, solvers, args, args.out)


# Demo: N²SBA vs F2SA vs clipped F2SA on the 10×20 quadratic (κ = 10) under α-stable(1.5)
# noise, 100k SFO each, 5 seeds. Step sizes were picked from small grids (docs/demo.md).
DEMO_PROBLEM = dict(dim_x=10, dim_y=20, kappa=10.0)
DEMO_NOISE = "stable:1.5"
DEMO_SOLVERS = {
    "n2sba": dict(eta="isqrt:0.1:200", lam=10.0, alpha=0.05, tau=0.05, inner_steps=5,
                  batch_in=1, batch_out=8),
    "f2sa": dict(eta=0.0003, lam=10.0, lam_rate=0.01, lam_max=30.0, alpha=0.05, tau=0.05,
                 inner_steps=5, batch_in=1, batch_out=8),
    "clipped-f2sa": dict(eta=0.03, lam=10.0, lam_rate=0.01, lam_max=30.0, alpha=0.05, tau=0.05,
                         inner_steps=5, batch_in=1, batch_out=8, clip=3.0),
}


def cmd_demo(args):
    from .problems import make_problem
    from .solvers import make_solver
    problem = make_problem("quadratic", noise=DEMO_NOISE, **DEMO_PROBLEM)
    solvers = []
    for name, hp in DEMO_SOLVERS.items():
        hp = {k: parse_value(v) if isinstance(v, str) else v for k, v in hp.items()}
        solvers.append((name, make_solver(name, **hp)))
    t0 = time.perf_counter()
    rc = _run_many(problem, solvers, args, args.out)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return rc


def cmd_plot(args):
    from .history import format_table, read_jsonl, summarize
    from .plots import plot_histories
    path = args.history
    if os.path.isdir(path):
        path = os.path.join(path, "history.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"no history file at {path}")
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path} has no rows")
    out = args.png or os.path.join(os.path.dirname(path), f"plot-{args.metric}.png")
    plot_histories(rows, out, metric=args.metric)
    print(format_table(summarize(rows, args.metric), args.metric))
    print(f"plot: {out}")
    return 0


def cmd_list(args):
    from .problems import PROBLEMS
    from .solvers import SOLVERS
    print("problems:", ", ".join(sorted(PROBLEMS)))
    print("solvers: ", ", ".join(sorted(SOLVERS)))
    print("noise:    none, gauss, t:NU, pareto:A, stable:ALPHA  [@SIGMA] [/radial]")
    from .decentralized import DEC_PROBLEMS, DEC_SOLVERS
    from .decentralized.topology import TOPOLOGIES
    print("decentralized (--network NAME:AGENTS):", ", ".join(sorted(TOPOLOGIES)))
    print("  problems:", ", ".join(sorted(DEC_PROBLEMS)), "| solvers:", ", ".join(sorted(DEC_SOLVERS)))
    return 0


# -- parser -----------------------------------------------------------------------------------------
def _common(p, budget=True):
    p.add_argument("--noise", default="stable:1.5",
                   help="noise law: none, gauss, t:NU, pareto:A, stable:ALPHA (+@SIGMA, /radial)")
    p.add_argument("--seeds", default="5", help="a count N (seeds 0..N-1) or a list 0,3,7")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="outer iterations per solver")
    g.add_argument("--budget", type=int, default=100_000,
                   help="SFO budget per solver (default 100000); steps = budget // SFO per step")
    p.add_argument("--n-evals", type=int, default=25, help="evaluation points per run")
    p.add_argument("--out", default="htbo-out", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="htbo", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="N²SBA vs F2SA vs clipped F2SA on a heavy-tailed quadratic")
    _common(p)
    p.set_defaults(func=cmd_demo, noise=DEMO_NOISE)
    for name, fn, helptext in (("run", cmd_run, "run one solver"),
                               ("compare", cmd_compare, "run several solvers, one plot")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--problem", default="quadratic")
        p.add_argument("--problem-arg", action="append", metavar="KEY=VALUE",
                       help="problem constructor argument (repeatable)")
        if name == "run":
            p.add_argument("--solver", default="n2sba")
            p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS",
                           help="decentralized run (simulated), e.g. ring:8; problems "
                                "quadratic|pl, solvers dnsvrb|dsvrb|dsvrb-clip|dsgd-bilevel")
        else:
            p.add_argument("--solvers", default="n2sba,f2sa,clipped-f2sa")
        p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                       help="solver hyperparameter (compare: SOLVER.KEY=VALUE); repeatable")
        if name == "compare":
            p.add_argument("--grid", action="append", metavar="SOLVER.KEY=V1,V2",
                           help="tune: run every value (same budget), plot each solver's best")
        _common(p)
        p.set_defaults(func=fn)
    p = sub.add_parser("plot", help="re-plot a history file (or directory)")
    p.add_argument("history")
    p.add_argument("--metric", default="grad_norm")
    p.add_argument("--png", default=None)
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("list", help="list problems, solvers and noise laws")
    p.set_defaults(func=cmd_list)
    from .decentralized.cli import configure
    configure(sub)  # htbo launch (+ the hidden per-process 'agent' worker)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, FileNotFoundError) as e:
        print(f"htbo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("htbo: interrupted; rows written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
