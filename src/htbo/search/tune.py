"""``htbo.tune``: grids × seeds at one budget, every numeric edge extended, solvers raced,
budgets halved, the reported figures measured again on fresh seeds.

The rules (docs/tuning.md has the details and the measurements):

* **Equal budgets.** Every point of every solver gets ``budget`` SFO-equivalents (an HVP
  costs ``hvp_cost`` SFO; by default 1 when the race mixes first-order and HVP methods,
  else 0), i.e. ``budget // cost per step`` steps, or ``steps`` steps when given.
* **One program per structure.** Points whose solvers share a structure run as members of
  one vmapped batch (numbers are data); see :mod:`htbo.search.engine`.
* **Selection** ranks a solver's points by the median over ``seeds`` of the final
  ``metric`` (diverged seeds count as ``inf``; ties by the 80% quantile), among the points
  that ran the full budget; the overall winner is the solver whose best point has the
  lowest selection median.
* **Extension.** While a solver's best point sits on the smallest or largest value of a
  numeric axis (step sizes, λ, clip levels, ρ, γ, τ, β, momentum ...; structural axes are
  tried, never extended), the grid grows on that side by its own ratio (bounded axes: the
  ratio of the distances to the bound), along the best point's line (its values on the
  other numeric axes), for at most ``max_rounds`` rounds; the new points run in the same
  compiled programs.
* **Successive halving** (on for races and for grids of at least
  :data:`HALVING_MIN_POINTS` points; :data:`HALVING`): each solver's points run to 1/9 of
  the budget, the best 2/5 (by median, finite only, rounded up) continue from their states
  to 1/3, the best third of those to the full budget (a grid of 2 to 8 points: one rung at
  1/3 keeping a third). Points added by an extension enter at the first rung and continue
  when they rank within the first grid's quota among every point that reached that rung.
* **Fresh seeds.** Each solver's best point runs again at the full budget on
  ``eval_seeds`` (default: as many as ``seeds``, disjoint from them): those are the
  figures to report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..plan import steps_for_budget
from ..runner import check_seeds, float_dtype
from .engine import Point, Runner, gather, group_key, summary
from .grid import (axis_values, declared, default_grid, edge_of, expand_grid, extend_axis, fmt,
                   next_value, point_label, scalar)

__all__ = ["tune", "TuneResult", "HALVING_MIN_POINTS", "HALVING",
           "DEFAULT_MAX_MEMBERS", "DEFAULT_MEMORY_LIMIT"]

DEFAULT_MEMORY_LIMIT = 4 << 30   # bytes per compiled slice
DEFAULT_MAX_MEMBERS = 512
HALVING_MIN_POINTS = 9           # a single solver's grid halves from this many points
#: the rungs (fractions of the budget) and the fraction of points that continue from each;
#: chosen on 23 settings (docs/tuning.md) as the most reliable rule spending ≤ 1/3
HALVING = dict(fractions=(1 / 9, 1 / 3), keep=(0.4, 1 / 3))


@dataclass
class TuneResult:
    """What a search found and spent.

    ``table``: every point, ranked (points that ran the full budget first, by selection
    median; then the others by the rung they reached): ``label``, ``solver`` (its race
    label), ``params``, ``hparams``, ``point``, ``round`` (0, or the extension round that
    added it), ``rung``/``rungs``, ``median``, ``q20``, ``q80``, ``finals`` (per selection
    seed at the last rung it reached), ``diverged``, ``steps`` (run), ``full_steps``,
    ``sfo``, ``hvp``, ``sfo_eq`` (reached), ``time_s`` (its share of its batches' compiled
    time), ``full`` (whether it ran the full budget).
    ``solvers``: per race label, ``best`` (its table row), ``selection`` and ``fresh``
    (median, q20, q80, finals, diverged; fresh also ``seeds``), ``fresh_rows`` (the fresh
    runs' histories: ``sfo``, ``hvp``, ``time_s`` columns for curves), ``fresh_run``
    (``states``, ``keys``, ``step``, ``run_s``, ``dead``: a checkpoint of that run),
    ``grid`` (the final grid), ``extended``, ``edges``, ``points``, ``rungs`` (steps),
    ``spent`` (SFO, HVP, SFO-eq of its selection members), ``sfo_per_step``,
    ``hvp_per_step``, ``steps``.
    ``winner``: the winning race label (``None`` when no point kept a finite median);
    ``extended`` / ``edges``: every extension (solver, axis, side, round, value) and every
    axis still on an edge (with the bound, refusal or round limit that stopped it);
    ``spent``: SFO, HVP and SFO-equivalents of selection and of fresh seeds, and
    ``full_grid_sfo_eq``, what every point tried would cost at the full budget;
    ``diverged``: every failing member (label, point, seed, first non-finite step, phase).
    """

    table: list[dict]
    rows: list[dict]
    notes: list[str]
    metric: str
    groups: int
    compile_s: float
    run_s: float
    diverged: list[dict] = field(default_factory=list)
    solvers: dict = field(default_factory=dict)
    winner: str | None = None
    extended: list[dict] = field(default_factory=list)
    edges: list[dict] = field(default_factory=list)
    spent: dict = field(default_factory=dict)
    hvp_cost: float = 0.0
    seeds: list = field(default_factory=list)
    eval_seeds: list = field(default_factory=list)
    budget: int | None = None
    steps: int | None = None

    @property
    def best(self) -> dict:
        """The winner's best point (its table row); ``table[0]`` when nothing is finite."""
        if self.winner is not None:
            return self.solvers[self.winner]["best"]
        return self.table[0]

    @property
    def grids(self) -> dict:
        return {k: v["grid"] for k, v in self.solvers.items()}

    def format_table(self) -> str:
        """Every point, ranked: selection statistics and the budget it reached."""
        lines = [f"| rank | point | steps | median final {self.metric} | 20% | 80% | diverged |",
                 "|---|---|---|---|---|---|---|"]
        for i, t in enumerate(self.table, 1):
            steps = f"{t['steps']}" if t["full"] else f"{t['steps']} of {t['full_steps']}"
            lines.append(f"| {i} | {t['label']} | {steps} | {t['median']:.4g} | "
                         f"{t['q20']:.4g} | {t['q80']:.4g} | {t['diverged']}/{len(t['finals'])} |")
        return "\n".join(lines)

    def format_race(self) -> str:
        """Each solver's best point: selection and fresh-seed figures side by side."""
        ns, ne = len(self.seeds), len(self.eval_seeds)
        lines = [f"| rank | solver | best point | selection median [20%, 80%] ({ns} seeds) | "
                 f"fresh median [20%, 80%] ({ne} seeds) | SFO | HVP |",
                 "|---|---|---|---|---|---|---|"]
        order = sorted(self.solvers.values(), key=lambda s: (s["selection"]["median"],
                                                             s["selection"]["q80"]))
        for i, s in enumerate(order, 1):
            sel, fr, b = s["selection"], s["fresh"], s["best"]
            fresh = "—" if fr is None else _band(fr)
            lines.append(f"| {i} | {s['label']} | {b['label']} | {_band(sel)} | {fresh} | "
                         f"{b['sfo']:,} | {b['hvp']:,} |")
        return "\n".join(lines)


def _band(s: dict) -> str:
    dv = f", {s['diverged']} diverged" if s["diverged"] else ""
    return f"{s['median']:.4g} [{s['q20']:.4g}, {s['q80']:.4g}]{dv}"


# -- candidates (the solvers of a race) -----------------------------------------------------------
@dataclass(eq=False)
class _Cand:
    label: str
    name: str | None
    make: Callable
    hp: dict
    run_kwargs: dict
    grid: object = None
    points: list = field(default_factory=list)
    fractions: list = field(default_factory=list)
    keep: list = field(default_factory=list)
    quota: list = field(default_factory=list)    # points continuing from each rung
    axes: list = field(default_factory=list)
    decl: dict = field(default_factory=dict)
    stopped: dict = field(default_factory=dict)
    extended: list = field(default_factory=list)
    ref: object = None          # a built solver (costs, default grid)
    rk_of: object = None        # network solvers: solver -> run_kwargs

    def full(self, seeds):
        last = len(self.fractions) - 1
        return [p for p in self.points if p.reached == last]

    def best(self, seeds):
        pts = [p for p in self.full(seeds) if math.isfinite(p.rank_key(seeds)[0])]
        return min(pts, key=lambda p: p.rank_key(seeds)) if pts else None


def _name_of(s) -> str:
    return s if isinstance(s, str) else getattr(s, "__name__", "solver")


def _maker(problem, s, W):
    """``(registered name or None, make(**hp) -> solver, run_kwargs(solver) or None)``."""
    if isinstance(s, str):
        if W is not None:
            from ..decentralized import DEC_SOLVERS
            from ..decentralized.simulate import network_setup
            if s not in DEC_SOLVERS:
                raise ValueError(f"unknown decentralized solver {s!r}; available: "
                                 f"{sorted(DEC_SOLVERS.names())}")
            from ..decentralized.simulate import NetworkSolver, mixer_for
            ctor = DEC_SOLVERS.get(s)
            mix = mixer_for(W)

            def make_dec(**kw):  # network_setup checks once, in run_kwargs below
                try:
                    return NetworkSolver(ctor(**kw), mix)
                except TypeError as e:
                    raise ValueError(f"bad hyperparameters for {s!r}: {e}") from None
            return s, make_dec, lambda solver: network_setup(problem, solver.dec, W)[1]
        from ..solvers import SOLVERS, make_solver
        if s not in SOLVERS:
            raise ValueError(f"unknown solver {s!r}; available: {sorted(SOLVERS.names())}")
        return s, (lambda **kw: make_solver(s, problem=problem, **kw)), None
    if callable(s):
        return None, s, None
    raise ValueError(f"a solver must be a registered name or a constructor, got {s!r}")


def _fields(c: _Cand) -> set | None:
    """The hyperparameter names a registered solver takes (``None``: unknown)."""
    if c.name is None:
        return None
    import dataclasses
    from ..solvers import solver_class
    try:
        from ..decentralized import DEC_SOLVERS
        from ..solvers import SOLVERS
        reg = SOLVERS if c.name in SOLVERS else DEC_SOLVERS
        return {f.name for f in dataclasses.fields(solver_class(reg.get(c.name)))}
    except Exception:  # noqa: BLE001 - not a dataclass
        return None


def _per_solver(arg, labels, what: str) -> tuple[dict, dict]:
    """``(shared, {label: own})``: in a race, keys that are solver labels with dict values
    are that solver's; the rest are shared."""
    arg = dict(arg or {})
    own = {k: dict(v) for k, v in arg.items() if k in labels and isinstance(v, dict)}
    shared = {k: v for k, v in arg.items() if k not in own}
    return shared, own


def _candidates(problem, solvers, grids, hp, run_kwargs, label, W) -> list[_Cand]:
    race = isinstance(solvers, (list, tuple, dict))
    if isinstance(solvers, dict):
        items = list(solvers.items())
    elif race:
        items = [(_name_of(s), s) for s in solvers]
    else:
        items = [(label or _name_of(solvers), solvers)]
    if race and label is not None:
        raise ValueError("label names one solver; in a race the solvers' names are the "
                         "labels (pass a dict {label: solver} to choose them)")
    if not items:
        raise ValueError("no solver to tune: give a name or a list of names")
    labels = [lab for lab, _ in items]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"solvers {dup} appear more than once in the race (pass a dict "
                         "{label: solver} to race two settings of one solver)")
    if race:
        if grids is not None and not isinstance(grids, dict):
            raise ValueError(f"for a race, grids must be {{solver: {{key: [values]}}}}, got "
                             f"{type(grids).__name__}")
        unknown = [k for k in (grids or {}) if k not in labels]
        if unknown:
            raise ValueError(f"grids names {unknown} but the race is {labels}; give "
                             "{solver: {key: [values]}}")
        per_grid = dict(grids or {})
    else:
        per_grid = {labels[0]: grids}
    hp_shared, hp_own = _per_solver(hp, labels, "hp") if race else (dict(hp or {}), {})
    rk_shared, rk_own = _per_solver(run_kwargs, labels, "run_kwargs") if race else \
        (dict(run_kwargs or {}), {})
    cands = []
    for lab, s in items:
        name, make, rk_of = _maker(problem, s, W)
        c = _Cand(lab, name, make, {}, {}, per_grid.get(lab))
        fields = _fields(c)
        c.hp = {k: v for k, v in hp_shared.items()
                if not race or fields is None or k in fields}
        c.hp.update(hp_own.get(lab, {}))
        c.run_kwargs = dict(rk_shared, **rk_own.get(lab, {}))
        c.rk_of = rk_of
        cands.append(c)
    if race and hp_shared:
        for k in hp_shared:
            if not any(k in (_fields(c) or {k}) for c in cands):
                raise ValueError(f"hp {k!r}: no solver of the race {labels} has it")
    return cands


