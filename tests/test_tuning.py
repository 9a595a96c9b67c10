"""The search (htbo.tune): one compile per structure, grids in one program, edges extended,
successive halving continued from state, races at one SFO-equivalent budget, fresh seeds."""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.problems import minimax_quadratic, quadratic, with_noise
from htbo.registry import Registry
from htbo.schedules import inverse_sqrt
from htbo.search.grid import default_grid, next_value
from htbo.solvers import f2ba, n2sba, n2sgda
from htbo.solvers.base import Solver, numeric, solver
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


FIXED = dict(extend=False, halving=False, eval_seeds=0)   # the plain grid of earlier versions


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
    res = tune(p, "n2sba", grid, steps=60, seeds=[0, 1], n_evals=3, **FIXED)
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
               hp=dict(lam=10.0), **FIXED)
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
    whole = tune(p, "n2sba", grid, steps=50, seeds=[0, 1], n_evals=2, **FIXED)
    sliced = tune(p, "n2sba", grid, steps=50, seeds=[0, 1], n_evals=2, max_members=4, **FIXED)
    for a, b in zip(sorted(whole.table, key=lambda t: t["point"]),
                    sorted(sliced.table, key=lambda t: t["point"])):
        np.testing.assert_allclose(a["finals"], b["finals"], rtol=1e-5)
    # padding members (6 members in slices of 4) never reach the rows
    assert len(sliced.rows) == len(whole.rows) == 3 * 2 * 3


def test_an_optimum_outside_the_first_grid_is_found_within_three_rounds():
    """F2BA on a noisy quadratic, 150 steps: a dense sweep of η over 0.001·3^k puts the best
    at 0.027. A grid of {0.001, 0.003} grows by its ratio 3 while its best sits on the upper
    edge: 0.009, 0.027, then 0.081 shows 0.027 is interior — the dense sweep's point, with
    its numbers."""
    p = _small()
    kw = dict(steps=150, seeds=3, n_evals=2, hp=dict(lam=10.0), halving=False, eval_seeds=0)
    dense = tune(p, "f2ba", {"eta": [round(0.001 * 3 ** k, 6) for k in range(6)]},
                 extend=False, **kw)
    assert dense.best["params"]["eta"] == 0.027
    found = tune(p, "f2ba", {"eta": [0.001, 0.003]}, **kw)
    assert [(e["round"], e["value"]) for e in found.extended] == \
        [(1, 0.009), (2, 0.027), (3, 0.081)]
    assert found.best["params"]["eta"] == 0.027 and found.edges == []
    assert found.best["median"] == pytest.approx(dense.best["median"], rel=1e-5)
    assert found.solvers["f2ba"]["grid"]["eta"] == [0.001, 0.003, 0.009, 0.027, 0.081]
    # fewer rounds stop at the edge, and say why; no extension at all keeps the grid
    short = tune(p, "f2ba", {"eta": [0.001, 0.003]}, max_rounds=1, **kw)
    (edge,) = short.edges
    assert edge["axis"] == "eta" and edge["side"] == "high" and edge["value"] == 0.009
    assert edge["reason"] == "the round limit (1)"
    fixed = tune(p, "f2ba", {"eta": [0.001, 0.003]}, extend=False, **kw)
    assert len(fixed.table) == 2 and fixed.edges[0]["reason"] == "extension off"
    with pytest.raises(ValueError, match="max_rounds must be an integer >= 0, got -1"):
        tune(p, "f2ba", {"eta": [0.001]}, max_rounds=-1, **kw)


class _ShrinkState(NamedTuple):
    x: Any
    y: Any
    hp: Any


_TEST_SOLVERS = Registry("test solver")


@solver("shrink", "x ← (1 − β) x: the larger β the better, β < 1", registry=_TEST_SOLVERS)
class _Shrink(Solver):
    beta: float = numeric(0.5, low=0.0, high=1.0, low_closed=True)
    sfo_per_step = 1

    def init(self, problem, x0, y0, key, hp):
        return _ShrinkState(x0, y0, hp)

    def step(self, problem, s, key):
        return s._replace(x=s.x * (1.0 - s.hp["beta"]))


