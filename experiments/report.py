"""Tables, verdicts and figures of the experiments, from the stored cells.

Every number shown is a fresh-seed number (seeds that did not choose the point), with the
library's one quantile rule (``htbo.history.bands``: a diverged seed counts as ``inf``).
A verdict compares two methods' 20–80% bands: one **wins** when its band lies entirely on
the better side of the other's; overlapping bands are a **tie**.
"""
from __future__ import annotations

import math
import os
import re
import textwrap

import numpy as np

#: the first-order penalty family (the same hypergradient estimator as N²SBA)
PENALTY = ("F2BA", "F2SA", "clipped F2SA")
SUMMARY: list[dict] = []   # every verdict of the report being written
COLORS: dict = {}


def g3(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.3g}"


def band(s: dict) -> str:
    return f"{g3(s['median'])} [{g3(s['q20'])}, {g3(s['q80'])}]"


def final(c: dict, k: str | None = None) -> dict:
    """A cell's fresh-seed final ``k`` (default: its tuning metric) as median/q20/q80."""
    if k is None or k == c["metric"]:
        return c["fresh"]
    h = c["history"][k]
    return {q: h[q][-1] for q in ("median", "q20", "q80")}


def point_str(params: dict) -> str:
    return ", ".join(f"{k}={g3(v) if isinstance(v, float) else v}" for k, v in params.items())


def edge_str(c: dict) -> str:
    parts = [f"{e['axis']} extended {e['side']} ({e.get('value', '')})" for e in
             c.get("extended", [])]
    parts += [f"**{e['axis']} on its {e['side']} edge: {e.get('reason', '')}**" for e in
              c.get("edges", [])]
    return "; ".join(parts)


def table(cells: list[dict], order, final_metrics=()) -> str:
    """One row per cell: fresh-seed final metric, the selection figure beside it, the
    tuned point and what the search extended."""
    extra = "".join(f" {k} (fresh) |" for k in final_metrics)
    head = (f"| problem | noise | method | final {cells[0]['metric']} on fresh seeds, median "
            f"[20%, 80%] | on the selection seeds |{extra} diverged | steps | tuned point | "
            "search |")
    lines = [head, "|" + "---|" * (9 + len(final_metrics))]
    for c in sorted(cells, key=order):
        f, s = c["fresh"], c.get("selection") or {}
        ext = "".join(f" {band(final(c, k))} |" for k in final_metrics)
        sel = band(s) if s else "(transferred)"
        lines.append(f"| {c['problem']} | {c['noise']} | {c['method']} | {band(f)} | {sel} |"
                     f"{ext} {f.get('diverged', 0)}/{c['eval_seeds']} | {c['best']['steps']} | "
                     f"{point_str(c['best']['params'])} | {edge_str(c)} |")
    return "\n".join(lines)


def verdict(a: dict, b: dict, higher_better: bool = False) -> str:
    """``win`` / ``loss`` / ``tie`` of band ``a`` against band ``b``."""
    if higher_better:
        return "win" if a["q20"] > b["q80"] else "loss" if b["q20"] > a["q80"] else "tie"
    return "win" if a["q80"] < b["q20"] else "loss" if b["q80"] < a["q20"] else "tie"


def verdicts(cells: list[dict], group, arms=("paper",), among=None, metric=None,
             higher_better=False, exp_tag: str | None = None) -> list[str]:
    """Per group: the best method of ``arms`` against the best other method (``among``:
    only these others)."""
    out, groups = [], {}
    for c in cells:
        groups.setdefault(group(c), []).append(c)
    sign = -1 if higher_better else 1
    for g, cs in groups.items():
        s = {c["method"]: final(c, metric) for c in cs}
        mine = [c["method"] for c in cs if c["arm"] in arms]
        others = [c["method"] for c in cs if c["arm"] not in arms and
                  (among is None or c["method"] in among)]
        if not mine or not others:
            continue
        key = lambda k, s=s: sign * s[k]["median"]  # noqa: E731
        bn, bb = min(mine, key=key), min(others, key=key)
        v = verdict(s[bn], s[bb], higher_better)
        what = {"win": f"**{bn} wins**", "loss": f"**{bb} wins**",
                "tie": "**tie** (20–80% bands overlap)"}[v]
        SUMMARY.append(dict(exp=exp_tag or cs[0]["exp"], metric=metric or cs[0]["metric"],
                            group=g, outcome=v, method=bn, baseline=bb,
                            among="penalty" if among == PENALTY else
                            ("/".join(among) if among else "all")))
        r = s[bn]["median"] / s[bb]["median"] if s[bb]["median"] not in (0, math.inf) \
            else math.nan
        out.append(f"- {g}: {what}: {bn} {band(s[bn])} vs {bb} {band(s[bb])}"
                   + (f" (ratio {r:.2f})" if math.isfinite(r) else "") + ".")
    return out


def time_to_reach(c: dict, target: float, metric: str | None = None) -> float:
    """Compiled time at the first evaluation where the cell's fresh median is ≤ target
    (``inf`` if never)."""
    h = c["history"]
    med = h[metric or c["metric"]]["median"]
    for t, v in zip(h["time_s"], med):
        if v <= target:
            return float(t)
    return math.inf


