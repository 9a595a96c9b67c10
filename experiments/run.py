"""Run the experiments and write the report (docs/results.md + docs/figures/) and the
evidence table `htbo diagnose` quotes (src/htbo/diagnostics/evidence.json).

    PYTHONPATH=src python experiments/run.py                 # everything (hours)
    PYTHONPATH=src python experiments/run.py --quick         # smoke test (a minute)
    PYTHONPATH=src python experiments/run.py --only E2,E5 --out experiments/out

One cell = experiment × problem × noise × method, tuned by `htbo.tune` (protocol.py). A
finished cell is stored as JSON under `--out` and skipped by the next invocation, so a
killed sweep resumes where it stopped; several invocations can share one store (each cell
is claimed with a lock). The report and the evidence table are rebuilt from every stored
cell whose settings are current. `--quick` writes to `experiments/out-quick` and its report
there (`--report PATH` to put it elsewhere); only the full run writes docs/results.md and
the evidence table.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402
import report as rp  # noqa: E402

MODULES = {"E1": "e1_synthetic", "E2": "e2_alpha", "E3": "e3_hypercleaning",
           "E4": "e4_ridge_t", "E5": "e5_minimax", "E6": "e6_decentralized",
           "E7": "e7_noise_scale"}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets, seeds and grids")
    ap.add_argument("--only", help="comma-separated experiments, e.g. E2,E5")
    ap.add_argument("--out", help="cell store (default experiments/out or out-quick)")
    ap.add_argument("--report", help="report path (figures go next to it, in figures/)")
    ap.add_argument("--filter", help="run only cells whose key contains this text")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report, run nothing")
    a = ap.parse_args(argv)
    out = a.out or os.path.join(HERE, "out-quick" if a.quick else "out")
    report = a.report or (os.path.join(out, "results.md") if a.quick else
                          os.path.join(ROOT, "docs", "results.md"))
    only = [s.strip().upper() for s in a.only.split(",")] if a.only else list(MODULES)
    os.makedirs(out, exist_ok=True)
    stats = dict(ran=[], skipped=[], busy=[])
    with open(os.path.join(out, "progress.log"), "a", encoding="utf-8") as logf:
        def log(msg):
            line = f"{time.strftime('%H:%M:%S')} {msg}"
            print(line, flush=True)
            logf.write(line + "\n")
            logf.flush()

        for e in ([] if a.report_only else only):
            mod = importlib.import_module(MODULES[e])
            cells = [c for c in mod.cells(a.quick) if not a.filter or a.filter in c.key]
            getattr(mod, "probes", lambda o, q: {})(out, a.quick)
            for i, c in enumerate(cells, 1):
                tagline = f"[{e} {i}/{len(cells)}] {c.key}"
                if protocol.done(out, c):
                    stats["skipped"].append(c.key)
                    continue
                if c.transfer and protocol.read(os.path.join(out, c.transfer + ".json")) is None:
                    stats["busy"].append(c.key)
                    log(f"{tagline}: its source {c.transfer} has not run yet, skipped")
                    continue
                lock = protocol.claim(out, c)
                if lock is None:
                    stats["busy"].append(c.key)
                    log(f"{tagline}: running in another process, skipped")
                    continue
                try:
                    if protocol.done(out, c):  # finished by another process meanwhile
                        continue
                    r = protocol.run_cell(c, out, log)
                finally:
                    lock.release()
                stats["ran"].append(c.key)
                log(f"{tagline}: fresh {rp.band(r['fresh'])} at {r['best']['label']} "
                    f"({r['wall_s']:.0f} s, load {r['load'][-1]:.1f})")
    write_report(out, report, a.quick)
    if not a.quick:
        write_evidence(out, os.path.join(ROOT, "src", "htbo", "diagnostics", "evidence.json"))
    print(f"report: {os.path.relpath(report)}")
    return stats


def current(out: str, quick: bool) -> dict:
    """``{experiment: [current cells]}``: stored cells whose fingerprint matches the plan
    (cells made under other settings are left out and counted)."""
    res = {}
    for e, name in MODULES.items():
        mod = importlib.import_module(name)
        planned = {c.key: c.fingerprint() for c in mod.cells(quick)}
        got = [c for c in protocol.load(out, e) if planned.get(c["key"]) == c["fingerprint"]]
        if hasattr(mod, "borrowed"):
            got += mod.borrowed(lambda x: current_of(out, x, quick))
        res[e] = (got, planned)
    return res


def current_of(out, exp, quick) -> list[dict]:
    mod = importlib.import_module(MODULES[exp])
    planned = {c.key: c.fingerprint() for c in mod.cells(quick)}
    return [c for c in protocol.load(out, exp) if planned.get(c["key"]) == c["fingerprint"]]


def write_report(out: str, path: str, quick: bool) -> None:
    import jax
    figdir = os.path.join(os.path.dirname(os.path.abspath(path)), "figures")
    sections, loads, dates, walls, edges = [], [], [], {}, [0, 0, []]
    rp.SUMMARY.clear()
    for e, (cells, planned) in current(out, quick).items():
        mod = importlib.import_module(MODULES[e])
        mine = [c for c in cells if c["exp"] == e and c["key"].startswith(e + "/")]
        if not cells:
            body = "No cell of this experiment has finished yet.\n"
        else:
            probes = getattr(mod, "probes", lambda o, q: {})(out, quick)
            body = mod.report(cells, figdir, quick, probes=probes)
            missing = len(set(planned) - {c["key"] for c in mine})
            if missing:
                body = (f"**Incomplete: {len(planned) - missing} of {len(planned)} cells have "
                        f"run**; `python experiments/run.py --only {e}` runs the other "
                        f"{missing} (finished cells are kept).\n\n") + body
        loads += [v for c in mine for v in c.get("load", [])]
        dates += [c["date"] for c in mine]
        walls[e] = (len(mine), sum(c["wall_s"] for c in mine))
        tuned = [c for c in mine if "edges" in c]
        n_in, n, notes = rp.edge_count(tuned)
        edges[0] += n_in
        edges[1] += n
        edges[2] += notes
        sections.append(f"## {mod.TITLE}\n\n{body}")
    when = f"{min(dates)[:10]} to {max(dates)[:10]}" if dates else "–"
    if dates and min(dates)[:10] == max(dates)[:10]:
        when = dates[0][:10]
    load = (f"load average (1 min) at the cells' start and end: median "
            f"{statistics.median(loads):.1f}, max {max(loads):.1f}" if loads else "")
    cost = ", ".join(f"{e} {n} cells in {w / 60:.0f} min" for e, (n, w) in walls.items() if n)
    edge_line = (f"**Best points on the edge of a numeric axis: {edges[1] - edges[0]} of "
                 f"{edges[1]} tuned cells**" + (" (each named in its table with what stopped "
                                                "the extension: " + "; ".join(edges[2]) + ")"
                                                if edges[2] else "") + ".")
    head = f"""# Results{' (quick smoke run: tiny budgets, not results)' if quick else ''}

