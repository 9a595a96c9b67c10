"""Minimax: closed forms, projections, the DRO problem, bad input (convergence of every
minimax solver: tests/test_solvers.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.problems import dro, minimax_problem, minimax_quadratic
from htbo.projections import project_ball, project_simplex
from htbo.solvers import make_solver


def _np_minimax_quadratic(seed=0, dim_x=6, dim_y=4, kappa=5.0, c=1.0, coupling=1.0):
    """The same instance rebuilt independently in float64 NumPy."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim_y, dim_y)))
    C = (q * np.linspace(1.0, kappa, dim_y)) @ q.T
    B = coupling * rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    f = lambda x, y: c * np.cos(x).sum() + x @ B @ y - 0.5 * y @ C @ y  # noqa: E731
    return f, B, C


def test_minimax_quadratic_closed_forms_match_finite_differences():
    p = minimax_quadratic(dim_x=6, dim_y=4, kappa=5.0)
    f, B, C = _np_minimax_quadratic()
    x = np.random.default_rng(1).standard_normal(6)
    ystar = np.linalg.solve(C, B.T @ x)
    # y* maximizes f(x, ·): the y-gradient vanishes and f is concave there
    assert np.allclose(B.T @ x - C @ ystar, 0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(p.y_star(jnp.asarray(x, jnp.float32))), ystar,
                               rtol=1e-4, atol=1e-5)
    Phi = lambda xx: f(xx, np.linalg.solve(C, B.T @ xx))  # noqa: E731
    h = 1e-5
    fd = np.array([(Phi(x + h * e) - Phi(x - h * e)) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(np.asarray(p.grad_phi(jnp.asarray(x, jnp.float32))), fd,
                               rtol=2e-4, atol=2e-4)
    assert np.isclose(float(p.phi(jnp.asarray(x, jnp.float32))), Phi(x), rtol=1e-5)


def _simplex_by_bisection(v, r=1.0):
    """Independent reference: find θ with Σ max(v − θ, 0) = r by bisection (float64)."""
    lo, hi = v.min() - r, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0).sum() > r:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0)


@pytest.mark.parametrize("seed", range(6))
def test_simplex_projection_is_exact(seed):
    rng = np.random.default_rng(seed)
    n = [1, 2, 5, 50, 400, 7][seed]
    v = rng.standard_normal(n) * [0.1, 1, 10][seed % 3]
    with jax.enable_x64(True):
        got = np.asarray(project_simplex(jnp.asarray(v)))
    np.testing.assert_allclose(got, _simplex_by_bisection(v), atol=1e-10)
    assert abs(got.sum() - 1) < 1e-10 and got.min() >= 0
    # a point already in the simplex stays put
    q = rng.dirichlet(np.ones(n))
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(project_simplex(jnp.asarray(q))), q, atol=1e-12)


def test_ball_projection():
    v = jnp.array([3.0, 4.0])
    np.testing.assert_allclose(np.asarray(project_ball(v, 1.0)), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(project_ball(0.1 * v, 1.0)), [0.3, 0.4], rtol=1e-6)


def test_dro_inner_maximum_is_exact_and_gradient_is_danskin():
    with jax.enable_x64(True):
        p = dro(dtype=jnp.float64)
        w = {"w": jnp.asarray(np.random.default_rng(0).standard_normal(30) * 0.3),
             "b": jnp.asarray(0.1)}
        data = p.data_f
        qs = p.y_star(w)
        val = float(p.f(w, qs, data))
        # q* beats every other feasible point (random simplex points and projected ascent)
        rng = np.random.default_rng(1)
        for _ in range(20):
            q = jnp.asarray(rng.dirichlet(np.ones(qs.shape[0])))
            assert float(p.f(w, q, data)) <= val + 1e-12
        # projected gradient ascent from uniform weights converges to q*
        ascend = lambda _, q: project_simplex(q + 0.002 * jax.grad(p.f, argnums=1)(w, q, data))  # noqa: E731,E501
        q = jax.jit(lambda q0: jax.lax.fori_loop(0, 2000, ascend, q0))(p.y0)
        assert float(jnp.max(jnp.abs(q - qs))) < 1e-8
        # ∇Φ (Danskin) agrees with finite differences of Φ(w) = f(w, q*(w))
        g = p.grad_phi(w)
        for j in (0, 7, 29):
            e = jnp.zeros(30).at[j].set(1e-6)
            fd = (float(p.phi({"w": w["w"] + e, "b": w["b"]}))
                  - float(p.phi({"w": w["w"] - e, "b": w["b"]}))) / 2e-6
            assert np.isclose(float(g["w"][j]), fd, rtol=1e-5, atol=1e-8)


def test_dro_from_the_cli_reaches_good_accuracy(tmp_path):
    from htbo.cli import main
    from htbo.history import read_jsonl
    rc = main(["run", "--problem", "dro", "--solver", "n2sgda", "--noise", "stable:1.7",
               "--hp", "eta=isqrt:0.05:200", "--hp", "tau=0.002", "--hp", "batch_in=8",
               "--hp", "batch_out=32", "--steps", "800", "--seeds", "2", "--n-evals", "2",
               "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    rows = read_jsonl(str(tmp_path / "history.jsonl"))
    last = [r for r in rows if r["step"] == 800]
    assert all(r["test_acc"] > 0.9 for r in last)
    assert all(r["grad_norm"] < 0.25 * rows[0]["grad_norm"] for r in last)


def test_bad_minimax_inputs():
    f = lambda x, y, b: jnp.sum(x * y[:2]) - 0.5 * y @ y  # noqa: E731
    with pytest.raises(ValueError, match="project_y must return a pytree shaped like y0"):
        minimax_problem(f, jnp.zeros(2), jnp.full(3, 1 / 3), project_y=lambda y: y[:2])
    with pytest.raises(ValueError, match="y0 is not in the constraint set"):
        minimax_problem(f, jnp.zeros(2), jnp.ones(3), project_y=project_simplex)
    data = {"a": jnp.ones((5, 2)).at[2, 0].set(jnp.nan)}
    p = minimax_problem(lambda x, y, b: jnp.mean(b["a"] @ x) * y[0] - y @ y, jnp.zeros(2),
                        jnp.zeros(3), data=data, grad_phi=lambda x: x, name="nan-data")
    with pytest.raises(ValueError, match=r"problem 'nan-data': data_f\['a'\] contains 1 non-finite"):
        htbo.run(p, make_solver("sgda"), steps=2)
