"""htbo.diagnostics: tail-index estimators on known laws (scipy / NumPy draws, independent of
htbo's samplers), Lanczos conditioning against known spectra and dense eigvalsh, diagnose
end to end (CLI, deterministic problems, bad input) and the theory presets' orders.

Tolerances come from the measured bias table in docs/diagnostics.md
(benchmarks/tail_estimators.py: 50 sets of 10⁴ draws per law).
"""
import argparse
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from htbo.diagnostics import (block_sum_alpha, block_sum_estimate, diagnose, hill_alpha,
                              hill_estimate, lanczos_extremes, lower_conditioning, sample_noise, survival,
                              symmetrize)
from htbo.diagnostics.cli import configure
from htbo.diagnostics.diagnosis import _tail_report
from htbo.problems import l2reg, minimax_quadratic, quadratic, quadratic_data, with_noise
from htbo.solvers import make_solver
from htbo.solvers.theory import n2sba_theory, n2sgda_theory

N = 10_000


def stable(alpha, n=N, seed=0, size=None):
    return stats.levy_stable.rvs(alpha, 0.0, size=size or n, random_state=np.random.default_rng(seed))


# -- estimators on known laws ------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.2, 1.5, 1.8])
def test_block_sum_recovers_the_stable_index(alpha):
    e = block_sum_estimate(stable(alpha, seed=int(10 * alpha)), n_boot=100)
    assert abs(e.value - alpha) <= 0.15, e          # measured: bias ≤ 0.01, sd ≈ 0.05
    assert e.lo <= alpha <= e.hi, e
    assert e.details["K1"] == N // 32 and e.details["K2"] == 32


def test_block_sum_on_gaussian_and_student_t_as_measured():
    rng = np.random.default_rng(1)
    g = block_sum_estimate(rng.standard_normal(N), n_boot=100)
    assert abs(g.value - 2.0) <= 0.12 and g.hi >= 2.0, g      # measured 2.01 ± 0.04
    # finite variance, but sums of t(3) reach the Gaussian limit slowly: measured 1.79 ± 0.03
    t3 = block_sum_alpha(rng.standard_t(3.0, N), rng=rng)
    assert 1.65 <= t3 <= 1.9, t3
    # t(1.5) is only in the stable(1.5) domain of attraction: measured 1.36 ± 0.04
    t15 = block_sum_alpha(rng.standard_t(1.5, N), rng=rng)
    assert 1.22 <= t15 <= 1.5, t15


def test_block_sum_pools_coordinates_of_any_scale():
    x = stable(1.4, size=(4000, 8), seed=2) * np.logspace(-3, 3, 8)
    assert abs(block_sum_alpha(x) - 1.4) <= 0.05
    # one coordinate alone is noisier than the pool
    assert abs(block_sum_alpha(x[:, 0]) - 1.4) <= 0.2


def test_positive_samples_need_random_signs():
    """Block sums of positive samples with a mean grow like K1: α̂ → 1 whatever the tail;
    random signs restore a symmetric law with the same tail (for d = 1 the law of X)."""
    z = np.abs(stable(1.5, seed=3))
    assert block_sum_alpha(z) < 1.1
    assert abs(block_sum_alpha(symmetrize(z, np.random.default_rng(0))) - 1.5) <= 0.15


def test_hill_on_exact_power_laws_and_light_tails():
    n = 20_000
    z = stats.pareto.rvs(1.5, size=n, random_state=np.random.default_rng(4))
    e = hill_estimate(z, n_boot=100)
    k = e.details["k"]
    assert k == math.ceil(math.sqrt(n))
    assert abs(e.value - 1.5) <= 3 * 1.5 / math.sqrt(k) and e.lo <= 1.5 <= e.hi, e
    t3 = hill_estimate(np.abs(np.random.default_rng(5).standard_t(3.0, N)), n_boot=50)
    assert 2.2 <= t3.value <= 3.8 and t3.lo > 2.0, t3    # measured 2.89 ± 0.28
    g = hill_estimate(np.abs(np.random.default_rng(6).standard_normal(N)), n_boot=50)
    assert g.value > 5.0, g                               # no power tail: Hill runs off


def test_estimators_reject_bad_samples():
    with pytest.raises(ValueError, match="nonzero"):
        block_sum_alpha(np.r_[np.ones(100), 0.0])
    with pytest.raises(ValueError, match="NaN"):
        block_sum_alpha(np.r_[np.ones(100), np.nan])
    with pytest.raises(ValueError, match="k < n"):
        hill_alpha(np.ones(10), k=10)


