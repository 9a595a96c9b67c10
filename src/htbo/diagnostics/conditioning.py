"""Lower-level conditioning from Hessian-vector products (no dense Hessian).

``H = ∇²_yy g(x, y)`` on the full data, applied to the flattened y pytree
(``jax.flatten_util.ravel_pytree``) by forward-over-reverse differentiation. The Lanczos
process with full reorthogonalization builds an orthonormal basis ``Q_m`` of the Krylov space
of a random start vector and the tridiagonal ``T_m = Q_mᵀ H Q_m``; the extreme eigenvalues
of ``T_m`` converge to those of ``H`` from the inside (``μ̂ ≥ μ``, ``L̂ ≤ L``), exactly when
``m = dim y``. The residual ``|β_m s_{m,i}|`` of a Ritz value bounds its distance to the
spectrum. ``κ̂ = L̂ / μ̂`` (``inf`` when ``μ̂ ≤ 0``: not strongly convex at this point).

For a minimax problem ``g = −f``, so the same numbers describe ``−f``'s concavity in y.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from .tail import to_plain

__all__ = ["Conditioning", "lanczos_extremes", "lower_conditioning", "hvp_flat",
           "minibatch_curvature"]


@dataclass
class Conditioning:
    """Extreme eigenvalues of ∇²_yy g at one point: ``L``, ``mu``, ``kappa = L / mu``."""

    L: float
    mu: float
    kappa: float
    dim: int
    iters: int
    residual_L: float
    residual_mu: float

    def to_dict(self) -> dict:
        return to_plain(asdict(self))


def lanczos_extremes(matvec, dim: int, iters: int | None = None, seed: int = 0) -> dict:
    """Smallest and largest eigenvalue of the symmetric operator ``matvec`` on ``R^dim``.

    Lanczos with full reorthogonalization (float64 bookkeeping), ``iters`` steps (default and
    maximum: ``dim``); stops early at an invariant subspace. Returns
    ``dict(lo, hi, iters, residual_lo, residual_hi)``.
    """
    if dim < 1:
        raise ValueError("lanczos_extremes: the operator has dimension 0")
    m = dim if iters is None else max(1, min(int(iters), dim))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(dim)
    Q = np.zeros((m, dim))
    Q[0] = q / np.linalg.norm(q)
    alphas, betas = [], []
    for j in range(m):
        w = np.asarray(matvec(Q[j]), np.float64)
        if not np.all(np.isfinite(w)):
            raise ValueError("lanczos_extremes: the Hessian-vector product is not finite")
        a = float(Q[j] @ w)
        alphas.append(a)
        w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)   # full reorthogonalization (twice: stable)
        w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        scale = max(abs(a), max((abs(x) for x in alphas), default=0.0), 1e-300)
        if j == m - 1 or b <= 1e-10 * scale:
            betas.append(b)
            break
        betas.append(b)
        Q[j + 1] = w / b
    k = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    vals, vecs = np.linalg.eigh(T)
    res = np.abs(betas[k - 1] * vecs[-1])
    if k == dim:  # the whole space: T is similar to H, Ritz values are eigenvalues
        res = np.zeros_like(res)
    return dict(lo=float(vals[0]), hi=float(vals[-1]), iters=k, residual_lo=float(res[0]),
                residual_hi=float(res[-1]))


@jax.jit
def _hvp(problem, x, y, v_flat):
    flat, unravel = ravel_pytree(y)
    grad_flat = jax.grad(lambda f: problem.g(x, unravel(f), problem.data_g))
    return jax.jvp(grad_flat, (flat,), (v_flat.astype(flat.dtype),))[1]


def hvp_flat(problem, x, y):
    """``v ↦ ∇²_yy g(x, y) v`` on the full lower-level data, in flattened y coordinates."""
    return lambda v: np.asarray(_hvp(problem, x, y, np.asarray(v)), np.float64)


def lower_conditioning(problem, x, y, iters: int | None = 150, seed: int = 0) -> Conditioning:
    """``L̂``, ``μ̂``, ``κ̂`` of ``∇²_yy g(x, y)`` on the full data by Lanczos (≤ ``iters`` HVPs)."""
    problem = problem.replace(noise=None)
    dim = int(ravel_pytree(y)[0].size)
    r = lanczos_extremes(hvp_flat(problem, x, y), dim, iters, seed)
    L, mu = r["hi"], r["lo"]
    kappa = L / mu if mu > 0 else math.inf
    return Conditioning(L, mu, kappa, dim, r["iters"], r["residual_hi"], r["residual_lo"])


def minibatch_curvature(problem, x, y, batch: int, draws: int = 64, iters: int = 40,
                        seed: int = 0) -> dict:
    """The largest curvature a step on a minibatch of ``batch`` lower-level samples meets:
    ``max_b |λ|_max(∇²_yy G(x, y; b))`` over ``draws`` random minibatches, each by ``iters``
    power iterations on Hessian-vector products (``vmap``ped over the draws).

    One sample's Hessian can be far sharper than the mean (``quadratic-data``: ~80×), so an
    inner step that is stable on the full data (1/L̂) can diverge at batch 1; ``1/L̂_B`` with
    ``L̂_B`` from here is stable for steps on minibatches of ``batch``. Without data (the
    noise is injected, the Hessian is the full one) this is the full-data ``|λ|_max``.
    Returns ``dict(L_batch=max, L_batch_q90=90% quantile, batch, draws)``."""
    from ..oracles import sample_batch
    problem = problem.replace(noise=None)
    flat, unravel = ravel_pytree(y)
    dim = int(flat.size)
    if dim == 0:
        raise ValueError("minibatch_curvature: y has no coordinates")
    if problem.data_g is None:  # one Hessian: Lanczos gives its extreme eigenvalues exactly
        r = lanczos_extremes(hvp_flat(problem, x, y), dim, min(dim, 150), seed)
        top_abs = max(abs(r["hi"]), abs(r["lo"]))
        return dict(L_batch=top_abs, L_batch_q90=top_abs, batch=int(batch), draws=1)
    n_draws = int(draws)
    key = jax.random.key(seed)
    keys = jax.random.split(key, n_draws + 1)
    v0 = jax.random.normal(keys[0], (n_draws, dim), flat.dtype)

    @jax.jit
    def top(problem, x, flat, v0, ks):
        def one(v, k):
            data = sample_batch(problem.data_g, k, batch, problem.sampling)
            grad = jax.grad(lambda f: problem.g(x, unravel(f), data))
            hv = lambda u: jax.jvp(grad, (flat,), (u,))[1]  # noqa: E731

            def body(_, u):
                w = hv(u)
                return w / jax.numpy.maximum(jax.numpy.linalg.norm(w), 1e-30)
            u = jax.lax.fori_loop(0, iters, body, v / jax.numpy.linalg.norm(v))
            return jax.numpy.abs(u @ hv(u))
        return jax.vmap(one)(v0, ks)

    lams = np.asarray(top(problem, x, flat, v0, keys[1:]), np.float64)
    if not np.all(np.isfinite(lams)):
        raise ValueError("minibatch_curvature: a Hessian-vector product is not finite")
    return dict(L_batch=float(lams.max()), L_batch_q90=float(np.quantile(lams, 0.9)),
                batch=int(batch), draws=n_draws)
