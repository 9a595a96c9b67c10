"""Learnable per-feature ℓ2 regularization of logistic / softmax regression on real data.

The hyperparameter ``x ∈ R^d`` holds one log-weight per input feature; the model
``y = {"w": W, "b": b}`` is trained on the training set and judged on the validation set::

    g(x, y) = mean_{i ∈ train} ℓ(Wᵀa_i + b, t_i) + ½ Σ_j exp(x_j) ‖W_j‖² + ½ ε ‖b‖²
    f(x, y) = mean_{i ∈ val}   ℓ(Wᵀa_i + b, t_i)

with ``ℓ`` the logistic loss (binary data, ``W ∈ R^d``) or the softmax cross-entropy
(``K`` classes, ``W ∈ R^{d×K}``, ``W_j`` = row ``j``), and a small fixed ridge ``ε`` on the
intercept (it makes the softmax lower level strongly convex: without it, shifting every
class bias by the same constant leaves the loss unchanged). g(x, ·) is
``min_j exp(x_j)``-strongly convex in ``W``.

No closed forms: ``φ``, ``‖∇φ‖`` and ``y_err`` come from :mod:`htbo.metrics` (L-BFGS lower
solve + CG implicit gradient). ``metrics(x, y)`` reports accuracies (and the test loss) of
the model ``y`` the solver holds.

Data come from scikit-learn (``breast_cancer``: 569×30, 2 classes; ``digits``: 1797×64,
10 classes), which ship them inside the wheel; install with ``pip install "htbo[data]"``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import PROBLEMS, BilevelProblem

__all__ = ["l2reg", "load_dataset", "split_standardize", "DATASETS"]

DATASETS = ("breast_cancer", "digits")


def load_dataset(name: str, allowed=DATASETS, who: str = "l2reg"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(features, targets)`` of a scikit-learn toy data set (shipped, no download); ``who``
    names the problem in the error when scikit-learn is missing."""
    if name not in allowed:
        raise ValueError(f"dataset must be one of {allowed}, got {name!r}")
    try:
        from sklearn import datasets
    except ImportError as e:
        raise ImportError(f"the {who} problem needs scikit-learn for the {name!r} data set; "
                          'install it with: pip install "htbo[data]"') from e
    return getattr(datasets, f"load_{name}")(return_X_y=True)


def split_standardize(X, t, fractions=(0.5, 0.25, 0.25), seed: int = 0):
    """Shuffle by ``seed``, split by ``fractions`` (train first) and standardize every
    split with the training mean and standard deviation (constant features keep scale 1)."""
    fractions = tuple(float(v) for v in fractions)
    if len(fractions) < 2 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be 2 or more positive numbers summing to 1, got "
                         f"{fractions}")
    n = len(t)
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])  # each split rounded
    parts = np.split(perm, cuts)
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"fractions {fractions} leave an empty split of {n} samples")
    mean, std = X[parts[0]].mean(0), X[parts[0]].std(0)
    std = np.where(std > 0, std, 1.0)
    return [((X[p] - mean) / std, t[p]) for p in parts]


def _logits(y, a):
    return a @ y["w"] + y["b"]


def _loss(y, batch, binary: bool):
    z = _logits(y, batch["a"])
    if binary:  # t ∈ {0, 1}: softplus(z) − t z
        return jnp.mean(jax.nn.softplus(z) - batch["t"] * z)
    return jnp.mean(jax.nn.logsumexp(z, axis=-1) - jnp.sum(batch["t"] * z, axis=-1))


def _accuracy(y, batch, binary: bool):
    z = _logits(y, batch["a"])
    pred = (z > 0).astype(z.dtype) if binary else jnp.argmax(z, -1)
    truth = batch["t"] if binary else jnp.argmax(batch["t"], -1)
    return jnp.mean(pred == truth)


@PROBLEMS.register("l2reg", "per-feature ℓ2 weights of logistic/softmax regression "
                   "(scikit-learn data)")
def l2reg(dataset: str = "breast_cancer", seed: int = 0, reg0: float = 1.0,
          bias_reg: float = 1e-3, fractions=(0.5, 0.25, 0.25),
          dtype=jnp.float32) -> BilevelProblem:
    """Per-feature ℓ2 regularization (weights ``exp(x_j)``) of logistic (``breast_cancer``)
    or softmax (``digits``) regression.

    ``seed`` fixes the train/val/test split (``fractions``); ``reg0`` is the initial weight
    ``exp(x0_j)``; ``bias_reg`` the fixed ridge ε on the intercept. Data pytrees are
    ``{"a": features (n, d), "t": labels}`` with labels in {0, 1} (n,) for binary data and
    one-hot (n, K) otherwise.
    """
    if not reg0 > 0:
        raise ValueError(f"reg0 must be > 0, got {reg0}")
    if not bias_reg > 0:
        raise ValueError(f"bias_reg must be > 0 (strongly convex lower level), got {bias_reg}")
    X, t = load_dataset(dataset)
    n_classes = int(t.max()) + 1
    binary = n_classes == 2
    dim = X.shape[1]

    def pack(a, lab):
        lab = lab.astype(float) if binary else np.eye(n_classes)[lab]
        return {"a": jnp.asarray(a, dtype), "t": jnp.asarray(lab, dtype)}

    train, val, test = (pack(a, lab) for a, lab in split_standardize(X, t, fractions, seed))
    half_eps = 0.5 * bias_reg

    def g(x, y, batch):
        w2 = y["w"] ** 2 if binary else jnp.sum(y["w"] ** 2, axis=1)
        return (_loss(y, batch, binary) + 0.5 * jnp.sum(jnp.exp(x) * w2)
                + half_eps * jnp.sum(y["b"] ** 2))

    def f(x, y, batch):
        return _loss(y, batch, binary)

    def metrics(x, y):
        return {"val_acc": _accuracy(y, val, binary), "test_acc": _accuracy(y, test, binary),
                "test_loss": _loss(y, test, binary)}

    wshape = (dim,) if binary else (dim, n_classes)
    y0 = {"w": jnp.zeros(wshape, dtype), "b": jnp.zeros(() if binary else (n_classes,), dtype)}
    return BilevelProblem(
        f=f, g=g, x0=jnp.full(dim, np.log(reg0), dtype), y0=y0, data_f=val, data_g=train,
        metrics=metrics, name="l2reg",
        info=dict(dataset=dataset, seed=seed, n_train=len(train["t"]), n_val=len(val["t"]),
                  n_test=len(test["t"]), dim=dim, n_classes=n_classes, reg0=reg0,
                  bias_reg=bias_reg))