def _build(c: _Cand, params: dict, what: str):
    lab = point_label(c.label, params)
    try:
        return lab, c.make(**{**c.hp, **params})
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} {lab}: {e}") from None


def _seed_list(seeds, what: str) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"{what} must be a count >= 1 or a list of seeds, got {seeds}")
        return list(range(int(seeds)))
    return check_seeds(seeds)


def _eval_seed_list(eval_seeds, seeds: list[int]) -> list[int]:
    if eval_seeds is None:
        eval_seeds = len(seeds)
    if isinstance(eval_seeds, (int, np.integer)) and not isinstance(eval_seeds, bool):
        if eval_seeds < 0:
            raise ValueError(f"eval_seeds must be a count >= 0 or a list of seeds, got "
                             f"{eval_seeds}")
        top = max(seeds) + 1
        return list(range(top, top + int(eval_seeds)))
    out = check_seeds(eval_seeds) if len(list(eval_seeds)) else []
    both = sorted(set(out) & set(seeds))
    if both:
        raise ValueError(f"eval_seeds must be disjoint from the selection seeds; both have "
                         f"{both}")
    return out


def _halving(halving) -> tuple[bool | None, tuple, tuple]:
    if halving is None or isinstance(halving, bool):
        return halving, HALVING["fractions"], HALVING["keep"]
    if isinstance(halving, dict):
        bad = sorted(set(halving) - {"fractions", "keep"})
        fr = tuple(halving.get("fractions", HALVING["fractions"]))
        keep = tuple(halving.get("keep", HALVING["keep"]))
        ok = not bad and len(fr) == len(keep) >= 1 and \
            all(isinstance(f, (int, float)) and 0 < f < 1 for f in fr + keep) and \
            list(fr) == sorted(set(fr))
        if not ok:
            raise ValueError(f"halving must be True, False, None or {{'fractions': increasing "
                             f"fractions of the budget in (0, 1), 'keep': a fraction in (0, 1) "
                             f"per rung}}, got {halving!r}")
        return True, fr, keep
    raise ValueError(f"halving must be True, False, None or a dict, got {halving!r}")


