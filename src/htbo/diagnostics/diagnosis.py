"""``diagnose(problem)``: the noise tail, the lower-level conditioning and the penalty bias
at one point, and what to run.

Noise: ``n_samples`` independent calls of the problem's own stochastic oracles ``∇F`` and
``∇G`` (minibatch of ``batch`` samples plus injected noise, exactly as a solver sees them) at
``(x, y)``, minus the full-data noise-free gradient; each draw is the flattened
``(∇_x, ∇_y)`` vector. Averaging a minibatch changes the scale, not the tail index.
Estimators (:mod:`htbo.diagnostics.tail`): block sums on the pooled coordinates (the primary
estimate), block sums on randomly signed norms, Hill on the norms, with bootstrap intervals.
Conditioning (:mod:`htbo.diagnostics.conditioning`) at ``(x, y)`` and at ``(x, y*(x))``.
Penalty bias (bilevel only): ``‖∇L_λ*(x) − ∇φ(x)‖`` for a few λ, from accurate full-data
solves of ``y*`` and ``y_λ* = argmin f/λ + g``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from ..metrics import implicit_grad_phi, solve_lower
from ..oracles import grad_f, grad_g
from ..problems.base import BilevelProblem, tree_check_finite, validate_problem
from .conditioning import Conditioning, lower_conditioning, minibatch_curvature
from .recommend import INNER_STEPS, candidates, classify, inner_batch, nice, recommend
from .tail import Estimate, block_sum_estimate, hill_estimate, symmetrize, to_plain

__all__ = ["diagnose", "Diagnosis", "TailReport", "sample_noise", "penalty_bias",
           "MIN_SAMPLES"]

MIN_SAMPLES = 1000     # block sums of >= 31 draws in 32 blocks; Hill with k >= 32
MAX_COORDS = 128       # coordinates pooled by the block-sum estimator (a random subset)


@dataclass
class TailReport:
    """The noise of one oracle (``'f'`` or ``'g'``) at the diagnosed point."""

    oracle: str
    status: str                      # "ok" or "deterministic"
    dim: int
    grad_norm: float                 # ‖full-data gradient‖ of this oracle
    noise_norm_quantiles: dict       # of ‖noise‖ over the draws
    noise_to_gradient: float         # median ‖noise‖ / ‖gradient‖
    coordinates_used: int = 0
    coordinates_noisy: int = 0
    block_sum: Estimate | None = None          # pooled coordinates (primary)
    block_sum_norms: Estimate | None = None    # randomly signed norms
    hill: Estimate | None = None               # norms, k = ⌈√n⌉
    norms: np.ndarray | None = field(default=None, repr=False)

    @property
    def alpha(self):
        """The primary estimate, or ``'deterministic'``."""
        return "deterministic" if self.status == "deterministic" else self.block_sum.value

    def moment_scale(self, p: float) -> float:
        """``(mean ‖noise‖^p)^{1/p}`` over the draws (an estimate of σ for moment order p)."""
        if self.norms is None:
            return 0.0
        return float(np.mean(self.norms**p) ** (1.0 / p))

    def to_dict(self) -> dict:
        out = dict(oracle=self.oracle, status=self.status, alpha=self.alpha, dim=self.dim,
                   grad_norm=self.grad_norm, noise_norm_quantiles=self.noise_norm_quantiles,
                   noise_to_gradient=self.noise_to_gradient,
                   coordinates_used=self.coordinates_used,
                   coordinates_noisy=self.coordinates_noisy)
        for k in ("block_sum", "block_sum_norms", "hill"):
            e = getattr(self, k)
            out[k] = None if e is None else e.to_dict()
        return out


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` measured; ``to_dict()`` is the JSON of the report."""

    problem: str
    problem_info: dict
    noise: str
    batch: int
    n_samples: int
    point: str
    minimax: bool
    tails: dict[str, TailReport]
    conditioning: dict[str, Conditioning]
    grad_phi_norm: float | None
    penalty_bias: list[dict] | None
    elapsed_s: float
    recommendation: dict = field(default_factory=dict)
    theory: dict | None = None
    problem_args: dict = field(default_factory=dict)
    problem_ref: str | None = None          # how the command line names the problem
    problem_is_registered: bool = True
    curvature: dict = field(default_factory=dict)   # {solver: L̂_B at its inner batch}

    @property
    def deterministic(self) -> bool:
        return all(t.status == "deterministic" for t in self.tails.values())

    @property
    def kappa(self) -> float:
        return max(c.kappa for c in self.conditioning.values())

    @property
    def L(self) -> float:
        return max(c.L for c in self.conditioning.values())

    @property
    def mu(self) -> float:
        return min(c.mu for c in self.conditioning.values())

    def to_dict(self) -> dict:
        return to_plain(dict(
            problem=self.problem, problem_info=self.problem_info,
            problem_args=self.problem_args, noise=self.noise, batch=self.batch,
            n_samples=self.n_samples, point=self.point, minimax=self.minimax,
            tails={k: t.to_dict() for k, t in self.tails.items()},
            conditioning={k: c.to_dict() for k, c in self.conditioning.items()},
            L=self.L, mu=self.mu, kappa=self.kappa, grad_phi_norm=self.grad_phi_norm,
            penalty_bias=self.penalty_bias, recommendation=self.recommendation,
            theory=self.theory, elapsed_s=self.elapsed_s, problem_ref=self.problem_ref,
            curvature=self.curvature))


