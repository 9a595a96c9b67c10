"""The experiments' protocol, on the library's search (``htbo.tune``), and their store.

A *cell* is one experiment × problem × noise × method. Its problem comes from an
``htbo.Plan`` (the library's one rule for a problem's noise and budgets); the method is tuned
by ``htbo.tune`` and nothing here re-implements the search:

* every method's outer step η takes ``n_eta`` values around its centre (ratio 3), each as a
  constant **and** as η₀/√(1 + t/T₀) (T₀ = a tenth of its steps), times the values of its
  other numeric axes (λ, the clip level, ρ, γ, τ, β ...) and, for the penalty methods, the
  structural options ``inner_normalized`` ∈ {off, on} and K ∈ {5, 10};
* the search extends every numeric axis whose best value lies on the grid's edge, on that
  side, by the grid's own ratio, for up to ``max_rounds`` rounds (bounded axes toward their
  bound), and halves budgets (successive halving, continuing members from their state);
* one budget in SFO-equivalents: every Hessian- or Jacobian-vector product costs one SFO;
* the point is chosen on ``seeds`` selection seeds and the reported numbers come from
  ``eval_seeds`` fresh seeds (from 1000 on), disjoint from them.

A finished cell is stored as ``OUT/<exp>/<problem>/<noise>/<method>.json`` with a
fingerprint of its settings: a cell whose settings changed is run again, a finished one is
skipped, so a killed sweep resumes; several sweep processes can share one store (each cell
is claimed with a file lock, :func:`htbo.locks.claim_cell`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np

HVP_COST = 1.0
EVAL_SEED0 = 1000          # fresh (reporting) seeds are 1000, 1001, ...
VERSION = 2                # of the protocol: cells of another version are stale
PENALTY_OPTIONS = {"inner_normalized": [False, True], "inner_steps": [5, 10]}


@dataclass(frozen=True)
class Method:
    label: str                      # as shown in tables and legends
    solver: str                     # a registered solver (decentralized ones: on the network)
    eta: float                      # centre of the outer-step axis
    second: dict = field(default_factory=dict)      # other numeric axes {key: [values]}
    hp: dict = field(default_factory=dict)          # fixed hyperparameters
    structural: dict = field(default_factory=dict)  # structural axes {key: [values]}
    arm: str = "baseline"           # "paper" (N²SBA, N²SGDA, D-NSVRB), "ours", "baseline"
    family: str = ""                # "penalty" (gets PENALTY_OPTIONS), "hvp", ...
    eta_key: str = "eta"


@dataclass
class Cell:
    exp: str
    problem: str                    # tag (a path component)
    noise: str                      # tag (a path component)
    method: Method
    spec: dict                      # problem, args, noise, network, traits
    budget: int
    seeds: int                      # selection seeds 0..seeds-1
    eval_seeds: int                 # reporting seeds EVAL_SEED0..
    n_evals: int = 20
    metric: str = "grad_norm"       # tuning metric, lower is better
    metrics: tuple = ("grad_norm",)  # kept in the stored histories
    n_eta: int = 3
    ratio: float = 3.0
    max_rounds: int = 3
    noise_class: str = ""           # heavy / moderate / light / deterministic (evidence)
    transfer: str | None = None     # E7: run the best point of the cell with this key

    @property
    def key(self) -> str:
        return "/".join(safe(s) for s in (self.exp, self.problem, self.noise,
                                           self.method.label))

    def fingerprint(self) -> str:
        d = dict(spec=self.spec, method=asdict(self.method), budget=self.budget,
                 seeds=self.seeds, eval_seeds=self.eval_seeds, n_evals=self.n_evals,
                 metric=self.metric, metrics=list(self.metrics), n_eta=self.n_eta,
                 ratio=self.ratio, max_rounds=self.max_rounds, transfer=self.transfer,
                 hvp_cost=HVP_COST, version=VERSION, draws=draws_version(self.spec))
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=repr).encode()
                            ).hexdigest()[:12]


def safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", s.replace("²", "2"))


def draws_version(spec: dict):
    """The ``draws_version`` of the cell's noise law (its older draws are stale)."""
    from htbo.noise import parse_noise
    try:
        noise = parse_noise(spec.get("noise"))
    except (TypeError, ValueError):
        return None
    return None if noise is None else noise.law.draws_version


# -- the store -----------------------------------------------------------------------------
def cell_path(out: str, cell: Cell) -> str:
    return os.path.join(out, cell.key + ".json")


def read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def done(out: str, cell: Cell) -> bool:
    rec = read(cell_path(out, cell))
    return rec is not None and rec.get("fingerprint") == cell.fingerprint()


def claim(out: str, cell: Cell):
    """This process's lock on ``cell`` (``None`` while another live process holds it)."""
    from htbo.locks import claim_cell
    path = cell_path(out, cell) + ".lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return claim_cell(path)


def write_json(path: str, obj: dict) -> None:
    from htbo.locks import atomic_write
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, json.dumps(obj, default=repr))


