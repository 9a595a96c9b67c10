"""``htbo tune``: one solver's grid or a race of solvers at one budget; ``best.json``.

The plan (``config.json``) holds one grid entry per solver (a solver without ``--grid``
gets its default grid, written out) and the search options in ``plan.search``; a single
solver also gets a ``SOLVER (defaults)`` entry. After the search each solver's best point,
run again on the fresh seeds, becomes a regular entry ``SOLVER (tuned)`` of the directory
(history rows, record, checkpoint), and ``best.json`` names the winner's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..parsing import parse_assignments, parse_list, parse_seeds
from ..plan import Entry, jsonable_hp
from .common import add_budget, add_output, add_problem, plan_from_args

__all__ = ["configure", "cmd_tune"]


def _split(key: str, names: list[str], race: bool, what: str, item: str) -> tuple[str, str]:
    """``SOLVER.KEY`` or ``KEY`` → ``(solver or '', key)``, checked against the race."""
    head, dot, tail = key.partition(".")
    if dot:
        # parse_assignments spells keys with "_": match solver names either way
        head = next((n for n in names if n.replace("-", "_") == head.replace("-", "_")), head)
        if head not in names:
            where = f"the race ({', '.join(names)})" if race else \
                f"the solver being tuned ({names[0]})"
            raise ValueError(f"{what} {item}: {head!r} is not in {where}")
        return head, tail.strip().replace("-", "_")
    return "", key.strip().replace("-", "_")


def _fields(name: str, network: bool) -> set | None:
    import dataclasses

    from ..plan import load_solver
    from ..solvers import solver_class
    try:
        return {f.name for f in dataclasses.fields(solver_class(load_solver(name, network)))}
    except TypeError:
        return None


def _check_key(name: str, key: str, fields: set | None, what: str, item: str) -> None:
    if fields is not None and key not in fields:
        raise ValueError(f"{what} {item}: {name} has no hyperparameter {key!r}; it has "
                         f"{', '.join(sorted(fields))}")


def _eval_seeds(text, seeds: list[int]):
    if text is None:
        return None
    t = str(text).strip()
    if t.isdigit():
        if int(t) < 1:
            raise ValueError(f"--eval-seeds must be a count >= 1 or a list of seeds, got {t}")
        return int(t)
    out = parse_seeds(t)
    both = sorted(set(out) & set(seeds))
    if both:
        raise ValueError(f"--eval-seeds must be disjoint from --seeds; both have {both}")
    return out


def cmd_tune(args):
    from ..jobs import claim_run_dir, run_entries, summarize
    from ..plan import load_solver
    from ..search import default_grid
    if args.solver and args.solvers:
        raise ValueError("give --solver (one solver) or --solvers (a race), not both")
    if args.max_rounds is not None and args.max_rounds < 0:
        raise ValueError(f"--max-rounds must be >= 0, got {args.max_rounds}")
    if args.halving and args.no_halving:
        raise ValueError("give --halving or --no-halving, not both")
    plan = plan_from_args(args, "tune")
    net = bool(plan.network)
    race = args.solvers is not None
    names = [s.strip() for s in (args.solvers or "").split(",") if s.strip()] if race else \
        [args.solver or ("dnsvrb" if net else "n2sba")]
    if not names:
        raise ValueError(f"--solvers: no solver named in {args.solvers!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"--solvers names {dup} more than once")
    for n in names:
        load_solver(n, net)  # an unknown name fails here, listing the available ones
    fields = {n: _fields(n, net) for n in names}
    grids: dict = {n: {} for n in names}
    for item in args.grid or []:
        key, eq, vals = item.partition("=")
        if not eq or not key.strip() or not vals:
            raise ValueError(f"--grid must be {'SOLVER.' if race else ''}KEY=V1,V2,..., "
                             f"got {item!r}")
        who, k = _split(key, names, race, "--grid", item)
        if not who:
            if race:
                raise ValueError(f"--grid {item}: in a race, name the solver: "
                                 f"--grid SOLVER.{k}=... with SOLVER one of {', '.join(names)}")
            who = names[0]
        _check_key(who, k, fields[who], "--grid", item)
        grids[who][k] = parse_list(vals, f"--grid {item}")
    hp: dict = {n: {} for n in names}
    for k, v in parse_assignments(args.hp, "--hp").items():
        who, key = _split(k, names, race, "--hp", f"{k}={v}")
        targets = [who] if who else [n for n in names if fields[n] is None or key in fields[n]]
        if not targets:
            raise ValueError(f"--hp {k}: no solver of the race ({', '.join(names)}) has it")
        for n in targets:
            _check_key(n, key, fields[n], "--hp", k)
            hp[n][key] = v
    eval_seeds = _eval_seeds(args.eval_seeds, plan.seed_list())
    plan.search = dict(extend=not args.no_extend)
    if args.max_rounds is not None:
        plan.search["max_rounds"] = args.max_rounds
    if args.no_halving or args.halving:
        plan.search["halving"] = bool(args.halving)
    if eval_seeds is not None:
        plan.search["eval_seeds"] = eval_seeds
    # the budget rule and the default grids need the built solvers
    plan.entries = [Entry(label=n, solver=n, hp=jsonable_hp(hp[n])) for n in names]
    if args.hvp_cost is None:
        built = [re.solver for re in plan.resolve().entries]
        hvps = [s.hvp_per_step > 0 for s in built]
        plan.hvp_cost = 1.0 if any(hvps) and not all(hvps) else 0.0
    res0 = plan.resolve()
    for re in res0.entries:
        if not grids[re.label]:
            grids[re.label] = default_grid(re.solver, re.steps, re.entry.solver)
    plan.entries = [Entry(label=n, solver=n, hp=jsonable_hp(hp[n]),
                          grid={k: list(jsonable_hp(dict(enumerate(vs))).values())
                                for k, vs in grids[n].items()}) for n in names]
    if not race:
        plan.entries.append(Entry(label=f"{names[0]} (defaults)", solver=names[0],
                                  hp=jsonable_hp(hp[names[0]])))
    res = plan.resolve()
    with claim_run_dir(args.out, plan, overwrite=args.overwrite) as path:
        rc = run_entries(res, path, progress=not args.no_progress)
        t = res.search_result
        if t.winner is None:
            summarize(res, path)
            dead = [d for d in t.diverged if d.get("phase") == "select"]
            first = min(dead, key=lambda d: d["step"]) if dead else None
            every = all(row["diverged"] == len(row["finals"]) for row in t.table)
            what = "every point diverged" if every else "no point kept a finite median"
            where = f" (the first at step {first['step']}: {first['label']}, seed " \
                    f"{first['seed']})" if first else ""
            print(f"htbo: {what}{where}; no best.json written: try smaller step sizes")
            return 1
        res = _tuned_entries(plan, t, path)
        best = _best_json(plan, res, t)
        from ..locks import atomic_write
        atomic_write(path / "best.json", json.dumps(best, indent=1) + "\n")
        summarize(res, path)
    _report(t, best, Path(args.out))
    return 0 if rc in (0, 1) else rc


def _tuned_entries(plan, t, path: Path):
    """Each solver's fresh-seed run as a regular entry: config.json, record, checkpoint."""
    from ..history import JsonlWriter
    from ..jobs import entry_config, fingerprint
    from ..locks import atomic_write
    from ..outputs import Checkpoint
    by_label = {e.label: e for e in plan.entries}
    for lab, s in t.solvers.items():
        if s["fresh_run"] is None:
            continue
        plan.entries.append(Entry(label=f"{lab} (tuned)", solver=by_label[lab].solver,
                                  hp=jsonable_hp(s["best"]["hparams"])))
    atomic_write(path / "config.json", json.dumps(plan.to_dict(), indent=1) + "\n")
    res = plan.resolve()
    runs = JsonlWriter(str(path / "runs.jsonl"))
    try:
        for re in res.entries:
            lab = re.label[:-len(" (tuned)")] if re.label.endswith(" (tuned)") else None
            if lab not in t.solvers:
                continue
            s = t.solvers[lab]
            cfg = dict(entry_config(res, re), seeds=list(t.eval_seeds))
            Checkpoint(path, re.label, cfg).save(s["fresh_run"])
            dead = [d for d in t.diverged if d["label"] == re.label]
            runs([dict(label=re.label, solver=re.solver.name, problem=res.problem.name,
                       problem_args=plan.problem_args, noise=res.noise, network=plan.network,
                       hparams=jsonable_hp(re.hp), steps=re.steps, seeds=list(t.eval_seeds),
                       sfo_per_step=re.solver.sfo_per_step,
                       hvp_per_step=re.solver.hvp_per_step, config=cfg,
                       fingerprint=fingerprint(cfg), status="finished", phase="eval",
                       from_point=s["best"]["label"], fresh=s["fresh"], diverged=dead,
                       run_s=s["fresh_run"]["run_s"], time=time.time())])
    finally:
        runs.close()
    return res