def test_survival_and_its_fitted_tail():
    z = stats.pareto.rvs(2.0, size=5000, random_state=np.random.default_rng(7))
    s = survival(z, alpha=2.0, k=70)
    assert np.all(np.diff(s["u"]) <= 0) and np.all(np.diff(s["s"]) >= 0)
    assert s["s"][0] == pytest.approx(1 / 5000)
    zs = np.sort(z)[::-1]
    assert s["fit_u"][0] == pytest.approx(zs[70]) and s["fit_s"][0] == pytest.approx(70 / 5000)


# -- conditioning ------------------------------------------------------------------------------
def test_lanczos_on_a_known_spectrum():
    rng = np.random.default_rng(8)
    q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    ev = np.linspace(0.5, 40.0, 300)
    H = (q * ev) @ q.T
    r = lanczos_extremes(lambda v: H @ v, 300, iters=80)
    assert r["iters"] == 80
    assert abs(r["lo"] - 0.5) <= max(r["residual_lo"], 1e-9) + 1e-9
    assert abs(r["lo"] / 0.5 - 1) < 0.01 and abs(r["hi"] / 40 - 1) < 1e-4
    assert 0.5 <= r["lo"] and r["hi"] <= 40.0 + 1e-9       # Ritz values lie inside


def test_kappa_of_quadratic_and_l2reg():
    p = quadratic(dim_x=4, dim_y=12, kappa=20.0)
    c = lower_conditioning(p, p.x0, p.y0)
    assert abs(c.kappa / 20 - 1) < 1e-3 and abs(c.mu - 1) < 1e-3    # A's spectrum is [1, κ]
    p = l2reg()  # breast_cancer, y = {"w": (30,), "b": ()}: a dict pytree
    x = np.asarray(p.x0) + 0.3 * np.sin(np.arange(p.x0.size))
    y = {"w": 0.1 * np.ones(30, np.float32), "b": np.float32(0.2)}
    # dense reference in float64 NumPy: logistic loss + ½Σ exp(x_j) w_j² + ½ε b²
    a = np.asarray(p.data_g["a"], np.float64)
    z = a @ y["w"] + y["b"]
    s = 1 / (1 + np.exp(-z))
    s = s * (1 - s) / len(z)
    A1 = np.c_[a, np.ones(len(z))]
    H = (A1.T * s) @ A1 + np.diag(np.r_[np.exp(x), p.info["bias_reg"]])
    ev = np.linalg.eigvalsh(H)
    c = lower_conditioning(p, jnp.asarray(x, jnp.float32), jax.tree_util.tree_map(jnp.asarray, y))
    assert c.dim == 31
    assert abs(c.kappa / (ev[-1] / ev[0]) - 1) < 0.01 and abs(c.L / ev[-1] - 1) < 1e-3


def test_minimax_conditioning_is_that_of_minus_f():
    p = minimax_quadratic(dim_x=3, dim_y=6, kappa=10.0)
    c = lower_conditioning(p, p.x0, p.y0)
    assert c.L == pytest.approx(10.0, rel=1e-4) and c.mu == pytest.approx(1.0, rel=1e-4)


# -- diagnose ----------------------------------------------------------------------------------
def run_cli(argv):
    ap = argparse.ArgumentParser()
    configure(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["diagnose", *argv])
    return args.func(args)


