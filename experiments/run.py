"""Run the experiments and write the report (docs/results.md + docs/figures/).

    PYTHONPATH=src python experiments/run.py                 # everything (hours): docs/results.md
    PYTHONPATH=src python experiments/run.py --quick         # smoke test (minutes): its own dir
    PYTHONPATH=src python experiments/run.py --only E2,E5 --out experiments/out

One cell = experiment × problem × noise × method, tuned by ``htbo.tune`` (framework.py). A
finished cell is stored as JSON under ``--out`` and skipped by the next invocation, so a
killed sweep resumes where it stopped; the report is rebuilt from every stored cell.
``--quick`` writes to ``experiments/out-quick`` and its report there (``--report PATH`` to
put it elsewhere); the full run writes ``docs/results.md``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import framework as fw

MODULES = {"E1": "e1_synthetic", "E2": "e2_alpha", "E3": "e3_hypercleaning",
           "E4": "e4_ridge_t", "E5": "e5_minimax", "E6": "e6_decentralized"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets, seeds and grids")
    ap.add_argument("--only", help="comma-separated experiments, e.g. E2,E5")
    ap.add_argument("--out", help="cell store (default experiments/out or out-quick)")
    ap.add_argument("--report", help="report path (figures go next to it, in figures/)")
    ap.add_argument("--filter", help="run only cells whose key contains this text")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report, run nothing")
    a = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    out = a.out or os.path.join(here, "out-quick" if a.quick else "out")
    report = a.report or (os.path.join(out, "results.md") if a.quick else
                          os.path.join(os.path.dirname(here), "docs", "results.md"))
    only = [s.strip().upper() for s in a.only.split(",")] if a.only else list(MODULES)
    os.makedirs(out, exist_ok=True)
    stats = dict(ran=[], skipped=[], unavailable={})
    with open(os.path.join(out, "progress.log"), "a", encoding="utf-8") as logf:
        def log(msg):
            line = f"{time.strftime('%H:%M:%S')} {msg}"
            print(line, flush=True)
            logf.write(line + "\n")
            logf.flush()

        for e in ([] if a.report_only else only):
            mod = importlib.import_module(MODULES[e])
            try:
                cells = mod.cells(a.quick)
                probes = getattr(mod, "probes", lambda q: [])(a.quick)
            except fw.NotAvailable as err:
                stats["unavailable"][e] = str(err)
                fw.write_json(os.path.join(out, e, "status.json"), dict(unavailable=str(err)))
                log(f"{e}: not available: {err}")
                continue
            if os.path.exists(os.path.join(out, e, "status.json")):
                os.remove(os.path.join(out, e, "status.json"))
            cells = [c for c in cells if not a.filter or a.filter in c.key]
            probes = [p for p in probes if not a.filter or a.filter in p.key]
            for p in probes:
                if fw.probe_done(out, p):
                    stats["skipped"].append(p.key)
                    continue
                r = fw.run_probe(p, out)
                stats["ran"].append(p.key)
                log(f"{p.key}: {r['wall_s']:.0f} s")
            for i, c in enumerate(cells, 1):
                if fw.done(out, c):
                    stats["skipped"].append(c.key)
                    log(f"[{e} {i}/{len(cells)}] {c.key}: finished before, skipped")
                    continue
                lock = fw.claim(out, c)
                if lock is None:
                    log(f"[{e} {i}/{len(cells)}] {c.key}: running in another process, skipped")
                    continue
                try:
                    r = fw.run_cell(c, out, log)
                finally:
                    fw.release(lock)
                stats["ran"].append(c.key)
                log(f"[{e} {i}/{len(cells)}] {c.key}: {fw.band(r['best'])} at "
                    f"{r['best']['label']} ({r['wall_s']:.0f} s, load {r['load'][1]:.1f})")
    write_report(out, report, a.quick)
    log_path = os.path.relpath(report)
    print(f"report: {log_path}")
    return stats


def write_report(out: str, path: str, quick: bool) -> None:
    import jax
    figdir = os.path.join(os.path.dirname(os.path.abspath(path)), "figures")
    sections, loads, dates, walls = [], [], [], {}
    fw.SUMMARY.clear()
    for e, name in MODULES.items():
        mod = importlib.import_module(name)
        cells, probes = fw.load(out, e)
        try:
            planned = {c.key: c.fingerprint() for c in mod.cells(quick)}
        except fw.NotAvailable:
            planned = {}
        # a stored cell made under other settings (or older noise draws) is not reported
        current = [not planned or planned.get(c["key"]) == c["fingerprint"] for c in cells]
        stale = [c for c, ok in zip(cells, current) if not ok]
        cells = [c for c, ok in zip(cells, current) if ok]
        status = os.path.join(out, e, "status.json")
        if os.path.exists(status) and not cells:
            with open(status, encoding="utf-8") as fh:
                body = f"**Not available yet**: {json.load(fh)['unavailable']}\n"
        elif not cells:
            body = "No cell of this experiment has finished yet.\n"
        else:
            body = mod.report(cells, probes, figdir, quick)
            missing = len(set(planned) - {c["key"] for c in cells})
            if missing:
                old = (f" ({len(stale)} stored cells were made under other settings or older "
                       f"noise draws and are left out)" if stale else "")
                body = (f"**Incomplete: {len(planned) - missing} of {len(planned)} cells have "
                        f"run**{old}; `python experiments/run.py --only {e}` runs the other "
                        f"{missing} (finished cells are kept).\n\n") + body
        loads += [v for c in cells for v in c.get("load", [])]
        dates += [c["date"] for c in cells]
        walls[e] = (len(cells), sum(c["wall_s"] for c in cells))
        sections.append(f"## {mod.TITLE}\n\n{body}")
    when = f"{min(dates)[:10]} to {max(dates)[:10]}" if dates else "–"
    if dates and min(dates)[:10] == max(dates)[:10]:
        when = dates[0][:10]
    load = (f"load average (1 min) at the cells' start and end: median "
            f"{statistics.median(loads):.1f}, max {max(loads):.1f}" if loads else "")
    cost = ", ".join(f"{e} {n} cells in {w / 60:.1f} min" for e, (n, w) in walls.items() if n)
    head = f"""# Results{' (quick smoke run: tiny budgets, not results)' if quick else ''}

