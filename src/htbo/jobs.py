"""Run directories: a resolved :class:`~htbo.plan.Plan` executed into ``--out``.

A run directory has one writer at a time (an exclusive lock taken before anything is
written, held to the end) and holds ``config.json`` (the plan, so ``--resume DIR`` needs
nothing else), ``runs.jsonl`` (each solver's configuration and fingerprint when it starts,
timing and divergences when it ends), ``history.jsonl`` (one row per seed per evaluation,
appended and flushed as produced), ``checkpoints/LABEL.npz`` (states, keys, step and the
configuration fingerprint at the last evaluation) and, at the end, ``summary.md`` and
``plot.png``.

``resume=True`` continues each unfinished solver from its checkpoint with identical
iterates, after checking that its configuration is the one that made the checkpoint (a
changed one is refused, naming the first differing field). Every solver of the plan is run
by :func:`run_entries`, also on every process of a distributed launch (process 0 writes).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .plan import Plan, Resolved, jsonable_hp

__all__ = ["execute_plan", "claim_run_dir", "run_entries", "prepare_resume", "summarize",
           "entry_config", "config_diff", "final_iterate", "read_plan", "load_json",
           "last_records", "OUTPUT_FILES", "Terminated"]

#: the command line recorded in a directory's lock (for the message another writer gets);
#: set by the CLI, else ``sys.argv``
COMMAND: str | None = None

OUTPUT_FILES = ("config.json", "runs.jsonl", "history.jsonl", "summary.md", "plot.png",
                "best.json", "checkpoints", "logs", "meta.json", "iterates.npz")


def load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path}: is a directory, not a JSON file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path}: not valid JSON ({e})") from None


class Terminated(Exception):
    """SIGTERM received (``signum``): the run stops; rows and checkpoints are kept."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# -- configuration fingerprints ------------------------------------------------------------------
def entry_config(res: Resolved, re) -> dict:
    """What an entry's results depend on (its fingerprint is a hash of this)."""
    p = res.plan
    cfg = dict(problem=p.problem, problem_args=p.problem_args, noise=res.noise,
               network=p.network, steps=re.steps, seeds=res.seeds, n_evals=p.n_evals,
               hvp_cost=p.hvp_cost, solver=re.entry.solver,
               hparams=jsonable_hp(getattr(re.solver, "hparams", {})))
    if re.grid:
        cfg.update(grid={k: [repr(v) if not isinstance(v, (int, float, str, bool)) else v
                             for v in vals] for k, vals in re.grid.items()},
                   metric=res.metric, search=p.search)
    return json.loads(json.dumps(cfg, default=repr))


def fingerprint(cfg: dict) -> str:
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def config_diff(old: dict, new: dict, prefix: str = "") -> str | None:
    """The first field (dotted path, in ``new``'s order: problem, ..., solver, hparams)
    where two configurations differ, with both values."""
    for k in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            d = config_diff(a, b, f"{prefix}{k}.")
            if d:
                return d
        elif a != b:
            return f"{prefix}{k}: {json.dumps(a)} then, {json.dumps(b)} now"
    return None