def test_diagnose_cli_recovers_the_injected_alpha(tmp_path, capsys):
    out = tmp_path / "diag"
    rc = run_cli(["--problem", "quadratic", "--problem-arg", "dim_x=4", "--problem-arg",
                  "dim_y=8", "--problem-arg", "kappa=6", "--noise", "stable:1.5",
                  "--n-samples", "2000", "--no-progress", "--out", str(out)])
    assert rc == 0
    d = json.loads((out / "diagnosis.json").read_text())
    for which in ("f", "g"):  # a problem without data: pure injected noise
        t = d["tails"][which]
        assert t["status"] == "ok" and t["coordinates_used"] == 12
        assert abs(t["alpha"] - 1.5) <= 0.1, t["block_sum"]
        assert t["block_sum"]["lo"] <= 1.5 <= t["block_sum"]["hi"]
    assert abs(d["kappa"] / 6 - 1) < 1e-3
    rec = d["recommendation"]
    # heavy noise on a bilevel problem: a race of N²SBA, clipped SOBA and SOBA (at least)
    assert rec["noise_class"] == "heavy" and {"n2sba", "clipped-soba", "soba"} <= set(
        rec["solvers"])
    tune = rec["tune"]
    assert tune["solvers"] == rec["solvers"] and tune["hvp_cost"] == 1.0
    # inner steps 1/L̂_B: no data, so the minibatch Hessian is the full one, L̂ = κ = 6
    assert tune["hp"]["n2sba"]["alpha"] == tune["hp"]["soba"]["rho"] == pytest.approx(1 / 6,
                                                                                    rel=0.05)
    # λ: the smallest candidate whose measured bias is at most half the target accuracy
    limit = 0.5 * 0.25 * d["grad_phi_norm"]
    ok = [b["lam"] for b in d["penalty_bias"] if b["bias"] <= limit]
    assert tune["hp"]["n2sba"]["lam"] == ok[0]
    biases = [b["bias"] for b in d["penalty_bias"]]
    assert all(b2 < b1 for b1, b2 in zip(biases, biases[1:]))           # ~ 1/λ
    cmd = rec["commands"][0]
    assert cmd.startswith("htbo tune --problem quadratic --problem-arg dim_x=4")
    assert "--noise stable:1.5" in cmd and f"--solvers {','.join(rec['solvers'])}" in cmd
    assert f"--hp n2sba.lam={ok[0]:g}" in cmd and "--hvp-cost 1 --budget 200000 --seeds 8" \
        in cmd
    assert d["theory"]["solver"] == "n2sba" and d["theory"]["lam"] > ok[0]
    md = (out / "diagnosis.md").read_text()
    assert "Recommendation" in md and cmd in md
    assert (out / "survival.png").stat().st_size > 10_000
    assert "recommendation (heavy noise): a race of" in capsys.readouterr().out


def test_deterministic_gradients_are_reported_as_such(tmp_path):
    p = quadratic(dim_x=3, dim_y=5, kappa=4.0)  # no data, no noise
    d = diagnose(p, n_samples=1000, n_boot=20)
    assert all(t.status == "deterministic" and t.alpha == "deterministic"
               for t in d.tails.values())
    assert d.deterministic and d.recommendation["noise_class"] == "deterministic"
    js = json.dumps(d.to_dict())
    assert '"alpha": "deterministic"' in js


def test_diagnose_rejects_bad_input():
    p = with_noise(quadratic(dim_x=3, dim_y=5), "gauss")
    with pytest.raises(ValueError, match="x.*non-finite"):
        diagnose(p, x=jnp.array([0.0, jnp.nan, 0.0]))
    with pytest.raises(ValueError, match=">= 1000"):
        diagnose(p, n_samples=999)
    with pytest.raises(ValueError, match="batch"):
        diagnose(p, batch=0)
    with pytest.raises(ValueError, match="shaped like"):
        diagnose(p, y=jnp.zeros(4))


def test_data_noise_is_centered_on_the_full_gradient():
    """Data noise plus (small) injected noise: the reference is the clean full gradient."""
    p = with_noise(quadratic_data(n_inner=64, n_outer=64, dim_x=3, dim_y=4), "gauss@0.05")
    x = p.x0 + 0.5
    for which, (noise, full) in sample_noise(p, x, p.y0, 4000, 1, jax.random.key(0)).items():
        fn, data = (p.f, p.data_f) if which == "f" else (p.g, p.data_g)
        ref = np.concatenate([np.ravel(v) for v in jax.grad(fn, (0, 1))(x, p.y0, data)])
        np.testing.assert_allclose(full, ref, rtol=1e-5, atol=1e-5)
        assert noise.shape == (4000, 7)
        se = noise.std(0) / math.sqrt(len(noise))
        assert np.all(np.abs(noise.mean(0)) <= 5 * se), which


def test_rounding_level_noise_counts_as_deterministic():
    rng = np.random.default_rng(0)
    full = rng.standard_normal(6) * 100
    tiny = full * rng.standard_normal((1000, 6)) * 1e-7   # float32 rounding of ‖full‖ ≈ 100
    rep = _tail_report("g", tiny, full, rng, 10, 0.95, 128)
    assert rep.status == "deterministic" and rep.alpha == "deterministic"
    noise = tiny.copy()
    noise[:, 2] = stable(1.5, n=1000)                      # one truly noisy coordinate
    rep = _tail_report("g", noise, full, rng, 10, 0.95, 128)
    assert rep.status == "ok" and rep.coordinates_used == 1 == rep.coordinates_noisy


# -- theory presets ----------------------------------------------------------------------------
def _slope(fn, arg, a, b, **kw):
    return math.log(fn(**{arg: b}, **kw).sfo_total / fn(**{arg: a}, **kw).sfo_total) / \
        math.log(b / a)