def test_a_bounded_axis_is_extended_towards_its_bound_never_past_it():
    """β ∈ [0, 1): the ratio repeats on the distance to the bound (0.5, 0.9 → 0.98 →
    0.996 ...), so the values approach 1 and a value that rounds onto it stops the axis."""
    p = quadratic(dim_x=3, dim_y=4).replace(x0=jnp.ones(3))
    dist = dict(metrics_fn=lambda prob, x, y: {"dist": jnp.linalg.norm(x)}, validate=False)
    res = tune(p, _Shrink, {"beta": [0.5, 0.9]}, steps=3, seeds=1, n_evals=1, metric="dist",
               run_kwargs=dist, max_rounds=10, eval_seeds=0, halving=False)
    values = [e["value"] for e in res.extended]
    assert values == [0.98, 0.996, 0.999]
    assert all(v < 1 for v in res.solvers["_Shrink"]["grid"]["beta"])
    (edge,) = res.edges
    assert edge["side"] == "high" and edge["reason"] == "the bound 1"
    decl = _Shrink.declarations()["beta"]
    assert next_value("high", 0.999, 0.996, decl) == (None, "the bound 1")
    assert next_value("low", 0.5, 0.9, decl)[0] == pytest.approx(0.278)   # 0.5²/0.9
    # a closed bound is respected too (D-NSVRB's β ≤ 1, whose 1 turns STORM off)
    from htbo.decentralized import DNSVRB
    beta = DNSVRB.declarations()["beta"]
    x, v = 0.9, 0.5
    for _ in range(6):
        nxt, why = next_value("high", x, v, beta)
        if nxt is None:
            break
        assert nxt < 1
        x, v = nxt, x
    assert why == "the bound 1"


def test_halving_survivors_continue_from_state_and_equal_full_runs():
    """9 points halve at 1/9 and 1/3 of the budget (the best 2/5, then the best third,
    continue from their states): the survivors' rows at every evaluation equal runs of
    those points alone, the survivors are the best at each rung, and the search spends a
    third of what the full grid costs."""
    p = _small()
    grid = {"eta": [0.03, 0.1, 0.3], "lam": [3.0, 10.0, 30.0]}
    res = tune(p, "n2sba", grid, steps=90, seeds=[0, 1], n_evals=3, extend=False,
               eval_seeds=0)
    full = [t for t in res.table if t["full"]]
    assert sorted(t["steps"] for t in res.table) == [10] * 5 + [30] * 2 + [90] * 2
    assert res.spent["sfo_eq"] == pytest.approx(res.spent["full_grid_sfo_eq"] * 290 / 810)
    # who continued: the best 4 of 9 at step 10 (a run of every point to step 10 ranks them),
    # then the best 2 of those 4 at step 30
    short = tune(p, "n2sba", grid, steps=10, seeds=[0, 1], n_evals=1, **FIXED)
    assert {t["label"] for t in short.table[:4]} == \
        {t["label"] for t in res.table if t["steps"] >= 30}
    at30 = sorted((t for t in res.table if t["steps"] >= 30), key=lambda t: np.median(
        [r["grad_norm"] for r in res.rows if r["label"] == t["label"] and r["step"] == 30]))
    assert {t["label"] for t in at30[:2]} == {t["label"] for t in full}
    for t in full:
        alone = htbo.run(p, n2sba(**t["params"]), steps=90, seeds=[0, 1], n_evals=3)
        np.testing.assert_allclose(t["finals"], alone.final(), rtol=1e-5, atol=1e-6)
        got = sorted((r["seed"], r["step"], r["grad_norm"]) for r in res.rows
                     if r["label"] == t["label"])
        ref = sorted((r["seed"], r["step"], r["grad_norm"]) for r in alone.rows)
        np.testing.assert_allclose(np.array(got), np.array(ref), rtol=1e-5, atol=1e-6)
    # a grid of one point has nothing to halve: a note, and one full run
    one = tune(p, "n2sba", {"eta": [0.1]}, steps=90, seeds=[0, 1], n_evals=3, halving=True,
               eval_seeds=0)
    assert one.table[0]["full"] and any("nothing to halve" in n for n in one.notes)