# -- the directory -------------------------------------------------------------------------------
@contextmanager
def claim_run_dir(out, plan: Plan, *, resume: bool = False, overwrite: bool = False,
                  command: str = ""):
    """Create ``out`` (or check it for ``resume``), take its lock, write ``config.json``;
    yields the directory's ``Path``, the lock held to the end."""
    from .locks import DirectoryLock, oserror_message
    p = Path(out)
    option = "--resume" if resume else "--out"
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {out}: exists and is not a directory")
    if resume and not (p / "config.json").exists():
        raise ValueError(f"--resume {out}: no run to resume there (no config.json)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(oserror_message(e, p, "create", option=option)) from None
    lock = DirectoryLock(p, command=command or COMMAND or " ".join(sys.argv))
    try:
        lock.acquire()
    except OSError as e:
        if resume:
            raise ValueError(f"--resume {out}: cannot write in it ({e.strerror or e}); a resume "
                             "writes into the run's directory: make it writable, or resume a "
                             "copy") from None
        raise ValueError(oserror_message(e, p, "write in", option=option)) from None
    try:
        if not resume:
            if (p / "history.jsonl").exists() or (p / "config.json").exists():
                if not overwrite:
                    raise ValueError(f"--out {out} already holds a run; continue it with "
                                     f"--resume {out} or replace it with --overwrite")
                _clear(p)
            from .locks import atomic_write
            atomic_write(p / "config.json", json.dumps(plan.to_dict(), indent=1) + "\n")
        yield p
    finally:
        lock.release()


def _clear(p: Path) -> None:
    """Remove a previous run's files (and its extra plots) before ``--overwrite``."""
    for name in OUTPUT_FILES:
        q = p / name
        if q.is_dir():
            shutil.rmtree(q)
        elif q.exists():
            q.unlink()
    for q in p.glob("plot-*.png"):
        q.unlink()


def last_records(out) -> dict:
    """The last ``runs.jsonl`` record per label."""
    from .history import read_jsonl
    path = Path(out) / "runs.jsonl"
    recs = {}
    if path.exists():
        for r in read_jsonl(str(path)):
            recs[r.get("label", r.get("solver"))] = r
    return recs


# -- running the entries ---------------------------------------------------------------------
def _truncate_history(out: Path, keep) -> None:
    """Rewrite history.jsonl with the rows for which ``keep(row)`` is true (atomic)."""
    from .history import read_jsonl
    from .locks import atomic_write
    path = out / "history.jsonl"
    if not path.exists():
        return
    rows = [r for r in read_jsonl(str(path), warn=True) if keep(r)]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _check_config(label: str, old: dict | None, new: dict, where: str) -> None:
    if old is None:
        return
    diff = config_diff(old, new)
    if diff:
        raise ValueError(f"--resume: the configuration of {label} changed since {where} "
                         f"({diff}); restore config.json, or start again with --overwrite")


def _template(res: Resolved, re):
    """The state structure of an entry's checkpoint (members first; network runs stacked
    over agents as in the simulated mode, whichever executor wrote it)."""
    from .driver import VmapExecutor
    from .runner import cast_hp, float_dtype
    hp_b = cast_hp(re.solver.hp, float_dtype(res.problem), len(res.seeds))
    return VmapExecutor(res.problem, re.solver, hp_b, res.seeds).template()


def prepare_resume(res: Resolved, path: Path, *, truncate: bool = True):
    """Before resuming: ``(starts, skip)`` — each unfinished solver's checkpoint (``{label:
    resume dict}``, its configuration checked against the current one) and the labels that
    finished with every final row. With ``truncate``, the history is cut back to what the
    checkpoints hold (rows of unfinished grids and of runs without a checkpoint are dropped:
    they are rerun). Deterministic on the directory's files, so every agent of a resumed
    launch reaches the same decisions after the launcher truncated."""
    from .history import read_jsonl
    from .outputs import Checkpoint
    records = last_records(path)
    gone = [lab for lab in records if lab not in {re.label for re in res.entries}]
    if gone:
        raise ValueError(f"--resume: config.json no longer has the solver {gone[0]!r} that ran "
                         f"in {path}; restore config.json, or start again with --overwrite")
    starts, cut, skip = {}, {}, set()
    hist = path / "history.jsonl"
    rows = read_jsonl(str(hist), warn=truncate) if hist.exists() else []
    for re in res.entries:
        label, cfg = re.label, entry_config(res, re)
        rec = records.get(label)
        _check_config(label, rec.get("config") if rec else None, cfg, "it started")
        if rec and rec.get("status") == "finished" and (
                re.grid or _complete(rows, label, res.seeds, rec)):
            skip.add(label)
            continue
        ck = Checkpoint(path, label)
        if re.grid or not ck.exists():
            cut[label] = -1
            continue
        start = ck.load(_template(res, re))
        _check_config(label, start.get("config"), cfg, "its checkpoint was written")
        have = {r["seed"] for r in rows if _owner(r) == label and r["step"] == start["step"]}
        dead = {int(i) for i in start.get("dead", {})}
        live = {sd for i, sd in enumerate(res.seeds) if i not in dead}
        start["emit"] = not live <= have  # rows of the checkpoint's step lost: write again
        starts[label] = start
        cut[label] = start["step"] - (1 if start["emit"] else 0)

    def keep(r):
        owner = _owner(r)
        return owner not in cut or r["step"] <= cut[owner]
    if truncate:
        _truncate_history(path, keep)
    return starts, skip


def _owner(r: dict) -> str:
    lab = str(r.get("label", r.get("solver")))
    return lab.split("[", 1)[0] if "[" in lab else lab


def _complete(rows, label, seeds, rec: dict) -> bool:
    """Whether every seed that did not diverge (``rec``: the finished record) has its final
    row (a truncated history loses the last one)."""
    steps = rec.get("steps")
    if steps is None:
        return True
    have = {r["seed"] for r in rows if _owner(r) == label and r["step"] == steps}
    dead = {d.get("seed") for d in rec.get("diverged") or []}  # they stopped early
    return have >= set(seeds) - dead


def run_entries(res: Resolved, path: Path, *, resume: bool = False, progress: bool = True,
                distributed: bool = False, on_emit=None) -> int:
    """Run every entry of ``res`` into ``path`` (checkpoints, rows, records); returns 1 when
    a seed diverged, else 0. With ``distributed``, every agent process calls this (after
    ``jax.distributed`` is up, the launcher having prepared a resume); only process 0
    writes."""
    import jax

    from .history import JsonlWriter
    from .outputs import Checkpoint
    writes = not distributed or jax.process_index() == 0
    problem, seeds = res.problem, res.seeds
    starts, skip = prepare_resume(res, path, truncate=not distributed) if resume else ({}, set())
    failed = False
    hist = JsonlWriter(str(path / "history.jsonl")) if writes else None
    runs = JsonlWriter(str(path / "runs.jsonl")) if writes else None
    try:
        for re in res.entries:
            label, solver = re.label, re.solver
            if label in skip:
                _say(writes, f"[htbo] {label}: finished before, kept")
                continue
            cfg = entry_config(res, re)
            base = dict(label=label, solver=solver.name, problem=problem.name,
                        problem_args=res.plan.problem_args, noise=res.noise,
                        network=res.plan.network, hparams=jsonable_hp(re.hp), steps=re.steps,
                        seeds=seeds, sfo_per_step=solver.sfo_per_step,
                        hvp_per_step=solver.hvp_per_step, config=cfg,
                        fingerprint=fingerprint(cfg))
            if distributed:
                base.update(mode="distributed", agents=len(res.W))
            if re.grid:
                base["grid"] = cfg["grid"]
            if runs is not None:
                runs([dict(base, status="started", time=time.time())])
            args = ", ".join(f"{k}={v}" for k, v in res.plan.problem_args.items())
            which = "" if seeds == list(range(len(seeds))) else f" {seeds}"
            _say(writes, f"[htbo] {label}: {re.steps} steps x {len(seeds)} seeds{which} "
                         f"({solver.sfo_per_step} SFO/step) on {res.plan.problem}"
                         f"{f'({args})' if args else ''}, noise {res.noise}")
            if re.grid:
                failed |= _run_grid(res, re, base, hist, runs, progress)
                continue
            start = starts.get(label)
            if start is not None:
                _say(writes, f"[htbo] {label}: resuming at step {start['step']}")
            res_ = _drive_entry(res, re, _executor(res, re, distributed), hist,
                                Checkpoint(path, label, cfg).save, start, progress, on_emit)
            if runs is not None:
                runs([dict(base, status="finished", compile_s=res_.compile_s,
                           run_s=res_.run_s, diverged=res_.diverged,
                           run_id=res_.meta["run_id"], time=time.time())])
            if res_.diverged:
                failed = True
                what = ", ".join(f"seed {d['seed']} at step {d['step']}" for d in res_.diverged)
                _say(writes, f"[htbo] {label}: iterates became non-finite ({what}); the other "
                             "seeds went on, the history up to each failure is kept")
            else:
                _say(writes, f"[htbo] {label}: compile {res_.compile_s:.2f} s, run "
                             f"{res_.run_s:.3f} s ({1e6 * res_.run_s / max(res_.steps, 1):.1f} "
                             f"µs/step for {len(seeds)} seeds)")
    finally:
        for w in (hist, runs):
            if w is not None:
                w.close()
    return 1 if failed else 0


def _executor(res: Resolved, re, distributed: bool):
    from .driver import VmapExecutor
    from .runner import cast_hp, float_dtype
    hp_b = cast_hp(re.solver.hp, float_dtype(res.problem), len(res.seeds))
    if distributed:
        from .decentralized.distributed import ShardMapExecutor
        return ShardMapExecutor(res.problem, re.dec, re.solver.mix, hp_b, res.seeds)
    return VmapExecutor(res.problem, re.solver, hp_b, res.seeds,
                        metrics_fn=re.run_kwargs.get("metrics_fn"))


def _say(writes: bool, msg: str) -> None:
    if writes:
        print(msg, file=sys.stderr, flush=True)


def _drive_entry(res, re, ex, hist, checkpoint, start, progress, on_emit):
    """One entry through the run loop (either executor)."""
    import uuid

    from .driver import VmapExecutor, drive
    from .metrics import curvature_watch
    kw = re.run_kwargs
    watch = curvature_watch(res.problem, re.solver.program()[2], kw.get("metrics_fn")) \
        if isinstance(ex, VmapExecutor) else None
    if watch is not None and on_emit is not None:
        first = on_emit

        def on_emit(*a):
            watch(*a)
            first(*a)
    elif watch is not None:
        on_emit = watch
    labels = dict(kw.get("labels", {}), label=re.label)
    if not isinstance(ex, VmapExecutor):
        labels["mode"] = "distributed"
    base = dict(run_id=uuid.uuid4().hex[:8], solver=re.solver.name, problem=res.problem.name,
                noise=res.noise)
    return drive(ex, steps=re.steps, n_evals=res.plan.n_evals, seeds=res.seeds,
                 member_labels=[dict(labels) for _ in res.seeds], base=base,
                 sfo_per_step=re.solver.sfo_per_step, hvp_per_step=re.solver.hvp_per_step,
                 counters=kw.get("counters"), writer=hist, checkpoint=checkpoint,
                 resume=start, on_nonfinite="continue", progress=progress and ex.writes,
                 progress_desc=f"{re.label} on {res.problem.name}", on_emit=on_emit)


def _run_grid(res, re, base, hist, runs, progress) -> bool:
    """A grid entry. In a ``tune`` plan every grid entry is one solver of one search (run
    once, at the first of them: :func:`_search`), and each entry's record holds its part;
    in other plans (``compare --grid``) each grid is tuned on its own as given (no
    extension, no halving, no fresh seeds unless ``plan.search`` says so)."""
    from .tuning import tune
    p = res.plan
    if p.command == "tune":
        t = _search(res, hist, progress)
        s = t.solvers[re.label]
        mine = {row["point"] for row in t.table if row["solver"] == re.label}
        rec = dict(base, status="finished", best=s["best"]["label"], metric=res.metric,
                   best_hparams=jsonable_hp(s["best"]["hparams"]),
                   table=[{k: row[k] for k in ("label", "median", "q20", "q80", "diverged",
                                               "steps", "full_steps", "sfo", "hvp", "round",
                                               "time_s")}
                          for row in t.table if row["solver"] == re.label],
                   notes=[n.split(": ", 1)[1] for n in t.notes if n.startswith(f"{re.label}: ")],
                   tune_diverged=[d for d in t.diverged if d["point"] in mine],
                   selection=s["selection"], fresh=s["fresh"], extended=s["extended"],
                   edges=s["edges"], grid_final=s["grid"], spent=s["spent"], winner=t.winner,
                   hvp_cost=t.hvp_cost, eval_seeds=t.eval_seeds, compile_s=t.compile_s,
                   run_s=t.run_s, time=time.time())
        if runs is not None:
            runs([json.loads(json.dumps(rec, default=repr))])
        return False
    rk = dict(re.run_kwargs)
    opts = dict(dict(extend=False, halving=False, eval_seeds=0), **(p.search or {}))
    t = tune(res.problem, re.make, re.grid, budget=p.budget, steps=p.steps,
             hvp_cost=p.hvp_cost, seeds=res.seeds, hp=re.hp, n_evals=p.n_evals, writer=hist,
             progress=progress, run_kwargs=rk, label=re.label, metric=res.metric, **opts)
    if runs is not None:
        runs([dict(base, status="finished", best=t.best["label"], metric=res.metric,
                   best_hparams=jsonable_hp(t.best["hparams"]),
                   table=[{k: row[k] for k in ("label", "median", "q20", "q80", "diverged")}
                          for row in t.table],
                   notes=[n.split(": ", 1)[1] if n.startswith(f"{re.label}: ") else n
                          for n in t.notes], tune_diverged=t.diverged, compile_s=t.compile_s,
                   run_s=t.run_s, time=time.time())])
    print(f"[htbo] {re.label}: {len(t.table)} points in {t.groups} compiled group(s), "
          f"compile {t.compile_s:.2f} s, run {t.run_s:.2f} s", file=sys.stderr)
    return False


def _search(res, hist, progress):
    """The search of a ``tune`` plan over all its grid entries (one solver, or a race),
    run once and kept on ``res``."""
    t = getattr(res, "search_result", None)
    if t is not None:
        return t
    from .tuning import tune
    p = res.plan
    grids = [e for e in res.entries if e.grid]
    if len(grids) == 1:
        (e,) = grids
        solvers, grid, hp, rk, label = e.make, e.grid, e.hp, dict(e.run_kwargs), e.label
    else:
        solvers = {e.label: e.make for e in grids}
        grid = {e.label: e.grid for e in grids}
        hp = {e.label: e.hp for e in grids}
        rk, label = {e.label: dict(e.run_kwargs) for e in grids}, None
    t = tune(res.problem, solvers, grid, budget=p.budget, steps=p.steps, hvp_cost=p.hvp_cost,
             seeds=res.seeds, hp=hp, n_evals=p.n_evals, writer=hist, progress=progress,
             run_kwargs=rk, label=label, metric=res.metric, **(p.search or {}))
    res.search_result = t
    print(f"[htbo] search: {len(t.table)} points in {t.groups} compiled program(s), compile "
          f"{t.compile_s:.2f} s, run {t.run_s:.2f} s, {t.spent['sfo_eq']:,.0f} SFO-eq "
          f"({t.spent['sfo_eq'] / max(t.spent['full_grid_sfo_eq'], 1):.0%} of every point at "
          "the full budget)", file=sys.stderr)
    return t


# -- summary -----------------------------------------------------------------------------------
def summarize(res: Resolved, path: Path) -> str:
    """``summary.md`` and ``plot.png`` from the directory's files; prints and returns the
    table. A solver that did not finish is marked ``incomplete: step S of T``."""
    from .history import read_jsonl
    from .outputs import write_summary
    rows = read_jsonl(str(path / "history.jsonl"), warn=True) \
        if (path / "history.jsonl").exists() else []
    if not rows:
        raise ValueError(f"{path}: no history rows to summarize")
    p = res.plan
    title = (f"{res.problem.name}{' on ' + p.network if p.network else ''}, "
             f"noise {res.noise}: median over {len(res.seeds)} seeds, band 20–80%")
    recs = last_records(path)
    only, notes = None, []
    if any(re.grid for re in res.entries):
        only = set()
        for re in res.entries:
            rec = recs.get(re.label, {})
            only.add(rec.get("best", re.label))
            notes += [f"{re.label}: {n}" for n in rec.get("notes", [])]
        notes = ["best of each solver's grid: " + ", ".join(sorted(only))] + notes
    for re in res.entries:
        if recs.get(re.label, {}).get("status") != "finished" and not re.grid:
            done = max((r["step"] for r in rows if _owner(r) == re.label), default=0)
            notes.append(f"{re.label}: incomplete: step {done} of {re.steps}")
    table = write_summary(path, rows, title, res.metric, only=only, note="\n".join(notes),
                          records=recs)
    print(table)
    if p.network and rows and "consensus" in rows[-1]:
        last = max(rows, key=lambda r: (r["step"], r["seed"]))
        print(f"consensus {last['consensus']:.3g}, {last['comm_rounds']} communication rounds, "
              f"{last['bytes_sent']:,.0f} bytes sent per agent")
    print(f"\nhistory: {path / 'history.jsonl'}\nplot:    {path / 'plot.png'}")
    return table


def execute_plan(plan: Plan, out, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> int:
    """Resolve ``plan`` (every input checked before anything is written), claim ``out`` and
    run every entry into it; returns the exit code (1 when a seed diverged)."""
    res = plan.resolve()
    with claim_run_dir(out, plan, resume=resume, overwrite=overwrite) as path:
        try:
            rc = run_entries(res, path, resume=resume, progress=progress)
        except (KeyboardInterrupt, Terminated):
            summarize_quietly(res, path)
            raise
        summarize(res, path)
    return rc


def summarize_quietly(res: Resolved, path: Path) -> None:
    """After an interruption or a failure: ``summary.md`` (unfinished solvers marked
    incomplete) and ``plot.png`` when there are rows; any error here is dropped (the one
    that stopped the run is what the user needs)."""
    import contextlib
    import io
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            summarize(res, path)
    except Exception:  # noqa: BLE001 - the interruption is reported, not this
        pass


def read_plan(run_dir: str, what: str = "--resume") -> Plan:
    """The plan stored in a run directory's ``config.json``."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"{what} {run_dir}: not a run directory"
                         + (" (it is a file)" if os.path.exists(run_dir) else ""))
    return Plan.from_dict(load_json(os.path.join(run_dir, "config.json"), what))


def final_iterate(run_dir: str, label: str | None = None, seed: int | None = None):
    """``(problem, x, ŷ, where)``: a run's last checkpointed iterate, for one solver (``label``;
    default: the best point of a tune, else the first solver) and one seed (default the
    first). ``where`` says which (label, step, seed)."""
    import jax

    from .driver import VmapExecutor
    from .outputs import Checkpoint
    from .runner import cast_hp, float_dtype
    plan = read_plan(run_dir, "--at")
    if plan.network:
        raise ValueError(f"--at {run_dir}: a decentralized run (--network {plan.network}); "
                         "diagnose one agent's problem instead: htbo diagnose --problem "
                         f"{plan.problem} (its data are one agent's shard)")
    best = Path(run_dir) / "best.json"
    cfg = load_json(str(best), "--at") if best.exists() else {}
    if not isinstance(cfg, dict):
        raise ValueError(f"--at {run_dir}: {best} is damaged (expected a JSON object, got "
                         f"{type(cfg).__name__})")
    if label is None:
        label = cfg.get("label")
    res = plan.resolve()
    entries = [re for re in res.entries if not re.grid]
    if label is not None:
        entries = [re for re in entries if re.label == label]
    if not entries:
        have = [re.label for re in res.entries if not re.grid]
        raise ValueError(f"--at {run_dir}: no checkpointed solver {label!r} there (have {have})")
    re = entries[0]
    ck = Checkpoint(Path(run_dir), re.label)
    if not ck.exists():
        raise ValueError(f"--at {run_dir}: {re.label} has no checkpoint yet")
    seeds = res.seeds
    if cfg.get("eval_seeds") and re.label == cfg.get("label"):  # a tune's fresh-seed run
        seeds = list(cfg["eval_seeds"])
    i = 0 if seed is None else seeds.index(seed) if seed in seeds else None
    if i is None:
        raise ValueError(f"--at {run_dir}: seed {seed} not in the run's seeds {seeds}")
    ex = VmapExecutor(res.problem, re.solver, cast_hp(re.solver.hp, float_dtype(res.problem),
                                                      len(seeds)), seeds)
    ck_data = ck.load(ex.template())
    params = re.solver.program()[2]
    x, y = params(jax.tree_util.tree_map(lambda a: a[i], ck_data["states"]))
    return res.problem, x, y, dict(label=re.label, seed=seeds[i], step=ck_data["step"])