@pytest.mark.parametrize("p", [1.5, 2.0])
def test_theory_presets_have_the_stated_orders(p):
    common = dict(ell=1.0, sigma=1.0, p=p)
    # N²SBA: κ^{(7p−3)/(p−1)} ε^{−(4p−2)/(p−1)}; N²SGDA: κ^{(2p−1)/(p−1)} ε^{−(3p−2)/(p−1)}
    # (K = ⌈κ log(1/δ)⌉ rounds, so the κ slopes are measured over a wide range)
    assert _slope(n2sba_theory, "kappa", 1e2, 1e4, eps=0.1, **common) == pytest.approx(
        (7 * p - 3) / (p - 1), rel=0.01)
    assert _slope(n2sba_theory, "eps", 1e-3, 1e-2, kappa=10.0, **common) == pytest.approx(
        -(4 * p - 2) / (p - 1), rel=0.01)
    assert _slope(n2sgda_theory, "kappa", 1e2, 1e4, eps=0.1, **common) == pytest.approx(
        (2 * p - 1) / (p - 1), rel=0.01)
    assert _slope(n2sgda_theory, "eps", 1e-3, 1e-2, kappa=10.0, **common) == pytest.approx(
        -(3 * p - 2) / (p - 1), rel=0.01)
    pre = n2sba_theory(ell=2.0, kappa=10.0, sigma=1.0, p=p, eps=0.5)
    assert pre.lam == pytest.approx(2.0 * 1000 / 0.5) and pre.eta == pytest.approx(0.5 / 2000)
    assert pre.inner_steps == math.ceil(10 * math.log(100))
    assert pre.sfo_per_step == 3 * pre.inner_steps * pre.batch_in + 3 * pre.batch_out


def test_theory_preset_builds_solvers_and_rejects_bad_input():
    pre = n2sba_theory(ell=1.0, kappa=2.0, sigma=0.1, p=2.0, eps=1.0)
    make_solver("n2sba", **pre.hparams())
    pre = n2sgda_theory(ell=1.0, kappa=2.0, sigma=0.1, p=2.0, eps=1.0)
    make_solver("n2sgda", **pre.hparams())
    assert pre.sfo_per_step == pre.inner_steps * pre.batch_in + pre.batch_out
    for bad in (dict(p=1.0), dict(kappa=0.5), dict(eps=0.0), dict(delta=1.0)):
        kw = dict(dict(ell=1.0, kappa=2.0, sigma=0.1, p=2.0, eps=1.0), **bad)
        with pytest.raises(ValueError, match="theory preset"):
            n2sba_theory(**kw)


def test_diagnose_at_a_run_uses_its_last_iterate_problem_and_noise(tmp_path, capsys):
    from htbo.cli import main
    from htbo.jobs import final_iterate
    run = tmp_path / "run"
    assert main(["run", "--problem", "quadratic", "--problem-arg", "dim_x=4", "--problem-arg",
                 "dim_y=8", "--noise", "t:1.5", "--steps", "30", "--seeds", "2", "--n-evals",
                 "1", "--no-progress", "--out", str(run)]) == 0
    problem, x, y, where = final_iterate(str(run))
    assert where == dict(label="n2sba", seed=0, step=30) and str(problem.noise) == "t:1.5"
    assert np.linalg.norm(np.asarray(x)) > 0            # moved from x0 = 0
    out = tmp_path / "diag"
    assert run_cli(["--at", str(run), "--n-samples", "1000", "--no-progress",
                    "--out", str(out)]) == 0
    d = json.loads((out / "diagnosis.json").read_text())
    assert d["point"] == "given" and d["noise"] == "t:1.5"
    assert abs(d["tails"]["g"]["alpha"] - 1.5) < 0.3     # t(1.5): see the bias table
    with pytest.raises(ValueError, match="not a run directory|no such file"):
        run_cli(["--at", str(tmp_path / "nothing"), "--out", str(out)])


def test_minibatch_curvature_is_the_sharpest_sampled_hessian():
    """quadratic-data at batch 1: a sample's lower Hessian is u_i u_iᵀ + μI, whose top
    eigenvalue ‖u_i‖² + μ is far above the mean curvature; the estimate must be one of these
    exact values (the largest of the sampled ones) — and at the full batch it falls back to
    the scale of the mean Hessian's."""
    from htbo.diagnostics.conditioning import lower_conditioning, minibatch_curvature
    from htbo.problems import quadratic_data
    p = quadratic_data(n_inner=64, n_outer=64, dim_x=4, dim_y=6)
    u = np.asarray(p.data_g["u"], np.float64)
    exact = np.sum(u**2, axis=1) + p.info["mu"]
    one = minibatch_curvature(p, p.x0, p.y0, batch=1, draws=200)
    assert np.min(np.abs(exact - one["L_batch"]) / exact) < 1e-4, (one, exact.max())
    assert one["L_batch"] >= np.quantile(exact, 0.9)
    full = lower_conditioning(p, p.x0, p.y0).L
    assert one["L_batch"] > 3 * full
    big = minibatch_curvature(p, p.x0, p.y0, batch=256, draws=50)["L_batch"]
    assert full * 0.8 < big < 2 * full


