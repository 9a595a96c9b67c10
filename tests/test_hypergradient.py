"""Closed forms of the quadratic vs finite differences, and the 1/λ penalty bias."""
import jax
import jax.numpy as jnp
import numpy as np

from htbo.problems import quadratic
from htbo.problems.quadratic import quadratic_matrices
from htbo.solvers._penalty import penalty_directions

KW = dict(dim_x=4, dim_y=6, kappa=3.0, seed=1)


def _np_phi(M, x):
    """An independent float64 NumPy φ(x) = f(x, y*(x))."""
    ys = -np.linalg.solve(M["A"], M["C"].T @ x + M["a"])
    return (0.5 * ys @ M["At"] @ ys + x @ M["Ct"] @ ys + M["at"] @ ys
            + 0.5 * x @ M["Bt"] @ x + M["bt"] @ x)


def _np_penalty_grad(M, x, lam):
    """∇L_λ*(x) = ∇_x f(x, y_λ*) + λ(∇_x g(x, y_λ*) − ∇_x g(x, y*)), exact in float64."""
    ys = -np.linalg.solve(M["A"], M["C"].T @ x + M["a"])
    yl = -np.linalg.solve(M["At"] / lam + M["A"], (M["Ct"].T @ x + M["at"]) / lam
                          + M["C"].T @ x + M["a"])
    return M["Bt"] @ x + M["bt"] + M["Ct"] @ yl + lam * (M["C"] @ (yl - ys))


def test_exact_hypergradient_equals_finite_differences_of_phi():
    p = quadratic(**KW)
    M = quadratic_matrices(**KW)
    x = np.random.default_rng(0).standard_normal(4)
    h = 1e-5
    fd = np.array([(_np_phi(M, x + h * e) - _np_phi(M, x - h * e)) / (2 * h)
                   for e in np.eye(4)])
    got = np.asarray(p.grad_phi(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, fd, rtol=2e-4, atol=2e-4 * np.abs(fd).max())
    # and htbo's φ is the same function as the independent one
    assert np.isclose(float(p.phi(jnp.asarray(x, jnp.float32))), _np_phi(M, x), rtol=1e-5)


def test_penalty_hypergradient_error_shrinks_like_one_over_lambda():
    M = quadratic_matrices(**KW)
    x = np.random.default_rng(1).standard_normal(4)
    ys = -np.linalg.solve(M["A"], M["C"].T @ x + M["a"])
    gphi = (M["Bt"] @ x + M["bt"] + M["Ct"] @ ys
            - M["C"] @ np.linalg.solve(M["A"], M["At"] @ ys + M["Ct"].T @ x + M["at"]))
    lams = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    errs = np.array([np.linalg.norm(_np_penalty_grad(M, x, l) - gphi) for l in lams])
    slope = np.polyfit(np.log(lams), np.log(errs), 1)[0]
    assert abs(slope + 1.0) < 0.05, slope


def test_htbo_penalty_directions_compute_the_penalty_hypergradient():
    """With noise off and converged inner loops, the solver's h is ∇L_λ*(x), and its
    distance to ∇φ(x) falls like 1/λ (float64 so the λ-amplified rounding stays small)."""
    with jax.enable_x64(True):
        p = quadratic(**KW, dtype=jnp.float64)
        M = quadratic_matrices(**KW)
        x = np.random.default_rng(2).standard_normal(4)
        gphi = np.asarray(p.grad_phi(jnp.asarray(x)))
        errs = []
        for lam in (10.0, 100.0, 1000.0):
            h, y, z = jax.jit(lambda xx: penalty_directions(
                p, xx, p.y0, p.y0, jax.random.key(0), lam=lam, alpha=0.25, tau=0.25,
                inner_steps=400, batch_in=1, batch_out=1, shared_samples=False,
                inner_normalized=False))(jnp.asarray(x))
            np.testing.assert_allclose(np.asarray(h), _np_penalty_grad(M, x, lam),
                                       rtol=1e-6, atol=1e-7)
            errs.append(np.linalg.norm(np.asarray(h) - gphi))
        slope = np.polyfit(np.log([10, 100, 1000]), np.log(errs), 1)[0]
        assert abs(slope + 1.0) < 0.05, slope
