"""Per-feature ridge weights for linear regression whose labels carry Student-t noise.

Heavy tails come from the data, not from injected noise: the training and validation
labels are ``t_i = s_i + scale·ε_i`` with ``s_i`` the (standardized) signal and ``ε_i``
Student-t(ν) draws (ν ≤ 2: infinite variance), so per-sample gradients ``a_i r_i`` of the
squared loss have heavy-tailed norms. With ``y = {"w": w ∈ R^d, "b": b}`` and
``x ∈ R^d`` one log-weight per feature::

    g(x, y) = ½ mean_{i ∈ train} (a_iᵀw + b − t_i)² + ½ Σ_j exp(x_j) w_j² + ½ ε b²
    f(x, y) = ½ mean_{i ∈ val}   (a_iᵀw + b − t_i)²

g(x, ·) is a strongly convex quadratic, so ``y*(x)``, ``φ`` and ``∇φ`` are closed forms
(a (d+1)×(d+1) linear solve, differentiated by JAX): metrics are exact. ``metrics(x, y)``
reports ``test_mse`` of ``y`` on the test split, whose labels are the clean signal.

Data (scikit-learn, shipped inside the wheel): ``diabetes`` (442×10, its real target:
disease progression) or ``breast_cancer`` (569×30) / ``digits`` (1797×64) with a planted
linear signal ``s = A w°``, ``w° ~ N(0, I/d)`` drawn from ``seed``. Features are
standardized with the training mean and standard deviation, the signal with its training
mean and standard deviation. ``nu=inf`` gives Gaussian label noise of standard deviation
``noise_scale`` (the light-tailed control).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .base import PROBLEMS, BilevelProblem
from .l2reg import load_dataset, split_standardize

__all__ = ["ridge_t", "DATASETS"]

DATASETS = ("diabetes", "breast_cancer", "digits")


def _load(dataset: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X, target = load_dataset(dataset, DATASETS, "ridge-t")
    X = np.asarray(X, np.float64)
    if dataset == "diabetes":
        return X, np.asarray(target, np.float64)
    sd = X.std(0)
    Z = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
    return X, Z @ (rng.standard_normal(X.shape[1]) / np.sqrt(X.shape[1]))


@PROBLEMS.register("ridge-t", "per-feature ridge weights, Student-t label noise (heavy "
                   "tails from the data), closed forms")
def ridge_t(dataset: str = "diabetes", nu: float = 1.5, noise_scale: float = 0.5,
            seed: int = 0, reg0: float = 0.1, bias_reg: float = 1e-3,
            fractions=(0.5, 0.25, 0.25), dtype=jnp.float32) -> BilevelProblem:
    """Ridge regression with per-feature weights ``exp(x_j)`` and Student-t(``nu``) label
    noise of scale ``noise_scale`` on the training and validation labels (``nu=inf``:
    Gaussian). ``seed`` fixes the split, the noise and the planted signal; ``reg0`` is the
    initial weight ``exp(x0_j)``; ``bias_reg`` the fixed ridge ε on the intercept."""
    nu = float(nu)
    if not nu > 0:
        raise ValueError(f"nu must be > 0 (or inf for Gaussian noise), got {nu}")
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    if not reg0 > 0:
        raise ValueError(f"reg0 must be > 0, got {reg0}")
    if not bias_reg > 0:
        raise ValueError(f"bias_reg must be > 0 (strongly convex lower level), got {bias_reg}")
    if len(tuple(fractions)) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions}")
    rng = np.random.default_rng(seed)
    X, signal = _load(dataset, rng)
    # split_standardize standardizes every column with the training statistics: carry the
    # signal as an extra column so it is split and standardized the same way
    parts = split_standardize(np.column_stack([X, signal]), np.arange(len(signal)),
                              fractions, seed)
    d = X.shape[1]

    def labels(s):  # noisy labels for train and val; the test split keeps the signal
        eps = rng.standard_normal(len(s)) if math.isinf(nu) else rng.standard_t(nu, len(s))
        return s + noise_scale * eps

    splits = []
    for i, (A, _) in enumerate(parts):
        t = A[:, d] if i == len(parts) - 1 else labels(A[:, d])
        splits.append({"a": jnp.asarray(A[:, :d], dtype), "t": jnp.asarray(t, dtype)})
    train, val, test = splits[0], splits[1], splits[-1]

    def sq_loss(y, batch):
        return 0.5 * jnp.mean((batch["a"] @ y["w"] + y["b"] - batch["t"]) ** 2)

    def g(x, y, batch):
        return (sq_loss(y, batch) + 0.5 * jnp.sum(jnp.exp(x) * y["w"] ** 2)
                + 0.5 * bias_reg * y["b"] ** 2)

    def f(x, y, batch):
        return sq_loss(y, batch)

    A1 = np.column_stack([np.asarray(train["a"], np.float64), np.ones(len(train["t"]))])
    gram = jnp.asarray(A1.T @ A1 / len(A1), dtype)
    rhs = jnp.asarray(A1.T @ np.asarray(train["t"], np.float64) / len(A1), dtype)

    def y_star(x):
        v = jnp.linalg.solve(gram + jnp.diag(jnp.append(jnp.exp(x), bias_reg)), rhs)
        return {"w": v[:d], "b": v[d]}

    def phi(x):
        return f(x, y_star(x), val)

    def metrics(x, y):
        return {"test_mse": 2.0 * sq_loss(y, test)}

    y0 = {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}
    return BilevelProblem(
        f=f, g=g, x0=jnp.full(d, np.log(reg0), dtype), y0=y0, data_f=val, data_g=train,
        y_star=y_star, phi=phi, grad_phi=jax.grad(phi), metrics=metrics, name="ridge-t",
        info=dict(dataset=dataset, nu=nu, noise_scale=noise_scale, seed=seed, reg0=reg0,
                  bias_reg=bias_reg, n_train=len(train["t"]), n_val=len(val["t"]),
                  n_test=len(test["t"]), dim=d))