def _best_json(plan, res, t) -> dict:
    w = t.solvers[t.winner]
    entry = next(e for e in plan.entries if e.label == f"{t.winner} (tuned)")
    stats = ("median", "q20", "q80", "finals", "diverged")
    return dict(
        solver=entry.solver, label=entry.label, hp=entry.hp, problem=plan.problem,
        problem_args=plan.problem_args, noise=res.noise, network=plan.network,
        metric=t.metric, budget=plan.budget, steps=plan.steps, seeds=list(t.seeds),
        eval_seeds=list(t.eval_seeds), n_evals=plan.n_evals, hvp_cost=t.hvp_cost,
        from_point=w["best"]["label"], median=w["selection"]["median"],
        selection={k: w["selection"][k] for k in stats},
        fresh=None if w["fresh"] is None else {k: w["fresh"][k] for k in stats},
        race={lab: dict(best=s["best"]["label"], hp=jsonable_hp(s["best"]["hparams"]),
                        selection={k: s["selection"][k] for k in stats},
                        fresh=None if s["fresh"] is None else
                        {k: s["fresh"][k] for k in stats}, grid=s["grid"])
              for lab, s in t.solvers.items()},
        extended=t.extended, edges=t.edges, search=plan.search,
        spent=t.spent)


def _report(t, best: dict, out: Path) -> None:
    print(f"\nsearch: median final {t.metric}; selection on seeds {_seeds(t.seeds)}, fresh "
          f"figures on seeds {_seeds(t.eval_seeds)} (not used to choose)")
    print(t.format_race())
    full = [row for row in t.table if row["full"]]
    print(f"\npoints that ran the full budget ({len(full)} of {len(t.table)}; "
          f"{t.spent['sfo_eq']:,.0f} SFO-eq spent, "
          f"{t.spent['sfo_eq'] / max(t.spent['full_grid_sfo_eq'], 1):.0%} of all at the "
          "full budget):")
    for i, row in enumerate(full, 1):
        dv = f"  ({row['diverged']} seeds diverged)" if row["diverged"] else ""
        print(f"  {i:2d}. {row['label']}: {row['median']:.4g} [{row['q20']:.4g}, "
              f"{row['q80']:.4g}]{dv}")
    for e in t.extended:
        print(f"extended: {e['solver']} {e['axis']} {'up' if e['side'] == 'high' else 'down'}"
              f"ward in round {e['round']} (to {e['value']:g})")
    for lab, s in t.solvers.items():
        print(f"final grid of {lab}: " + "; ".join(
            f"{k}=" + ",".join(str(v) for v in vals) for k, vals in s["grid"].items()))
    for n in t.notes:
        print(f"note: {n}")
    print(f"best: {best['label']} ({best['from_point']}) -> {out / 'best.json'} "
          f"(use: htbo run --config {out / 'best.json'})")