# -- the search ----------------------------------------------------------------------------------
def tune(problem, solvers, grids=None, *, budget: int | None = None, steps: int | None = None,
         seeds: Sequence[int] | int = 5, eval_seeds: Sequence[int] | int | None = None,
         hp: dict | None = None, metric: str | None = None, n_evals: int = 10,
         hvp_cost: float | None = None, extend: bool = True, max_rounds: int = 3,
         halving: bool | dict | None = None, writer=None, progress: bool = False,
         run_kwargs: dict | None = None, label: str | None = None, network=None,
         max_members: int = DEFAULT_MAX_MEMBERS,
         memory_limit: int = DEFAULT_MEMORY_LIMIT) -> TuneResult:
    """Search ``grids`` of one solver or a race of solvers at one budget (module docstring).

    ``solvers``: a registered name or a constructor ``(**hyperparameters) -> Solver``, or a
    list of them (a race), or ``{label: name or constructor}``. ``grids``: ``{key: [values]}``
    (the Cartesian product) or a list of points for one solver; ``{label: grid}`` in a race;
    a solver without one gets its default grid (:func:`htbo.search.grid.default_grid`).
    ``hp``: fixed hyperparameters (in a race, ``{label: {...}}`` per solver; other keys go
    to every solver that has them). ``budget`` in SFO-equivalents or ``steps``; ``seeds``
    and ``eval_seeds`` (0: no fresh runs): counts or lists. ``metric``: default the
    problem's. ``halving``: ``None`` (automatic), ``True``/``False`` or ``{'fractions':
    (1/9, 1/3), 'keep': (0.4, 1/3)}``. ``run_kwargs`` go to the runner (``{label: {...}}`` per solver).
    ``network``: a mixing matrix or ``'ring:8'`` — names are then decentralized solvers,
    lifted onto the network (budgets per agent). ``writer(rows)`` receives every history
    row as produced (``phase``: ``'select'`` or ``'eval'``).
    """
    if (budget is None) == (steps is None):
        raise ValueError("give exactly one of budget (SFO-equivalents) or steps")
    for what, v in (("budget", budget), ("steps", steps), ("n_evals", n_evals)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              or v < 1):
            raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, (int, np.integer)) or \
            max_rounds < 0:
        raise ValueError(f"max_rounds must be an integer >= 0, got {max_rounds!r}")
    if hvp_cost is not None and not (isinstance(hvp_cost, (int, float)) and
                                     math.isfinite(hvp_cost) and hvp_cost >= 0):
        raise ValueError(f"hvp_cost must be a finite number >= 0, got {hvp_cost!r}")
    halve, h_fractions, h_keep = _halving(halving)
    seeds = _seed_list(seeds, "seeds")
    eval_seeds = _eval_seed_list(eval_seeds, seeds)
    metric = metric or getattr(problem, "metric", None) or "grad_norm"
    W = None
    if network is not None:
        from ..decentralized import parse_network
        W = parse_network(network) if isinstance(network, str) else np.asarray(network)
    cands = _candidates(problem, solvers, grids, hp, run_kwargs, label, W)
    race = len(cands) > 1 or isinstance(solvers, (list, tuple, dict))
    notes: list[str] = []

    # reference solvers: costs, the hvp_cost rule, default grids
    for c in cands:
        try:
            c.ref = c.make(**c.hp)
        except (ValueError, TypeError) as e:
            if c.grid is None:
                raise ValueError(f"{c.label}: {e}") from None
            c.ref = _build(c, expand_grid(c.grid)[0], "grid point")[1]
    if hvp_cost is None:
        hvps = [c.ref.hvp_per_step > 0 for c in cands]
        hvp_cost = 1.0 if any(hvps) and not all(hvps) else 0.0
        if hvp_cost:
            notes.append("budget in SFO-equivalents: one HVP costs 1 SFO (the race mixes "
                         "first-order and HVP methods)")
    hvp_cost = float(hvp_cost)

    def full_steps(s) -> int:
        return int(steps) if steps is not None else steps_for_budget(s, budget, hvp_cost)

    points: list[Point] = []
    seen: set = set()

    def add(c: _Cand, params: dict, rnd: int, what: str = "grid point") -> Point | None:
        lab, s = _build(c, params, what)
        if lab in seen:
            return None
        seen.add(lab)
        n = full_steps(s)
        fr = c.fractions or [1.0]
        rs = [max(1, min(n, int(round(n * f)))) for f in fr[:-1]] + [n]
        rs = [max(rs[:i + 1]) for i in range(len(rs))]
        p = Point(len(points), c.label, dict(params), lab, s, group_key(s), n, rs, rnd)
        points.append(p)
        c.points.append(p)
        return p

    for c in cands:
        if c.grid is None:
            if c.name is None and not declared(c.ref):
                raise ValueError(f"{c.label}: no grid given and no default grid for a solver "
                                 "not built with htbo.solvers.base.solver; give a grid")
            c.grid = default_grid(c.ref, full_steps(c.ref), c.name)
        pts = expand_grid(c.grid)
        on = halve if halve is not None else (race or len(pts) >= HALVING_MIN_POINTS)
        if on and len(pts) == 1:
            notes.append(f"{c.label}: one point, nothing to halve (halving skipped)")
        c.fractions, c.keep = [1.0], []
        if on and len(pts) > 1:  # under HALVING_MIN_POINTS points: the last rung only
            n = len(h_fractions) if len(pts) >= HALVING_MIN_POINTS or \
                isinstance(halving, dict) else 1
            c.fractions = list(h_fractions[-n:]) + [1.0]
            c.keep = list(h_keep[-n:])
        k = len(pts)
        for f in c.keep:
            k = max(1, math.ceil(k * f - 1e-9))
            c.quota.append(k)
        for params in pts:
            add(c, params, 0)
        c.decl = declared(c.ref)
        keys = [k for k in pts[0] if all(k in q for q in pts)]
        c.axes = [k for k in keys if (k not in c.decl or c.decl[k].kind == "numeric")
                  and axis_values(pts, k) is not None]
        if len(c.fractions) > 1:
            notes.append(f"{c.label}: successive halving, rungs at "
                         f"{', '.join(_frac(f) for f in c.fractions)} of the budget, the best "
                         f"{', '.join(_frac(k) for k in c.keep)} continuing")
        if c.run_kwargs == {} and c.rk_of is not None:
            c.run_kwargs = c.rk_of(c.ref)

    runner = Runner(problem, metric=metric, n_evals=n_evals, dtype=float_dtype(problem),
                    writer=writer, progress=progress, max_members=max_members,
                    memory_limit=memory_limit)
    rounds = int(max_rounds) if extend else 0
    rnd = 0
    while True:
        _advance(cands, runner, seeds)
        if rnd >= rounds:
            break
        new = []
        for c in cands:
            new += _extend(c, rnd + 1, seeds, add)
        if not new:
            break
        rnd += 1

    # fresh seeds: each solver's best point again, at the full budget
    summaries = {}
    for c in cands:
        b = c.best(seeds)
        fresh, fresh_run = None, None
        if b is not None and eval_seeds:
            vals = runner.run([(b, sd) for sd in eval_seeds], 0, b.steps, c.run_kwargs,
                              phase="eval", label=f"{c.label} (tuned)")
            fresh = dict(summary([vals[(b.idx, sd)] for sd in eval_seeds]), seeds=eval_seeds)
            fresh_run = dict(**gather([(b, sd) for sd in eval_seeds]), step=b.steps,
                             run_s=b.eval_time_s,
                             dead={str(i): b.dead[sd] for i, sd in enumerate(eval_seeds)
                                   if sd in b.dead})
        summaries[c.label] = (b, fresh, fresh_run)

    table = [_row(p, seeds, hvp_cost, len(c.fractions)) for c in cands for p in c.points]
    table.sort(key=lambda t: (not t["full"], -t["rung"], t["median"], t["q80"], t["point"]))
    by_point = {t["point"]: t for t in table}
    edges = []
    solvers_out = {}
    for c in cands:
        b, fresh, fresh_run = summaries[c.label]
        c_edges = _edges(c, b, extend, rounds, seeds)
        edges += c_edges
        sfo = sum(p.done * p.solver.sfo_per_step for p in c.points) * len(seeds)
        hvp = sum(p.done * p.solver.hvp_per_step for p in c.points) * len(seeds)
        best_row = by_point[b.idx] if b is not None else \
            min((by_point[p.idx] for p in c.points), key=lambda t: (t["median"], t["point"]))
        solvers_out[c.label] = dict(
            label=c.label, name=c.name or best_row["name"], best=best_row,
            selection={k: best_row[k] for k in ("median", "q20", "q80", "finals", "diverged")},
            fresh=fresh, fresh_rows=[r for r in runner.eval_rows
                                     if r["label"] == f"{c.label} (tuned)"],
            fresh_run=fresh_run, grid=_final_grid(c), extended=list(c.extended),
            edges=c_edges, points=len(c.points), rungs=sorted({s for p in c.points
                                                               for s in p.rung_steps}),
            spent=dict(sfo=sfo, hvp=hvp, sfo_eq=sfo + hvp_cost * hvp),
            sfo_per_step=c.ref.sfo_per_step, hvp_per_step=c.ref.hvp_per_step,
            steps=full_steps(c.ref))
    finite = [s for s in solvers_out.values() if math.isfinite(s["selection"]["median"])
              and by_point[s["best"]["point"]]["full"]]
    winner = min(finite, key=lambda s: (s["selection"]["median"], s["selection"]["q80"],
                                        s["best"]["point"]))["label"] if finite else None
    for e in _edge_lines(edges):
        notes.append(e)
    full_eq = sum(p.steps * (p.solver.sfo_per_step + hvp_cost * p.solver.hvp_per_step)
                  for p in points) * len(seeds)
    sel_sfo, sel_hvp = runner.spent["select"]
    ev_sfo, ev_hvp = runner.spent["eval"]
    spent = dict(sfo=sel_sfo, hvp=sel_hvp, sfo_eq=sel_sfo + hvp_cost * sel_hvp,
                 full_grid_sfo_eq=full_eq, eval_sfo=ev_sfo, eval_hvp=ev_hvp,
                 eval_sfo_eq=ev_sfo + hvp_cost * ev_hvp)
    extended = [e for c in cands for e in c.extended]
    diverged = sorted(runner.diverged.values(), key=lambda d: (d["step"], d["point"], d["seed"]))
    return TuneResult(table, runner.rows, notes, metric, len(runner.keys), runner.compile_s,
                      runner.run_s, diverged, solvers_out, winner, extended, edges, spent,
                      hvp_cost, seeds, eval_seeds, budget, steps)