def test_candidates_and_quotes_come_from_the_evidence_rows():
    """The race's candidates: the class's base set plus every method that won or tied the
    winner in matching measured settings; the advice quotes those rows, and says when none
    matches. No number in the library: the rows are data."""
    from htbo.diagnostics import evidence
    from htbo.diagnostics.recommend import _quote, candidates
    row = dict(experiment="E9", setting="quadratic, noise stable:1.5", kind="bilevel",
               noise_class="heavy", metric="grad_norm", verdict="tie", date="2026-12-07",
               ranking=[dict(method="nSOBA", solver="nsoba", median=0.4, q20=0.3, q80=0.5),
                        dict(method="clipped SOBA", solver="clipped-soba", median=0.45,
                             q20=0.35, q80=0.6)],
               tied=[dict(method="clipped SOBA", solver="clipped-soba")])
    names, match = candidates("bilevel", "heavy", rows=[row])
    assert match == [row] and names[:3] == ["n2sba", "clipped-soba", "soba"]
    assert "nsoba" in names  # the evidence's winner joins the race
    assert candidates("bilevel", "light", rows=[row])[1] == []
    fo, _ = candidates("bilevel", "heavy", first_order=True, rows=[row])
    assert fo and all(n in ("n2sba", "f2ba", "clipped-f2sa") for n in fo)
    (q,) = _quote([row])
    assert "nSOBA 0.4 [0.3, 0.5]" in q and "clipped SOBA" in q and "tie" in q
    assert evidence.contenders([row]) == ["clipped-soba", "nsoba"] or \
        set(evidence.contenders([row])) == {"nsoba", "clipped-soba"}
    assert evidence.noise_class_of(1.5) == "heavy" and evidence.noise_class_of(2.5) == \
        "light" and evidence.noise_class_of(1.8) == "moderate"


def test_diagnose_race_runs_the_same_in_python_and_from_its_command_line(tmp_path, capsys):
    """Following ``htbo diagnose`` on ``quadratic-data`` (minibatch curvature far above the
    full-data one): the recommended race, run from Python with
    ``htbo.tune(problem, **rec["tune"], ...)`` and from the printed command line, gives the
    same best point and the same fresh-seed medians; no candidate's best point diverges and
    each ends below the starting ‖∇φ‖ (the inner steps are stable at the command's batch)."""
    import shlex

    import htbo
    from htbo.cli import main
    args = dict(n_inner=128, n_outer=128, dim_x=8, dim_y=8)
    p = htbo.make_problem("quadratic-data", **args)
    d = diagnose(p, n_samples=1000, n_boot=20, problem_args=args, budget=3000, seeds=2)
    rec = d.recommendation
    assert {"n2sba", "clipped-soba", "soba"} <= set(rec["solvers"])
    small = dict(budget=3000, seeds=2, eval_seeds=2, extend=False, n_evals=2)
    res = htbo.tune(p, **rec["tune"], **small)
    from htbo.metrics import evaluate
    start = float(evaluate(p, p.x0, p.y0)["grad_norm"])
    for name, s in res.solvers.items():
        fresh = np.asarray(s["fresh"]["finals"], float)
        assert np.all(np.isfinite(fresh)), (name, fresh)
        assert np.median(fresh) < start, (name, fresh, start)
    cmd = shlex.split(rec["commands"][0])
    assert cmd[:2] == ["htbo", "tune"] and "--budget" in cmd
    cmd[cmd.index("--budget") + 1] = "3000"
    cmd[cmd.index("--seeds") + 1] = "2"
    cmd[cmd.index("--out") + 1] = str(tmp_path / "race")
    assert main([*cmd[1:], "--eval-seeds", "2", "--no-extend", "--n-evals", "2",
                 "--no-progress"]) == 0
    capsys.readouterr()
    best = json.loads((tmp_path / "race" / "best.json").read_text())
    assert best["label"] == f"{res.winner} (tuned)"
    for lab, r in best["race"].items():
        assert r["best"] == res.solvers[lab]["best"]["label"]
        assert r["fresh"]["median"] == pytest.approx(res.solvers[lab]["fresh"]["median"],
                                                     rel=1e-6)
