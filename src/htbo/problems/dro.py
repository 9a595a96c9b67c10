"""Distributionally robust logistic regression with a χ²-type penalty (nonconvex–strongly-concave).

``min_w max_{q ∈ Δ_n} Σ_i q_i ℓ_i(w) − (ρ/2)‖n q − 1‖²/n + r(w)``,
``r(w) = γ Σ_j w_j²/(1 + w_j²)`` (a nonconvex regularizer), ``ℓ_i`` the logistic loss of
training sample ``i``. The dual weights ``q`` live on the simplex (``project_y``). A minibatch
``B`` of sample indices gives the unbiased estimate ``(n/|B|) Σ_{i∈B} q_i ℓ_i(w)`` of the
weighted loss. The penalty is ``ρn/2 ‖q − 1/n‖²``, so f is ``ρn``-strongly concave in q and
the inner maximum is a projection: ``q*(w) = Proj_Δ(1/n + ℓ(w)/(ρn))`` — exact metrics.
Metrics: test accuracy and worst-class test accuracy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..projections import project_simplex
from .l2reg import load_dataset, split_standardize
from .base import PROBLEMS
from .minimax import minimax_problem

__all__ = ["dro"]


@PROBLEMS.register("dro", "distributionally robust logistic regression (simplex dual "
                   "weights), exact inner maximum")
def dro(dataset: str = "breast_cancer", rho: float = 1.0, gamma: float = 0.1, seed: int = 0,
        dtype=jnp.float32):
    """DRO logistic regression on a scikit-learn data set (binary: label == 0 vs the rest)."""
    if not rho > 0:
        raise ValueError(f"rho must be > 0 (strong concavity), got {rho}")
    X, t = load_dataset(dataset)
    t = (t != 0).astype(np.float64)
    (Xtr, ttr), (Xte, tte) = split_standardize(X, t, fractions=(0.7, 0.3), seed=seed)
    n, d = Xtr.shape
    data = {"a": jnp.asarray(Xtr, dtype), "t": jnp.asarray(ttr, dtype),
            "idx": jnp.arange(n, dtype=jnp.int32)}
    Xte_j, tte_j = jnp.asarray(Xte, dtype), jnp.asarray(tte, dtype)

    def losses(w, a, tt):
        z = a @ w["w"] + w["b"]
        return jax.nn.softplus(z) - tt * z

    def reg(w):
        return gamma * jnp.sum(w["w"] ** 2 / (1.0 + w["w"] ** 2))

    def f(w, q, batch):
        weighted = n * jnp.mean(q[batch["idx"]] * losses(w, batch["a"], batch["t"]))
        return weighted - 0.5 * rho * n * jnp.sum((q - 1.0 / n) ** 2) + reg(w)

    def q_star(w):
        return project_simplex(1.0 / n + losses(w, data["a"], data["t"]) / (rho * n))

    def phi(w):
        return f(w, q_star(w), data)

    def metrics(w, q):
        pred = (Xte_j @ w["w"] + w["b"]) > 0
        correct = pred == (tte_j > 0.5)
        per_class = [jnp.sum(correct * m) / jnp.maximum(jnp.sum(m), 1)
                     for m in (tte_j < 0.5, tte_j > 0.5)]
        return {"test_acc": jnp.mean(correct), "worst_class_acc": jnp.minimum(*per_class)}

    w0 = {"w": jnp.zeros(d, dtype), "b": jnp.zeros((), dtype)}
    return minimax_problem(f, w0, jnp.full(n, 1.0 / n, dtype), data=data,
                           project_y=project_simplex, y_star=q_star, phi=phi, metrics=metrics,
                           name="dro", info=dict(dataset=dataset, rho=rho, gamma=gamma, n=n))