def _frac(f: float) -> str:
    if f == 1:
        return "all"
    return f"1/{round(1 / f):d}" if abs(1 / f - round(1 / f)) < 1e-6 else f"{f:.2g}"


def _row(p: Point, seeds, hvp_cost: float, n_rungs: int) -> dict:
    s = p.stats(seeds) if p.reached >= 0 else summary([math.inf] * len(seeds))
    sfo, hvp = p.done * p.solver.sfo_per_step, p.done * p.solver.hvp_per_step
    return dict(label=p.label, solver=p.cand, name=p.solver.name, params=p.params,
                hparams=dict(getattr(p.solver, "hparams", {})), point=p.idx, round=p.round,
                rung=p.reached, rungs=n_rungs, **s, steps=p.done, full_steps=p.steps, sfo=sfo,
                hvp=hvp, sfo_eq=sfo + hvp_cost * hvp, time_s=p.time_s,
                full=p.reached == n_rungs - 1)


def _promoted(c: _Cand, rung: int, seeds) -> list[Point]:
    """The best ``quota[rung]`` (finite medians only) of the points that reached ``rung``;
    the quotas come from the first grid, so extension points continue only by beating the
    points that continued before them."""
    at = [p for p in c.points if p.reached >= rung]
    k = c.quota[rung]
    ranked = sorted(at, key=lambda p: p.rank_key(seeds, rung))[:k]
    return [p for p in ranked if math.isfinite(p.rank_key(seeds, rung)[0])]


