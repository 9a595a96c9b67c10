"""The oracles' unrolled Threefry sampler: bit-identical to jax.random, and loop-free."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from htbo import oracles as O
from htbo.problems import quadratic_data


@pytest.mark.parametrize("seed", [0, 1, 17, 12345])
def test_split_and_indices_are_bit_identical_to_jax_random(seed):
    key = jax.random.fold_in(jax.random.key(seed), 3)
    for num in (2, 3, 5, 10):
        np.testing.assert_array_equal(jax.random.key_data(O.split(key, num)),
                                      jax.random.key_data(jax.random.split(key, num)))
    for n in (1, 2, 7, 1000, 1024, 65535, 65536, 65537, 100003, 2**31 - 1):
        for b in (1, 8, 64, 65):
            got, want = O.sample_indices(key, b, n), jax.random.randint(key, (b,), 0, n)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_identical_under_jit_and_vmap_and_fallback_for_raw_keys():
    keys = jax.random.split(jax.random.key(0), 6)
    got = jax.jit(jax.vmap(lambda k: O.sample_indices(k, 64, 1000)))(keys)
    want = jax.vmap(lambda k: jax.random.randint(k, (64,), 0, 1000))(keys)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(jax.random.key_data(jax.jit(jax.vmap(O.split))(keys)),
                                  jax.random.key_data(jax.vmap(jax.random.split)(keys)))
    raw = jax.random.PRNGKey(0)  # legacy uint32 key: goes through jax.random itself
    np.testing.assert_array_equal(O.sample_indices(raw, 8, 10),
                                  jax.random.randint(raw, (8,), 0, 10))


def test_sample_batch_takes_the_jax_random_rows():
    data = {"a": jnp.arange(50.0).reshape(25, 2), "b": jnp.arange(25.0)}
    key = jax.random.key(4)
    batch = O.sample_batch(data, key, 9)
    idx = jax.random.randint(key, (9,), 0, 25)
    np.testing.assert_array_equal(batch["a"], data["a"][idx])
    np.testing.assert_array_equal(batch["b"], data["b"][idx])
    nr = O.sample_batch(data, key, 25, "noreplace")
    assert sorted(np.asarray(nr["b"]).tolist()) == list(range(25))


def test_compiled_oracle_has_no_while_loop():
    """The point of the unrolled sampler: no rolled Threefry ``while`` on CPU."""
    p = quadratic_data(n_inner=64, n_outer=64, dim_x=4, dim_y=4)
    fn = jax.jit(lambda x, y, k: O.grad_g_y(p, x, y, k, 8))
    hlo = fn.lower(p.x0, p.y0, jax.random.key(0)).compile().as_text()
    assert " while(" not in hlo
