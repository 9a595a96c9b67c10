"""Every registered solver converges without noise (at the settings it declares with its
registration); the declarations derive hyperparameters, validation and compile keys; bad
hyperparameters are rejected with one line."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.problems import minimax_quadratic, quadratic
from htbo.schedules import linear_growth
from htbo.solvers import SOLVERS, make_solver, solver_class


def test_every_registered_solver_declares_its_test_settings():
    for name in SOLVERS.names():
        tests = SOLVERS.meta(name).get("tests", {})
        assert {"noise_free", "small"} <= set(tests), name


# Noise-free problems in float64: bilevel quadratic(5, 5, κ = 2) (start ‖∇φ‖ = 17.9) and
# minimax_quadratic(5, 5, κ = 2) (start ‖∇Φ‖ = 5.3). Each solver's settings are declared with
# it (penalty methods: λ = 1e5, so the bias floor ≈ 18/λ is 1.8e-4).
@pytest.mark.parametrize("name", SOLVERS.names())
def test_noise_free_convergence(name):
    hp, steps = SOLVERS.meta(name)["tests"]["noise_free"]
    s = make_solver(name, **hp)
    with jax.enable_x64(True):
        p = (minimax_quadratic(dim_x=5, dim_y=5, kappa=2.0, dtype=jnp.float64)
             if s.kind == "minimax" else quadratic(dim_x=5, dim_y=5, kappa=2.0,
                                                   dtype=jnp.float64))
        res = htbo.run(p, s, steps=steps, seeds=[0], n_evals=2)
    assert res.rows[0]["grad_norm"] > 5
    assert res.final("grad_norm")[0] < 1e-3, res.rows
    assert res.final("y_err")[0] < 1e-3


def test_declarations_derive_hp_structure_and_axes():
    s = make_solver("n2sba", eta=0.1, lam=3.0, momentum=0.9, batch_out=16)
    # numeric values are data (schedules for step sizes), structure is the compile key
    assert set(s.hp) == {"eta", "lam", "alpha", "tau", "momentum"}
    assert float(s.hp["eta"](0)) == pytest.approx(0.1) and s.hp["momentum"] == 0.9
    same = make_solver("n2sba", eta=0.3, lam=30.0, momentum=0.5, batch_out=16)
    assert s.program() == same.program()          # numbers differ only: one program
    assert s.program() != make_solver("n2sba", eta=0.1, batch_out=8).program()
    # momentum = 0 switches the momentum buffer off: another structure, no hp entry
    off = make_solver("n2sba", batch_out=16)
    assert "momentum" not in off.hp and off.program() != s.program()
    axes = solver_class(SOLVERS.get("n2sba")).axes()
    assert axes["momentum"].high == 1 and not axes["momentum"].high_closed
    assert axes["eta"].schedule and not axes["momentum"].schedule
    assert "batch_out" not in axes  # structural: not a numeric search axis


def test_the_compiled_step_cannot_read_numeric_values_from_the_solver():
    """The functions the runner compiles belong to a canonical instance whose numeric fields
    raise: a step that read ``self.eta`` instead of ``state.hp`` would be silently wrong for
    every other point of a grid."""
    s = make_solver("soba", eta=0.2)
    _, _, params = s.program()
    canonical = params.__self__
    assert canonical.batch == s.batch
    with pytest.raises(TypeError, match="read it from state.hp"):
        canonical.eta * 2.0


def test_updates_compose_clip_and_momentum():
    """SGDA with both a clip level and momentum: the clipped gradient enters the average."""
    s = make_solver("sgda", clip=0.5, momentum=0.5, eta=1.0)
    assert s.name == "clipped-nsgda-m" and {"clip", "momentum"} <= set(s.hp)
    h = {"a": jnp.array([3.0, 4.0])}       # norm 5 -> clipped to 0.5
    rule = s.update_rule()
    st = rule.init(h)
    step, st = rule.update(h, st, hp=dict(s.hp), t=jnp.int32(0))
    # m = 0.5·0 + 0.5·clip(h) = h/20; normalized and scaled by η = 1: h/5
    np.testing.assert_allclose(step["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(st[1]["a"], [0.15, 0.2], rtol=1e-6)  # the momentum buffer


@pytest.mark.parametrize("name, hp, msg", [
    ("n2sba", dict(eta=0.0), "n2sba: eta must be a finite positive"),
    ("n2sba", dict(lam=-1.0), "lam must be a finite positive"),
    ("n2sba", dict(eta=float("nan")), "eta must be a finite positive"),
    ("n2sba", dict(batch_out=0), "batch_out must be a positive integer"),
    ("n2sba", dict(batch_in=2.5), "batch_in must be a positive integer"),
    ("n2sba", dict(momentum=1.0), "momentum beta must be in \\[0, 1\\)"),
    ("n2sba", dict(shared_samples="off"), "shared_samples must be true or false"),
    ("soba", dict(rho=-0.1), "rho must be a finite positive"),
    ("stocbio", dict(neumann_terms=0), "neumann_terms must be a positive integer"),
    ("f2sa", dict(lam=10.0, lam_max=5.0), "lam_max >= lam"),
    ("f2ba", dict(lam=linear_growth(1.0, 1.0)), "lam is fixed"),
    ("clipped-f2sa", dict(clip=0.0), "clipping threshold"),
    ("n2sba", dict(bogus=1), "bad hyperparameters for 'n2sba'.*bogus"),
])
def test_bad_hyperparameters_are_rejected(name, hp, msg):
    with pytest.raises(ValueError, match=msg):
        make_solver(name, **hp)


def test_integral_floats_are_integers_and_records_keep_every_value():
    s = make_solver("n2sba", batch_out=16.0, shared_samples=1)
    assert s.batch_out == 16 and isinstance(s.batch_out, int) and s.shared_samples is True
    assert set(s.hparams) == {f.name for f in dataclasses.fields(s)}


def test_every_solvers_hyperparameters_round_trip_through_its_constructor():
    """``make_solver(name, **solver.hparams)`` rebuilds the same solver (what best.json and
    the experiments' transfer cells do), also with a λ schedule that switches F2SA's linear
    growth off (its cap then reads inf)."""
    from htbo.schedules import linear_growth
    from htbo.solvers import SOLVERS, make_solver
    cases = [(n, {}) for n in SOLVERS.names()]
    cases += [("f2sa", dict(lam=linear_growth(3.0, 0.01, 9.0))),
              ("clipped-f2sa", dict(lam=linear_growth(3.0, 0.01, 9.0)))]
    for name, hp in cases:
        s = make_solver(name, **hp)
        again = make_solver(name, **s.hparams)
        assert again.hparams == s.hparams, name
    assert make_solver("f2sa", lam=linear_growth(3.0, 0.01, 9.0)).hparams["lam_max"] == math.inf
    with pytest.raises(ValueError, match="lam_max must be a positive number or inf"):
        make_solver("f2sa", lam_max=float("nan"))
