"""Hyperparameters as data: one compile per structure, grids in one program (htbo.tune)."""
import jax
import numpy as np
import pytest

import htbo
from htbo.problems import minimax_quadratic, quadratic, with_noise
from htbo.schedules import inverse_sqrt
from htbo.solvers import f2ba, n2sba, n2sgda
from htbo.tuning import edge_notes, tune

_COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: _COMPILES.append(event)
    if event == "/jax/core/compile/backend_compile_duration" else None)


def _compiles(fn):
    n = len(_COMPILES)
    out = fn()
    return len(_COMPILES) - n, out


def _small():
    return with_noise(quadratic(dim_x=3, dim_y=4), "stable:1.5")


def test_runs_that_differ_only_in_numeric_hyperparameters_compile_once():
    p = _small()
    run = lambda s: htbo.run(p, s, steps=40, seeds=[0, 1], n_evals=2)  # noqa: E731
    run(n2sba(eta=inverse_sqrt(0.1, 50), lam=10.0))            # warm: compiles
    n, res = _compiles(lambda: run(n2sba(eta=inverse_sqrt(0.3, 20), lam=30.0, alpha=0.02,
                                         tau=0.03)))
    assert n == 0, f"{n} XLA compilations for new numbers only"
    assert res.compile_s < 0.5
    # a constant step is the same schedule family (exponent 0): still no compile
    n, _ = _compiles(lambda: run(n2sba(eta=0.05, lam=3.0)))
    assert n == 0
    # a structural change (batch size) is a new program: the counter does see compiles
    n, _ = _compiles(lambda: run(n2sba(eta=0.05, batch_out=4)))
    assert n >= 1


def test_grid_in_one_program_equals_the_points_run_one_by_one():
    p = _small()
    grid = {"eta": [inverse_sqrt(0.05, 100), 0.1], "lam": [10.0, 30.0]}
    n, res = _compiles(lambda: tune(p, "n2sba", grid, steps=60, seeds=[0, 1], n_evals=3))
    assert res.groups == 1 and len(res.table) == 4
    for t in res.table:
        alone = htbo.run(p, n2sba(**t["params"]), steps=60, seeds=[0, 1], n_evals=3)
        np.testing.assert_allclose(t["finals"], alone.final(), rtol=1e-5, atol=1e-6)
        rows = sorted((r["seed"], r["step"], r["phi"]) for r in res.rows
                      if r["label"] == t["label"])
        ref = sorted((r["seed"], r["step"], r["phi"]) for r in alone.rows)
        np.testing.assert_allclose(np.array(rows), np.array(ref), rtol=1e-5, atol=1e-5)
    # ranked by median, best first
    meds = [t["median"] for t in res.table]
    assert meds == sorted(meds) and res.best["median"] == meds[0]


def test_a_diverging_point_is_inf_and_leaves_the_others_unchanged():
    p = quadratic(dim_x=3, dim_y=4)
    res = tune(p, "f2ba", {"eta": [0.01, 30.0]}, steps=300, seeds=[0, 1, 2], n_evals=3,
               hp=dict(lam=10.0))
    bad = next(t for t in res.table if t["params"]["eta"] == 30.0)
    good = next(t for t in res.table if t["params"]["eta"] == 0.01)
    assert bad["diverged"] == 3 and bad["median"] == np.inf
    assert res.best is good and good["diverged"] == 0
    alone = htbo.run(p, f2ba(eta=0.01, lam=10.0), steps=300, seeds=[0, 1, 2], n_evals=3)
    np.testing.assert_allclose(good["finals"], alone.final(), rtol=1e-5)
    # each failure is reported with its first non-finite step, equal to a run of that point
    with pytest.raises(htbo.NonFiniteError) as e:
        htbo.run(p, f2ba(eta=30.0, lam=10.0), steps=300, seeds=[0], n_evals=3)
    steps = {d["seed"]: d["step"] for d in res.diverged}
    assert steps[0] == e.value.step