def load(out: str, exp: str) -> list[dict]:
    """Every stored cell of ``exp``."""
    cells = []
    for d, _, files in os.walk(os.path.join(out, safe(exp))):
        for f in sorted(files):
            if f.endswith(".json"):
                rec = read(os.path.join(d, f))
                if rec is not None and "fingerprint" in rec and "key" in rec:
                    cells.append(rec)
    return cells


# -- running a cell ----------------------------------------------------------------------------
def resolve(cell: Cell, budget: int | None = None, noise=None):
    """``(problem, make, hp, run_kwargs, steps_of)`` from the cell's plan (one rule for
    noise, budgets and solver construction)."""
    import htbo
    from htbo.plan import Entry
    m, spec = cell.method, cell.spec
    plan = htbo.Plan(command="experiment", problem=spec["problem"],
                     problem_args=dict(spec.get("args", {})),
                     noise=spec.get("noise") if noise is None else noise,
                     network=spec.get("network"), budget=budget or cell.budget,
                     hvp_cost=HVP_COST, seeds=[0],
                     entries=[Entry(m.label, m.solver, _json(m.hp))])
    res = plan.resolve()
    re_ = res.entries[0]
    problem = res.problem.replace(**spec["traits"]) if spec.get("traits") else res.problem
    return problem, re_.make, re_.hp, re_.run_kwargs, res.steps_for


def _json(hp: dict) -> dict:
    from htbo.plan import jsonable_hp
    return jsonable_hp(hp)


def grid(cell: Cell, steps: int) -> dict:
    """The cell's starting grid (module docstring)."""
    from htbo.parsing import parse_value
    from htbo.schedules import inverse_sqrt
    m = cell.method
    t0 = float(max(1, round(steps / 10)))
    etas = [float(f"{m.eta * cell.ratio ** (k - (cell.n_eta - 1) / 2):.3g}")
            for k in range(cell.n_eta)]
    g = {m.eta_key: [v for e in etas for v in (e, inverse_sqrt(e, t0))]}
    g.update({k: [parse_value(x) if isinstance(x, str) else x for x in v]
              for k, v in m.second.items()})  # schedules are stored as their strings
    g.update({k: list(v) for k, v in m.structural.items()})
    if m.family == "penalty":
        g.update({k: list(v) for k, v in PENALTY_OPTIONS.items()})
    return g


def run_cell(cell: Cell, out: str, log=print) -> dict:
    if cell.transfer is not None:
        return run_transfer(cell, out, log)
    import htbo
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    problem, make, hp, rk, steps_of = resolve(cell)
    m = cell.method
    steps = steps_of(make(**{**hp, m.eta_key: m.eta}))
    g = grid(cell, steps)
    res = htbo.tune(problem, make, g, budget=cell.budget, seeds=list(range(cell.seeds)),
                    eval_seeds=list(range(EVAL_SEED0, EVAL_SEED0 + cell.eval_seeds)), hp=hp,
                    metric=cell.metric, n_evals=cell.n_evals, hvp_cost=HVP_COST,
                    max_rounds=cell.max_rounds, run_kwargs=rk, label=m.label)
    s = res.solvers[m.label]
    rec = _record(cell, t_start, load0)
    best = s["best"]
    rec.update(best=dict(label=best["label"], params=_plain(best["params"]),
                         hparams=_plain(best["hparams"]), steps=best["steps"],
                         sfo=best["sfo"], hvp=best["hvp"]),
               selection=_stats(s["selection"]), fresh=_stats(s["fresh"]),
               shared_samples=best["hparams"].get("shared_samples"),
               history=history(s["fresh_rows"], cell.metrics),
               grid={k: [_plain1(v) for v in vs] for k, vs in s["grid"].items()},
               extended=[_plain(e) for e in s["extended"]],
               edges=[_plain(e) for e in s["edges"]], points=s["points"],
               spent=_plain(s["spent"]), full_grid_sfo_eq=res.spent.get("full_grid_sfo_eq"),
               table=[dict(label=t["label"], median=t["median"], q20=t["q20"], q80=t["q80"],
                           diverged=t["diverged"], full=t["full"], round=t["round"])
                      for t in res.table[:60]],
               compile_s=res.compile_s, run_s=res.run_s,
               selection_seeds=list(res.seeds), fresh_seeds=list(res.eval_seeds))
    return _finish(cell, out, rec, t_start)


