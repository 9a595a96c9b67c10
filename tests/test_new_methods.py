"""The methods of ours, nsoba and nsvrb: nsvrb is one-agent D-NSVRB (HVP route) run on one
machine; nsoba's step equals an independent NumPy implementation; bad hyperparameters are
refused with one line. (Noise-free convergence and SFO/HVP accounting: the generic tests in
test_solvers.py and test_accounting.py, from the registrations.)"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.decentralized import DNSVRB, run_network
from htbo.decentralized.simulate import NetworkSolver, mixer_for
from htbo.problems import quadratic, with_noise
from htbo.problems.quadratic import quadratic_matrices
from htbo.schedules import inverse_sqrt
from htbo.solvers import make_solver


def _one_agent_network(problem):
    """``problem`` stacked over a network of one agent (its own data, W = [[1]])."""
    return jax.tree_util.tree_map(lambda a: a[None], problem)


def test_nsvrb_is_one_agent_dnsvrb_on_the_hvp_route():
    """Same seeds → the same iterates, estimators and rows as ``run_network`` of D-NSVRB
    (``route="hvp"``, gradient tracking on) over ``W = [[1]]``, under heavy-tailed noise."""
    hp = dict(beta=0.3, eta_x=0.05)
    with jax.enable_x64(True):
        p = with_noise(quadratic(dim_x=3, dim_y=4, dtype=jnp.float64), "stable:1.5")
        s = make_solver("nsvrb", **hp)
        ours = htbo.run(p, s, steps=30, seeds=[0, 1], n_evals=3)
        ref = run_network(_one_agent_network(p), DNSVRB(route="hvp", **hp), [[1.0]], steps=30,
                          seeds=[0, 1], n_evals=3)
    for part in ("w", "u"):
        for k in ("x", "y", "v"):
            a, b = (np.asarray(getattr(r.states, part)[k]) for r in (ours, ref))
            assert a.shape == b.shape and a.shape[1] == 1       # (seeds, one agent, dim)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{part}[{k}]")
    x = np.asarray(ours.states.w["x"])
    assert np.abs(x[0] - x[1]).max() > 1e-3      # the noise acts: seeds give other iterates
    assert len(ours.rows) == len(ref.rows) == 8             # 4 marks × 2 seeds
    for r, q in zip(ours.rows, ref.rows):
        assert (r["seed"], r["step"], r["sfo"], r["hvp"]) == (q["seed"], q["step"], q["sfo"],
                                                                q["hvp"])
        assert r["grad_norm"] == pytest.approx(q["grad_norm"], rel=1e-10)


def test_nsvrb_steps_are_dnsvrb_steps_without_storm_and_with_clipped_inner_steps():
    """β = 1 (no STORM), clipped y and v steps, batch 2: the compiled steps agree key by key
    with the network solver's; the counts are D-NSVRB's (checked at run time there)."""
    hp = dict(beta=1.0, inner_update="clip", clip=0.5, batch=2)
    s = make_solver("nsvrb", **hp)
    dec = DNSVRB(route="hvp", **hp)
    assert (s.sfo_per_step, s.hvp_per_step) == (dec.sfo_per_step, dec.hvp_per_step) == (4, 2)
    with jax.enable_x64(True):
        p = with_noise(quadratic(dim_x=3, dim_y=4, dtype=jnp.float64), "t:1.5")
        net = _one_agent_network(p)
        solvers = (s, NetworkSolver(dec, mixer_for([[1.0]])))
        states = [jax.jit(sv.program()[0])(q, q.x0, q.y0, jax.random.key(7), sv.hp)
                  for sv, q in zip(solvers, (p, net))]
        steps = [jax.jit(sv.program()[1]) for sv in solvers]
        for i in range(15):
            states = [f(q, st, jax.random.key(i)) for f, q, st in zip(steps, (p, net), states)]
    ours, ref = (jax.tree_util.tree_map(np.asarray, st.w) for st in states)
    for k in ("x", "y", "v"):
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert np.abs(ours["v"]).max() > 0


def test_nsvrb_shares_the_dnsvrb_step_and_numbers_are_data():
    s = make_solver("nsvrb", eta_x=0.1, beta=0.2)
    assert s.program() == make_solver("nsvrb", eta_x=0.3, beta=0.7).program()
    assert s.program() != make_solver("nsvrb", beta=1.0).program()     # STORM off: structure
    assert s._program()[1] is s.as_dnsvrb().program()[1]               # the D-NSVRB step
    assert set(s.hp) == {"eta_x", "eta_y", "eta_z", "beta"}


@pytest.mark.parametrize("name, hp, msg", [
    ("nsoba", dict(momentum=1.0), r"nsoba: momentum beta must be in \[0, 1\), got 1.0"),
    ("nsoba", dict(momentum=-0.1), r"nsoba: momentum beta must be in \[0, 1\), got -0.1"),
    ("nsoba", dict(eta=0.0), "nsoba: eta must be a finite positive number, got 0.0"),
    ("nsoba", dict(rho=-0.5), "nsoba: rho must be a finite positive number, got -0.5"),
    ("nsoba", dict(inner_update="sign"),
     "nsoba: inner_update must be one of 'plain', 'clip', 'normalized', got 'sign'"),
    ("nsoba", dict(inner_update="clip"),
     "nsoba: inner_update='clip' needs a clip level inner_clip, got none"),
    ("nsoba", dict(inner_clip=1.0),
     "nsoba: inner_clip=1.0 is used only with inner_update='clip', got inner_update='plain'"),
    ("nsoba", dict(inner_update="clip", inner_clip=0.0),
     "nsoba: inner clipping threshold must be a finite positive number, got 0.0"),
    ("nsoba", dict(v_radius=-1.0), "nsoba: v_radius must be a finite positive number"),
    ("nsvrb", dict(beta=0.0), r"nsvrb: beta must be in \(0, 1\], got 0.0"),
    ("nsvrb", dict(beta=1.5), r"nsvrb: beta must be in \(0, 1\], got 1.5"),
    ("nsvrb", dict(eta_x=-0.1), "nsvrb: eta_x must be a finite positive number, got -0.1"),
    ("nsvrb", dict(eta_z=0.0), "nsvrb: eta_z must be a finite positive number, got 0.0"),
    ("nsvrb", dict(update="sign"), "nsvrb: update must be one of"),
    ("nsvrb", dict(inner_update="clip"),
     "nsvrb: a 'clip' update needs a clip level clip, got none"),
    ("nsvrb", dict(clip=1.0), "nsvrb: clip=1.0 is used only with a 'clip' update"),
    ("nsvrb", dict(route="penalty"), "bad hyperparameters for 'nsvrb'.*route"),
])
def test_bad_hyperparameters_are_refused_in_one_line(name, hp, msg):
    with pytest.raises(ValueError, match=msg) as e:
        make_solver(name, **hp)
    assert "\n" not in str(e.value)


def test_nsoba_momentum_zero_is_allowed_and_shares_the_program():
    s0, s9 = make_solver("nsoba", momentum=0.0), make_solver("nsoba", momentum=0.9)
    assert s0.hp["momentum"] == 0.0 and s0.program() == s9.program()
    assert s0.program() != make_solver("nsoba", inner_update="normalized").program()


# -- nsoba against a step-by-step NumPy implementation ------------------------------------------
def _nsoba_numpy(M, x, y, steps, eta, rho, beta, inner, c=None, R=None, eps=1e-12):
    """Independent reference on the noise-free quadratic: exact gradients and HVPs.
    Returns the iterates (x, z, v, m) and how often the clip / projection were active."""
    A, C, a, At, Ct, at, Bt, bt = (M[k] for k in ("A", "C", "a", "At", "Ct", "at", "Bt", "bt"))
    z, v, m = y.copy(), np.zeros_like(y), np.zeros_like(x)
    active = dict(clip=0, proj=0)

    def T(d):
        n = np.linalg.norm(d)
        if inner == "normalized":
            return d / max(n, eps)
        if inner == "clip" and n > c:
            active["clip"] += 1
            return d * (c / n)
        return d

    for t in range(steps):
        gy_g = A @ z + C.T @ x + a                 # ∇_y g(x, z)
        gy_f = At @ z + Ct.T @ x + at              # ∇_y f(x, z)
        gx_f = Bt @ x + bt + Ct @ z                # ∇_x f(x, z)
        D = gx_f + C @ v                           # ∇_x f + ∇²_xy g v
        z_new = z - rho * T(gy_g)
        v_new = v - rho * T(A @ v + gy_f)
        if R is not None and np.linalg.norm(v_new) > R:
            active["proj"] += 1
            v_new = v_new * (R / np.linalg.norm(v_new))
        m = beta * m + (1 - beta) * D
        x = x - eta(t) * m / max(np.linalg.norm(m), eps)
        z, v = z_new, v_new
    return (x, z, v, m), active


@pytest.mark.parametrize("hp", [
    dict(inner_update="plain", momentum=0.5),
    dict(inner_update="clip", inner_clip=0.5, momentum=0.0, v_radius=0.3),
    dict(inner_update="normalized", momentum=0.9),
])
def test_nsoba_step_matches_an_independent_numpy_implementation(hp):
    steps, eta = 6, inverse_sqrt(0.3, 2.0)
    with jax.enable_x64(True):
        p = quadratic(dim_x=3, dim_y=4, kappa=3.0, dtype=jnp.float64)
        s = make_solver("nsoba", eta=eta, rho=0.2, batch=2, **hp)
        st = s.start(p, jax.random.key(0), x0=jnp.full(3, 0.5))
        step = jax.jit(s.program()[1])
        for i in range(steps):
            st = step(p, st, jax.random.key(i))
        got = (st.x, st.z, st.v, st.u[0])          # the momentum buffer: the chain's first part
    M = quadratic_matrices(3, 4, 3.0)
    (x, z, v, m), active = _nsoba_numpy(
        M, np.full(3, 0.5), np.zeros(4), steps, lambda t: 0.3 / np.sqrt(1 + t / 2.0), 0.2,
        hp["momentum"], hp["inner_update"], hp.get("inner_clip"), hp.get("v_radius"))
    if hp["inner_update"] == "clip":
        assert active["clip"] > 0 and active["proj"] > 0   # the options were exercised
    for a, b, what in zip(got, (x, z, v, m), "xzvm"):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-12, err_msg=what)