def test_slicing_a_grid_under_a_member_limit_changes_nothing():
    p = _small()
    grid = {"eta": [0.03, 0.1, 0.3]}
    whole = tune(p, "n2sba", grid, steps=50, seeds=[0, 1], n_evals=2)
    sliced = tune(p, "n2sba", grid, steps=50, seeds=[0, 1], n_evals=2, max_members=4)
    for a, b in zip(sorted(whole.table, key=lambda t: t["point"]),
                    sorted(sliced.table, key=lambda t: t["point"])):
        np.testing.assert_allclose(a["finals"], b["finals"], rtol=1e-5)
    # padding members (6 members in slices of 4) never reach the rows
    assert len(sliced.rows) == len(whole.rows) == 3 * 2 * 3


def test_tune_works_for_minimax_and_decentralized_solvers():
    mm = with_noise(minimax_quadratic(dim_x=4, dim_y=4), "stable:1.5")
    res = tune(mm, n2sgda, {"eta": [0.01, 0.05]}, steps=50, seeds=2, n_evals=2)
    assert all(np.isfinite(t["median"]) for t in res.table)
    from htbo.decentralized import decentralized_quadratic, make_dec_solver, parse_network
    from htbo.decentralized.simulate import network_setup
    W = parse_network("ring:4")
    dp = with_noise(decentralized_quadratic(m=4), "gauss")
    _, kw = network_setup(dp, make_dec_solver("dnsvrb"), W)
    res = tune(dp, lambda **hp: network_setup(dp, make_dec_solver("dnsvrb", **hp), W)[0],
               {"eta_x": [0.01, 0.03]}, steps=30, seeds=2, n_evals=2, run_kwargs=kw)
    assert res.groups == 1
    assert {"consensus", "comm_rounds", "bytes_sent"} <= set(res.rows[-1])


def test_budget_is_equal_for_every_point_and_hvps_can_be_charged():
    p = _small()
    res = tune(p, "soba", {"batch": [4, 8]}, budget=2000, seeds=1, n_evals=1)
    assert res.groups == 2  # batch size is structure
    for t in res.table:
        assert 2000 - 2 * t["params"]["batch"] < t["sfo"] <= 2000
    charged = tune(p, "soba", {"batch": [4]}, budget=2000, seeds=1, n_evals=1, hvp_cost=1.0)
    assert charged.table[0]["sfo"] + charged.table[0]["hvp"] <= 2000
    with pytest.raises(ValueError, match="less than one step"):
        tune(p, "n2sba", {"eta": [0.1]}, budget=10, seeds=1)


def test_edge_notes_name_the_edge_and_suggest_the_next_value():
    pts = [dict(eta=e, lam=10.0) for e in (0.01, 0.03, 0.1)]
    (note,) = edge_notes(pts, dict(eta=0.1, lam=10.0))
    assert "eta" in note and "largest" in note and "eta=0.333" in note
    (note,) = edge_notes(pts, dict(eta=0.01, lam=10.0))
    assert "smallest" in note and "eta=0.00333" in note
    assert edge_notes(pts, dict(eta=0.03, lam=10.0)) == []
    sched = [dict(eta=inverse_sqrt(v, 200)) for v in (0.1, 0.3)]
    (note,) = edge_notes(sched, dict(eta=inverse_sqrt(0.3, 200)))
    assert "eta=isqrt:0.9:200" in note


def test_bad_grids_are_rejected_naming_the_point():
    p = _small()
    with pytest.raises(ValueError, match=r"grid point n2sba\[eta=-1\]: .*eta must be"):
        tune(p, "n2sba", {"eta": [0.1, -1]}, steps=5)
    with pytest.raises(ValueError, match="unknown solver"):
        tune(p, "nope", {"eta": [0.1]}, steps=5)
    with pytest.raises(ValueError, match="list of values"):
        tune(p, "n2sba", {"eta": 0.1}, steps=5)
    with pytest.raises(ValueError, match="unknown metric 'nosuch'"):
        tune(p, "n2sba", {"eta": [0.1]}, steps=5, metric="nosuch")