Measured {when} on a {os.cpu_count()}-core CPU sandbox, JAX {jax.__version__}, Python
{platform.python_version()}, float32 ({load}). Wall time: {cost or '–'}. Regenerate with
`PYTHONPATH=src python experiments/run.py` (finished cells are kept; `--report-only`
rebuilds this page from them).

## Protocol (`experiments/protocol.py`, on the library's search `htbo.tune`)

- **One cell** = experiment × problem × noise × method. Every method is tuned by
  `htbo.tune` at the **same budget in SFO-equivalents** (every Hessian- or Jacobian-vector
  product costs one SFO).
- **Same grid families for every method**: the outer step η takes 3 values around the
  method's centre (ratio 3), each both **constant** and **decaying** (η₀/√(1 + t/T₀), T₀ =
  a tenth of the method's steps), times the values of its other numeric axes (λ, the clip
  level, ρ, γ, τ, β or the momentum: 2 values each) and, for the penalty methods (N²SBA,
  F2BA, F2SA, clipped F2SA), the structural options **inner normalization** off/on and
  **K ∈ {{5, 10}}** inner steps. The search **extends every numeric axis** whose best value
  lies on the grid's edge, on that side, by the grid's own ratio (bounded axes toward their
  bound), in up to 3 rounds, and **halves budgets** (1/9, 1/3, all of the budget; members
  continue from their state). Centres come from earlier benchmarks and the problems'
  documented defaults, never from these results. {edge_line}
