"""Oracle accounting and sample sharing, checked by counting what the compiled step does.

* SFO and HVP counts per step are checked *separately* against a run-time count, for every
  bilevel, minimax and decentralized solver (a miscount moved from one column to the other
  fails).
* Shared samples cancel injected noise in λ(∇ₓG(y) − ∇ₓG(z)) exactly; STORM evaluates the
  old and the new point on the same samples; normalization uses the global norm of a pytree.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo.oracles as oracles
from htbo.decentralized import DEC_SOLVERS
from htbo.problems import minimax_problem, quadratic, quadratic_data, with_noise
from htbo.solvers import SOLVERS, make_solver
from htbo.solvers._penalty import penalty_directions
from htbo.tree import normalize as tree_normalize


def _counted(problem, calls):
    """f and g report (batch size) at run time; HVP oracles report through _g_on_batch."""
    def wrap(fn):
        def counted(x, y, batch):
            leaf = jax.tree_util.tree_leaves(batch)[0]
            # a batched argument: under vmap (agents) the callback runs once per agent
            jax.debug.callback(lambda a: calls.append(("eval", a.shape[0])), leaf)
            return fn(x, y, batch)
        return counted
    return problem.replace(f=wrap(problem.f), g=wrap(problem.g))


@pytest.fixture
def hvp_calls(monkeypatch):
    calls = []
    original = oracles._g_on_batch

    def counted(problem, key, batch_size):
        jax.debug.callback(lambda k: calls.append(("hvp", batch_size)),
                           jax.random.key_data(key))
        return original(problem, key, batch_size)
    monkeypatch.setattr(oracles, "_g_on_batch", counted)
    return calls


@pytest.mark.parametrize("name", SOLVERS.names())
def test_sfo_and_hvp_per_step_match_a_run_time_count(name, hvp_calls):
    """Every registered solver, at the small settings it declares (``tests["small"]``)."""
    s = make_solver(name, **SOLVERS.meta(name)["tests"]["small"])
    calls = []
    if s.kind == "minimax":
        data = {"a": jnp.asarray(np.random.default_rng(0).standard_normal((20, 3)))}
        p = _counted(minimax_problem(lambda x, y, b: jnp.mean(b["a"] @ x) * jnp.sum(y)
                                     + x @ y - 0.5 * y @ y, jnp.ones(3), jnp.zeros(3), data,
                                     y_star=lambda x: x), calls)
    else:
        p = _counted(quadratic_data(n_inner=20, n_outer=20, dim_x=3, dim_y=4), calls)
    step = jax.jit(s.program()[1])
    st = s.start(p, jax.random.key(0))
    jax.effects_barrier()
    # the start evaluates nothing, or what the solver declares (nsvrb: STORM's first u)
    hvp, evals = sum(n for _, n in hvp_calls), sum(n for _, n in calls)
    assert hvp == getattr(s, "hvp_at_init", 0), (hvp, getattr(s, "hvp_at_init", 0))
    assert evals - hvp == getattr(s, "sfo_at_init", 0), (evals, hvp)
    calls.clear()
    hvp_calls.clear()
    for i in range(2):
        st = step(p, st, jax.random.key(i))
    jax.effects_barrier()
    hvp = sum(n for _, n in hvp_calls)
    evals = sum(n for _, n in calls)
    # an HVP evaluates g (inside jvp of grad) once per sample: the rest are first-order calls
    assert hvp == 2 * s.hvp_per_step, (hvp, s.hvp_per_step)
    assert evals - hvp == 2 * s.sfo_per_step, (evals, hvp, s.sfo_per_step)


@pytest.mark.parametrize("name, hp", [("dnsvrb", dict()), ("dnsvrb", dict(shared_samples=False)),
                                      ("dnsvrb", dict(beta=1.0)), ("dnsvrb", dict(route="hvp")),
                                      *[(n, {}) for n in DEC_SOLVERS.names() if n != "dnsvrb"]])
def test_decentralized_sfo_and_hvp_per_step_match_a_run_time_count(name, hp, hvp_calls):
    from htbo.decentralized import decentralized_quadratic, make_dec_solver, parse_network
    from htbo.decentralized.simulate import as_network_solver, mixer_for
    m = 3
    calls = []
    p = _counted(decentralized_quadratic(m=m, dim_x=2, dim_y=2), calls)
    dec = make_dec_solver(name, **DEC_SOLVERS.meta(name)["tests"]["small"], **hp)
    s = as_network_solver(dec, mixer_for(parse_network(f"ring:{m}")))
    init, step, _ = s.program()
    st = jax.jit(init)(p, p.x0, p.y0, jax.random.key(0), s.hp)
    jax.effects_barrier()
    calls.clear()
    hvp_calls.clear()
    st = jax.jit(step)(p, st, jax.random.key(1))
    jax.effects_barrier()
    hvp = sum(n for _, n in hvp_calls)
    evals = sum(n for _, n in calls)
    assert hvp == m * dec.hvp_per_step
    assert evals - hvp == m * dec.sfo_per_step


def test_shared_samples_cancel_injected_noise_in_the_penalty_term_exactly():
    """With y = z and shared samples, λ(∇ₓG(y) − ∇ₓG(z)) is exactly zero whatever the
    injected noise, so h is ∇ₓF(x, y; ξ) alone; with independent samples it carries
    λ × (a difference of two noise draws)."""
    p = with_noise(quadratic(dim_x=3, dim_y=4), "stable:1.5")
    x, y = jnp.ones(3), jnp.full(4, 0.5)
    lam = 1e4
    kw = dict(lam=lam, alpha=1e-30, tau=1e-30, inner_steps=1, batch_in=1, batch_out=2,
              inner_normalized=False)
    key = jax.random.key(3)
    h_shared, y1, z1 = penalty_directions(p, x, y, y, key, shared_samples=True, **kw)
    assert jnp.array_equal(y1, z1)                   # the inner steps left y = z
    kf = jax.random.split(key, 5)[2]                 # the key of ∇F in penalty_directions
    fx, _ = oracles.grad_f(p, x, y1, kf, 2)
    assert jnp.array_equal(h_shared, fx)
    h_indep, _, _ = penalty_directions(p, x, y, y, key, shared_samples=False, **kw)
    assert float(jnp.linalg.norm(h_indep - fx)) > 100 * float(jnp.linalg.norm(fx))


def test_storm_uses_the_same_samples_at_the_old_and_the_new_point():
    """Additive noise ξ_t that does not depend on the point: with the same samples at both
    points, the estimator error e_t = u_t − ∇(w_t) follows e_t = β ξ_t + (1 − β) e_{t−1}, so
    e_1 − (1 − β) e_0 has the scale β σ; with fresh samples it would be ≈ √(1 + (1 − β)²) σ."""
    from htbo.decentralized import decentralized_quadratic, make_dec_solver, parse_network
    from htbo.decentralized.simulate import as_network_solver, mixer_for
    m, beta = 8, 0.1
    clean = decentralized_quadratic(m=m, dim_x=6, dim_y=6)
    p = with_noise(clean, "gauss")
    dec = make_dec_solver("dnsvrb", beta=beta)
    s = as_network_solver(dec, mixer_for(parse_network(f"ring:{m}")))
    c = as_network_solver(make_dec_solver("dnsvrb", beta=1.0), mixer_for(parse_network(f"ring:{m}")))
    (s_init, s_step, _), c_init = s.program(), c.program()[0]
    st0 = jax.jit(s_init)(p, p.x0, p.y0, jax.random.key(0), s.hp)
    st1 = jax.jit(s_step)(p, st0, jax.random.key(1))

    def exact(st):  # noise-free directions at each agent's w (β = 1 and tracking aside)
        return jax.jit(c_init)(clean, st.w["x"], st.w["y"], jax.random.key(0), c.hp).u

    e0 = jax.tree_util.tree_map(jnp.subtract, st0.u, exact(st0))
    e1 = jax.tree_util.tree_map(jnp.subtract, st1.u, exact(st1))
    # z-directions: the init's z equals y, so compare the x and y parts only
    resid = np.concatenate([np.ravel(e1[k] - (1 - beta) * e0[k]) for k in ("x", "y")])
    fresh = np.concatenate([np.ravel(e0[k]) for k in ("x", "y")])
    ratio = np.std(resid) / np.std(fresh)
    assert ratio < 3 * beta, ratio   # ≈ β with the same samples, ≈ 1.35 with fresh ones


def test_normalization_uses_the_global_norm_of_a_pytree():
    tree = {"a": jnp.array([3.0]), "b": {"c": jnp.array([0.0, 4.0])}}
    out = tree_normalize(tree)
    np.testing.assert_allclose(out["a"], [0.6])
    np.testing.assert_allclose(out["b"]["c"], [0.0, 0.8])
    # an N²SBA step on a pytree x moves x by exactly η in the global norm
    p = quadratic(dim_x=3, dim_y=4)
    from htbo.problems import BilevelProblem
    tp = BilevelProblem(f=lambda x, y, b: p.f(jnp.concatenate([x["u"], x["v"]]), y, b),
                        g=lambda x, y, b: p.g(jnp.concatenate([x["u"], x["v"]]), y, b),
                        x0={"u": jnp.zeros(1), "v": jnp.zeros(2)}, y0=p.y0, name="tree")
    s = make_solver("n2sba", eta=0.25)
    st = s.start(tp, jax.random.key(0))
    st1 = jax.jit(s.program()[1])(tp, st, jax.random.key(1))
    moved = np.sqrt(sum(float(jnp.sum((st1.x[k] - st.x[k]) ** 2)) for k in ("u", "v")))
    assert moved == pytest.approx(0.25, rel=1e-5)
    assert all(float(jnp.abs(st1.x[k]).max()) > 0 for k in ("u", "v"))
