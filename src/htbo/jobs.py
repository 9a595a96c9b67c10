"""Jobs: a run directory's ``config.json`` spec, checked and executed.

A *spec* is a JSON dict: ``command``, ``problem`` (a registered name or ``module:function``),
``problem_args``, ``noise`` (``None``: the problem's documented noise), ``network``,
``steps`` or ``budget`` (+ ``hvp_cost``), ``seeds``, ``n_evals``, ``metric`` and
``entries`` (one per solver: ``label``, ``solver``, ``hp``, optional ``grid``).
:func:`execute_spec` checks everything before writing (:class:`Plan`), runs each entry
(``htbo.run``, or ``htbo.tune`` for a grid) with checkpoints, and writes the summary;
``resume=True`` continues a killed run from its checkpoints. The CLI builds specs;
:func:`final_iterate` reads a run's last iterate back.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

from .parsing import DEFAULT_NOISE, parse_seeds, parse_value

__all__ = ["execute_spec", "Plan", "make_problem_from", "default_noise", "final_iterate",
           "jsonable_hp", "load_json"]


def jsonable_hp(hp: dict) -> dict:
    """Hyperparameters as JSON values (schedules as their CLI strings)."""
    out = {}
    for k, v in hp.items():
        out[k] = v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
    return out


def _hp_from_json(hp: dict, schedules: bool = True) -> dict:
    return {k: parse_value(v, schedules) if isinstance(v, str) else v
            for k, v in (hp or {}).items()}


def load_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path}: not valid JSON ({e})") from None


def make_problem_from(name: str, noise, problem_args: dict, network: str | None = None):
    """A registered problem, a user factory ``module:function`` returning a BilevelProblem,
    or (with ``network``) a decentralized problem stacked over the network's agents."""
    from .problems import PROBLEMS, BilevelProblem, make_problem, with_noise
    if network:
        from .decentralized import make_network_problem, parse_network
        W = parse_network(network)
        return make_network_problem(name, len(W), noise=noise, **problem_args), W
    if name not in PROBLEMS and ":" in name:
        mod, _, fn = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--problem {name}: cannot load {fn!r} from module {mod!r} "
                             f"({type(e).__name__}: {e})") from None
        try:
            problem = factory(**problem_args)
        except TypeError as e:
            raise ValueError(f"--problem {name}: {e}") from None
        if not isinstance(problem, BilevelProblem):
            raise ValueError(f"--problem {name}: the factory must return a BilevelProblem, "
                             f"got {type(problem).__name__}")
        return with_noise(problem, noise), None
    return make_problem(name, noise=noise, **problem_args), None


def default_noise(problem) -> str:
    """The noise a run uses when none is given: the problem's documented ``info["noise"]``;
    otherwise none for problems with data (their sampling is the noise) and
    ``DEFAULT_NOISE`` for problems without data."""
    if problem.info.get("noise"):
        return str(problem.info["noise"])
    return "none" if problem.data_f is not None or problem.data_g is not None else DEFAULT_NOISE


def _solver_maker(name: str, network_W, problem, network: str | None):
    """``(make(**hp) -> Solver, run_kwargs(hp) -> dict)`` for a registered solver, or for a
    decentralized one lifted to the network (metrics, communication counters, labels)."""
    if network_W is None:
        from .solvers import make_solver
        return (lambda **hp: make_solver(name, problem=problem, **hp)), (lambda hp: {})
    from .decentralized import make_dec_solver
    from .decentralized.simulate import network_setup

    def setup(hp):
        return network_setup(problem, make_dec_solver(name, **hp), network_W,
                             {"network": network})
    return (lambda **hp: setup(hp)[0]), (lambda hp: setup(hp)[1])


def _entry_steps(spec, solver) -> int:
    from .runner import steps_for_budget
    if spec.get("steps") is not None:
        return int(spec["steps"])
    return steps_for_budget(solver, int(spec["budget"]), spec.get("hvp_cost", 0.0))


class Plan:
    """Everything built and checked before the output directory is touched."""

    def __init__(self, spec: dict):
        self.spec = spec
        if spec.get("noise") is None and not spec.get("network"):
            clean, _ = make_problem_from(spec["problem"], None,
                                         _hp_from_json(spec.get("problem_args", {}), schedules=False))
            spec["noise"] = default_noise(clean)
        elif spec.get("noise") is None:  # decentralized: the problem's documented noise
            clean, _ = make_problem_from(spec["problem"], None,
                                         _hp_from_json(spec.get("problem_args", {}), schedules=False),
                                         spec["network"])
            spec["noise"] = str(clean.info.get("noise") or DEFAULT_NOISE)
        self.problem, self.W = make_problem_from(spec["problem"], spec.get("noise") or
                                                 DEFAULT_NOISE,
                                                 _hp_from_json(spec.get("problem_args", {}), schedules=False),
                                                 spec.get("network"))
        self.seeds = parse_seeds(spec["seeds"])
        self.entries = []
        names = [e["label"] for e in spec["entries"]]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"solver labels must be distinct, got {dup} more than once "
                             "(compare the same solver twice with --config files or a grid)")
        for e in spec["entries"]:
            make, run_kwargs = _solver_maker(e["solver"], self.W, self.problem,
                                             spec.get("network"))
            hp = _hp_from_json(e.get("hp"))
            grid = {k: [parse_value(v) if isinstance(v, str) else v for v in vals]
                    for k, vals in (e.get("grid") or {}).items()}
            if grid:
                from .tuning import expand_grid, point_label
                for point in expand_grid(grid):
                    try:
                        make(**{**hp, **point})
                    except ValueError as err:
                        raise ValueError(f"{point_label(e['solver'], point)}: {err}") from None
            solver = make(**hp)
            self.entries.append(dict(e, make=make, hp_obj=hp, grid_obj=grid, solver=solver,
                                     steps=_entry_steps(spec, solver),
                                     run_kwargs=run_kwargs(hp)))