def test_a_race_charges_hvps_in_sfo_equivalents_and_ranks_by_them():
    """N²SBA (first-order) against SOBA (HVPs): one HVP costs one SFO by default, every point
    spends the same SFO-equivalents, rows count SFO and HVP apart, and the ranking and the
    winner follow the selection medians."""
    p = _small()
    budget = 6000
    res = tune(p, ["n2sba", "soba"], {"n2sba": {"eta": [0.1, 0.3]}, "soba": {"eta": [0.01, 0.03]}},
               budget=budget, seeds=2, n_evals=2, halving=False, extend=False, eval_seeds=0,
               hp={"lam": 10.0, "soba": {"rho": 0.1}})
    assert res.hvp_cost == 1.0 and any("one HVP costs 1 SFO" in n for n in res.notes)
    per_step = {"n2sba": (3 * 5 * 1 + 3 * 8, 0), "soba": (16, 8)}   # N²SBA K=5, B_in=1, B=8
    for t in res.table:
        sfo, hvp = per_step[t["solver"]]
        assert t["steps"] == budget // (sfo + hvp)
        assert (t["sfo"], t["hvp"]) == (t["steps"] * sfo, t["steps"] * hvp)
        assert budget - (sfo + hvp) < t["sfo_eq"] <= budget
    for r in res.rows:
        sfo, hvp = per_step[r["solver"]]
        assert (r["sfo"], r["hvp"]) == (r["step"] * sfo, r["step"] * hvp)
    assert res.solvers["soba"]["best"]["hparams"]["rho"] == 0.1
    assert "lam" not in res.solvers["soba"]["best"]["hparams"]        # lam: n2sba's only
    meds = [t["median"] for t in res.table]
    assert meds == sorted(meds)
    assert res.winner == res.table[0]["solver"] and res.best is res.table[0]
    # HVPs free: SOBA takes more steps for the same SFO budget
    free = tune(p, ["n2sba", "soba"], {"n2sba": {"eta": [0.1]}, "soba": {"eta": [0.01]}},
                budget=budget, seeds=2, n_evals=2, hvp_cost=0, eval_seeds=0, extend=False,
                hp={"soba": {"rho": 0.1}})
    assert free.solvers["soba"]["steps"] == budget // 16 and free.hvp_cost == 0.0


def test_fresh_seed_figures_come_from_seeds_disjoint_from_the_selection():
    p = _small()
    res = tune(p, "n2sba", {"eta": [0.1, 0.3]}, steps=60, seeds=[0, 1, 2], n_evals=2,
               extend=False)
    assert res.eval_seeds == [3, 4, 5]
    s = res.solvers["n2sba"]
    assert {r["seed"] for r in s["fresh_rows"]} == {3, 4, 5}
    assert {r["phase"] for r in s["fresh_rows"]} == {"eval"}
    assert {r["seed"] for r in res.rows} == {0, 1, 2}
    alone = htbo.run(p, n2sba(**s["best"]["params"]), steps=60, seeds=[3, 4, 5], n_evals=2)
    np.testing.assert_allclose(s["fresh"]["finals"], alone.final(), rtol=1e-5, atol=1e-6)
    assert s["fresh"]["seeds"] == [3, 4, 5]
    np.testing.assert_allclose(jax.tree_util.tree_leaves(s["fresh_run"]["states"])[0],
                               jax.tree_util.tree_leaves(alone.states)[0], rtol=1e-5)
    with pytest.raises(ValueError, match=r"disjoint from the selection seeds; both have \[2\]"):
        tune(p, "n2sba", {"eta": [0.1]}, steps=5, seeds=[0, 1, 2], eval_seeds=[2, 7])


def test_tune_works_for_minimax_and_decentralized_solvers():
    mm = with_noise(minimax_quadratic(dim_x=4, dim_y=4), "stable:1.5")
    res = tune(mm, n2sgda, {"eta": [0.01, 0.05]}, steps=50, seeds=2, n_evals=2, **FIXED)
    assert all(np.isfinite(t["median"]) for t in res.table)
    from htbo.decentralized import decentralized_quadratic, make_dec_solver, parse_network
    from htbo.decentralized.simulate import network_setup
    W = parse_network("ring:4")
    dp = with_noise(decentralized_quadratic(m=4), "gauss")
    _, kw = network_setup(dp, make_dec_solver("dnsvrb"), W)
    res = tune(dp, lambda **hp: network_setup(dp, make_dec_solver("dnsvrb", **hp), W)[0],
               {"eta_x": [0.01, 0.03]}, steps=30, seeds=2, n_evals=2, run_kwargs=kw, **FIXED)
    assert res.groups == 1
    assert {"consensus", "comm_rounds", "bytes_sent"} <= set(res.rows[-1])
    # decentralized solvers by name on a network: lifted, budgets per agent
    race = tune(dp, ["dnsvrb"], {"dnsvrb": {"eta_x": [0.01, 0.03]}}, network="ring:4",
                budget=180, seeds=2, n_evals=2, extend=False, eval_seeds=1)
    s = race.solvers["dnsvrb"]
    assert s["sfo_per_step"] == 6 and s["best"]["sfo"] == 180   # STORM: 2 × 3B, B = 1
    assert {"comm_rounds", "bytes_sent", "consensus"} <= set(s["fresh_rows"][-1])
    with pytest.raises(ValueError, match="unknown decentralized solver 'n2sba'"):
        tune(dp, ["n2sba"], network="ring:4", steps=5)