# -- sampling ------------------------------------------------------------------------------------
def _full_grad(problem, x, y, which):
    fn, data = (problem.f, problem.data_f) if which == "f" else (problem.g, problem.data_g)
    return ravel_pytree(jax.grad(fn, argnums=(0, 1))(x, y, data))[0]


@partial(jax.jit, static_argnames="batch")
def _draw_chunk(problem, x, y, keys, batch):
    """``{oracle: (draws − full, full)}`` for ``f`` and ``g`` on a chunk of keys (``full``:
    the noise-free full-data gradient); both oracles in one compiled program."""
    out = {}
    for which, oracle, sub in (("f", grad_f, 0), ("g", grad_g, 1)):
        full = _full_grad(problem, x, y, which)
        ks = jax.vmap(lambda k: jax.random.split(k)[sub])(keys)
        draws = jax.vmap(lambda k: ravel_pytree(oracle(problem, x, y, k, batch))[0])(ks)
        out[which] = (draws - full, full)
    return out


def sample_noise(problem: BilevelProblem, x, y, n: int, batch: int, key, chunk: int = 1000,
                 bar=None) -> dict:
    """``{'f': (noise, full), 'g': (noise, full)}``: ``n`` independent draws of each oracle
    at ``(x, y)`` minus its full-data noise-free gradient ``full`` (both flattened over
    ``(x, y)``), as float64 arrays of shapes ``(n, dim)`` and ``(dim,)``."""
    keys = jax.random.split(key, n)
    size = min(chunk, n)
    parts = {"f": [], "g": []}
    full = {}
    for start in range(0, n, size):
        kc = keys[start:start + size]
        m = kc.shape[0]
        if m < size:  # pad the last chunk: one compiled shape
            kc = jnp.concatenate([kc, keys[: size - m]])
        res = _draw_chunk(problem, x, y, kc, batch)
        for which, (noise, fl) in res.items():
            parts[which].append(np.asarray(noise)[:m])
            full[which] = fl
        if bar is not None:
            bar.update(m)
    return {w: (np.concatenate(parts[w]).astype(np.float64), np.asarray(full[w], np.float64))
            for w in parts}


def _tail_report(which, noise, full, rng, n_boot, level, max_coords) -> TailReport:
    norms = np.linalg.norm(noise, axis=1)
    gnorm = float(np.linalg.norm(full))
    q = {f"{int(100 * p)}%": float(np.quantile(norms, p)) for p in (0.5, 0.9, 0.99)}
    q["max"] = float(norms.max())
    ratio = q["50%"] / gnorm if gnorm > 0 else math.inf
    eps = float(np.finfo(np.float32).eps)
    tol = 64 * eps * max(1.0, float(np.max(np.abs(full))))
    absn = np.abs(noise)
    noisy = np.median(absn, axis=0) > tol
    rep = TailReport(which, "ok", noise.shape[1], gnorm, q, ratio,
                     coordinates_noisy=int(noisy.sum()))
    if not noisy.any():
        rep.status, rep.noise_to_gradient = "deterministic", 0.0
        return rep
    usable = np.flatnonzero(noisy & np.all(absn > 0, axis=0))
    if usable.size == 0:
        raise ValueError(f"oracle {which}: every noisy coordinate has exact zeros among its "
                         "draws (a discrete noise law?); the tail estimators need nonzero draws")
    if usable.size > max_coords:
        usable = np.sort(rng.choice(usable, max_coords, replace=False))
    rep.coordinates_used = int(usable.size)
    rep.block_sum = block_sum_estimate(noise[:, usable], n_boot=n_boot, level=level, rng=rng)
    pos = norms[norms > 0]
    rep.block_sum_norms = block_sum_estimate(symmetrize(pos, rng), n_boot=n_boot, level=level,
                                             rng=rng)
    rep.hill = hill_estimate(pos, n_boot=n_boot, level=level, rng=rng)
    rep.norms = norms
    return rep


