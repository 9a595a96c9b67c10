"""Command-line interface: ``htbo demo | run | compare | tune | diagnose | plot | list | launch``.

Hyperparameters are ``--hp KEY=VALUE`` (``compare``: ``--hp SOLVER.KEY=VALUE``); a value is
a number, ``true``/``false``/``none``, or a schedule: ``isqrt:V0:T0`` (V0/sqrt(1+t/T0)),
``power:V0:T0:P``, ``linear:START:RATE:STOP`` or ``exp:V0:RATE``. Grids are
``--grid KEY=V1,V2,...`` (``compare``: ``--grid SOLVER.KEY=V1,V2``).

Every run/compare/tune/demo writes into ``--out`` (refused when it already holds a run,
unless ``--overwrite``): ``config.json`` (the command, so ``--resume DIR`` needs nothing
else), ``runs.jsonl``, ``history.jsonl``, ``checkpoints/``, ``summary.md`` and ``plot.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from .jobs import execute_spec, jsonable_hp, load_json
from .parsing import DEFAULT_NOISE, parse_assignments, parse_list, parse_seeds, parse_value

__all__ = ["main", "parse_value", "parse_assignments", "parse_seeds", "build_parser"]


# -- commands ---------------------------------------------------------------------------------------
def _budget_spec(args) -> dict:
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.steps is None and args.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {args.budget}")
    if args.n_evals < 1:
        raise ValueError(f"--n-evals must be >= 1, got {args.n_evals}")
    return dict(steps=args.steps, budget=None if args.steps is not None else args.budget,
                seeds=args.seeds, n_evals=args.n_evals, hvp_cost=args.hvp_cost,
                metric=args.metric)


def _base_spec(args, command: str, config: dict | None = None) -> dict:
    config = config or {}
    network = getattr(args, "network", None) or config.get("network")
    problem_args = {**config.get("problem_args", {}),
                    **jsonable_hp(parse_assignments(args.problem_arg, "--problem-arg", schedules=False))}
    return dict(command=command, problem=args.problem or config.get("problem") or "quadratic",
                problem_args=problem_args,
                noise=args.noise if args.noise is not None else config.get("noise"),
                network=network, **_budget_spec(args))


def _resume_or(args, build) -> int:
    if getattr(args, "resume", None):
        spec = load_json(os.path.join(args.resume, "config.json"), "--resume")
        return execute_spec(spec, args.resume, resume=True, progress=not args.no_progress)
    spec = build()
    return execute_spec(spec, args.out, overwrite=args.overwrite, progress=not args.no_progress)


def cmd_run(args):
    def build():
        config = load_json(args.config, "--config") if args.config else {}
        spec = _base_spec(args, "run", config)
        solver = args.solver or config.get("solver") or ("dnsvrb" if spec["network"] else "n2sba")
        hp = {**config.get("hp", {}), **jsonable_hp(parse_assignments(args.hp, "--hp"))}
        spec["entries"] = [dict(label=solver, solver=solver, hp=hp)]
        return spec
    return _resume_or(args, build)


def cmd_compare(args):
    def build():
        spec = _base_spec(args, "compare")
        names = [s.strip() for s in (args.solvers or "").split(",") if s.strip()]
        if not names and not args.config:
            names = ["n2sba", "f2sa", "clipped-f2sa"]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"--solvers names {dup} more than once; to compare two settings "
                             "of one solver use --grid or --config files")
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
                raise ValueError(f"--grid must be SOLVER.KEY=V1,V2,... with SOLVER one of "
                                 f"{names}, got {item!r}")
            grid[name][key.replace("-", "_")] = parse_list(vals, f"--grid {item}")
        entries = [dict(label=n, solver=n, hp=jsonable_hp(hp[n]),
                        grid={k: [v if isinstance(v, (int, float, str, bool)) else repr(v)
                                  for v in vs] for k, vs in grid[n].items()})
                   for n in names]
        for path in args.config or []:
            cfg = load_json(path, "--config")
            if "solver" not in cfg:
                raise ValueError(f"--config {path}: no 'solver' in it (expected a best.json "
                                 "written by htbo tune)")
            entries.append(dict(label=cfg.get("label") or f"{cfg['solver']} (tuned)",
                                solver=cfg["solver"], hp=cfg.get("hp", {})))
        spec["entries"] = entries
        return spec
    return _resume_or(args, build)


def cmd_tune(args):
    from .outputs import last_records
    if args.resume:
        raise ValueError("tune has no --resume: rerun it (a grid is one compiled program "
                         "per group; there is nothing partial worth keeping)")
    spec = _base_spec(args, "tune")
    grid = {}
    for item in args.grid or []:
        key, eq, vals = item.partition("=")
        if not eq or not key.strip() or not vals:
            raise ValueError(f"--grid must be KEY=V1,V2,..., got {item!r}")
        grid[key.strip().replace("-", "_")] = parse_list(vals, f"--grid {item}")
    if not grid:
        raise ValueError("tune needs at least one --grid KEY=V1,V2,...")
    solver = args.solver or ("dnsvrb" if spec["network"] else "n2sba")
    hp = jsonable_hp(parse_assignments(args.hp, "--hp"))
    jgrid = {k: [v if isinstance(v, (int, float, str, bool)) else repr(v) for v in vs]
             for k, vs in grid.items()}
    spec["entries"] = [dict(label=solver, solver=solver, hp=hp, grid=jgrid),
                       dict(label=f"{solver} (defaults)", solver=solver, hp=hp)]
    rc = execute_spec(spec, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    rec = last_records(Path(args.out)).get(solver, {})
    if "best" not in rec:
        return rc
    best = dict(solver=solver, label=f"{solver} (tuned)",
                hp={**hp, **rec["best_hparams"]}, problem=spec["problem"],
                problem_args=spec["problem_args"], noise=spec["noise"], network=spec["network"],
                metric=rec.get("metric"), median=rec["table"][0]["median"],
                budget=spec["budget"], steps=spec["steps"], seeds=spec["seeds"],
                from_point=rec["best"])
    best["hp"] = {k: v for k, v in best["hp"].items()}
    (Path(args.out) / "best.json").write_text(json.dumps(best, indent=1) + "\n")
    print(f"\nranked grid (median final {rec.get('metric')} over "
          f"{len(parse_seeds(spec['seeds']))} seeds):")
    for i, t in enumerate(rec["table"], 1):
        dv = f"  ({t['diverged']} seeds diverged)" if t["diverged"] else ""
        print(f"  {i:2d}. {t['label']}: {t['median']:.4g} [{t['q20']:.4g}, {t['q80']:.4g}]{dv}")
    for n in rec.get("notes", []):
        print(f"note: {n}")
    print(f"best: {rec['best']} -> {Path(args.out) / 'best.json'} "
          f"(use: htbo run --config {Path(args.out) / 'best.json'})")
    return 0 if rc in (0, 1) else rc


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
    cfg = Path(args.out) / "config.json"
    overwrite = args.overwrite or (cfg.exists() and load_json(str(cfg), "--out").get(
        "command") == "demo")  # a previous demo in the same place is replaced
    spec = dict(command="demo", problem="quadratic", problem_args=DEMO_PROBLEM,
                noise=args.noise or DEMO_NOISE, network=None, **_budget_spec(args),
                entries=[dict(label=n, solver=n, hp=hp) for n, hp in DEMO_SOLVERS.items()])
    t0 = time.perf_counter()
    rc = execute_spec(spec, args.out, overwrite=overwrite, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return rc


def cmd_plot(args):
    from .history import format_table, read_jsonl, summarize
    from .outputs import last_records
    from .plots import plot_histories
    path = args.history
    if os.path.isdir(path):
        path = os.path.join(path, "history.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"no history file at {path}")
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path} has no rows")
    diverged = {}
    for r in last_records(Path(path).parent).values():
        for d in r.get("diverged") or []:
            diverged.setdefault(r["label"], []).append((d["seed"], d["step"]))
    table = format_table(summarize(rows, args.metric, diverged), args.metric)
    out = args.png or os.path.join(os.path.dirname(path), f"plot-{args.metric}.png")
    plot_histories(rows, out, metric=args.metric, diverged=diverged)
    print(table)
    print(f"plot: {out}")
    return 0


def cmd_list(args):
    from .decentralized import DEC_PROBLEMS, DEC_SOLVERS
    from .decentralized.topology import TOPOLOGIES
    from .problems import PROBLEMS
    from .solvers import SOLVERS
    print("problems:", ", ".join(sorted(PROBLEMS)), "(or module:function, a factory of yours)")
    print("solvers: ", ", ".join(sorted(SOLVERS)))
    print("noise:    none, gauss, t:NU, pareto:A, stable:ALPHA  [@SIGMA] [/radial]")
    print("decentralized (--network NAME:AGENTS):", ", ".join(sorted(TOPOLOGIES)))
    print("  problems:", ", ".join(sorted(DEC_PROBLEMS)), "| solvers:",
          ", ".join(sorted(DEC_SOLVERS)))
    return 0


# -- parser -----------------------------------------------------------------------------------------
def _common(p, budget=True):
    p.add_argument("--noise", default=None,
                   help="noise law: none, gauss, t:NU, pareto:A, stable:ALPHA (+@SIGMA, /radial); "
                        f"default: the problem's documented noise (none for problems with data, "
                        f"{DEFAULT_NOISE} without)")
    p.add_argument("--seeds", default="5",
                   help="a count N (seeds 0..N-1), a list 0,3,7 or a range 0-4 (default 5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=None, help="outer iterations per solver")
    g.add_argument("--budget", type=int, default=100_000,
                   help="SFO budget per solver (default 100000); steps = budget // cost per step")
    p.add_argument("--hvp-cost", type=float, default=0.0,
                   help="SFO-equivalents charged per Hessian-vector product against --budget "
                        "(default 0: HVPs are counted apart, not charged)")
    p.add_argument("--n-evals", type=int, default=25, help="evaluation points per run")
    p.add_argument("--metric", default=None,
                   help="rank and plot by this final metric (lower is better; default the "
                        "problem's, usually grad_norm)")
    p.add_argument("--out", default="htbo-out", help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _problem_opts(p):
    p.add_argument("--problem", default=None,
                   help="a built-in problem (htbo list) or module:function, a factory of yours "
                        "returning a BilevelProblem (default quadratic)")
    p.add_argument("--problem-arg", action="append", metavar="KEY=VALUE",
                   help="problem constructor argument (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="htbo", description="stochastic bilevel, minimax and "
                                 "decentralized bilevel optimization under heavy-tailed noise")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="N²SBA vs F2SA vs clipped F2SA on a heavy-tailed quadratic")
    _common(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("run", help="run one solver")
    _problem_opts(p)
    p.add_argument("--solver", default=None, help="default n2sba (dnsvrb with --network)")
    p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS",
                   help="decentralized run (simulated), e.g. ring:8; problems "
                        "quadratic|pl|hypercleaning, "
                        "solvers dnsvrb|dsvrb|dsvrb-clip|dsgd-bilevel")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="solver hyperparameter (repeatable)")
    p.add_argument("--config", default=None, metavar="BEST_JSON",
                   help="start from a best.json written by htbo tune (flags override it)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint (other flags ignored)")
    _common(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("compare", help="run several solvers with the same budget, one plot")
    _problem_opts(p)
    p.add_argument("--solvers", default=None, help="default n2sba,f2sa,clipped-f2sa")
    p.add_argument("--hp", action="append", metavar="SOLVER.KEY=VALUE")
    p.add_argument("--grid", action="append", metavar="SOLVER.KEY=V1,V2",
                   help="tune: every value with the same budget (one compiled program), plot "
                        "each solver's best")
    p.add_argument("--config", action="append", metavar="BEST_JSON",
                   help="add a tuned solver from htbo tune's best.json (repeatable)")
    p.add_argument("--resume", default=None, metavar="DIR")
    _common(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("tune", help="a grid × seeds in one compiled program; best.json")
    _problem_opts(p)
    p.add_argument("--solver", default=None, help="default n2sba (dnsvrb with --network)")
    p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="values of one hyperparameter (repeatable: the Cartesian product)")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="fixed hyperparameter for every point")
    p.add_argument("--resume", default=None, help=argparse.SUPPRESS)
    _common(p)
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser("plot", help="re-plot a history file (or directory)")
    p.add_argument("history")
    p.add_argument("--metric", default="grad_norm")
    p.add_argument("--png", default=None)
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("list", help="list problems, solvers and noise laws")
    p.set_defaults(func=cmd_list)
    from .decentralized.cli import configure
    configure(sub)  # htbo launch
    from .diagnostics.cli import configure as configure_diagnose
    configure_diagnose(sub)  # htbo diagnose
    return ap


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _sigterm) if \
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else None
    try:
        return args.func(args)
    except (ValueError, ImportError, FileNotFoundError, MemoryError) as e:
        print(f"htbo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "resume", None) or getattr(args, "out", None)
        hint = f"; continue with: htbo {args.cmd} --resume {out}" if \
            args.cmd in ("run", "compare") and out else ""
        print(f"htbo: interrupted; rows and checkpoints written so far are kept{hint}",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
