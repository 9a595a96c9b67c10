"""Projections: the variational characterization of a Euclidean projection onto a convex set,
checked independently of how the projection is computed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from htbo.projections import project_ball, project_simplex


def _random_simplex(rng, n, k, r):
    return r * rng.dirichlet(np.ones(n) * 0.3, size=k)


def _random_ball(rng, n, k, r):
    d = rng.standard_normal((k, n))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return r * d * rng.uniform(0, 1, (k, 1)) ** (1 / n)


@pytest.mark.parametrize("proj,sample,feasible", [
    (project_simplex, _random_simplex,
     lambda p, r: p.min() >= -1e-12 and abs(p.sum() - r) < 1e-10),
    (project_ball, _random_ball, lambda p, r: np.linalg.norm(p) <= r + 1e-12),
])
def test_projection_satisfies_the_optimality_condition(proj, sample, feasible):
    """p = P_C(v) iff p ∈ C and ⟨v − p, c − p⟩ ≤ 0 for every c ∈ C."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for n, r, scale in ((1, 1.0, 1.0), (3, 2.0, 5.0), (40, 1.0, 0.05), (200, 0.5, 3.0)):
            v = rng.standard_normal(n) * scale
            p = np.asarray(proj(jnp.asarray(v), r))
            assert feasible(p, r), (n, r, p)
            cs = sample(rng, n, 500, r)
            assert np.max((cs - p) @ (v - p)) <= 1e-10
            # idempotent: projecting a feasible point leaves it in place
            np.testing.assert_allclose(np.asarray(proj(jnp.asarray(p), r)), p, atol=1e-12)


def test_simplex_projection_jits_and_vmaps():
    v = jax.random.normal(jax.random.key(0), (8, 30)) * 3
    out = jax.jit(jax.vmap(project_simplex))(v)
    np.testing.assert_allclose(np.asarray(out.sum(1)), 1.0, atol=1e-5)
    assert float(out.min()) >= 0
    np.testing.assert_allclose(np.asarray(out[3]), np.asarray(project_simplex(v[3])), atol=1e-6)
