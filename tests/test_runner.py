"""Runner: reproducibility, seeds, timing fields, bad input, non-finite detection."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.problems import BilevelProblem, quadratic, quadratic_data, with_noise
from htbo.solvers import f2ba, n2sba, soba


def _hist(res, key="grad_norm"):
    return [(r["seed"], r["step"], r[key]) for r in res.rows]


def test_same_call_is_bitwise_reproducible_and_a_seed_does_not_depend_on_its_batch():
    p = with_noise(quadratic(dim_x=3, dim_y=4), "stable:1.5")
    s = n2sba(eta=0.05, lam=10.0)
    a = htbo.run(p, s, steps=60, seeds=[0, 1, 2], n_evals=3)
    # guaranteed: the same call with the same seeds gives the identical history
    b = htbo.run(p, s, steps=60, seeds=[0, 1, 2], n_evals=3)
    assert _hist(a) == _hist(b) and _hist(a, "phi") == _hist(b, "phi")
    # a seed alone draws the same noise as inside a vmapped batch of seeds; XLA may reduce in
    # another order for another batch size, so compare up to float32 rounding
    c = htbo.run(p, s, steps=60, seeds=[1], n_evals=3)
    for key in ("grad_norm", "phi"):
        got = np.array([h[2] for h in _hist(c, key)])
        want = np.array([h[2] for h in _hist(a, key) if h[0] == 1])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # different seeds draw different noise
    finals = a.final()
    assert len(set(finals.round(7))) == 3


def test_rows_count_oracles_and_time_and_start_at_step_zero():
    p = with_noise(quadratic_data(n_inner=64, n_outer=64, dim_x=4, dim_y=4), "gauss")
    s = soba(eta=0.01, batch=4)
    res = htbo.run(p, s, steps=100, seeds=[0, 1], n_evals=4)
    steps = sorted({r["step"] for r in res.rows})
    assert steps == [0, 25, 50, 75, 100]
    for r in res.rows:
        assert r["sfo"] == 8 * r["step"] and r["hvp"] == 4 * r["step"]
    times = [r["time_s"] for r in res.rows if r["seed"] == 0]
    assert times[0] == 0 and all(t2 > t1 for t1, t2 in zip(times, times[1:]))
    assert res.compile_s > 0 and np.isclose(times[-1], res.run_s)


def _tiny(**kw):
    data = {"a": jnp.ones((10, 3)), "b": jnp.zeros(10)}
    base = dict(f=lambda x, y, b: jnp.mean((b["a"] @ y - b["b"]) ** 2) + x @ x,
                g=lambda x, y, b: jnp.mean((b["a"] @ y - b["b"]) ** 2) + jnp.sum((y - x) ** 2),
                x0=jnp.zeros(3), y0=jnp.zeros(3), data_f=data, data_g=data, name="tiny")
    base.update(kw)
    return BilevelProblem(**base)


@pytest.mark.parametrize("changes, msg", [
    (dict(x0=jnp.array([0.0, jnp.nan, 0.0])), "problem 'tiny': x0.* non-finite"),
    (dict(y0=jnp.array([0.0, jnp.inf, 0.0])), "problem 'tiny': y0.* non-finite"),
    (dict(data_g={"a": jnp.ones((10, 3)).at[3, 1].set(jnp.nan), "b": jnp.zeros(10)}),
     r"problem 'tiny': data_g\['a'\] contains 1 non-finite"),
    (dict(data_f={"a": jnp.ones((10, 3)), "b": jnp.zeros(9)}), "disagree on the number"),
    (dict(y0=jnp.zeros(4)), r"problem 'tiny': [fg]\(x0, y0, batch\) failed"),
    (dict(f=lambda x, y, b: b["a"] @ y), "must return a scalar"),
    (dict(sampling="epochs"), "sampling must be one of"),
])
def test_bad_problem_input_is_rejected_with_the_problem_named(changes, msg):
    with pytest.raises(ValueError, match=msg):
        htbo.run(_tiny(**changes), f2ba(), steps=2)


def test_noreplace_batch_larger_than_data_is_rejected():
    with pytest.raises(ValueError, match="exceeds the 10 samples"):
        htbo.run(_tiny(sampling="noreplace"), f2ba(batch_out=16), steps=2)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_step_counts(bad):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        htbo.run(_tiny(), f2ba(), steps=bad)


def test_nonfinite_iterates_stop_the_run_at_the_first_bad_step():
    """F2BA with a far-too-large step on a quadratic diverges geometrically; the reported step
    must be the first step whose state is non-finite in a plain step-by-step loop."""
    p = quadratic(dim_x=3, dim_y=4)
    s = f2ba(eta=30.0, lam=10.0)
    with pytest.raises(htbo.NonFiniteError) as e:
        htbo.run(p, s, steps=2000, seeds=[0, 5], n_evals=10)
    # reference: the same keys as the runner (seed -> split -> per-step split), no vmap
    seed = e.value.seed
    k_init, k = jax.random.split(jax.random.key(seed))
    st = s.start(p, k_init)
    step = jax.jit(s.step)
    first = None
    for t in range(1, 2001):
        k, sub = jax.random.split(k)
        st = step(p, st, sub)
        if not all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(st)):
            first = t
            break
    assert first is not None and e.value.step == first
    assert f"at step {first}" in str(e.value)


def test_on_nonfinite_stop_keeps_rows_and_reports():
    p = quadratic(dim_x=3, dim_y=4)
    res = htbo.run(p, f2ba(eta=30.0, lam=10.0), steps=2000, seeds=[0], n_evals=10,
                   on_nonfinite="stop")
    assert res.nonfinite is not None and res.nonfinite["step"] <= 2000
    assert res.rows and max(r["step"] for r in res.rows) < res.nonfinite["step"]
    assert np.isinf(res.final()[0])


def test_writer_receives_rows_as_they_are_produced():
    seen = []
    p = quadratic(dim_x=3, dim_y=4)
    htbo.run(p, soba(), steps=30, seeds=[0, 1], n_evals=3, writer=lambda rows: seen.append(
        [r["step"] for r in rows]))
    assert seen == [[0, 0], [10, 10], [20, 20], [30, 30]]


def test_nonfinite_error_carries_the_partial_result():
    p = quadratic(dim_x=3, dim_y=4)
    with pytest.raises(htbo.NonFiniteError) as e:
        htbo.run(p, f2ba(eta=30.0, lam=10.0), steps=400, seeds=[0, 1], n_evals=8)
    res = e.value.result
    assert res is not None and res.rows and res.rows[0]["step"] == 0
    assert max(r["step"] for r in res.rows) < e.value.step
    assert res.nonfinite == dict(seed=e.value.seed, step=e.value.step)


def test_continue_keeps_the_other_members_going():
    """Members with their own step sizes in one batch: the one that diverges stops, the
    others run to the end and equal a run of their own."""
    import jax
    from htbo.runner import cast_hp, execute
    p = quadratic(dim_x=3, dim_y=4)
    etas = [0.01, 30.0, 0.02]
    hps = [cast_hp(f2ba(eta=e, lam=10.0).hp, jnp.float32) for e in etas]
    hp_b = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *hps)
    res = execute(p, f2ba(lam=10.0), hp_b, [0, 0, 0], [dict(member=i) for i in range(3)],
                  steps=400, n_evals=4, on_nonfinite="continue")
    assert [d["member"] for d in res.diverged] == [1]
    for i in (0, 2):
        rows = [r for r in res.rows if r["member"] == i]
        assert max(r["step"] for r in rows) == 400
        alone = htbo.run(p, f2ba(eta=etas[i], lam=10.0), steps=400, seeds=[0], n_evals=4)
        np.testing.assert_allclose([r["phi"] for r in rows], [r["phi"] for r in alone.rows],
                                   rtol=1e-5)
    assert max(r["step"] for r in res.rows if r["member"] == 1) < res.diverged[0]["step"]


@pytest.mark.parametrize("seeds, msg", [([0.5], "non-negative integers"), ([-1], "non-negative"),
                                        ([], "non-empty"), ([1, 1], "distinct")])
def test_bad_seeds_are_rejected(seeds, msg):
    with pytest.raises(ValueError, match=msg):
        htbo.run(_tiny(), f2ba(), steps=2, seeds=seeds)


def test_budget_below_one_step_is_refused_naming_the_minimum():
    s = n2sba()
    with pytest.raises(ValueError, match=f"give at least {s.sfo_per_step}"):
        htbo.steps_for_budget(s, s.sfo_per_step - 1)
    assert htbo.steps_for_budget(s, s.sfo_per_step) == 1


def test_minimax_solver_on_a_bilevel_problem_is_refused():
    from htbo.solvers import sgda
    with pytest.raises(ValueError, match="sgda is a minimax solver"):
        htbo.run(_tiny(), sgda(), steps=2)


def test_integer_starting_points_and_noise_strings_are_accepted():
    data = {"a": jnp.ones((10, 3)), "b": jnp.zeros(10)}
    p = BilevelProblem(f=lambda x, y, b: jnp.mean((b["a"] @ y - b["b"]) ** 2) + x @ x,
                       g=lambda x, y, b: jnp.sum((y - x) ** 2), x0=np.arange(3), y0=np.zeros(3, int),
                       data_f=data, data_g=data, noise="t:2.5")
    assert p.x0.dtype == jnp.float32 and str(p.noise) == "t:2.5"
    res = htbo.run(p, n2sba(eta=0.05), steps=20, seeds=[0])
    assert np.isfinite(res.final()[0])
    with pytest.raises(ValueError, match="unknown noise"):
        BilevelProblem(f=p.f, g=p.g, x0=0.0, y0=0.0, noise="cauchy")


def test_rows_are_written_at_least_every_max_chunk_s():
    """A long stretch between two marks is cut: rows (and checkpoints) come every
    max_chunk_s seconds, and the cut does not change the iterates."""
    p = with_noise(quadratic(dim_x=3, dim_y=4), "gauss")
    s = n2sba(eta=0.05)
    cps = []
    cut = htbo.run(p, s, steps=3000, seeds=[0], n_evals=1, max_chunk_s=1e-3,
                   checkpoint=lambda ck: cps.append(ck["step"]))
    steps = [r["step"] for r in cut.rows]
    assert len(steps) > 3 and steps[-1] == 3000 and steps == sorted(steps)
    assert cps == steps
    whole = htbo.run(p, s, steps=3000, seeds=[0], n_evals=1)
    assert cut.rows[-1]["grad_norm"] == whole.rows[-1]["grad_norm"]


def test_resume_from_a_checkpoint_gives_the_uninterrupted_iterates():
    p = with_noise(quadratic(dim_x=3, dim_y=4), "stable:1.5")
    s = n2sba(eta=0.05)
    cps = []
    full = htbo.run(p, s, steps=90, seeds=[0, 1], n_evals=3, checkpoint=cps.append)
    assert [c["step"] for c in cps] == [0, 30, 60, 90]
    resumed = htbo.run(p, s, steps=90, seeds=[0, 1], n_evals=3, resume=cps[1])
    assert [r["step"] for r in resumed.rows] == [60, 60, 90, 90]
    want = {(r["seed"], r["step"]): r["phi"] for r in full.rows}
    assert all(want[(r["seed"], r["step"])] == r["phi"] for r in resumed.rows)