def test_budget_is_equal_for_every_point_and_hvps_can_be_charged():
    p = _small()
    res = tune(p, "soba", {"batch": [4, 8]}, budget=2000, seeds=1, n_evals=1, **FIXED)
    assert res.groups == 2 and res.hvp_cost == 0.0  # batch size is structure; one solver
    for t in res.table:
        assert 2000 - 2 * t["params"]["batch"] < t["sfo"] <= 2000
    charged = tune(p, "soba", {"batch": [4]}, budget=2000, seeds=1, n_evals=1, hvp_cost=1.0,
                   **FIXED)
    assert charged.table[0]["sfo"] + charged.table[0]["hvp"] <= 2000
    with pytest.raises(ValueError, match="less than one step"):
        tune(p, "n2sba", {"eta": [0.1]}, budget=10, seeds=1)


def test_default_grids_centre_on_the_problems_recommendations():
    from htbo.problems import quadratic_data
    from htbo.solvers import make_solver
    q = quadratic_data(n_inner=40, n_outer=40, dim_x=3, dim_y=4)
    g = default_grid(make_solver("f2ba", problem=q), 1000, "f2ba")
    assert g["lam"] == [3.33, 10.0, 30.0]           # the problem's λ = 10 in the middle
    etas = [e for e in g["eta"] if isinstance(e, float)]
    assert etas == [0.000333, 0.001, 0.003]         # its η = 1e-3 in the middle
    assert inverse_sqrt(0.001, 100.0) in g["eta"] and len(g["eta"]) == 6
    g = default_grid(make_solver("nsgda-m"), 1000, "nsgda-m")
    assert g["momentum"] == [0.7, 0.9, 0.967]       # below the bound 1: 1 − 0.1·{3, 1, 1/3}
    assert default_grid(make_solver("clipped-soba"), 50, "clipped-soba")["clip"] == \
        [0.333, 1.0, 3.0]


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
        tune(p, "n2sba", {"eta": [0.1]}, steps=5, metric="nosuch", **FIXED)
    with pytest.raises(ValueError, match=r"grids names \['f2ba'\] but the race is"):
        tune(p, ["n2sba", "soba"], {"f2ba": {"eta": [0.1]}}, steps=5)


@pytest.mark.parametrize("name, args, solver", [("quadratic", {}, "n2sba"),
                                                ("quadratic-data", dict(n_inner=256,
                                                                        n_outer=256), "soba")])
def test_the_memory_bound_that_skips_xlas_analysis_is_above_xlas_figure(name, args, solver):
    """The search skips compiling a chunk for XLA's memory analysis when its bound fits an
    eighth of the limit: that bound must lie above what XLA reports for the same chunk."""
    import jax.numpy as jnp

    from htbo.driver import programs
    from htbo.search.engine import _upper_bound
    from htbo.solvers import make_solver
    p = htbo.make_problem(name, **args)
    s = make_solver(solver, problem=p)
    init_b, chunk, _ = programs(*s.program()[:2])
    size = 32
    hp_b = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(jnp.asarray(a), (size,
                                                                           *jnp.shape(a))),
                                  s.hp)
    keys = jax.random.split(jax.random.key(0), size)
    st = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                jax.eval_shape(init_b, p, p.x0, p.y0, keys, hp_b))
    mem = chunk.lower(p, st, keys, np.int32(1)).compile().memory_analysis()
    need = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    assert _upper_bound(p, s, st, size) >= 2 * need