def _truncate_history(out: Path, keep) -> None:
    """Rewrite history.jsonl with the rows for which ``keep(row)`` is true (atomic)."""
    from .history import read_jsonl
    path = out / "history.jsonl"
    if not path.exists():
        return
    rows = [r for r in read_jsonl(str(path)) if keep(r)]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _resume_points(plan, path: Path, records: dict) -> dict:
    """Before resuming: each unfinished solver's checkpoint (``{label: resume dict}``), and
    the history cut back to what the checkpoints hold (rows of unfinished grids and of runs
    without a checkpoint are dropped: they are rerun)."""
    import jax

    from .outputs import Checkpoint
    from .runner import cast_hp, float_dtype, programs
    starts, cut = {}, {}
    for e in plan.entries:
        label, solver = e["label"], e["solver"]
        if records.get(label, {}).get("status") == "finished":
            continue
        ck = Checkpoint(path, label)
        if e["grid_obj"] or not ck.exists():
            cut[label] = -1
            continue
        init_b = programs(solver.init, solver.step)[0]
        n = len(plan.seeds)
        hp_b = cast_hp(solver.hp, float_dtype(plan.problem), n)
        keys = jax.random.split(jax.random.key(0), n)
        template = jax.eval_shape(init_b, plan.problem, plan.problem.x0, plan.problem.y0,
                                  keys, hp_b)
        starts[label] = ck.load(template)
        cut[label] = starts[label]["step"]

    def keep(r):
        lab = str(r.get("label", r.get("solver")))
        owner = lab if lab in cut else lab.split("[", 1)[0]
        return owner not in cut or r["step"] <= cut[owner]
    _truncate_history(path, keep)
    return starts


