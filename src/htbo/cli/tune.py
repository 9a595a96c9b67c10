"""``htbo tune``: a grid × seeds in one compiled program per structure, ``best.json``."""
from __future__ import annotations

import json
from pathlib import Path

from ..parsing import parse_assignments, parse_list
from ..plan import Entry, jsonable_hp
from .common import add_budget, add_output, add_problem, plan_from_args

__all__ = ["configure", "cmd_tune"]


def cmd_tune(args):
    from ..jobs import claim_run_dir, last_records, run_entries, summarize
    grid = {}
    for item in args.grid or []:
        key, eq, vals = item.partition("=")
        if not eq or not key.strip() or not vals:
            raise ValueError(f"--grid must be KEY=V1,V2,..., got {item!r}")
        grid[key.strip().replace("-", "_")] = parse_list(vals, f"--grid {item}")
    if not grid:
        raise ValueError("tune needs at least one --grid KEY=V1,V2,...")
    plan = plan_from_args(args, "tune")
    solver = args.solver or ("dnsvrb" if plan.network else "n2sba")
    hp = jsonable_hp(parse_assignments(args.hp, "--hp"))
    jgrid = {k: list(jsonable_hp(dict(enumerate(vs))).values()) for k, vs in grid.items()}
    plan.entries = [Entry(label=solver, solver=solver, hp=hp, grid=jgrid),
                    Entry(label=f"{solver} (defaults)", solver=solver, hp=hp)]
    res = plan.resolve()
    with claim_run_dir(args.out, plan, overwrite=args.overwrite) as path:
        rc = run_entries(res, path, progress=not args.no_progress)
        summarize(res, path)
        rec = last_records(path).get(solver, {})
        if "best" not in rec:
            return rc
        table = rec["table"]
        if all(t["diverged"] == len(res.seeds) for t in table):
            first = min(rec.get("tune_diverged") or [{"step": "?"}], key=lambda d: d["step"]
                        if isinstance(d["step"], int) else 1 << 60)
            print(f"htbo: every point of the grid diverged (the first at step "
                  f"{first['step']}); no best.json written: try smaller step sizes")
            return 1
        best = dict(solver=solver, label=f"{solver} (tuned)", hp={**hp, **rec["best_hparams"]},
                    problem=plan.problem, problem_args=plan.problem_args, noise=res.noise,
                    network=plan.network, metric=rec.get("metric"), median=table[0]["median"],
                    budget=plan.budget, steps=plan.steps, seeds=res.seeds,
                    hvp_cost=plan.hvp_cost, from_point=rec["best"])
        from ..locks import atomic_write
        atomic_write(path / "best.json", json.dumps(best, indent=1) + "\n")
    print(f"\nranked grid (median final {rec.get('metric')} over {len(res.seeds)} seeds):")
    for i, t in enumerate(table, 1):
        dv = f"  ({t['diverged']} seeds diverged)" if t["diverged"] else ""
        print(f"  {i:2d}. {t['label']}: {t['median']:.4g} [{t['q20']:.4g}, {t['q80']:.4g}]{dv}")
    for n in rec.get("notes", []):
        print(f"note: {n}")
    print(f"best: {rec['best']} -> {Path(args.out) / 'best.json'} "
          f"(use: htbo run --config {Path(args.out) / 'best.json'})")
    return 0 if rc in (0, 1) else rc


def configure(sub) -> None:
    p = sub.add_parser("tune", help="a grid × seeds in one compiled program; best.json")
    add_problem(p)
    p.add_argument("--solver", default=None, help="default n2sba (dnsvrb with --network)")
    p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="values of one hyperparameter (repeatable: the Cartesian product)")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="fixed hyperparameter for every point")
    add_budget(p)
    add_output(p)
    p.set_defaults(func=cmd_tune)