def run_transfer(cell: Cell, out: str, log=print) -> dict:
    """E7: the tuned point of another cell, run unchanged at this cell's noise."""
    import htbo
    from htbo.plan import hp_from_json
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    src = read(os.path.join(out, cell.transfer + ".json"))
    if src is None:
        raise RuntimeError(f"{cell.key}: its source cell {cell.transfer} has not run")
    problem, make, hp, rk, steps_of = resolve(cell)
    solver = make(**hp_from_json(src["best"]["hparams"]))
    kw = dict(rk)
    r = htbo.run(problem, solver, steps=steps_of(solver),
                 seeds=list(range(EVAL_SEED0, EVAL_SEED0 + cell.eval_seeds)),
                 n_evals=cell.n_evals, on_nonfinite="continue", **kw)
    rec = _record(cell, t_start, load0)
    finals = r.final(cell.metric)
    med, q20, q80 = _band(finals)
    rec.update(best=dict(src["best"], source=cell.transfer),
               fresh=dict(median=med, q20=q20, q80=q80, finals=finals.tolist(),
                          diverged=int(np.sum(~np.isfinite(finals)))),
               history=history(r.rows, cell.metrics), compile_s=r.compile_s, run_s=r.run_s)
    return _finish(cell, out, rec, t_start)


def _record(cell, t_start, load0) -> dict:
    m = cell.method
    return dict(key=cell.key, fingerprint=cell.fingerprint(), exp=cell.exp,
                problem=cell.problem, noise=cell.noise, method=m.label, solver=m.solver,
                arm=m.arm, family=m.family, spec=cell.spec, budget=cell.budget,
                hvp_cost=HVP_COST, seeds=cell.seeds, eval_seeds=cell.eval_seeds,
                metric=cell.metric, noise_class=cell.noise_class, load=[load0])


def _finish(cell, out, rec, t_start) -> dict:
    rec["wall_s"] = time.perf_counter() - t_start
    rec["load"].append(os.getloadavg()[0])
    rec["date"] = time.strftime("%Y-%m-%d %H:%M")
    write_json(cell_path(out, cell), rec)
    return rec


def _band(v) -> tuple[float, float, float]:
    from htbo.history import bands
    med, q20, q80 = bands(np.asarray(v, float)[:, None])
    return float(med[0]), float(q20[0]), float(q80[0])


def _stats(s: dict | None) -> dict | None:
    if s is None:
        return None
    return {k: (_plain1(v) if not isinstance(v, list) else [_plain1(x) for x in v])
            for k, v in s.items()}


def _plain1(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return repr(v)


def _plain(d):
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_plain(v) for v in d]
    return _plain1(d)


def history(rows: list[dict], metrics) -> dict:
    """Per evaluation step: SFO, HVP, SFO-equivalents, compiled time and, per metric, the
    median and 20–80% band over the seeds (:func:`htbo.history.bands`: a seed without a
    row there, it diverged, counts as inf)."""
    from htbo.history import bands
    steps = sorted({r["step"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    at = {(r["step"], r["seed"]): r for r in rows}
    first = {st: next(r for r in rows if r["step"] == st) for st in steps}
    out = {"step": steps, "sfo": [first[s]["sfo"] for s in steps],
           "hvp": [first[s]["hvp"] for s in steps],
           "time_s": [max(at[(st, sd)]["time_s"] for sd in seeds if (st, sd) in at)
                      for st in steps]}
    out["sfo_eq"] = [a + HVP_COST * b for a, b in zip(out["sfo"], out["hvp"])]
    for c in ("comm_rounds", "bytes_sent"):
        if rows and c in rows[0]:
            out[c] = [first[s][c] for s in steps]
    for k in metrics:
        if not any(k in r for r in rows):
            continue
        vals = np.array([[_val(at.get((st, sd)), k) for st in steps] for sd in seeds])
        med, q20, q80 = bands(vals)
        out[k] = {"median": med.tolist(), "q20": q20.tolist(), "q80": q80.tolist()}
    return out


def _val(r, k):
    v = None if r is None else r.get(k)
    return math.nan if v is None else float(v)


# -- probes: cached measurements that are not tuning cells ---------------------------------------
def probe(out: str, exp: str, name: str, spec: dict, fn) -> dict:
    """``fn()``'s result, computed once per ``spec`` and stored under ``OUT/<exp>/probes``."""
    fp = hashlib.sha1(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:12]
    path = os.path.join(out, safe(exp), "probes", safe(name) + ".json")
    rec = read(path)
    if rec is None or rec.get("fingerprint") != fp:
        t0 = time.perf_counter()
        rec = dict(name=name, spec=spec, fingerprint=fp, result=fn(),
                   wall_s=time.perf_counter() - t0, date=time.strftime("%Y-%m-%d %H:%M"))
        write_json(path, rec)
    return rec["result"]


def tail_index(problem, y) -> dict:
    """Hill tail index α̂ of the data's own per-sample gradient noise ‖∇ℓ_i − mean ∇ℓ‖
    (w.r.t. y, at (x0, y)) on the lower (g) and upper (f) level, k = ⌈√n⌉ and ⌈n/10⌉."""
    from htbo.diagnostics.per_sample import per_sample_grad_norms
    from htbo.diagnostics.tail import hill_alpha
    out = {}
    for which in ("g", "f"):
        z = per_sample_grad_norms(problem, which, problem.x0, y, wrt="y")
        n = len(z)
        out[which] = dict(n=n, sqrt=hill_alpha(z, math.ceil(math.sqrt(n))),
                          tenth=hill_alpha(z, math.ceil(n / 10)))
    return out
