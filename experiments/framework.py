"""The experiments' small framework: fair grids, cells stored as JSON, figures and tables.

A *cell* is one experiment × problem × noise × method. It is tuned by :func:`htbo.tune` over
a grid built by :func:`fair_grid` (the same rule for every method) at the same budget and
seeds, and stored as ``OUT/<exp>/<problem>/<noise>/<method>.json``. A finished cell whose
settings have not changed is skipped, so a killed sweep resumes where it stopped.

Fair protocol (enforced here, stated in the report):

* the outer step η of every method is a geometric grid of ``n_eta`` values around the
  method's centre, each as a constant **and** as the decaying ``isqrt`` schedule
  η₀/√(1 + t/T₀) with T₀ = steps/10 (steps of that method at this budget); times the same
  number of values of one second hyperparameter (λ, the clip level, or an inner step): every
  method of an experiment has the same number of points;
* when the best point uses the smallest or largest η₀, the grid is extended by one η₀ on
  that side (both families, every second value), at most ``extend`` times;
* one budget in SFO-equivalents: every HVP costs one SFO (``hvp_cost = 1``); histories keep
  SFO and HVP counts apart;
* diverged seeds score ``inf``; cells are ranked by the median final metric over seeds.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

HVP_COST = 1.0


@dataclass(frozen=True)
class Method:
    label: str                      # as shown in tables and legends
    solver: str                     # registered name (or a key of ``Cell.makers``)
    eta: float                      # centre of the outer-step grid
    second: tuple = ({},)           # the second axis: dicts merged into every η point
    hp: dict = field(default_factory=dict)   # fixed hyperparameters
    normalized: bool = False        # the normalized method(s) the verdicts are about
    lam_growth: float | None = None  # F2SA: λ_t grows linearly from λ₀ to λ₀·lam_growth
    eta_key: str = "eta"


@dataclass
class Cell:
    exp: str
    problem: str                    # tag (path component)
    noise: str                      # tag (path component)
    method: Method
    spec: dict                      # how to build the problem (fingerprinted)
    build: Callable[[], Any]
    budget: int
    seeds: int
    n_eta: int = 3
    ratio: float = 3.0
    extend: int = 3
    n_evals: int = 20
    metric: str = "grad_norm"       # tuning metric, lower is better
    metrics: tuple = ("grad_norm",)  # histories kept for the best point
    maker: Callable | None = None   # problem -> constructor (instead of a registered solver)
    run_kwargs: Callable | None = None  # problem -> run_kwargs for htbo.tune

    @property
    def key(self) -> str:
        return "/".join(_safe(s) for s in (self.exp, self.problem, self.noise, self.method.label))

    def fingerprint(self) -> str:
        d = dict(spec=self.spec, method=asdict(self.method), budget=self.budget,
                 seeds=self.seeds, n_eta=self.n_eta, ratio=self.ratio, extend=self.extend,
                 n_evals=self.n_evals, metric=self.metric, metrics=self.metrics,
                 hvp_cost=HVP_COST)
        draws = _draws_version(self.noise)
        if draws is not None:  # a law whose sampler changed: its older cells are stale
            d["draws"] = draws
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def _draws_version(noise: str):
    """The ``draws_version`` of ``noise``'s law (None for laws never changed)."""
    from htbo.noise import parse_noise
    try:
        v = parse_noise(noise).law.draws_version
    except (AttributeError, TypeError, ValueError):
        return None
    return v if v > 1 else None


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", s.replace("²", "2"))


def cell_path(out: str, cell: Cell) -> str:
    return os.path.join(out, cell.key + ".json")


def done(out: str, cell: Cell) -> bool:
    p = cell_path(out, cell)
    if not os.path.exists(p):
        return False
    with open(p, encoding="utf-8") as fh:
        return json.load(fh).get("fingerprint") == cell.fingerprint()


def claim(out: str, cell: Cell):
    """The cell's lock (``htbo.locks.claim_cell``: a ``flock`` held while the cell runs), or
    None when a live process holds it: several ``run.py`` processes can share one cell store.
    Only a live holder's lock counts: an empty lock file, a dead or reused PID is not a
    holder."""
    from htbo.locks import claim_cell
    path = cell_path(out, cell) + ".lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return claim_cell(path)


def release(lock) -> None:
    """Unlock and remove the cell's lock file."""
    lock.release()


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, default=repr)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a cell


