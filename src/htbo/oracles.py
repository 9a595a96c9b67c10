"""Stochastic oracles: minibatch gradients and Hessian-vector products, plus injected noise.

Every oracle takes a PRNG ``key`` that fixes both the minibatch indices and the injected
noise: two calls with the same key see the *same samples* (common random numbers, as STORM
and the shared-sample option of N²SBA need). One call on a batch of ``B`` costs ``B`` SFO
(gradient oracles) or ``B`` HVP (second-order oracles), whatever the number of outputs.

Keys are split and minibatch indices drawn with :mod:`htbo.prng` (the same bits as
``jax.random``, without its ``while`` loops on CPU).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from .prng import sample_indices, split
from .problems.base import BilevelProblem

__all__ = ["sample_batch", "sample_indices", "split", "grad_f", "grad_g", "grad_f_y",
           "grad_g_y", "grad_f_x", "grad_g_x", "hvp_yy_g", "jvp_xy_g", "hvp_both_g"]


def sample_batch(data, key, batch_size: int, sampling: str = "replace"):
    """A minibatch of ``batch_size`` samples of ``data`` (``None`` stays ``None``).

    ``'replace'``: i.i.d. uniform indices (``jax.random.randint``'s); ``'noreplace'``:
    distinct indices (``jax.random.choice(..., replace=False)``).
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        return None
    n = leaves[0].shape[0]
    if sampling == "noreplace":
        idx = jax.random.choice(key, n, (batch_size,), replace=False)
    else:
        idx = sample_indices(key, batch_size, n)
    # indices are in [0, n) by construction: "clip" skips the out-of-bounds fill masks
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0, mode="clip"), data)


def _noisy(problem: BilevelProblem, key, out, batch_size: int, second_order: bool = False):
    if problem.noise is None or (second_order and not problem.hvp_noise):
        return out
    return optax.tree.add(out, problem.noise.sample(key, out, batch_size))


def _oracle(problem, which: str, argnums, key, x, y, batch_size):
    fn = problem.f if which == "f" else problem.g
    data = problem.data_f if which == "f" else problem.data_g
    kd, kn = split(key)
    batch = sample_batch(data, kd, batch_size, problem.sampling)
    grads = jax.grad(fn, argnums=argnums)(x, y, batch)
    return _noisy(problem, kn, grads, batch_size)


# -- first-order oracles (cost: batch_size SFO each) ----------------------------------------------
def grad_f(problem, x, y, key, batch_size: int):
    """``(∇_x F, ∇_y F)`` on a minibatch of the upper-level data."""
    return _oracle(problem, "f", (0, 1), key, x, y, batch_size)


def grad_g(problem, x, y, key, batch_size: int):
    """``(∇_x G, ∇_y G)`` on a minibatch of the lower-level data."""
    return _oracle(problem, "g", (0, 1), key, x, y, batch_size)


def grad_f_x(problem, x, y, key, batch_size: int):
    return _oracle(problem, "f", 0, key, x, y, batch_size)


def grad_f_y(problem, x, y, key, batch_size: int):
    return _oracle(problem, "f", 1, key, x, y, batch_size)


def grad_g_x(problem, x, y, key, batch_size: int):
    return _oracle(problem, "g", 0, key, x, y, batch_size)


def grad_g_y(problem, x, y, key, batch_size: int):
    return _oracle(problem, "g", 1, key, x, y, batch_size)


# -- second-order oracles (cost: batch_size HVP each) ---------------------------------------------
def _g_on_batch(problem, key, batch_size):
    kd, kn = split(key)
    batch = sample_batch(problem.data_g, kd, batch_size, problem.sampling)
    return (lambda x, y: problem.g(x, y, batch)), kn


def hvp_yy_g(problem, x, y, v, key, batch_size: int):
    """``∇²_yy G(x, y; ζ_B) v`` (forward-over-reverse)."""
    g, kn = _g_on_batch(problem, key, batch_size)
    out = jax.jvp(lambda yy: jax.grad(g, argnums=1)(x, yy), (y,), (v,))[1]
    return _noisy(problem, kn, out, batch_size, second_order=True)


def jvp_xy_g(problem, x, y, v, key, batch_size: int):
    """``∇²_xy G(x, y; ζ_B) v``, a vector in x-space (cross derivative applied to ``v``)."""
    g, kn = _g_on_batch(problem, key, batch_size)
    out = jax.jvp(lambda yy: jax.grad(g, argnums=0)(x, yy), (y,), (v,))[1]
    return _noisy(problem, kn, out, batch_size, second_order=True)


def hvp_both_g(problem, x, y, v, key, batch_size: int):
    """``(∇²_xy G v, ∇²_yy G v)`` from one sample set (one HVP per sample)."""
    g, kn = _g_on_batch(problem, key, batch_size)
    out = jax.jvp(lambda yy: jax.grad(g, argnums=(0, 1))(x, yy), (y,), (v,))[1]
    return _noisy(problem, kn, out, batch_size, second_order=True)
