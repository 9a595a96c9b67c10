"""``htbo run | compare | demo | plot | list``."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..parsing import parse_assignments, parse_list
from ..plan import Entry, jsonable_hp
from .common import Failure, add_budget, add_output, add_problem, load_config, plan_from_args

__all__ = ["configure", "DEMO_SOLVERS", "DEMO_PROBLEM", "DEMO_NOISE"]


def _execute(args, plan):
    from ..jobs import execute_plan
    return execute_plan(plan, args.out, overwrite=args.overwrite,
                        progress=not args.no_progress)


def _resume(args) -> int:
    """Continue a run, compare or demo directory (a launch continues with ``htbo launch
    --resume``, distributed as it began; a tune starts again)."""
    from ..jobs import execute_plan, read_plan
    plan = read_plan(args.resume)
    if plan.command == "launch":
        raise ValueError(f"--resume {args.resume}: a launch directory (one process per agent); "
                         f"continue it with: htbo launch --resume {args.resume}")
    if plan.command == "tune":
        raise ValueError(f"--resume {args.resume}: a tune directory; a tune does not resume: "
                         "run it again with --overwrite")
    return execute_plan(plan, args.resume, resume=True, progress=not args.no_progress)


def cmd_run(args):
    if args.resume:
        return _resume(args)
    config = load_config(args.config) if args.config else {}
    plan = plan_from_args(args, "run", config)
    solver = args.solver or config.get("solver") or ("dnsvrb" if plan.network else "n2sba")
    hp = {**(config.get("hp") or {}), **jsonable_hp(parse_assignments(args.hp, "--hp"))}
    label = solver if not args.config else config.get("label") or solver
    plan.entries = [Entry(label=label, solver=solver, hp=hp)]
    return _execute(args, plan)


def cmd_compare(args):
    if args.resume:
        return _resume(args)
    configs = [(path, load_config(path)) for path in args.config or []]
    for path, cfg in configs:
        if "solver" not in cfg:
            raise ValueError(f"--config {path}: no 'solver' in it (expected a best.json "
                             "written by htbo tune)")
    base = configs[0][1] if configs else {}
    for path, cfg in configs[1:]:  # one problem per comparison
        for k in ("problem", "problem_args", "noise", "network"):
            if cfg.get(k) != base.get(k):
                raise ValueError(f"--config files disagree on {k} ({configs[0][0]}: "
                                 f"{base.get(k)!r}, {path}: {cfg.get(k)!r}); compare runs of "
                                 "one problem")
    plan = plan_from_args(args, "compare", {k: base[k] for k in (
        "problem", "problem_args", "noise", "network", "budget", "steps", "seeds", "hvp_cost",
        "metric") if k in base})
    names = [s.strip() for s in (args.solvers or "").split(",") if s.strip()]
    if not names and not configs:
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
    plan.entries = [Entry(label=n, solver=n, hp=jsonable_hp(hp[n]),
                          grid={k: list(jsonable_hp(dict(enumerate(vs))).values())
                                for k, vs in grid[n].items()}) for n in names]
    for path, cfg in configs:
        plan.entries.append(Entry(label=cfg.get("label") or f"{cfg['solver']} (tuned)",
                                  solver=cfg["solver"], hp=cfg.get("hp", {})))
    return _execute(args, plan)


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
    from ..jobs import execute_plan, load_json
    cfg = Path(args.out) / "config.json"
    overwrite = args.overwrite or (cfg.exists() and isinstance(
        load_json(str(cfg), "--out"), dict) and load_json(str(cfg), "--out").get(
        "command") == "demo")  # a previous demo in the same place is replaced
    plan = plan_from_args(args, "demo", problem="quadratic", problem_args=DEMO_PROBLEM,
                          noise=args.noise or DEMO_NOISE)
    plan.entries = [Entry(label=n, solver=n, hp=hp) for n, hp in DEMO_SOLVERS.items()]
    t0 = time.perf_counter()
    rc = execute_plan(plan, args.out, overwrite=overwrite, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return rc


def cmd_plot(args):
    from ..history import format_table, read_jsonl, summarize
    from ..jobs import last_records
    from ..plots import plot_histories
    path = args.history
    if os.path.isdir(path):
        path = os.path.join(path, "history.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"no history file at {path}")
    rows = read_jsonl(path, warn=True)
    if not rows:
        raise ValueError(f"{path} has no rows")
    diverged = {}
    for r in last_records(Path(path).parent).values():
        for d in r.get("diverged") or []:
            diverged.setdefault(r["label"], []).append((d["seed"], d["step"]))
    table = format_table(summarize(rows, args.metric, diverged), args.metric)
    out = args.png or os.path.join(os.path.dirname(path), f"plot-{args.metric}.png")
    try:
        plot_histories(rows, out, metric=args.metric, diverged=diverged)
    except OSError as e:
        from ..locks import oserror_message
        raise Failure(oserror_message(e, out, "write") + "; --png PATH writes the plot "
                      "elsewhere") from None
    print(table)
    print(f"plot: {out}")
    return 0


def cmd_list(args):
    from ..decentralized import DEC_PROBLEMS, DEC_SOLVERS, TOPOLOGIES
    from ..noise import NOISE_LAWS
    from ..problems import PROBLEMS
    from ..solvers import SOLVERS
    for title, reg in (("problems (or module:function, a factory of yours)", PROBLEMS),
                       ("solvers", SOLVERS),
                       ("noise laws (NAME[:PARAM][@SIGMA][/radial], or none)", NOISE_LAWS),
                       ("decentralized problems (--network NAME:AGENTS)", DEC_PROBLEMS),
                       ("decentralized solvers", DEC_SOLVERS), ("topologies", TOPOLOGIES)):
        print(f"{title}:")
        for line in reg.describe():
            print(f"  {line}")
    return 0


def configure(sub) -> None:
    p = sub.add_parser("demo", help="N²SBA vs F2SA vs clipped F2SA on a heavy-tailed quadratic")
    add_budget(p)
    add_output(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("run", help="run one solver")
    add_problem(p)
    p.add_argument("--solver", default=None,
                   help="a solver (htbo list) or module:Class of yours; default n2sba (dnsvrb "
                        "with --network)")
    p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS",
                   help="decentralized run (simulated), e.g. ring:8 (htbo list)")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="solver hyperparameter (repeatable)")
    p.add_argument("--config", default=None, metavar="BEST_JSON",
                   help="start from a best.json written by htbo tune: its solver, "
                        "hyperparameters, problem, noise, budget and seeds (flags override)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run, compare or demo in DIR from its last checkpoints "
                        "(other flags ignored)")
    add_budget(p)
    add_output(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("compare", help="run several solvers with the same budget, one plot")
    add_problem(p)
    p.add_argument("--solvers", default=None, help="default n2sba,f2sa,clipped-f2sa")
    p.add_argument("--hp", action="append", metavar="SOLVER.KEY=VALUE")
    p.add_argument("--grid", action="append", metavar="SOLVER.KEY=V1,V2",
                   help="tune: every value with the same budget (one compiled program), plot "
                        "each solver's best")
    p.add_argument("--config", action="append", metavar="BEST_JSON",
                   help="add a tuned solver from htbo tune's best.json (repeatable; its "
                        "problem, noise, budget and seeds are used unless flags override)")
    p.add_argument("--resume", default=None, metavar="DIR")
    add_budget(p)
    add_output(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("plot", help="re-plot a history file (or directory)")
    p.add_argument("history")
    p.add_argument("--metric", default="grad_norm")
    p.add_argument("--png", default=None)
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("list", help="list problems, solvers, noise laws and topologies")
    p.set_defaults(func=cmd_list)
