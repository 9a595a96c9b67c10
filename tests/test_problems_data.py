"""Data problems: the evaluation-only hypergradient route, quadratic_data's factor form,
and the l2reg problem on real scikit-learn data (finite differences, accuracies, N²SBA)."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.metrics import evaluate, implicit_grad_phi, solve_lower
from htbo.problems import PROBLEMS, l2reg, make_problem, quadratic, quadratic_data
from htbo.problems.l2reg import load_dataset, split_standardize
from htbo.schedules import inverse_sqrt
from htbo.solvers import n2sba

STRIP = dict(y_star=None, phi=None, grad_phi=None)
QD = dict(n_inner=300, n_outer=200, dim_x=6, dim_y=8, kappa=5.0, mu=0.5, phi_curvature=0.2)


def _rand(n, seed, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(n), jnp.float32)


def _dense(p):
    """The mean matrices of quadratic_data, rebuilt in float64 from its stored factors."""
    dg = {k: np.asarray(v, float) for k, v in p.data_g.items()}
    df = {k: np.asarray(v, float) for k, v in p.data_f.items()}
    ng, nf = len(dg["u"]), len(df["u"])
    return dict(A=dg["u"].T @ dg["u"] / ng + p.info["mu"] * np.eye(p.info["dim_y"]),
                C=dg["p"].T @ dg["q"] / ng, a=dg["a"].mean(0),
                At=df["u"].T @ df["u"] / nf, Ct=df["p"].T @ df["q"] / nf, at=df["a"].mean(0),
                Bt=df["r"].T @ df["r"] / nf + p.info["rho"] * np.eye(p.info["dim_x"]),
                bt=df["b"].mean(0))


@pytest.mark.parametrize("kind", ["quadratic", "quadratic_data"])
def test_evaluation_only_hypergradient_matches_closed_form(kind):
    p = quadratic(dim_x=5, dim_y=7, kappa=5.0, seed=3) if kind == "quadratic" \
        else quadratic_data(**QD, seed=3)
    bare = p.replace(**STRIP)
    x, y_hat = _rand(p.x0.shape[0], 1), _rand(p.y0.shape[0], 2)
    ys = jax.jit(lambda x, y: solve_lower(bare, x, y))(x, y_hat)
    np.testing.assert_allclose(ys, p.y_star(x), rtol=1e-4, atol=1e-4)
    gphi = jax.jit(lambda x, y: implicit_grad_phi(bare, x, y))(x, ys)
    exact = p.grad_phi(x)
    np.testing.assert_allclose(gphi, exact, rtol=1e-3, atol=1e-3 * float(jnp.abs(exact).max()))
    ev = jax.jit(evaluate)
    got, ref = ev(bare, x, y_hat), ev(p, x, y_hat)
    for k in ("grad_norm", "phi", "y_err"):
        assert np.isclose(got[k], ref[k], rtol=1e-3), (k, got[k], ref[k])


def test_quadratic_data_factor_gradients_equal_dense_mean_matrices():
    p = quadratic_data(**QD, seed=4)
    M = _dense(p)
    x, y = _rand(6, 5), _rand(8, 6)
    xn, yn = np.asarray(x, float), np.asarray(y, float)
    gx, gy = jax.grad(p.g, argnums=(0, 1))(x, y, p.data_g)
    fx, fy = jax.grad(p.f, argnums=(0, 1))(x, y, p.data_f)
    want = dict(gx=M["C"] @ yn, gy=M["A"] @ yn + M["C"].T @ xn + M["a"],
                fx=M["Ct"] @ yn + M["Bt"] @ xn + M["bt"],
                fy=M["At"] @ yn + M["Ct"].T @ xn + M["at"])
    for k, v in dict(gx=gx, gy=gy, fx=fx, fy=fy).items():
        np.testing.assert_allclose(v, want[k], rtol=1e-4, atol=1e-4, err_msg=k)
    # the problem's closed forms are those of these matrices (independent float64 algebra)
    ys = -np.linalg.solve(M["A"], M["C"].T @ xn + M["a"])
    gphi = M["Bt"] @ xn + M["bt"] + M["Ct"] @ ys - M["C"] @ np.linalg.solve(
        M["A"], M["At"] @ ys + M["Ct"].T @ xn + M["at"])
    np.testing.assert_allclose(p.y_star(x), ys, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p.grad_phi(x), gphi, rtol=1e-3, atol=1e-4)


def _tail_ratio(factors):
    p = quadratic_data(n_inner=2000, n_outer=8, dim_x=5, dim_y=5, factors=factors, seed=1)
    x, y = _rand(5, 7), _rand(5, 8)
    one = lambda s: jax.grad(p.g, 1)(x, y, jax.tree_util.tree_map(lambda a: a[None], s))  # noqa
    per_sample = np.asarray(jax.vmap(one)(p.data_g), float)
    per_sample -= per_sample.mean(0)
    idx = np.random.default_rng(0).integers(0, len(per_sample), (20000, 8))
    norms = np.linalg.norm(per_sample[idx].mean(1), axis=1)  # minibatch (B=8) noise norms
    return np.quantile(norms, 0.999) / np.median(norms)


def test_quadratic_data_t_factors_give_heavier_tailed_minibatch_noise():
    gauss, t = _tail_ratio("gauss"), _tail_ratio("t")
    assert gauss < 6.0, gauss  # near-Gaussian: q99.9/median of a 5-dim norm is ≈ 3.5
    assert t > 3 * gauss, (t, gauss)


def test_quadratic_data_stores_only_factors():
    n_in, n_out, dx, dy = 64, 48, 40, 50
    p = quadratic_data(n_inner=n_in, n_outer=n_out, dim_x=dx, dim_y=dy, seed=0)
    for n, data in ((n_in, p.data_g), (n_out, p.data_f)):
        for leaf in jax.tree_util.tree_leaves(data):
            assert leaf.ndim == 2 and leaf.shape[0] == n and leaf.shape[1] in (dx, dy)
        total = sum(leaf.size for leaf in jax.tree_util.tree_leaves(data))
        assert total <= 6 * n * max(dx, dy) < n * dx * dy


# -- l2reg ---------------------------------------------------------------------------------------
def test_l2reg_is_registered_and_checks_arguments():
    assert PROBLEMS["l2reg"] is l2reg
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_problem("l2reg", dataset="mnist")
    with pytest.raises(ValueError, match="fractions"):
        l2reg(fractions=(0.5, 0.5, 0.0))


def test_l2reg_missing_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` fail
    l2reg.cache_clear()  # built problems are memoized: build this one anew
    with pytest.raises(ImportError, match=r'pip install "htbo\[data\]"'):
        l2reg()


def test_l2reg_split_is_deterministic_standardized_and_disjoint():
    p, q, r = l2reg(seed=0), l2reg(seed=0), l2reg(seed=1)
    np.testing.assert_array_equal(p.data_g["a"], q.data_g["a"])
    assert not np.array_equal(p.data_g["a"], r.data_g["a"])
    a = np.asarray(p.data_g["a"], float)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-4)
    rows = lambda m: {tuple(np.round(v, 4)) for v in np.asarray(m)}  # noqa: E731
    assert not rows(p.data_g["a"]) & rows(p.data_f["a"])
    assert p.n_g + p.n_f + p.info["n_test"] == 569
    d = l2reg("digits")
    assert d.y0["w"].shape == (64, 10) and d.data_g["t"].shape == (d.n_g, 10)


def test_l2reg_implicit_hypergradient_matches_finite_differences():
    with jax.enable_x64(True):
        p = l2reg("breast_cancer", dtype=jnp.float64)
        x = jnp.asarray(np.log(0.1) + 0.5 * np.random.default_rng(0).standard_normal(30))
        solve = jax.jit(lambda x, y: solve_lower(p, x, y, 300))
        ys = solve(x, p.y0)
        gnorm = jnp.sqrt(sum(jnp.sum(v ** 2) for v in
                             jax.tree_util.tree_leaves(jax.grad(p.g, 1)(x, ys, p.data_g))))
        assert gnorm < 1e-10  # an accurate lower solve, so φ below is φ itself
        hyper = jax.jit(lambda x, y: implicit_grad_phi(p, x, y))(x, ys)
        phi = jax.jit(lambda x: p.f(x, solve(x, ys), p.data_f))
        h = 1e-5
        for j in (0, 5, 17):
            e = jnp.zeros(30).at[j].set(h)
            fd = (phi(x + e) - phi(x - e)) / (2 * h)
            assert abs(fd) > 1e-5  # a coordinate that matters
            np.testing.assert_allclose(hyper[j], fd, rtol=1e-5)


def test_l2reg_metrics_accuracies():
    p = l2reg("breast_cancer")
    x = jnp.full(30, np.log(0.1), jnp.float32)
    ys = jax.jit(lambda x, y: solve_lower(p, x, y))(x, p.y0)
    m = jax.jit(evaluate)(p, x, ys)
    for k in ("val_acc", "test_acc"):
        assert 0.0 <= m[k] <= 1.0
    assert m["test_acc"] > 0.9 and m["val_acc"] > 0.9
    # accuracy by an independent NumPy prediction on the test split
    X, t = load_dataset("breast_cancer")
    _, _, (a_te, t_te) = split_standardize(X, t, seed=0)
    pred = (a_te @ np.asarray(ys["w"], float) + float(ys["b"])) > 0
    assert np.isclose(m["test_acc"], np.mean(pred == t_te), atol=1e-6)
    assert np.isclose(m["phi"], p.f(x, ys, p.data_f), rtol=1e-5)
    assert m["y_err"] < 1e-3  # ŷ was the accurate solve


def test_n2sba_on_l2reg_decreases_phi_and_hypergradient():
    p = l2reg("breast_cancer")  # starts at exp(x0) = 1 (over-regularized)
    # inner steps 0.05 < 2/L even when the learned weights exp(x_j) grow (0.2 diverged)
    solver = n2sba(eta=inverse_sqrt(0.5, 50), lam=30.0, alpha=0.05, tau=0.05, inner_steps=5,
                   batch_in=16, batch_out=32)
    res = htbo.run(p, solver, steps=400, seeds=[0, 1, 2, 3, 4], n_evals=1)
    start = [r for r in res.rows if r["step"] == 0]
    assert all(np.isclose(r["phi"], start[0]["phi"]) for r in start)
    assert np.median(res.final("phi")) < 0.6 * start[0]["phi"]
    assert np.median(res.final("grad_norm")) < 0.7 * start[0]["grad_norm"]
    assert np.median(res.final("test_acc")) > 0.9


def test_quadratic_data_defaults_are_stable_for_every_bilevel_solver():
    """The problem's recommended hyperparameters (computed from its data: one sample's
    curvature is ~80× the mean) keep every bilevel solver finite and not growing, noise-free,
    where the solvers' generic defaults diverged within ~20 steps. All problems × solvers:
    benchmarks/defaults_census.py (docs/testing.md)."""
    import htbo
    from htbo.solvers import SOLVERS, make_solver
    p = quadratic_data()
    start = float(np.linalg.norm(p.grad_phi(p.x0)))
    for name in SOLVERS.names():
        s = make_solver(name, problem=p)
        if s.kind != "bilevel":
            continue
        res = htbo.run(p, s, steps=htbo.steps_for_budget(s, 4_000), seeds=[0], n_evals=1,
                       on_nonfinite="continue")
        assert not res.diverged, name
        assert res.final()[0] < 1.05 * start, (name, res.final()[0], start)
        if {"alpha", "rho"} & set(s.hparams):  # nsvrb's inner steps are eta_y, eta_z
            assert s.hparams.get("alpha", s.hparams.get("rho")) == p.solver_defaults["*"][
                "alpha"], name
        assert s.hparams.get("batch", s.hparams.get("batch_in")) == 32, name
