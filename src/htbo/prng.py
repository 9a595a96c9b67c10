"""Fast PRNG helpers: ``split`` and minibatch indices, bit-identical to ``jax.random``.

On CPU, JAX lowers every Threefry hash (each ``jax.random.split`` / ``randint``) to a
5-trip ``while`` loop, and executing those tiny loops dominated a minibatch step (see
docs/benchmarks.md). :func:`split` and :func:`sample_indices` compute the *same bits* as
``jax.random.split`` / ``jax.random.randint`` for default (Threefry, partitionable) keys with
plain unrolled ``uint32`` arithmetic that XLA fuses into one kernel, and fall back to
``jax.random`` for any other key type or configuration.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["split", "sample_indices"]

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
