"""Tail-index estimators for gradient noise, with bootstrap intervals (NumPy only).

Two estimators of the index α of a heavy tail ``P(|X| > u) ~ c u^{-α}``:

* **block sums** (Mohammadi, Mohammadpour & Ogata 2015, Cor. 2.4; the estimator Simsekli et
  al. 2019 apply to SGD noise). For ``K = K1·K2`` i.i.d. symmetric samples ``X_j`` and the
  block sums ``Y_i = X_{(i−1)K1+1} + … + X_{iK1}``::

      1/α̂ = (1/log K1) · [ (1/K2) Σ_i log|Y_i| − (1/K) Σ_j log|X_j| ]

  exact in expectation for symmetric α-stable laws (``Y =_d K1^{1/α} X``), consistent as
  ``K1 → ∞`` in their domain of attraction, and ``α̂ → 2`` for finite-variance laws (slowly:
  sums of t(3) draws look stable long before they look Gaussian). Our choices: ``K2 = 32``
  blocks (``K1 = ⌊K/32⌋``; larger blocks shrink the bias on non-stable laws), and the two
  means are averaged over ``regroupings`` random orderings of the samples (the estimator is
  permutation invariant in law; averaging only lowers its variance). On a ``(K, d)`` matrix
  the columns are pooled: the means run over every coordinate's samples (each coordinate's
  scale cancels in the difference).
* **Hill** on positive samples (noise norms): with the order statistics
  ``Z_(1) ≥ Z_(2) ≥ …`` of ``n`` samples, ``1/α̂ = (1/k) Σ_{i≤k} log(Z_(i)/Z_(k+1))``, with
  the fixed rule ``k = ⌈√n⌉`` (measured against a stable-region rule in
  ``benchmarks/tail_estimators.py``: lower error at every law tried). Hill estimates the
  tail exponent itself (ν for Student-t), not the stable index; it overestimates near
  α = 2, where the power tail starts far out.

Intervals are percentile bootstraps: resample the draws with replacement, recompute. For the
block-sum estimator each replicate uses the resampled order once (no regrouping average), so
its interval is wider than the averaged estimator's spread: conservative.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["Estimate", "block_sum_alpha", "hill_alpha", "hill_k", "block_sum_k1",
           "block_sum_estimate", "hill_estimate", "symmetrize", "survival", "to_plain",
           "N_BLOCKS"]

N_BLOCKS = 32  # K2: number of blocks of the block-sum estimator


@dataclass
class Estimate:
    """An estimate ``value`` of α with its bootstrap percentile interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float
    level: float
    method: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return to_plain(asdict(self))

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def to_plain(v):
    """A JSON-ready copy: tuples → lists, NumPy scalars and arrays → Python, non-finite
    floats → ``"inf"``, ``"-inf"``, ``"nan"``, anything else unknown → its ``repr``."""
    if isinstance(v, dict):
        return {str(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [to_plain(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _inv(s: float) -> float:
    """α̂ from the inverse estimate ``s`` (``s ≤ 0`` — no measurable tail — gives ``inf``)."""
    return 1.0 / s if s > 0 else math.inf


def block_sum_k1(n: int, n_blocks: int = N_BLOCKS) -> int:
    """Block length ``K1 = ⌊n / K2⌋`` (at least 2)."""
    return max(2, n // n_blocks)


def _as_matrix(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"tail estimators take a vector or a (samples, coordinates) matrix, "
                         f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("tail estimators: the samples contain NaN or inf")
    if np.any(x == 0):
        raise ValueError("block-sum estimator: samples must be nonzero (log|X| of an exact "
                         "zero is -inf); drop coordinates without noise first")
    return x


def _block_sum_inverse(x: np.ndarray, k1: int, order: np.ndarray | None,
                       log_rows: np.ndarray) -> float:
    """Mean log of block sums minus mean log of samples, over log K1 (columns pooled);
    ``log_rows[j]`` is the mean of ``log|x[j]|`` over the columns."""
    k2 = x.shape[0] // k1
    idx = (np.arange(x.shape[0]) if order is None else order)[: k1 * k2]  # K = K1·K2 samples
    y = x[idx].reshape(k2, k1, -1).sum(axis=1)
    return (np.mean(np.log(np.abs(y))) - np.mean(log_rows[idx])) / math.log(k1)


def _log_rows(x: np.ndarray) -> np.ndarray:
    return np.mean(np.log(np.abs(x)), axis=1)


def block_sum_alpha(x, k1: int | None = None, regroupings: int = 20,
                    rng: np.random.Generator | None = None) -> float:
    """The block-sum estimate α̂ of ``x`` (``(K,)`` or ``(K, d)``, columns pooled).

    ``k1`` defaults to :func:`block_sum_k1`; the result is averaged (in 1/α) over
    ``regroupings`` random orderings of the rows, the first being the given order.
    """
    x = _as_matrix(x)
    k1 = block_sum_k1(len(x)) if k1 is None else int(k1)
    if not 2 <= k1 <= len(x) // 2:
        raise ValueError(f"block-sum estimator: need 2 <= K1 <= K/2, got K1={k1}, K={len(x)}")
    rng = np.random.default_rng(0) if rng is None else rng
    lr = _log_rows(x)
    inv = [_block_sum_inverse(x, k1, None if r == 0 else rng.permutation(len(x)), lr)
           for r in range(max(1, regroupings))]
    return _inv(float(np.mean(inv)))


def hill_k(n: int) -> int:
    """The number of upper order statistics used by :func:`hill_alpha`: ``⌈√n⌉``."""
    return int(math.ceil(math.sqrt(n)))


def _top(z: np.ndarray, k: int) -> np.ndarray:
    """The ``k + 1`` largest samples in decreasing order."""
    return np.sort(-np.partition(-z, k)[: k + 1])[::-1]


def hill_alpha(z, k: int | None = None) -> float:
    """Hill's estimate ``1 / mean_{i≤k} log(Z_(i)/Z_(k+1))`` on positive samples ``z``."""
    z = np.asarray(z, np.float64).ravel()
    k = hill_k(len(z)) if k is None else int(k)
    if not 1 <= k < len(z):
        raise ValueError(f"Hill estimator: need 1 <= k < n, got k={k}, n={len(z)}")
    top = _top(z, k)
    if top[k] <= 0:
        raise ValueError("Hill estimator: the (k+1)-th largest sample must be positive")
    return _inv(_hill_inverse(top, k))


def _interval(inv_reps, est: float, level: float) -> tuple[float, float]:
    """Percentile interval of α from bootstrap replicates of ``1/α`` (finite even when a
    replicate has no measurable tail); it always contains the estimate."""
    q = 100 * (1 - level) / 2
    s_lo, s_hi = np.percentile(np.asarray(inv_reps, np.float64), [q, 100 - q])
    return float(min(_inv(s_hi), est)), float(max(_inv(s_lo), est))


def block_sum_estimate(x, *, n_boot: int = 200, level: float = 0.95, regroupings: int = 20,
                       rng: np.random.Generator | None = None) -> Estimate:
    """Block-sum α̂ of ``x`` (rows = draws, columns pooled) with a bootstrap interval."""
    x = _as_matrix(x)
    rng = np.random.default_rng(0) if rng is None else rng
    k1 = block_sum_k1(len(x))
    est = block_sum_alpha(x, k1, regroupings, rng)
    lr = _log_rows(x)
    reps = [_block_sum_inverse(x, k1, rng.integers(0, len(x), len(x)), lr)
            for _ in range(n_boot)]
    lo, hi = _interval(reps, est, level)
    return Estimate(est, lo, hi, level, "block-sum",
                    dict(K=k1 * (len(x) // k1), K1=k1, K2=len(x) // k1, coordinates=x.shape[1],
                         regroupings=regroupings, n_boot=n_boot))


def _hill_inverse(z_desc_top: np.ndarray, k: int) -> float:
    return float(np.mean(np.log(z_desc_top[:k] / z_desc_top[k])))


def hill_estimate(z, *, n_boot: int = 200, level: float = 0.95,
                  rng: np.random.Generator | None = None) -> Estimate:
    """Hill α̂ of positive samples ``z`` with ``k = ⌈√n⌉`` and a bootstrap interval."""
    z = np.asarray(z, np.float64).ravel()
    rng = np.random.default_rng(0) if rng is None else rng
    k = hill_k(len(z))
    est = hill_alpha(z, k)
    reps = [_hill_inverse(_top(z[rng.integers(0, len(z), len(z))], k), k)
            for _ in range(n_boot)]
    lo, hi = _interval(reps, est, level)
    return Estimate(est, lo, hi, level, "hill", dict(n=len(z), k=k, rule="k = ceil(sqrt(n))",
                                                     n_boot=n_boot))


def symmetrize(z, rng: np.random.Generator | None = None) -> np.ndarray:
    """``ε_i z_i`` with independent random signs: a symmetric law with the tail of ``z``.

    The block-sum estimator assumes symmetric samples; on positive samples with a finite
    mean (noise norms) the block sums grow like ``K1`` and α̂ drifts to 1 whatever the tail.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    z = np.asarray(z, np.float64).ravel()
    return np.where(rng.random(z.shape) < 0.5, -z, z)


def survival(z, alpha: float | None = None, k: int | None = None, max_points: int = 2000):
    """Empirical survival ``S(u) = P(Z > u)`` of positive samples, thinned to ``max_points``
    log-spaced points, and the fitted tail ``S(u) ≈ (k/n)(u/Z_(k+1))^{−α}`` on the top k.

    Returns ``dict(u, s, fit_u, fit_s)`` (``fit_*`` empty without ``alpha``).
    """
    z = np.sort(np.asarray(z, np.float64).ravel())[::-1]
    z = z[z > 0]
    n = len(z)
    s = np.arange(1, n + 1) / n  # P(Z ≥ z_(i)) ≈ i/n
    idx = np.unique(np.round(np.geomspace(1, n, min(n, max_points))).astype(int) - 1)
    out = dict(u=z[idx], s=s[idx], fit_u=np.array([]), fit_s=np.array([]))
    if alpha is not None and math.isfinite(alpha) and n > 2:
        k = hill_k(n) if k is None else k
        k = min(k, n - 1)
        u = np.geomspace(z[k], z[0], 50)
        out.update(fit_u=u, fit_s=(k / n) * (u / z[k]) ** (-alpha))
    return out