Measured {when} on a {os.cpu_count()}-core CPU sandbox, JAX {jax.__version__}, Python
{platform.python_version()}, float32; the machine was shared with other jobs ({load}).
Wall time: {cost or '–'}. Regenerate with `PYTHONPATH=src python experiments/run.py`
(finished cells are kept; `--report-only` rebuilds this page from them).

## Protocol (enforced by `experiments/framework.py`)

- **One cell** = experiment × problem × noise × method, tuned by `htbo.tune` (the whole
  grid × seeds in one compiled program per structure) at the **same budget and seeds** for
  every method. Ranking: the median over seeds of the final metric; diverged seeds count as
  `inf`. Tables show the best point's median and 20%/80% quantiles; figures show its median
  curve with the 20–80% band.
- **Same grid families for every method**: the outer step η takes `n` values η₀ around the
  method's centre (ratio 3), each both **constant** and **decaying** `isqrt`
  (η₀/√(1 + t/T₀), T₀ = a tenth of that method's steps), times 2 values of one second
  hyperparameter (the penalty λ, the clip level c, or SOBA's ρ / StocBiO's γ / the ascent
  step τ). Every method of an experiment has the same number of points. When the best η₀
  lies on the grid's edge, the grid is extended by one η₀ on that side (both families, both
  second values), up to 3 times; edges of the second axis are reported, not extended.
  Centres come from the earlier benchmarks and the problems' documented defaults, never from
  these results.
- **Budgets in SFO-equivalents**: every Hessian- or Jacobian-vector product costs one SFO
  (`hvp_cost = 1`), so SOBA and StocBiO pay for their HVPs. The histories keep SFO and HVP
  apart; curves are drawn against SFO + HVP.
- **Sample sharing** of the two ∇ₓG terms of the penalty methods is stated per experiment
  (`shared_samples`, recorded in every cell).
- A verdict compares the normalized method with the best baseline of the same cell group:
  a method **wins** when its 20–80% band lies entirely on the better side of the other's;
  overlapping bands are a **tie**. Nothing here was tuned toward a winner.

"""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + summary() + "\n".join(sections))


def summary() -> str:
    """Counts of the verdicts per experiment and metric (the sections give each one)."""
    rows = {}
    for v in fw.SUMMARY:
        d = rows.setdefault((v["exp"], v["metric"], v["method"].split(" (")[0]), {})
        d[v["outcome"]] = d.get(v["outcome"], 0) + 1
        if v["outcome"] == "loss":
            d.setdefault("who", set()).add(v["baseline"])
    if not rows:
        return ""
    lines = ["## Summary of the verdicts", "",
             "| experiment | metric | normalized method | wins | ties | baseline wins (by) |",
             "|---|---|---|---|---|---|"]
    for (e, m, meth), d in rows.items():
        lines.append(f"| {e} | {m} | {meth} | {d.get('win', 0)} | {d.get('tie', 0)} | "
                     f"{d.get('loss', 0)}" + (f" ({', '.join(sorted(d['who']))})" if d.get("who")
                                               else "") + " |")
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    import jax  # a persistent compilation cache: a resumed sweep recompiles nothing
    jax.config.update("jax_compilation_cache_dir", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), ".jax-cache"))
    main()
