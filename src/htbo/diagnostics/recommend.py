"""From a diagnosis to a race: the candidate methods, stable starting values, and the search.

Rules (docs/diagnostics.md explains them):

* **Noise class** (:func:`classify`): the decisive noise is the heavier-tailed oracle's
  (smallest block-sum α̂); its bootstrap interval ``[lo, hi]``, checked against Hill's on
  the norms, says **heavy** (``hi ≤ 1.6`` and Hill agrees), **light** (``hi ≥ 2``, or Hill's
  interval above 2: a finite-variance tail), **moderate** (between, or the estimators
  disagree) or **deterministic** (no noise).
* **Candidates**: bilevel — N²SBA, clipped SOBA and SOBA, with F2BA added when the noise is
  light; minimax — N²SGDA, clipped SGDA and SGDA; plus every method that won, or tied the
  winner, in the measured settings of the same kind and noise class (the evidence table,
  :mod:`htbo.diagnostics.evidence`). ``first_order=True`` keeps the methods without
  Hessian-vector products. What is tuned is a **race** (``htbo tune --solvers ...``): every
  candidate over its default grid (extended at its edges), budgets in SFO-equivalents (an
  HVP costs one SFO), the winner's figures measured again on fresh seeds.
* **Inner steps** stable at the batch the race uses: ``1/L̂_B`` with ``L̂_B`` the sharpest
  lower Hessian over random minibatches of that size
  (:func:`htbo.diagnostics.conditioning.minibatch_curvature`) — one sample's curvature can be
  far above the mean's, so the full-data ``1/L̂`` can diverge at batch 1.
* **λ** (penalty methods): the smallest of ``{κ̂, 2κ̂, …, 64κ̂}`` whose measured penalty bias
  ‖∇L_λ* − ∇φ‖ at this point is at most half the target accuracy; the search extends λ when
  the best point sits at an edge.

``recommendation["tune"]`` is the race in Python form: ``htbo.tune(problem,
**recommendation["tune"], budget=..., seeds=...)`` runs exactly what the printed command
line runs. No measured number lives here: the evidence is data, quoted as such.
"""
from __future__ import annotations

import math
import shlex

from ..solvers.theory import n2sba_theory, n2sgda_theory
from . import evidence

__all__ = ["recommend", "classify", "tune_command", "nice", "HEAVY_HI", "candidates",
           "INNER_STEPS", "BATCH_KEYS"]

HEAVY_HI = 1.6   # interval's upper end at or below this: clearly heavy-tailed
LIGHT_HI = 2.0   # interval reaching this: finite variance
BASE = {("bilevel", "heavy"): ["n2sba", "clipped-soba", "soba"],
        ("bilevel", "moderate"): ["n2sba", "clipped-soba", "soba"],
        ("bilevel", "light"): ["soba", "clipped-soba", "n2sba", "f2ba"],
        ("bilevel", "deterministic"): ["soba", "f2ba"],
        ("minimax", "heavy"): ["n2sgda", "clipped-sgda", "sgda"],
        ("minimax", "moderate"): ["n2sgda", "clipped-sgda", "sgda"],
        ("minimax", "light"): ["sgda", "clipped-sgda", "n2sgda"],
        ("minimax", "deterministic"): ["sgda"]}
FIRST_ORDER = {"bilevel": ["n2sba", "f2ba", "clipped-f2sa"],
               "minimax": ["n2sgda", "clipped-sgda", "sgda"]}
#: the inner-step hyperparameters set to 1/L̂_B, per solver (B: its inner batch)
INNER_STEPS = {"n2sba": ("alpha", "tau"), "f2ba": ("alpha", "tau"), "f2sa": ("alpha", "tau"),
               "clipped-f2sa": ("alpha", "tau"), "soba": ("rho",), "clipped-soba": ("rho",),
               "nsoba": ("rho",), "stocbio": ("alpha", "neumann_lr"),
               "nsvrb": ("eta_y", "eta_z"), "n2sgda": ("tau",), "sgdmax": ("tau",),
               "sgda": ("tau",), "clipped-sgda": ("tau",), "nsgda-m": ("tau",)}
#: the batch size of those inner steps
BATCH_KEYS = ("batch_in", "batch")