def time_table(cells: list[dict], group) -> list[str]:
    """Per group, the time each method needs to reach the best penalty method's final value
    (fresh medians; compiled-step time of the whole seed batch)."""
    lines = ["| setting | target (best penalty method's final median) | " +
             "time to reach it, s: method (final time) |", "|---|---|---|"]
    groups: dict = {}
    for c in cells:
        groups.setdefault(group(c), []).append(c)
    for g, cs in groups.items():
        pen = [c for c in cs if c["method"] in PENALTY + ("N²SBA",)]
        if not pen:
            continue
        target = min(c["fresh"]["median"] for c in pen)
        parts = []
        for c in sorted(cs, key=lambda c: time_to_reach(c, target)):
            t = time_to_reach(c, target)
            parts.append(f"{c['method']} {g3(t)} ({g3(c['history']['time_s'][-1])})")
        lines.append(f"| {g} | {g3(target)} | " + "; ".join(parts) + " |")
    return lines


def edge_count(cells: list[dict]) -> tuple[int, int, list[str]]:
    """``(cells whose best point is interior on every searched axis, cells, notes)``."""
    notes = [f"{c['key']}: {e['axis']} ({e.get('reason', '')})" for c in cells
             for e in c.get("edges", [])]
    return sum(1 for c in cells if not c.get("edges")), len(cells), notes


# -- figures -------------------------------------------------------------------------------
def tag(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_")


def rel(path: str) -> str:
    return "figures/" + os.path.basename(path)


def color(label: str) -> str:
    return COLORS.setdefault(label, f"C{len(COLORS) % 10}")


def figure(rows: int, cols: int, w: float = 4.3, h: float = 3.4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    return fig, axes


def curves(ax, cells: list[dict], metric: str, x: str = "sfo_eq", log: bool = True):
    """Fresh-seed median and 20–80% band of ``metric`` against ``x`` per cell."""
    from matplotlib.ticker import MaxNLocator
    for c in sorted(cells, key=lambda c: c["method"]):
        h = c["history"]
        if metric not in h:
            continue
        xs = np.asarray(h[x], float)
        med, lo, hi = (np.asarray(h[metric][q], float) for q in ("median", "q20", "q80"))
        ok = np.isfinite(med)
        col = color(c["method"])
        dv = c["fresh"].get("diverged", 0)
        ax.plot(xs[ok], med[ok], color=col, lw=1.6,
                label=c["method"] + (f" ({dv} div.)" if dv else ""))
        fin = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(xs[fin], lo[fin], hi[fin], color=col, alpha=0.18, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel({"sfo_eq": "SFO-equivalents (SFO + HVP)", "sfo": "SFO calls",
                   "time_s": "compiled-step time (s)",
                   "comm_rounds": "communication rounds"}.get(x, x))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.grid(True, which="both", alpha=0.3)


def save(fig, path: str, title: str) -> str:
    import matplotlib.pyplot as plt
    handles = {}
    for ax in fig.axes:
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(re.sub(r" \(\d+ div\.\)$", "", lb), hd)
    ncol = max(1, min(len(handles), 7, int(fig.get_figwidth() / 1.3)))
    nrows = -(-len(handles) // ncol)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol,
               fontsize=9, frameon=False)
    fig.suptitle(textwrap.fill(title, int(fig.get_figwidth() * 11)), fontsize=10)
    bottom = min(0.3, (0.08 + 0.24 * nrows) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_vs(ax, cells: list[dict], xkey, xs_order, metric=None, log=True):
    """Fresh final metric (median, 20–80% band as error bars) against a category."""
    by: dict = {}
    for c in cells:
        by.setdefault(c["method"], {})[xkey(c)] = final(c, metric)
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
                  verdict_lines: list[str]) -> list[str]:
    """One problem across noises: the final metric against the noise, curves per noise
    (against SFO-equivalents and against compiled time), the table and the verdicts."""
    exp, p = cs[0]["exp"], cs[0]["problem"]
    fig, ax = figure(1, 1, 7.5, 4.2)
    final_vs(ax[0][0], cs, lambda c: c["noise"], noises)
    ax[0][0].set_ylabel(f"final {ylab} on fresh seeds")
    ax[0][0].set_xlabel("noise")
    f1 = save(fig, f"{figdir}/{exp.lower()}_{tag(p)}_final.png",
              f"{exp} {p}: final {ylab} at {cs[0]['budget']:,} SFO-eq., each method tuned, "
              f"{cs[0]['eval_seeds']} fresh seeds")
    out = [f"### {name}", "", f"![final]({rel(f1)})", ""]
    for x, what in (("sfo_eq", "curves"), ("time_s", "time")):
        fig, axes = figure(2, (len(noises) + 1) // 2)
        for a, n in zip(axes.ravel(), noises):
            curves(a, [c for c in cs if c["noise"] == n], cs[0]["metric"], x=x)
            a.set_title(f"noise {n}", fontsize=9)
            a.set_ylabel(ylab)
        for a in axes.ravel()[len(noises):]:
            a.set_visible(False)
        f = save(fig, f"{figdir}/{exp.lower()}_{tag(p)}_{what}.png",
                 f"{exp} {p}: best point of each method on fresh seeds, median and 20–80% "
                 f"band, against {'SFO-equivalents' if x == 'sfo_eq' else 'compiled time'}")
        out += [f"![{what}]({rel(f)})", ""]
    cs = sorted(cs, key=lambda c: (noises.index(c["noise"]), c["method"]))
    out += [table(cs, lambda c: (noises.index(c["noise"]), c["method"])), "",
            "Time to reach the best penalty method's final value (fresh medians):", "",
            *time_table(cs, lambda c: f"{c['problem']}, {c['noise']}"), "",
            *verdict_lines]
    return out
