"""Stochastic oracles: minibatch gradients and Hessian-vector products, plus injected noise.

Every oracle takes a PRNG ``key`` that fixes both the minibatch indices and the injected
noise: two calls with the same key see the *same samples* (common random numbers, as STORM
and the shared-sample option of N²SBA need). One call on a batch of ``B`` costs ``B`` SFO
(gradient oracles) or ``B`` HVP (second-order oracles), whatever the number of outputs.

Speed: on CPU, JAX lowers every Threefry hash (each ``jax.random.split`` / ``randint``) to a
5-trip ``while`` loop, and executing those tiny loops dominated a minibatch step (see
docs/benchmarks.md). :func:`split` and :func:`sample_indices` compute the *same bits* as
``jax.random.split`` / ``jax.random.randint`` for default (Threefry, partitionable) keys with
plain unrolled ``uint32`` arithmetic that XLA fuses into one kernel, and fall back to
``jax.random`` for any other key type or configuration. Equal keys still give equal samples,
and the samples are bit-identical to the ``jax.random`` ones.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .problems.base import BilevelProblem

__all__ = ["sample_batch", "sample_indices", "split", "grad_f", "grad_g", "grad_f_y", "grad_g_y", "grad_f_x",
           "grad_g_x", "hvp_yy_g", "jvp_xy_g", "tree_add", "tree_axpy", "tree_scale",
           "tree_norm", "tree_sub", "tree_zeros_like", "tree_normalize", "tree_clip"]


# -- pytree arithmetic ---------------------------------------------------------------------------
def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def tree_sub(a, b):
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def tree_scale(s, a):
    return jax.tree_util.tree_map(lambda v: s * v, a)


def tree_axpy(s, x, y):
    """``s * x + y``."""
    return jax.tree_util.tree_map(lambda u, v: s * u + v, x, y)


def tree_zeros_like(a):
    return jax.tree_util.tree_map(jnp.zeros_like, a)


def tree_norm(a):
    """Global Euclidean norm over all leaves."""
    leaves = jax.tree_util.tree_leaves(a)
    if not leaves:
        return jnp.asarray(0.0)
    return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in leaves))


def tree_normalize(a, eps: float = 1e-12):
    """``a / max(‖a‖, eps)``."""
    return tree_scale(1.0 / jnp.maximum(tree_norm(a), eps), a)


def tree_clip(a, c: float):
    """``a · min(1, c/‖a‖)``: clip the global norm to at most ``c``."""
    n = tree_norm(a)
    return tree_scale(jnp.minimum(1.0, c / jnp.maximum(n, 1e-30)), a)


# -- sampling ------------------------------------------------------------------------------------
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al., 2011), unrolled; ``uint32`` in and out.

    The same function as JAX's ``threefry2x32`` primitive, written as elementwise ops so
    that XLA fuses it into one kernel instead of the rolled ``while`` loop JAX emits on CPU.
    """
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << jnp.uint32(r)) | (x2 >> jnp.uint32(32 - r)))
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2


def _fast_path(key) -> bool:
    """Typed Threefry key with JAX's (default) partitionable counter layout."""
    return (jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
            and getattr(key, "shape", None) == ()
            and str(jax.random.key_impl(key)) == "threefry2x32"
            and bool(jax.config.jax_threefry_partitionable))


def _hash_counts(key, n: int):
    """Threefry of the counters ``(0, 0..n-1)`` under ``key``: two ``uint32[n]`` arrays."""
    kd = jax.random.key_data(key)
    return _threefry2x32(kd[0], kd[1], jnp.zeros((n,), jnp.uint32),
                         jnp.arange(n, dtype=jnp.uint32))


def split(key, num: int = 2):
    """``jax.random.split(key, num)``: the same keys, without a ``while`` loop on CPU."""
    if not _fast_path(key):
        return jax.random.split(key, num)
    b1, b2 = _hash_counts(key, num)
    return jax.random.wrap_key_data(jnp.stack([b1, b2], axis=-1),
                                    impl=jax.random.key_impl(key))


def sample_indices(key, batch_size: int, n: int):
    """``jax.random.randint(key, (batch_size,), 0, n)``, bit for bit (int32 indices)."""
    if not _fast_path(key) or not 1 <= n <= jnp.iinfo(jnp.int32).max:
        return jax.random.randint(key, (batch_size,), 0, n)
    k_hi, k_lo = split(key)
    hi, lo = (jnp.bitwise_xor(*_hash_counts(k, batch_size)) for k in (k_hi, k_lo))
    # randint's reduction of 64 random bits to [0, n) in uint32 arithmetic (2^32 mod n first)
    span = jnp.uint32(n)
    mult = (jnp.uint32(2 ** 16) % span) * (jnp.uint32(2 ** 16) % span) % span
    return ((hi % span * mult + lo % span) % span).astype(jnp.int32)


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
    return tree_add(out, problem.noise.sample(key, out, batch_size))


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