def fair_grid(m: Method, etas, steps: int) -> list[dict]:
    """Every η₀ as a constant and as η₀/√(1+t/T₀), T₀ = steps/10, times the second axis."""
    from htbo.schedules import inverse_sqrt
    t0 = max(1.0, steps / 10)
    points = []
    for e in etas:
        for sched in (float(e), inverse_sqrt(float(e), t0)):
            for s in m.second:
                p = {m.eta_key: sched, **s}
                if m.lam_growth:  # λ_t = min(λ₀ + rate·t, λ₀·growth) reaches its cap at the end
                    lam = p.get("lam", m.hp.get("lam"))
                    p.update(lam=lam, lam_max=lam * m.lam_growth,
                             lam_rate=lam * (m.lam_growth - 1) / steps)
                points.append(p)
    return points


def _steps(cell: Cell, problem, make) -> int:
    from htbo.plan import steps_for_budget
    s = make(**{**cell.method.hp, **cell.method.second[0], cell.method.eta_key: cell.method.eta})
    return steps_for_budget(s, cell.budget, HVP_COST)


def _summ(v) -> dict:
    from htbo.history import quantile
    v = np.asarray(v, float)
    return dict(median=float(np.median(v)), q20=quantile(v, 0.2), q80=quantile(v, 0.8))


def history(rows: list[dict], label: str, metrics, seeds) -> dict:
    """Median / q20 / q80 over seeds per evaluation (a seed without a row there — it
    diverged — counts as inf), and the x-axes: SFO, HVP, SFO + HVP, counters."""
    rows = [r for r in rows if r["label"] == label]
    steps = sorted({r["step"] for r in rows})
    at = {(r["step"], r["seed"]): r for r in rows}
    first = {st: next(r for r in rows if r["step"] == st) for st in steps}
    out = {"step": steps, "sfo": [first[s]["sfo"] for s in steps],
           "hvp": [first[s]["hvp"] for s in steps]}
    out["sfo_eq"] = [a + HVP_COST * b for a, b in zip(out["sfo"], out["hvp"])]
    for c in ("comm_rounds", "bytes_sent"):
        if c in rows[0]:
            out[c] = [first[s][c] for s in steps]
    for k in (k for k in metrics if any(k in r for r in rows)):
        cols = [_summ([_val(at.get((st, sd)), k) for sd in seeds]) for st in steps]
        out[k] = {q: [c[q] for c in cols] for q in ("median", "q20", "q80")}
    return out


def _val(r, k):
    v = None if r is None else r.get(k)
    return math.inf if v is None else float(v)


def run_cell(cell: Cell, out: str, log=print) -> dict:
    import htbo
    from htbo.solvers import make_solver
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    problem = cell.build()
    m = cell.method
    make = cell.maker(problem) if cell.maker else \
        (lambda **kw: make_solver(m.solver, problem=problem, **kw))
    steps = _steps(cell, problem, make)
    etas = [m.eta * cell.ratio ** (k - (cell.n_eta - 1) / 2) for k in range(cell.n_eta)]
    etas = [float(f"{e:.3g}") for e in etas]
    rk = cell.run_kwargs(problem) if cell.run_kwargs else None
    table, rows, compile_s, run_s, new, ext = [], [], 0.0, 0.0, list(etas), 0
    while True:
        res = htbo.tune(problem, make, fair_grid(m, new, steps), budget=cell.budget,
                        seeds=cell.seeds, metric=cell.metric, hp=m.hp, n_evals=cell.n_evals,
                        hvp_cost=HVP_COST, run_kwargs=rk, label=m.solver)
        table += res.table
        rows += res.rows
        compile_s += res.compile_s
        run_s += res.run_s
        table.sort(key=lambda t: (t["median"], t["q80"]))
        best = table[0]
        b0 = _eta0(best["params"][m.eta_key])
        lo, hi = min(etas), max(etas)
        if ext >= cell.extend or (lo < b0 < hi and math.isfinite(best["median"])):
            break
        e = lo / cell.ratio if (b0 == lo or not math.isfinite(best["median"])) else hi * cell.ratio
        new = [float(f"{e:.3g}")]
        etas.append(new[0])
        ext += 1
        log(f"  {cell.key}: best η₀ {b0:g} on the grid's edge, extending with η₀ = {new[0]:g}")
    h = history(rows, best["label"], cell.metrics, list(range(cell.seeds)))
    notes = _edge_notes(table, m)
    shared = best["hparams"].get("shared_samples")
    rec = dict(key=cell.key, fingerprint=cell.fingerprint(), exp=cell.exp, problem=cell.problem,
               noise=cell.noise, method=m.label, solver=m.solver, normalized=m.normalized,
               spec=cell.spec, budget=cell.budget, hvp_cost=HVP_COST, seeds=cell.seeds,
               metric=cell.metric, steps=best["steps"], sfo=best["sfo"], hvp=best["hvp"],
               shared_samples=shared, best=dict(label=best["label"], params=_plain(best["params"]),
                                                median=best["median"], q20=best["q20"],
                                                q80=best["q80"], finals=best["finals"],
                                                diverged=best["diverged"]),
               etas=sorted(etas), extensions=ext, notes=notes, points=len(table),
               table=[dict(label=t["label"], median=t["median"], q20=t["q20"], q80=t["q80"],
                           diverged=t["diverged"]) for t in table],
               history=h, compile_s=compile_s, run_s=run_s,
               wall_s=time.perf_counter() - t_start, load=[load0, os.getloadavg()[0]],
               date=time.strftime("%Y-%m-%d %H:%M"))
    write_json(cell_path(out, cell), rec)
    return rec


