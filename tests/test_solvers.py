"""Every solver converges without noise; oracle accounting matches an independent count;
bad hyperparameters are rejected."""
import jax
import jax.numpy as jnp
import pytest

import htbo
from htbo.problems import quadratic, quadratic_data
from htbo.schedules import exponential, linear_growth
from htbo.solvers import make_solver

# Noise-free settings on quadratic(dim_x=5, dim_y=5, κ=2) in float64 (start ‖∇φ‖ = 17.9).
# Penalty methods: the hypergradient bias is ≈ 18/λ here, so λ = 1e5 (fixed, or grown
# linearly from 10 to 1e5 for F2SA) puts the floor at 1.8e-4; inner loops K = 10 with step 0.3.
# N²SBA's normalized step needs a decaying step size to settle: η_t = 0.5·0.998^t.
# StocBiO: 40 Neumann terms with γ = 0.4 ≤ 1/ℓ (truncation error 0.6^40).
_INNER = dict(alpha=0.3, tau=0.3, inner_steps=10)
SETTINGS = {
    "n2sba": (dict(eta=exponential(0.5, 0.998), lam=1e5, **_INNER), 6000),
    "f2ba": (dict(eta=0.1, lam=1e5, **_INNER), 2000),
    "f2sa": (dict(eta=0.1, lam=linear_growth(10.0, 100.0, 1e5), **_INNER), 2000),
    "clipped-f2sa": (dict(eta=0.1, lam=linear_growth(10.0, 100.0, 1e5), clip=1.0, **_INNER),
                     2000),
    "soba": (dict(eta=0.1, rho=0.3), 2000),
    "clipped-soba": (dict(eta=0.1, rho=0.3, clip=1.0), 2000),
    "stocbio": (dict(eta=0.1, alpha=0.3, inner_steps=10, neumann_terms=40, neumann_lr=0.4),
                2000),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_noise_free_convergence(name):
    hp, steps = SETTINGS[name]
    with jax.enable_x64(True):
        p = quadratic(dim_x=5, dim_y=5, kappa=2.0, dtype=jnp.float64)
        res = htbo.run(p, make_solver(name, **hp), steps=steps, seeds=[0], n_evals=2)
    assert res.rows[0]["grad_norm"] > 10
    assert res.final("grad_norm")[0] < 1e-3, res.rows
    assert res.final("y_err")[0] < 1e-3


def _counting_problem(counter):
    """quadratic_data whose f and g report every evaluation's batch size at run time."""
    p = quadratic_data(n_inner=50, n_outer=40, dim_x=3, dim_y=4)

    def counted(fn):
        def wrapped(x, y, batch):
            n = batch["u"].shape[0]
            jax.debug.callback(lambda: counter.append(n))
            return fn(x, y, batch)
        return wrapped
    return p.replace(f=counted(p.f), g=counted(p.g))


@pytest.mark.parametrize("name, hp", [
    ("n2sba", dict(inner_steps=3, batch_in=2, batch_out=5)),
    ("f2sa", dict(inner_steps=2, batch_in=3, batch_out=4, shared_samples=True)),
    ("soba", dict(batch=6)),
    ("stocbio", dict(inner_steps=2, neumann_terms=3, batch_in=2, batch_out=5, batch_hvp=4)),
])
def test_oracle_accounting_matches_an_independent_count(name, hp):
    """Every oracle call evaluates f or g once on its minibatch, so the samples seen by f and
    g per step equal SFO + HVP per step."""
    counter = []
    p = _counting_problem(counter)
    s = make_solver(name, **hp)
    state = s.start(p, jax.random.key(0))
    step = jax.jit(s.step)
    for i in range(3):
        state = step(p, state, jax.random.key(i))
    jax.effects_barrier()
    assert sum(counter) == 3 * (s.sfo_per_step + s.hvp_per_step)
    assert (s.hvp_per_step > 0) == (name in ("soba", "stocbio"))


@pytest.mark.parametrize("name, hp, msg", [
    ("n2sba", dict(eta=0.0), "eta must be a finite positive"),
    ("n2sba", dict(lam=-1.0), "lam must be a finite positive"),
    ("n2sba", dict(eta=float("nan")), "eta must be a finite positive"),
    ("n2sba", dict(batch_out=0), "batch_out must be a positive integer"),
    ("n2sba", dict(batch_in=2.5), "batch_in must be a positive integer"),
    ("n2sba", dict(momentum=1.0), "momentum beta"),
    ("soba", dict(rho=-0.1), "rho must be a finite positive"),
    ("stocbio", dict(neumann_terms=0), "neumann_terms must be a positive integer"),
    ("f2sa", dict(lam=10.0, lam_max=5.0), "lam_max >= lam"),
    ("f2ba", dict(lam=linear_growth(1.0, 1.0)), "lam is fixed"),
    ("clipped-f2sa", dict(clip=0.0), "clipping threshold"),
])
def test_bad_hyperparameters_are_rejected(name, hp, msg):
    with pytest.raises(ValueError, match=msg):
        make_solver(name, **hp)