def nice(v: float) -> float:
    """``v`` rounded to two significant digits (for hyperparameters a person reads)."""
    if not math.isfinite(v) or v <= 0:
        return v
    return float(f"{v:.2g}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def classify(diag) -> dict:
    """The decisive oracle, its α̂ with interval, Hill's interval and the noise class."""
    noisy = {k: t for k, t in diag.tails.items() if t.status != "deterministic"}
    if not noisy:
        return dict(cls="deterministic", oracle=None)
    which, t = min(noisy.items(), key=lambda kv: kv[1].block_sum.value)
    bs, hill = t.block_sum, t.hill
    if bs.hi <= HEAVY_HI and hill.lo < LIGHT_HI:
        cls, why = "heavy", (f"block-sum α̂ = {bs} ≤ {HEAVY_HI}: clearly heavy-tailed "
                             f"(infinite variance), and Hill on the norms agrees ({hill})")
    elif bs.hi <= HEAVY_HI:
        cls, why = "moderate", (f"the estimators disagree: the coordinates read heavy-tailed "
                                f"(block sums {bs}) but the norms have a finite-variance tail "
                                f"(Hill {hill}); sparse, jumpy data gradients can read this "
                                "way")
    elif bs.hi >= LIGHT_HI:
        cls, why = "light", f"block-sum α̂ = {bs}: the interval reaches 2"
    elif hill.lo >= LIGHT_HI:
        cls, why = "light", (f"Hill α̂ = {hill} on the norms is above 2 (finite variance); "
                             f"block sums ({bs}) converge to 2 slowly on such laws")
    else:
        cls, why = "moderate", f"block-sum α̂ = {bs}: below 2 but not clearly heavy"
    return dict(cls=cls, oracle=which, why=why, alpha=bs.value, lo=bs.lo, hi=bs.hi,
                hill=hill.value, hill_lo=hill.lo, hill_hi=hill.hi,
                noise_to_gradient=t.noise_to_gradient)


def candidates(kind: str, noise_class: str, first_order: bool = False,
               rows: list | None = None) -> tuple[list[str], list[dict]]:
    """``(solvers, matching evidence rows)``: the class's base set plus the evidence's
    contenders (registered solvers only; without HVPs when ``first_order``)."""
    from ..solvers import SOLVERS, make_solver
    match = evidence.matching(kind, noise_class, rows)
    names = list(BASE.get((kind, noise_class), BASE[(kind, "light")]))
    names += [n for n in evidence.contenders(match) if n not in names]
    names = [n for n in names if n in SOLVERS]
    if first_order:
        names = [n for n in names if make_solver(n).hvp_per_step == 0]
        names = names or list(FIRST_ORDER[kind])
    return names, match


def inner_batch(problem, name: str) -> int:
    """The batch size of ``name``'s inner steps on ``problem`` (its recommended default, else
    the solver's)."""
    from ..solvers import make_solver
    s = make_solver(name, problem=problem)
    for k in BATCH_KEYS:
        if k in s.hparams:
            return int(s.hparams[k])
    return 1


def tune_command(diag, solvers: list[str], hp: dict, *, budget: int = 200_000,
                 seeds: int = 8, hvp_cost: float = 1.0, out: str | None = None) -> str:
    """``htbo tune --problem P [--problem-arg K=V] --noise N --solvers A,B --hp A.K=V ...``."""
    ref = diag.problem_ref or diag.problem
    parts = ["htbo", "tune", "--problem", ref]
    for k, v in diag.problem_args.items():
        parts += ["--problem-arg", f"{k}={_fmt(v)}"]
    parts += ["--noise", diag.noise, "--solvers", ",".join(solvers)]
    for name in solvers:
        for k, v in hp.get(name, {}).items():
            parts += ["--hp", f"{name}.{k}={_fmt(v)}"]
    parts += ["--hvp-cost", _fmt(float(hvp_cost)), "--budget", str(budget), "--seeds",
              str(seeds), "--out", out or f"tune-{diag.problem}"]
    return " ".join(shlex.quote(p) for p in parts)


def _pick_lam(diag, target: float):
    if not diag.penalty_bias or diag.grad_phi_norm is None:
        k = diag.kappa if math.isfinite(diag.kappa) else 100.0
        return nice(max(k, 1.0)), ("λ = κ̂ (penalty bias not measured here); the search "
                                    "extends it when the best point sits at an edge")
    limit = 0.5 * target * diag.grad_phi_norm
    ok = [b for b in diag.penalty_bias if b["bias"] <= limit]
    row = ok[0] if ok else diag.penalty_bias[-1]
    why = (f"smallest λ of {{κ̂·2^j}} whose penalty bias ‖∇L_λ* − ∇φ‖ = {row['bias']:.3g} at "
           f"this point is ≤ {limit:.3g} (half the target {target:g}·‖∇φ‖); the search "
           "extends λ when the best point sits at an edge")
    if not ok:
        why = (f"no λ up to {row['lam']:g} brings the penalty bias below {limit:.3g} "
               f"(at {row['lam']:g}: {row['bias']:.3g}); the bias, not the noise, may set the "
               "floor")
    return float(row["lam"]), why


def _theory(diag, c: dict, target: float):
    """The analysis' preset at ε = target·‖∇φ(x)‖ with measured ℓ ≈ L̂, κ̂, σ̂, p̂."""
    if diag.grad_phi_norm is None or not diag.grad_phi_norm > 0:
        return None
    if not (math.isfinite(diag.kappa) and diag.L > 0):
        return dict(error="the lower level is not strongly convex at this point (μ̂ ≤ 0)")
    eps = target * diag.grad_phi_norm
    if c["cls"] == "deterministic":
        p, sigma = 2.0, 0.0
    else:
        p = 2.0 if c["cls"] == "light" else min(
            2.0, max(1.05, max(c["lo"], min(c["hill_lo"], 2.0)) - 0.1))
        sigma = max(t.moment_scale(p) for t in diag.tails.values() if t.status == "ok")
        sigma *= diag.batch ** (1 - 1 / p)  # per-sample scale: a mean of B shrinks it B^{1−1/p}
    fn = n2sgda_theory if diag.minimax else n2sba_theory
    try:
        pre = fn(diag.L, max(1.0, diag.kappa), sigma, p, eps)
    except ValueError as e:
        return dict(error=str(e), inputs=dict(ell=diag.L, kappa=diag.kappa, sigma=sigma, p=p,
                                              eps=eps))
    d = pre.to_dict()
    d["rule"] = ("ℓ = L̂, κ = κ̂, p = 2 for light noise, else min(2, the larger lower end "
                 "of the block-sum and Hill intervals − 0.1), σ = "
                 "(mean ‖noise‖^p)^{1/p} per sample, ε = target·‖∇φ(x)‖, Δ = 1, δ = 0.01")
    return d


def _quote(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        w = r["ranking"][0]
        second = r["ranking"][1] if len(r["ranking"]) > 1 else None
        tail = "" if second is None else (
            f"; next {second['method']} {second['median']:.3g} [{second['q20']:.3g}, "
            f"{second['q80']:.3g}] ({'tie' if r['verdict'] == 'tie' else 'beaten'})")
        out.append(f"{r['experiment']} {r['setting']} ({r['date']}): {w['method']} "
                   f"{w['median']:.3g} [{w['q20']:.3g}, {w['q80']:.3g}] final {r['metric']}"
                   + tail)
    return out


def recommend(diag, target: float = 0.25, curvature: dict | None = None,
              first_order: bool = False, budget: int = 200_000, seeds: int = 8,
              rows: list | None = None) -> tuple[dict, dict | None]:
    """``(recommendation, theory preset)`` for a :class:`~htbo.diagnostics.Diagnosis`.
    ``curvature``: ``{solver: L̂_B}``, the sharpest lower Hessian at each candidate's inner
    batch (:func:`htbo.diagnostics.diagnose` measures it); ``rows``: evidence rows (default:
    the shipped table)."""
    c = classify(diag)
    kind = "minimax" if diag.minimax else "bilevel"
    names, match = candidates(kind, c["cls"], first_order, rows)
    lam, lam_why = (None, "no penalty (minimax)") if diag.minimax else _pick_lam(diag, target)
    hp, steps_why = {}, []
    for name in names:
        h = {}
        L_B = (curvature or {}).get(name)
        if L_B is not None and L_B > 0 and math.isfinite(L_B):
            step = nice(1.0 / L_B)
            h.update({k: step for k in INNER_STEPS.get(name, ())})
            steps_why.append(f"{name}: {', '.join(INNER_STEPS.get(name, ()))} = 1/L̂_B = "
                             f"{step:g} (L̂_B = {L_B:.3g})")
        if lam is not None and name in ("n2sba", "f2ba"):
            h["lam"] = lam
        if h:
            hp[name] = h
    from ..solvers import make_solver
    # one budget in SFO-equivalents: an HVP costs one SFO
    hvp_cost = 1.0 if any(make_solver(n).hvp_per_step > 0 for n in names) else 0.0
    tune = dict(solvers=list(names), hp=hp, hvp_cost=hvp_cost)
    notes = []
    if not match:
        notes.append(f"No measured setting matches ({kind}, {c['cls']} noise): the candidates "
                     "are the base set for this class, unbacked by measurements here.")
    if diag.problem_ref is None and diag.problem_is_registered is False:
        notes.append(f"problem {diag.problem!r} is not registered, so the command line cannot "
                     "build it: give it as module:function (a factory of yours) or run the "
                     "same race from Python with htbo.tune(problem, **rec['tune'], ...).")
    if not math.isfinite(diag.kappa):
        notes.append("μ̂ ≤ 0: the lower level is not strongly convex at this point; the "
                     "penalty bound needs λ ≥ 2κ, which is then undefined.")
    rec = dict(noise_class=c["cls"], decisive_oracle=c.get("oracle"),
               reason=c.get("why", "every oracle is deterministic"), kind=kind,
               family=f"a race of {', '.join(names)}", solvers=names,
               evidence=_quote(match), inner_steps_rule="; ".join(steps_why) or
               "the solvers' defaults (no curvature measured)", lam_rule=lam_why, tune=tune,
               commands=[tune_command(diag, names, hp, budget=budget, seeds=seeds,
                                      hvp_cost=hvp_cost)],
               budget=budget, seeds=seeds, notes=notes, target=target,
               solver=names[0], hparams=hp.get(names[0], {}))
    return rec, _theory(diag, c, target)