def _eta0(v) -> float:
    from htbo.schedules import initial_value, is_builtin
    return float(initial_value(v) if is_builtin(v) else v)


def _plain(params: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else repr(v))
            for k, v in params.items()}


def _edge_notes(table, m: Method) -> list[str]:
    """Second-axis values where the best point sits on the edge (not extended)."""
    notes = []
    best = table[0]["params"]
    for k in m.second[0]:
        vals = sorted({t["params"][k] for t in table if isinstance(t["params"].get(k), (int, float))})
        if len(vals) > 1 and best.get(k) in (vals[0], vals[-1]):
            notes.append(f"{k}={best[k]:g} is the {'smallest' if best[k] == vals[0] else 'largest'}"
                         f" of {', '.join(f'{v:g}' for v in vals)}")
    return notes


class NotAvailable(Exception):
    """An experiment whose problem or solver is not in this version of htbo."""


@dataclass
class Probe:
    """A cached measurement that is not a tuning cell (e.g. a tail index)."""
    exp: str
    name: str
    spec: dict
    fn: Callable[[], dict]

    @property
    def key(self) -> str:
        return f"{_safe(self.exp)}/probes/{_safe(self.name)}"

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.spec, sort_keys=True, default=repr).encode()
                            ).hexdigest()[:12]


def run_probe(probe: Probe, out: str) -> dict:
    t0 = time.perf_counter()
    rec = dict(probe=True, name=probe.name, fingerprint=probe.fingerprint(), spec=probe.spec,
               result=probe.fn(), wall_s=time.perf_counter() - t0,
               date=time.strftime("%Y-%m-%d %H:%M"))
    write_json(os.path.join(out, probe.key + ".json"), rec)
    return rec


def probe_done(out: str, probe: Probe) -> bool:
    p = os.path.join(out, probe.key + ".json")
    if not os.path.exists(p):
        return False
    with open(p, encoding="utf-8") as fh:
        return json.load(fh).get("fingerprint") == probe.fingerprint()


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


def load(out: str, exp: str) -> tuple[list[dict], dict]:
    """The finished cells of ``exp`` and its probes ``{name: result}``."""
    cells, probes = [], {}
    root = os.path.join(out, _safe(exp))
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".json") and f != "status.json":
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    r = json.load(fh)
                (probes.__setitem__(r["name"], r) if "probe" in r else cells.append(r))
    return cells, probes


# ---------------------------------------------------------------- report helpers

def g3(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.3g}"


def band(s: dict) -> str:
    return f"{g3(s['median'])} [{g3(s['q20'])}, {g3(s['q80'])}]"


def point_str(params: dict) -> str:
    return ", ".join(f"{k}={g3(v) if isinstance(v, float) else v}" for k, v in params.items()
                     if k not in ("lam_rate",))