def _advance(cands, runner: Runner, seeds) -> None:
    """Run every member that has a rung to reach, rung after rung, until none has."""
    while True:
        jobs: dict = {}
        for c in cands:
            R = len(c.fractions)
            promoted = {r: {id(p) for p in _promoted(c, r, seeds)} for r in range(R - 1)}
            for p in c.points:
                r = p.reached + 1
                if r < R and (r == 0 or id(p) in promoted[r - 1]):
                    jobs.setdefault((c.label, p.key, p.steps, p.done, p.rung_steps[r], r),
                                    (c, []))[1].append(p)
        if not jobs:
            return
        for (_, _, _, start, until, r), (c, pts) in jobs.items():
            if until > start:
                runner.run([(p, sd) for p in pts for sd in seeds], start, until, c.run_kwargs,
                           rung=r)
            for p in pts:
                if until <= start:  # a rung that adds no step (tiny budgets)
                    p.finals[r] = dict(p.finals[r - 1])
                p.reached = r


def _extend(c: _Cand, rnd: int, seeds, add) -> list[Point]:
    """New points of round ``rnd``: every numeric axis whose best value is on an edge,
    extended on that side (the points at the edge copied with the next value)."""
    b = c.best(seeds)
    if b is None:
        return []
    grid = [p.params for p in c.points]
    new_params: list[dict] = []
    made: list[Point] = []
    for key in c.axes:
        e = edge_of(grid, b.params, key)
        if e is None or (key, e[0]) in c.stopped:
            continue
        side, v, n = e
        x, why = next_value(side, v, n, c.decl.get(key))
        if x is None:
            c.stopped[(key, side)] = why
            continue
        copies = extend_axis(grid + new_params, key, v, x, b.params, tuple(c.axes))
        try:
            for params in copies:
                _build(c, params, "extension point")
        except ValueError as err:
            c.stopped[(key, side)] = f"the solver refused {fmt(x)} ({err})"
            continue
        new_params += copies
        c.extended.append(dict(solver=c.label, axis=key, side=side, round=rnd, value=x,
                               edge=v, points=len(copies)))
    for params in new_params:
        p = add(c, params, rnd, "extension point")
        if p is not None:
            made.append(p)
    return made