# -- penalty bias --------------------------------------------------------------------------------
def _penalized(problem, inv_lam):
    """The lower problem ``f/λ + g`` as a problem whose lower data carry ``1/λ`` (one
    compiled solve for every λ)."""
    f, g = problem.f, problem.g

    def pen(x, y, batch):
        return batch["inv_lam"] * f(x, y, batch["f"]) + g(x, y, batch["g"])

    return problem.replace(g=pen, data_g={"f": problem.data_f, "g": problem.data_g,
                                          "inv_lam": inv_lam}, y_star=None)


@partial(jax.jit, static_argnames="iters")
def _solve_penalized(problem, x, y0, inv_lam, iters: int = 300):
    """``argmin_y f/λ + g`` on the full data (``inv_lam = 0``: ``y*``); one compilation
    serves every λ."""
    return solve_lower(_penalized(problem, inv_lam), x, y0, iters)


@jax.jit
def _penalty_hypergrad(problem, x, y_lam, y_star, lam):
    """``∇_x f(x, y_λ) + λ (∇_x g(x, y_λ) − ∇_x g(x, y*))``, flattened."""
    fx = ravel_pytree(jax.grad(problem.f)(x, y_lam, problem.data_f))[0]
    gx = lambda yy: ravel_pytree(jax.grad(problem.g)(x, yy, problem.data_g))[0]  # noqa: E731
    return fx + lam * (gx(y_lam) - gx(y_star))


def penalty_bias(problem: BilevelProblem, x, y_star, lams, gphi, iters: int = 300) -> list[dict]:
    """``‖∇L_λ*(x) − ∇φ(x)‖`` for each λ in ``lams`` (full data, no noise), with
    ``∇L_λ*(x) = ∇_x f(x, y_λ*) + λ (∇_x g(x, y_λ*) − ∇_x g(x, y*))`` and
    ``y_λ* = argmin_y f/λ + g`` by L-BFGS warm-started at ``y*``."""
    gphi = np.asarray(ravel_pytree(gphi)[0], np.float64)
    out = []
    for lam in lams:
        y_lam = _solve_penalized(problem, x, y_star, jnp.float32(1.0 / lam), iters)
        h = np.asarray(_penalty_hypergrad(problem, x, y_lam, y_star, jnp.float32(lam)))
        out.append(dict(lam=float(lam), bias=float(np.linalg.norm(h - gphi))))
    return out


def lam_candidates(kappa: float) -> list[float]:
    """λ ∈ {κ, 2κ, 4κ, …, 64κ} (two significant digits; κ capped to [1, 1e4])."""
    k = min(max(kappa, 1.0), 1e4) if math.isfinite(kappa) else 1e4
    return sorted({nice(k * 2**j) for j in range(7)})


# -- the main entry ------------------------------------------------------------------------------
@jax.jit
def _closed_y_star(problem, x):
    return problem.y_star(x)


@jax.jit
def _closed_grad_phi(problem, x):
    return problem.grad_phi(x)