def table(cells: list[dict], order, final_metrics=()) -> str:
    """A markdown table: one row per cell, the tuning metric and extra final metrics."""
    extra = "".join(f" {k} |" for k in final_metrics)
    head = (f"| problem | noise | method | final {cells[0]['metric']} median [20%, 80%] |{extra}"
            " diverged | steps | tuned point (grid: η₀ values, notes) |")
    lines = [head, "|" + "---|" * (7 + len(final_metrics))]
    for c in sorted(cells, key=order):
        b = c["best"]
        ext = "".join(f" {band(final(c, k))} |" for k in final_metrics)
        grid = f"η₀ ∈ {{{', '.join(g3(e) for e in c['etas'])}}}" + \
            (f"; {c['extensions']} extension(s)" if c["extensions"] else "") + \
            "".join(f"; {n}" for n in c["notes"])
        lines.append(f"| {c['problem']} | {c['noise']} | {c['method']} | {band(b)} |{ext} "
                     f"{b['diverged']}/{c['seeds']} | {c['steps']} | {point_str(b['params'])} "
                     f"({grid}) |")
    return "\n".join(lines)


def final(c: dict, k: str) -> dict:
    h = c["history"][k]
    return {q: h[q][-1] for q in ("median", "q20", "q80")}


SUMMARY: list[dict] = []  # every verdict of the report being written


PENALTY = ("F2BA", "F2SA", "clipped F2SA")  # same first-order penalty estimator as N²SBA


def verdicts(cells: list[dict], group, metric=None, higher_better=False,
             among=None) -> list[str]:
    """Per group (e.g. problem × noise): the normalized method against the best baseline
    (``among``: only these baselines, e.g. :data:`PENALTY`, which separates normalization from
    the choice of hypergradient estimator). A method *wins* when its 20–80% band lies
    entirely on the better side of the other's; overlapping bands are a *tie*."""
    out = []
    groups: dict = {}
    for c in cells:
        if among is not None and not c["normalized"] and c["method"] not in among:
            continue
        groups.setdefault(group(c), []).append(c)
    for g, cs in groups.items():
        s = {c["method"]: (final(c, metric) if metric else c["best"]) for c in cs}
        sign = -1 if higher_better else 1
        key = lambda k, s=s, sign=sign: sign * s[k]["median"]
        norm = [c["method"] for c in cs if c["normalized"]]
        base = [c["method"] for c in cs if not c["normalized"]]
        if not norm or not base:
            continue
        bn, bb = min(norm, key=key), min(base, key=key)
        a, b = s[bn], s[bb]
        beats = (lambda u, v: u["q20"] > v["q80"]) if higher_better else \
            (lambda u, v: u["q80"] < v["q20"])
        what = (f"**{bn} wins**" if beats(a, b) else f"**baseline {bb} wins**" if beats(b, a)
                else "**tie** (20–80% bands overlap)")
        SUMMARY.append(dict(exp=cs[0]["exp"] + (" (penalty baselines)" if among else ""),
                            metric=metric or cs[0]["metric"], group=g,
                            outcome="win" if beats(a, b) else "loss" if beats(b, a) else "tie",
                            method=bn, baseline=bb))
        r = a["median"] / b["median"] if b["median"] not in (0, math.inf) else math.nan
        out.append(f"- {g}: {what}: {bn} {band(a)} vs the best baseline {bb} {band(b)}"
                   + (f" (ratio {r:.2f})" if math.isfinite(r) else "") + ".")
    return out


