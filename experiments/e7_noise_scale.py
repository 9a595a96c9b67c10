"""E7: robustness to a noise scale nobody told the method about.

Every method is tuned at noise scale 1 — on `quadratic` under α-stable(1.5) noise (E1's
cells) and on `quadratic-data` under injected Student-t(1.5) noise (tuned here at 100k
SFO-equivalents) — and its tuned hyperparameters are then run **unchanged** at scales 0.01,
0.1, 10 and 100 (fresh seeds). Each result is divided by the best value any method reaches
when **re-tuned** at that scale (a lighter search: no structural options, 3 selection and 5
fresh seeds, two extension rounds). A ratio near 1 means the scale-1 tuning carried over; a
method with no clip level to re-set is where normalization should show its worth — or not.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from e1_synthetic import DATA_C, QUAD, QUAD_C, data_inner, noise_class, quad_steps
from methods import bilevel
from protocol import Cell
from report import color, figure, g3, rel, save

NAME = "E7"
TITLE = "E7: noise-scale robustness without re-tuning"
SCALES = (0.01, 0.1, 10.0, 100.0)
SETUPS = {  # tag: (problem, args, law, budget, source experiment)
    "quadratic": ("quadratic", QUAD, "stable:1.5", 100_000, "E1"),
    "quadratic-data": ("quadratic-data", {}, "t:1.5", 100_000, "E7"),
}


def _methods(tag, budget, which=None):
    if tag == "quadratic":
        return bilevel(0.05, QUAD_C, batch_in=1, batch_out=8, batch=8, shared=False,
                       steps=quad_steps(budget), which=which)
    return bilevel(data_inner("gauss"), DATA_C, batch_in=32, batch_out=32, batch=32,
                   shared=False, steps=budget // (3 * 5 * 32 + 3 * 32), which=which)


def _noise(law, s):
    return law if s == 1 else f"{law}@{s:g}"


def cells(quick: bool):
    out = []
    for tag, (problem, args, law, budget, src) in SETUPS.items():
        which, scales = None, SCALES
        kw = dict(seeds=5, eval_seeds=10, n_evals=20)
        light = dict(seeds=3, eval_seeds=5, n_evals=20, max_rounds=2)
        if quick:
            if tag != "quadratic":
                continue
            which, scales, budget, src = ("N²SBA",), (0.1,), 3000, "E7"
            kw = light = dict(seeds=2, eval_seeds=2, n_evals=3, n_eta=1, max_rounds=0)
        ms = _methods(tag, budget, which)
        for m in ms:
            source = Cell(src, tag, law, m, dict(problem=problem, args=args, noise=law),
                          budget=budget, noise_class=noise_class(law), **kw)
            if src == NAME:  # tuned here (E1's cells otherwise)
                out.append(source)
            for s in scales:
                n = _noise(law, s)
                spec = dict(problem=problem, args=args, noise=n)
                out.append(Cell(NAME, f"{tag} transferred", n, m, spec, budget=budget,
                                noise_class=noise_class(n), transfer=source.key,
                                **{k: v for k, v in kw.items() if k != "max_rounds"}))
                retune = dataclasses.replace(m, family="")  # no structural options
                out.append(Cell(NAME, f"{tag} re-tuned", n, retune, spec, budget=budget,
                                noise_class=noise_class(n), **light))
    return out


def _scale(c) -> float:
    return float(c["noise"].split("@")[1]) if "@" in c["noise"] else 1.0


def report(cells, figdir, quick, probes=None) -> str:
    lines = [__doc__.split("\n", 1)[1].strip(), ""]
    tags = [t for t in SETUPS if any(c["problem"].startswith(t + " ") for c in cells)]
    fig, axes = figure(1, max(1, len(tags)), 5.6, 4.2)
    for a, tag in zip(axes[0], tags):
        moved = [c for c in cells if c["problem"] == f"{tag} transferred"]
        retuned = [c for c in cells if c["problem"] == f"{tag} re-tuned"]
        scales = sorted({_scale(c) for c in moved})
        best = {s: min((c["fresh"]["median"] for c in retuned if _scale(c) == s),
                       default=math.nan) for s in scales}
        head = ("| method | " + " | ".join(f"scale {s:g}" for s in scales) + " |")
        rows = [head, "|---|" + "---|" * len(scales)]
        for lab in sorted({c["method"] for c in moved}):
            by = {_scale(c): c for c in moved if c["method"] == lab}
            r = [by[s]["fresh"]["median"] / best[s] if s in by and best[s] > 0 else math.nan
                 for s in scales]
            lo = [by[s]["fresh"]["q20"] / best[s] if s in by and best[s] > 0 else math.nan
                  for s in scales]
            hi = [by[s]["fresh"]["q80"] / best[s] if s in by and best[s] > 0 else math.nan
                  for s in scales]
            rows.append(f"| {lab} | " + " | ".join(
                f"{g3(x)} [{g3(y)}, {g3(z)}]" for x, y, z in zip(r, lo, hi)) + " |")
            x = np.array(scales)
            ok = np.isfinite(r)
            a.plot(x[ok], np.array(r)[ok], "-o", color=color(lab), label=lab, lw=1.6, ms=4)
        a.set_xscale("log")
        a.set_yscale("log")
        a.axhline(1.0, color="k", lw=0.8, ls=":")
        a.set_xlabel("noise scale σ (tuned at σ = 1)")
        a.set_ylabel("final ‖∇φ‖ ÷ best re-tuned at that σ")
        a.set_title(f"{tag}, {SETUPS[tag][2]}", fontsize=9)
        a.grid(True, which="both", alpha=0.3)
        norm = ", ".join(f"σ = {s:g}: {g3(best[s])} ({min((c for c in retuned if _scale(c) == s), key=lambda c: c['fresh']['median'])['method']})"
                         for s in scales if math.isfinite(best[s]))
        lines += [f"### {tag} ({SETUPS[tag][2]})", "",
                  "Final ‖∇φ‖ on fresh seeds of the scale-1 point, divided by the best "
                  "re-tuned median at that scale (median [20%, 80%] of the ratio):", "",
                  *rows, "", f"Best re-tuned medians (the divisors): {norm}.", ""]
    f = save(fig, f"{figdir}/e7_noise_scale.png",
             "E7: tuned at noise scale 1, run at other scales unchanged (1 = as good as the "
             "best method re-tuned there)")
    return "\n".join(lines[:2] + [f"![noise scale]({rel(f)})", ""] + lines[2:])