def _shapes(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [np.shape(a) for a in leaves]


def _check_point(problem, x, y):
    for what, v, ref in (("x", x, problem.x0), ("y", y, problem.y0)):
        tree_check_finite(v, f"diagnose: {what}")
        if _shapes(v) != _shapes(ref):
            raise ValueError(f"diagnose: {what} must be shaped like the problem's {what}0 "
                             f"{jax.tree_util.tree_map(np.shape, ref)}, got "
                             f"{jax.tree_util.tree_map(np.shape, v)}")


def diagnose(problem: BilevelProblem, x=None, y=None, n_samples: int = 10_000,
             batch: int = 1, key=None, seed: int = 0, n_boot: int = 200, level: float = 0.95,
             lanczos_iters: int = 150, target: float = 0.25, progress: bool = False,
             problem_args: dict | None = None, chunk: int = 1000, first_order: bool = False,
             problem_ref: str | None = None, budget: int = 200_000,
             seeds: int = 8) -> Diagnosis:
    """Measure the gradient-noise tail and the conditioning at ``(x, y)`` and recommend.

    ``x``, ``y`` default to the problem's start ``x0``, ``y0``. ``n_samples`` ≥ 1000 draws
    per oracle (10,000 recommended) at minibatch size ``batch``; ``key`` (or ``seed``) fixes
    the draws and the bootstrap. ``target`` is the fraction of the current ‖∇φ‖ used as the
    accuracy ε of the theory preset and to pick λ. ``problem_args`` (the constructor's
    keyword arguments, if built by name) and ``problem_ref`` (a registered name or
    ``module:function``; default the problem's name when it is registered) only go into the
    suggested command line; ``budget`` and ``seeds`` size the suggested race, ``first_order``
    keeps its methods without Hessian-vector products (:mod:`htbo.diagnostics.recommend`).
    Returns a :class:`Diagnosis`; write it with :func:`htbo.diagnostics.write_report`.
    """
    t0 = time.perf_counter()
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
            or n_samples < MIN_SAMPLES:
        raise ValueError(f"diagnose: n_samples must be an integer >= {MIN_SAMPLES} (the tail "
                         f"estimators need at least {MIN_SAMPLES} draws; 10000 recommended), "
                         f"got {n_samples!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"diagnose: batch must be an integer >= 1, got {batch!r}")
    if not 0 < level < 1:
        raise ValueError(f"diagnose: level must be in (0, 1), got {level!r}")
    if not 0 < target < 1:
        raise ValueError(f"diagnose: target must be in (0, 1), got {target!r}")
    point = "start" if x is None and y is None else "given"
    x = problem.x0 if x is None else x
    y = problem.y0 if y is None else y
    _check_point(problem, x, y)
    validate_problem(problem, (batch,))
    key = jax.random.key(seed) if key is None else key
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    minimax = problem.kind == "minimax"

    with tqdm(total=n_samples, desc="diagnose: sampling ∇F and ∇G", unit="draw",
              disable=not progress) as bar:
        draws = sample_noise(problem, x, y, n_samples, batch, key, chunk, bar)
    tails = {}
    for which, (noise, full) in draws.items():
        if not np.all(np.isfinite(noise)):
            bad = int(np.sum(~np.all(np.isfinite(noise), axis=1)))
            raise ValueError(f"diagnose: {bad} of {n_samples} draws of the {which} oracle "
                             "are not finite (NaN or inf) at this point")
        tails[which] = _tail_report(which, noise, full, rng, n_boot, level, MAX_COORDS)

    clean = problem.replace(noise=None)
    if clean.y_star is not None:
        ystar = _closed_y_star(clean, x)
    else:
        ystar = _solve_penalized(clean, x, y, jnp.float32(0.0))
    cond = {"at (x, y)": lower_conditioning(clean, x, y, lanczos_iters, seed),
            "at (x, y*(x))": lower_conditioning(clean, x, ystar, lanczos_iters, seed)}

    if clean.grad_phi is not None:
        gphi = _closed_grad_phi(clean, x)
    else:
        gphi = None if clean.project_y is not None else jax.jit(implicit_grad_phi)(
            clean, x, ystar)
    gnorm = None if gphi is None else float(jnp.linalg.norm(ravel_pytree(gphi)[0]))
    bias = None
    if not minimax and gphi is not None and clean.project_y is None:
        kappa = max(c.kappa for c in cond.values())
        bias = penalty_bias(clean, x, ystar, lam_candidates(kappa), gphi)

    from ..problems import PROBLEMS
    registered = problem.name in PROBLEMS
    diag = Diagnosis(problem=problem.name, problem_info=dict(problem.info),
                     noise=str(problem.noise) if problem.noise is not None else "none",
                     batch=int(batch), n_samples=int(n_samples), point=point, minimax=minimax,
                     tails=tails, conditioning=cond, grad_phi_norm=gnorm, penalty_bias=bias,
                     elapsed_s=0.0, problem_args=dict(problem_args or {}),
                     problem_ref=problem_ref or (problem.name if registered else None),
                     problem_is_registered=registered or problem_ref is not None)
    # the inner steps of each candidate at the batch it will use (stable there)
    kind = "minimax" if minimax else "bilevel"
    names, _ = candidates(kind, classify(diag)["cls"], first_order)
    by_batch = {}
    for name in names:
        if INNER_STEPS.get(name):
            b = inner_batch(problem, name)
            if b not in by_batch:
                by_batch[b] = minibatch_curvature(clean, x, y, b, seed=seed)["L_batch"]
            diag.curvature[name] = by_batch[b]
    diag.recommendation, diag.theory = recommend(diag, target=target,
                                                 curvature=diag.curvature,
                                                 first_order=first_order, budget=budget,
                                                 seeds=seeds)
    diag.elapsed_s = time.perf_counter() - t0
    return diag