- **Selection and reporting seeds are disjoint**: the point is chosen on the selection
  seeds (0, 1, ...); every number, band and curve reported here comes from **fresh seeds**
  (1000, 1001, ...: 10 in E1, E2, E4, E5, E7; 5 in E3, E6) at the full budget. Tables
  show the selection figure beside it.
- **Sample sharing** of the penalty methods' two ∇ₓG terms: independent samples where noise
  is injected; shared samples where the noise comes from the data (`quadratic-data` with t
  factors, `ridge-t`, hyper-cleaning, decentralized hyper-cleaning). Recorded per cell.
- **One quantile rule** (`htbo.history.bands`): median and 20%/80% quantiles over seeds, a
  diverged seed counting as `inf`, for tables and plotted bands alike. A verdict compares two
  methods' 20–80% bands: a method **wins** when its band lies entirely on the better side of
  the other's; overlapping bands are a **tie**.
- **Wall clock**: curves are also drawn against compiled-step time (the seed batch's, with
  `block_until_ready`, compile time apart), and tables give the time each method needs to
  reach the best penalty method's final value.

"""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + summary() + changes(quick) + "\n".join(sections))


def changes(quick: bool) -> str:
    """The hand-written account of which verdicts changed since the first edition of the
    experiments, and why (``experiments/changes.md``; compares reports, not code)."""
    path = os.path.join(HERE, "changes.md")
    if quick or not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read().rstrip() + "\n\n"


def summary() -> str:
    """Counts of the verdicts per experiment and comparison (the sections give each one)."""
    rows = {}
    for v in rp.SUMMARY:
        d = rows.setdefault((v["exp"], v["metric"], v["method"].split(" (")[0], v["among"]), {})
        d[v["outcome"]] = d.get(v["outcome"], 0) + 1
        if v["outcome"] == "loss":
            d.setdefault("who", set()).add(v["baseline"])
    if not rows:
        return ""
    lines = ["## Summary of the verdicts", "",
             "| experiment | metric | method | against | wins | ties | losses (to) |",
             "|---|---|---|---|---|---|---|"]
    for (e, m, meth, among), d in rows.items():
        lines.append(f"| {e} | {m} | {meth} | {among} | {d.get('win', 0)} | {d.get('tie', 0)} | "
                     f"{d.get('loss', 0)}" + (f" ({', '.join(sorted(d['who']))})"
                                              if d.get("who") else "") + " |")
    return "\n".join(lines) + "\n\n"


def write_evidence(out: str, path: str) -> None:
    """The evidence table (src/htbo/diagnostics/evidence.json): per measured setting, the
    methods ranked by their fresh-seed median, which tie the winner, and the verdict."""
    rows = []
    for e, (cells, _) in current(out, False).items():
        groups: dict = {}
        for c in cells:
            if c.get("exp") != e or "re-tuned" in c["problem"] or "transferred" in c["problem"]:
                continue
            groups.setdefault((c["problem"], c["noise"], c["budget"]), []).append(c)
        for (prob, noise, budget), cs in groups.items():
            cs = sorted(cs, key=lambda c: (c["fresh"]["median"], c["fresh"]["q80"]))
            w = cs[0]
            tied = [c for c in cs[1:] if rp.verdict(w["fresh"], c["fresh"]) == "tie"]
            kind = "minimax" if w["spec"]["problem"] in ("minimax-quadratic", "dro") else \
                ("decentralized" if w["spec"].get("network") else "bilevel")
            rows.append(dict(
                experiment=e, setting=f"{prob}, noise {noise}", problem=w["spec"]["problem"],
                kind=kind, noise=noise, noise_class=w.get("noise_class"), budget=budget,
                metric=w["metric"],
                ranking=[dict(method=c["method"], solver=c["solver"],
                              hp=c["best"]["params"], median=c["fresh"]["median"],
                              q20=c["fresh"]["q20"], q80=c["fresh"]["q80"]) for c in cs],
                winner=w["method"], verdict="tie" if tied else "win",
                tied=[dict(method=c["method"], solver=c["solver"]) for c in tied],
                date=max(c["date"] for c in cs)[:10], source="docs/results.md"))
    protocol.write_json(path, dict(rows=rows, note="generated by experiments/run.py from "
                                   "the stored cells; do not edit"))


if __name__ == "__main__":
    import jax  # a persistent compilation cache: a resumed sweep recompiles nothing
    jax.config.update("jax_compilation_cache_dir", os.path.join(HERE, ".jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    main()
