"""Successive halving against the full grid, on many (problem, noise) settings.

Each setting tunes one solver's default grid (18 points: the outer step at c/3, c, 3c, each
constant and isqrt, × one second axis; ``htbo.search.grid.default_grid``) twice on the same
seeds and budget, no extension, no fresh seeds:

* **full**: every point runs the whole budget (``halving=False``);
* **halving**: rungs at 1/9, 1/3 and all of the budget, the best third of each rung
  continuing from its state (``halving=True``).

Reported per setting: the full grid's best median final metric, the halving winner's (its
own run), their ratio (target ≤ 1.1), and the SFO-equivalents halving spent over the full
grid's (target ≤ 1/3), with compile and run times apart.

    python benchmarks/bench_halving.py [--seeds 5] [--only quadratic] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax

import htbo
from htbo.problems import make_problem

QUAD = dict(dim_x=10, dim_y=20, kappa=10.0)
QDATA = dict(n_inner=512, n_outer=512, dim_x=20, dim_y=20)

# (tag, problem, arguments, noise (None: the problem's documented default), solver, budget)
SETTINGS = [
    *[("quadratic", "quadratic", QUAD, n, "n2sba", 30_000)
      for n in ("gauss", "t:2.5", "t:1.5", "stable:1.8", "stable:1.5", "stable:1.2")],
    ("quadratic", "quadratic", QUAD, "stable:1.5", "f2ba", 30_000),
    ("quadratic", "quadratic", QUAD, "t:1.5", "soba", 30_000),
    ("quadratic", "quadratic", QUAD, "stable:1.5", "clipped-soba", 30_000),
    *[("quadratic-data", "quadratic-data", QDATA, n, "soba", 60_000)
      for n in ("gauss", "t:1.5", "stable:1.5")],
    ("quadratic-data (t factors)", "quadratic-data", dict(QDATA, factors="t"), "none",
     "clipped-soba", 60_000),
    ("quadratic-data", "quadratic-data", QDATA, "stable:1.5", "n2sba", 60_000),
    ("minimax-quadratic", "minimax-quadratic", {}, "gauss", "n2sgda", 20_000),
    ("minimax-quadratic", "minimax-quadratic", {}, "stable:1.5", "n2sgda", 20_000),
    ("minimax-quadratic", "minimax-quadratic", {}, "t:1.5", "sgda", 20_000),
    ("minimax-quadratic", "minimax-quadratic", {}, "stable:1.2", "clipped-sgda", 20_000),
    ("dro", "dro", {}, "stable:1.5", "sgda", 20_000),
    ("ridge-t", "ridge-t", {}, None, "n2sba", 30_000),
    ("ridge-t", "ridge-t", {}, None, "f2ba", 30_000),
    ("l2reg", "l2reg", {}, "t:2.5", "f2ba", 20_000),
    ("hypercleaning (digits)", "hypercleaning", dict(dataset="digits", n_train=500, n_val=200),
     None, "soba", 20_000),
]


def one(tag, name, args, noise, solver, budget, seeds, n_evals):
    from htbo.plan import default_noise
    clean = make_problem(name, **args)
    noise = default_noise(clean) if noise is None else noise
    problem = make_problem(name, noise=None if noise == "none" else noise, **args)
    kw = dict(budget=budget, seeds=seeds, extend=False, eval_seeds=0, n_evals=n_evals)
    out = dict(setting=tag, noise=noise, solver=solver, budget=budget, metric=problem.metric)
    for mode, halving in (("halving", True), ("full", False)):
        t0 = time.perf_counter()
        res = htbo.tune(problem, solver, None, halving=halving, **kw)
        out[mode] = dict(best=res.best["label"], median=res.best["median"],
                         q20=res.best["q20"], q80=res.best["q80"],
                         sfo_eq=res.spent["sfo_eq"], full_grid=res.spent["full_grid_sfo_eq"],
                         points=len(res.table), compile_s=res.compile_s, run_s=res.run_s,
                         wall_s=time.perf_counter() - t0)
    f, h = out["full"], out["halving"]
    out["ratio"] = h["median"] / f["median"] if f["median"] > 0 else float("nan")
    out["sfo_ratio"] = h["sfo_eq"] / f["sfo_eq"]
    return out


def table(results) -> str:
    lines = ["| # | problem | noise | solver | full grid best | halving winner | ratio | "
             "SFO-eq halving / full | run s (halving / full) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        f, h = r["full"], r["halving"]
        same = " (same point)" if f["best"] == h["best"] else ""
        lines.append(f"| {i} | {r['setting']} | {r['noise']} | {r['solver']} | "
                     f"{f['median']:.4g} | {h['median']:.4g}{same} | {r['ratio']:.3f} | "
                     f"{r['sfo_ratio']:.3f} | {h['run_s']:.1f} / {f['run_s']:.1f} |")
    ok = [r for r in results if r["ratio"] <= 1.1]
    cheap = [r for r in results if r["sfo_ratio"] <= 1 / 3]
    lines.append("")
    lines.append(f"within 10% of the full grid's best: {len(ok)}/{len(results)}; at most 1/3 "
                 f"of its SFO-equivalents: {len(cheap)}/{len(results)}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-evals", type=int, default=5)
    ap.add_argument("--only", default=None, help="settings whose problem tag contains this")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform} ({cpu}), {a.seeds} seeds; "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    results = []
    for s in SETTINGS:
        if a.only and a.only not in s[0]:
            continue
        r = one(*s, seeds=a.seeds, n_evals=a.n_evals)
        results.append(r)
        print(f"{r['setting']} {r['noise']} {r['solver']}: ratio {r['ratio']:.3f}, SFO "
              f"{r['sfo_ratio']:.3f} (full {r['full']['wall_s']:.0f} s, halving "
              f"{r['halving']['wall_s']:.0f} s)", flush=True)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(results, fh, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