def _seeds(seeds) -> str:
    s = list(seeds)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def configure(sub) -> None:
    p = sub.add_parser("tune", help="search one solver's grid or race solvers at one budget "
                                    "(edges extended, budgets halved, fresh seeds); best.json")
    add_problem(p)
    p.add_argument("--solver", default=None, help="one solver (default n2sba; dnsvrb with "
                                                  "--network)")
    p.add_argument("--solvers", default=None, metavar="A,B,...",
                   help="a race: each solver its own grid, one budget, one ranking")
    p.add_argument("--network", default=None, metavar="TOPOLOGY:AGENTS",
                   help="decentralized solvers on this network (budgets per agent)")
    p.add_argument("--grid", action="append", metavar="[SOLVER.]KEY=V1,V2",
                   help="values of one hyperparameter (repeatable: the Cartesian product); "
                        "SOLVER.KEY in a race; a solver without one gets its default grid")
    p.add_argument("--hp", action="append", metavar="[SOLVER.]KEY=VALUE",
                   help="fixed hyperparameter (KEY: every solver that has it)")
    p.add_argument("--no-extend", action="store_true",
                   help="keep the grid fixed (default: numeric axes whose best value is on "
                        "an edge are extended)")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="extension rounds at most (default 3)")
    p.add_argument("--halving", action="store_true",
                   help="successive halving even for a small grid")
    p.add_argument("--no-halving", action="store_true",
                   help="every point runs the full budget (default: halving for races and "
                        "grids of 9 points or more)")
    p.add_argument("--eval-seeds", default=None,
                   help="fresh seeds for the reported figures: a count (default: as many as "
                        "--seeds, after them) or a list disjoint from --seeds")
    add_budget(p)
    add_output(p)
    p.set_defaults(func=cmd_tune)