def _edges(c: _Cand, b, extend: bool, rounds: int, seeds) -> list[dict]:
    if b is None:
        return [dict(solver=c.label, axis=None, side=None, value=None,
                     reason="no point kept a finite median: nothing to extend from")]
    grid = [p.params for p in c.points]
    out = []
    for key in c.axes:
        e = edge_of(grid, b.params, key)
        if e is None:
            continue
        side, v, n = e
        reason = c.stopped.get((key, side)) or (
            "extension off" if not extend or rounds == 0 else f"the round limit ({rounds})")
        nxt = None if (key, side) in c.stopped else next_value(side, v, n, c.decl.get(key))[0]
        out.append(dict(solver=c.label, axis=key, side=side, value=v, reason=reason,
                        values=axis_values(grid, key), next=nxt))
    return out


def _edge_lines(edges: list[dict]) -> list[str]:
    """One note per edge: where the best point sits and what stopped the extension."""
    out = []
    for e in edges:
        if e["axis"] is None:
            out.append(f"{e['solver']}: {e['reason']}")
            continue
        side = "smallest" if e["side"] == "low" else "largest"
        nxt = f" (next: {e['axis']}={fmt(e['next'])})" if e.get("next") is not None else ""
        out.append(f"{e['solver']}: {e['axis']}: the best point uses the {side} value tried "
                   f"({fmt(e['value'])} of {', '.join(fmt(v) for v in e['values'])}); not "
                   f"extended further: {e['reason']}{nxt}")
    return out


def _final_grid(c: _Cand) -> dict:
    """Each key's distinct values over every point tried (JSON values; schedules as their
    strings), in increasing order of their scalars."""
    out = {}
    keys = []
    for p in c.points:
        keys += [k for k in p.params if k not in keys]
    for k in keys:
        vals = {}
        for p in c.points:
            if k in p.params:
                v = p.params[k]
                j = v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)
                vals.setdefault(json_key(j), (scalar(v), j))
        out[k] = [j for _, (x, j) in sorted(vals.items(), key=lambda kv: (
            kv[1][0] is None, kv[1][0] if kv[1][0] is not None else 0, str(kv[1][1])))]
    return out


def json_key(v) -> str:
    return f"{type(v).__name__}:{v}"