def execute_spec(spec: dict, out: str, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> int:
    """Run a spec (see :class:`Plan`) into ``out``; returns the exit code."""
    from .history import JsonlWriter, read_jsonl
    from .outputs import Checkpoint, last_records, prepare_out, write_summary
    from .runner import run
    from .tuning import tune

    plan = Plan(spec)  # every input is checked before anything is written
    path = prepare_out(out, overwrite=overwrite, resume=resume)
    if not resume:
        (path / "config.json").write_text(json.dumps(spec, indent=1) + "\n")
    records = last_records(path) if resume else {}
    problem, seeds = plan.problem, plan.seeds
    noise = str(problem.noise) if problem.noise else "none"
    metric = spec.get("metric") or problem.info.get("metric") or "grad_norm"
    starts = _resume_points(plan, path, records) if resume else {}
    failed = False
    with JsonlWriter(str(path / "history.jsonl")) as hist, \
            JsonlWriter(str(path / "runs.jsonl")) as runs:
        for e in plan.entries:
            label, solver = e["label"], e["solver"]
            if records.get(label, {}).get("status") == "finished":
                print(f"[htbo] {label}: finished before, kept", file=sys.stderr)
                continue
            base = dict(label=label, solver=solver.name, problem=problem.name,
                        problem_args=spec.get("problem_args", {}), noise=noise,
                        network=spec.get("network"), hparams=jsonable_hp(e["hp_obj"]),
                        steps=e["steps"], seeds=seeds, sfo_per_step=solver.sfo_per_step,
                        hvp_per_step=solver.hvp_per_step)
            if e["grid_obj"]:
                base["grid"] = {k: [repr(v) if not isinstance(v, (int, float, str, bool))
                                    else v for v in vals] for k, vals in e["grid_obj"].items()}
            runs([dict(base, status="started", time=time.time())])
            print(f"[htbo] {label}: {e['steps']} steps x {len(seeds)} seeds "
                  f"({solver.sfo_per_step} SFO/step) on {problem.name}, noise {noise}",
                  file=sys.stderr)
            if e["grid_obj"]:
                rk = dict(e["run_kwargs"])
                res = tune(problem, e["make"], e["grid_obj"], budget=spec.get("budget"),
                           steps=spec.get("steps"), hvp_cost=spec.get("hvp_cost", 0.0),
                           seeds=seeds, hp=e["hp_obj"], n_evals=spec["n_evals"], writer=hist,
                           progress=progress, run_kwargs=rk, label=label,
                           metric=metric)
                runs([dict(base, status="finished", best=res.best["label"], metric=metric,
                           best_hparams=jsonable_hp(res.best["hparams"]),
                           table=[{k: t[k] for k in ("label", "median", "q20", "q80",
                                                     "diverged")} for t in res.table],
                           notes=res.notes, tune_diverged=res.diverged, compile_s=res.compile_s,
                           run_s=res.run_s, time=time.time())])
                print(f"[htbo] {label}: {len(res.table)} points in {res.groups} compiled "
                      f"group(s), compile {res.compile_s:.2f} s, run {res.run_s:.2f} s",
                      file=sys.stderr)
                continue
            ck = Checkpoint(path, label)
            start = starts.get(label)
            if start is not None:
                print(f"[htbo] {label}: resuming at step {start['step']}", file=sys.stderr)
            res = run(problem, solver, steps=e["steps"], seeds=seeds, n_evals=spec["n_evals"],
                      writer=hist, progress=progress, on_nonfinite="continue",
                      checkpoint=ck.save, resume=start,
                      **{**e["run_kwargs"], "labels": {**e["run_kwargs"].get("labels", {}),
                                                       "label": label}})
            runs([dict(base, status="finished", compile_s=res.compile_s, run_s=res.run_s,
                       diverged=res.diverged, run_id=res.meta["run_id"], time=time.time())])
            if res.diverged:
                failed = True
                what = ", ".join(f"seed {d['seed']} at step {d['step']}" for d in res.diverged)
                print(f"[htbo] {label}: iterates became non-finite ({what}); the other seeds "
                      "went on, the history up to each failure is kept", file=sys.stderr)
            else:
                print(f"[htbo] {label}: compile {res.compile_s:.2f} s, run {res.run_s:.3f} s "
                      f"({1e6 * res.run_s / res.steps:.1f} µs/step for {len(seeds)} seeds)", file=sys.stderr)
    rows = read_jsonl(str(path / "history.jsonl"))
    title = (f"{problem.name}{' on ' + spec['network'] if spec.get('network') else ''}, "
             f"noise {noise}: median over {len(seeds)} seeds, band 20–80%")
    only, notes = None, []
    recs = last_records(path)
    if any(e["grid_obj"] for e in plan.entries):
        only = set()
        for e in plan.entries:
            rec = recs.get(e["label"], {})
            only.add(rec.get("best", e["label"]))
            notes += [f"{e['label']}: {n}" for n in rec.get("notes", [])]
        best_line = "best of each solver's grid: " + ", ".join(sorted(only))
        notes = [best_line] + notes
    table = write_summary(path, rows, title, metric, only=only, note="\n".join(notes))
    print(table)
    if spec.get("network"):
        last = max(rows, key=lambda r: (r["step"], r["seed"]))
        print(f"consensus {last['consensus']:.3g}, {last['comm_rounds']} communication rounds, "
              f"{last['bytes_sent']:,.0f} bytes sent per agent")
    print(f"\nhistory: {path / 'history.jsonl'}\nplot:    {path / 'plot.png'}")
    return 1 if failed else 0


def final_iterate(run_dir: str, label: str | None = None, seed: int | None = None):
    """``(problem, x, ŷ, where)``: a run's last checkpointed iterate, for one solver (``label``,
    default the first) and one seed (default the first). ``where`` says which (step, seed)."""
    import jax

    from .outputs import Checkpoint
    from .runner import cast_hp, float_dtype, programs
    spec = load_json(os.path.join(run_dir, "config.json"), "--at")
    plan = Plan(spec)
    entries = [e for e in plan.entries if not e["grid_obj"]]
    if label is not None:
        entries = [e for e in entries if e["label"] == label]
    if not entries:
        have = [e["label"] for e in plan.entries if not e["grid_obj"]]
        raise ValueError(f"--at {run_dir}: no checkpointed solver {label!r} there (have {have})")
    e = entries[0]
    ck = Checkpoint(Path(run_dir), e["label"])
    if not ck.exists():
        raise ValueError(f"--at {run_dir}: {e['label']} has no checkpoint yet")
    solver, seeds = e["solver"], plan.seeds
    i = 0 if seed is None else seeds.index(seed) if seed in seeds else None
    if i is None:
        raise ValueError(f"--at {run_dir}: seed {seed} not in the run's seeds {seeds}")
    hp_b = cast_hp(solver.hp, float_dtype(plan.problem), len(seeds))
    keys = jax.random.split(jax.random.key(0), len(seeds))
    template = jax.eval_shape(programs(solver.init, solver.step)[0], plan.problem,
                              plan.problem.x0, plan.problem.y0, keys, hp_b)
    ck_data = ck.load(template)
    x, y = solver.params(jax.tree_util.tree_map(lambda a: a[i], ck_data["states"]))
    return plan.problem, x, y, dict(label=e["label"], seed=seeds[i], step=ck_data["step"])