def tag(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")


def rel(path: str) -> str:
    """A figure's path as the report (next to the figures/ folder) links it."""
    return "figures/" + os.path.basename(path)


COLORS: dict = {}


def color(label: str) -> str:
    return COLORS.setdefault(label, f"C{len(COLORS) % 10}")


def curves(ax, cells: list[dict], metric: str, x: str = "sfo_eq", log: bool = True):
    """Median and 20–80% band of ``metric`` vs ``x`` for each cell's best point."""
    for c in sorted(cells, key=lambda c: c["method"]):
        h = c["history"]
        xs = np.asarray(h[x], float)
        med, lo, hi = (np.asarray(h[metric][q], float) for q in ("median", "q20", "q80"))
        ok = np.isfinite(med)
        col = color(c["method"])
        ax.plot(xs[ok], med[ok], color=col, lw=1.6, label=c["method"] +
                (f" ({c['best']['diverged']} div.)" if c["best"]["diverged"] else ""))
        fin = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(xs[fin], lo[fin], hi[fin], color=col, alpha=0.18, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel({"sfo_eq": "SFO-equivalents (SFO + HVP)", "sfo": "SFO calls",
                   "comm_rounds": "communication rounds"}.get(x, x))
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(5))   # wide tick labels must not touch
    ax.grid(True, which="both", alpha=0.3)


def figure(rows: int, cols: int, w: float = 4.3, h: float = 3.4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    return fig, axes


def save(fig, path: str, title: str) -> str:
    import matplotlib.pyplot as plt
    handles = {}
    for ax in fig.axes:
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(re.sub(r" \(\d+ div\.\)$", "", lb), hd)
    # about 1.3 inches per legend entry, so a narrow figure wraps its legend
    # onto more rows instead of clipping it at the edges
    ncol = max(1, min(len(handles), 7, int(fig.get_figwidth() / 1.3)))
    nrows = -(-len(handles) // ncol)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=ncol, fontsize=9, frameon=False)
    import textwrap
    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 11)), fontsize=10)
    bottom = min(0.3, (0.08 + 0.24 * nrows) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_vs(ax, cells: list[dict], xkey, xs_order, metric=None, log=True):
    """Final metric (median, 20–80% band as error bars) against a categorical or numeric x."""
    by: dict = {}
    for c in cells:
        by.setdefault(c["method"], {})[xkey(c)] = final(c, metric) if metric else c["best"]
    n = len(by)
    for j, (lab, d) in enumerate(sorted(by.items())):
        pos = [i + (j - (n - 1) / 2) * 0.08 for i, v in enumerate(xs_order) if v in d]
        vals = [d[v] for v in xs_order if v in d]
        med = np.array([v["median"] for v in vals], float)
        lo = np.array([v["q20"] for v in vals], float)
        hi = np.array([v["q80"] for v in vals], float)
        big = np.nanmax(np.where(np.isfinite(hi), hi, np.nan)) if np.isfinite(hi).any() else 1
        hi_c = np.where(np.isfinite(hi), hi, big * 3)
        ok = np.isfinite(med)
        ax.errorbar(np.array(pos)[ok], med[ok], yerr=[med[ok] - lo[ok], hi_c[ok] - med[ok]],
                    fmt="-o", ms=4, capsize=3, color=color(lab), label=lab, lw=1.2)
    ax.set_xticks(range(len(xs_order)))
    ax.set_xticklabels([str(v) for v in xs_order], fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def noise_section(cs: list[dict], noises: list, figdir: str, name: str, ylab: str,
                  who: str, among=None) -> list[str]:
    """One problem of E1 / E5: final metric against the noise, curves per noise, the
    table and the verdicts."""
    exp, p = cs[0]["exp"], cs[0]["problem"]
    fig, ax = figure(1, 1, 7.5, 4.2)
    final_vs(ax[0][0], cs, lambda c: c["noise"], noises)
    ax[0][0].set_ylabel(f"final {ylab} (median, 20–80%)")
    ax[0][0].set_xlabel("injected noise (law, or law@scale)")
    f1 = save(fig, f"{figdir}/{exp.lower()}_{tag(p)}_final.png",
              f"{exp} {p}: final {ylab} at {cs[0]['budget']:,} SFO-eq., each method tuned")
    fig, axes = figure(2, (len(noises) + 1) // 2)
    for a, n in zip(axes.ravel(), noises):
        curves(a, [c for c in cs if c["noise"] == n], "grad_norm")
        a.set_title(f"noise {n}", fontsize=9)
        a.set_ylabel(ylab)
    f2 = save(fig, f"{figdir}/{exp.lower()}_{tag(p)}_curves.png",
              f"{exp} {p}: best point of each method, median and 20–80% band over seeds")
    cs = sorted(cs, key=lambda c: (noises.index(c["noise"]), c["method"]))
    return [f"### {name}", "", f"![final]({rel(f1)})", "", f"![curves]({rel(f2)})", "",
            table(cs, lambda c: (noises.index(c["noise"]), c["method"])), "",
            f"Verdicts ({who} against the best baseline):", "",
            *verdicts(cs, lambda c: f"{c['problem']}, {c['noise']}"), "",
            *([f"Against the penalty methods only ({', '.join(among)}: the same first-order "
               "hypergradient estimator, only the step differs):", "",
               *verdicts(cs, lambda c: f"{c['problem']}, {c['noise']}", among=among), ""]
              if among else [])]
