"""Decentralized problems: a ``BilevelProblem`` whose leaves are stacked over agents.

Agent i's problem is the slice ``tree_map(lambda a: a[i], problem)`` (``vmap`` with
``in_axes=0`` does that). The network objective is the agents' average; closed forms
(``y_star``, ``phi``, ``grad_phi``) refer to that average and are used for metrics only.
Deterministic per-agent matrices are stored as data with one "sample" (leading axis 1) so
that the core oracles draw them unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..problems.base import BilevelProblem
from ..problems.quadratic import closed_forms, quadratic_matrices

__all__ = ["dec_quadratic", "dec_pl", "split_iid", "split_dirichlet", "agent_slice",
           "DEC_PROBLEMS"]

_KEYS = ("A", "C", "a", "At", "Ct", "at", "Bt", "bt")


def agent_slice(problem, i):
    return jax.tree_util.tree_map(lambda a: a[i], problem)


def dec_quadratic(agents=8, dim_x=5, dim_y=8, kappa=3.0, hetero=1.0, scale=2.0, seed=0,
                  dtype=jnp.float32) -> BilevelProblem:
    """Heterogeneous quadratic (§9 per agent): agent i has matrices ``M̄ + hetero·Δ_i``
    on the linear terms and ``Ã, C̃`` (its own draws), sharing ``A, C, B̃`` so that the
    average keeps ``A`` with spectrum ``[1, κ]``. ``∇φ`` is exact for the average."""
    base = quadratic_matrices(dim_x, dim_y, kappa, 1.0, 0.5, scale, seed)
    rng = np.random.default_rng(seed + 1)
    per = []
    for _ in range(agents):
        d = dict(base)
        for k in ("a", "at", "bt"):
            d[k] = base[k] + hetero * scale * rng.standard_normal(base[k].shape)
        d["Ct"] = base["Ct"] + hetero * rng.standard_normal(base["Ct"].shape) / np.sqrt(dim_y)
        per.append(d)
    per = [{k: d[k] - 0 for k in _KEYS} for d in per]
    mean = {k: np.mean([d[k] for d in per], 0) for k in _KEYS}
    # the average's B̃ must keep φ strongly convex: shift all agents equally
    from ..problems.quadratic import _phi_hessian
    H = _phi_hessian(mean["A"], mean["C"], mean["At"], mean["Ct"], mean["Bt"])
    shift = max(0.0, 0.5 - np.linalg.eigvalsh(H)[0]) * np.eye(dim_x)
    for d in per:
        d["Bt"] = d["Bt"] + shift
    mean["Bt"] = mean["Bt"] + shift
    data = {k: jnp.asarray(np.stack([d[k] for d in per])[:, None], dtype) for k in _KEYS}

    def g(x, y, b):
        return jnp.mean(jax.vmap(lambda A, C, a: 0.5 * y @ A @ y + x @ C @ y + a @ y)(
            b["A"], b["C"], b["a"]))

    def f(x, y, b):
        return jnp.mean(jax.vmap(lambda At, Ct, at, Bt, bt: 0.5 * y @ At @ y + x @ Ct @ y
                                 + at @ y + 0.5 * x @ Bt @ x + bt @ x)(
            b["At"], b["Ct"], b["at"], b["Bt"], b["bt"]))

    y_star, phi, grad_phi = closed_forms(*(mean[k] for k in _KEYS))
    return BilevelProblem(
        f=f, g=g, x0=jnp.zeros((agents, dim_x), dtype), y0=jnp.zeros((agents, dim_y), dtype),
        data_f=data, data_g=data, y_star=y_star, phi=phi, grad_phi=grad_phi,
        name="dec-quadratic",
        info=dict(agents=agents, dim_x=dim_x, dim_y=dim_y, kappa=kappa, hetero=hetero,
                  seed=seed))


def dec_pl(agents=8, dim=5, rho=0.5, hetero=1.0, seed=0, dtype=jnp.float32) -> BilevelProblem:
    """PL-but-nonconvex lower level (§9): ``g_i = Σ_j [r_j² + 3 sin²(r_j)]``, ``r = y − Mx``
    (same M on every agent, so ``y*(x) = Mx`` exactly); ``f_i = ½‖y − t_i‖² + ½ρ‖x‖²`` with
    heterogeneous targets. ``∇φ(x) = Mᵀ(Mx − t̄) + ρx``, minimizer
    ``(MᵀM + ρI)⁻¹Mᵀt̄``."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    T = 1.0 + hetero * rng.standard_normal((agents, dim))
    Mj, tbar = jnp.asarray(M, dtype), jnp.asarray(T.mean(0), dtype)

    def g(x, y, b):
        r = y - Mj @ x
        return jnp.sum(r**2 + 3.0 * jnp.sin(r) ** 2)

    def f(x, y, b):
        return jnp.mean(0.5 * jnp.sum((y[None] - b["t"]) ** 2, -1)) + 0.5 * rho * x @ x

    def grad_phi(x):
        return Mj.T @ (Mj @ x - tbar) + rho * x

    def phi(x):
        return 0.5 * jnp.sum((Mj @ x - tbar) ** 2) + 0.5 * rho * x @ x  # up to a constant

    x_opt = np.linalg.solve(M.T @ M + rho * np.eye(dim), M.T @ T.mean(0))
    return BilevelProblem(
        f=f, g=g, x0=jnp.zeros((agents, dim), dtype), y0=jnp.zeros((agents, dim), dtype),
        data_f={"t": jnp.asarray(T[:, None], dtype)}, y_star=lambda x: Mj @ x, phi=phi,
        grad_phi=grad_phi, name="dec-pl",
        info=dict(agents=agents, dim=dim, rho=rho, hetero=hetero, seed=seed,
                  x_opt=tuple(float(v) for v in x_opt)))


def split_iid(data, agents: int, seed: int = 0):
    """Shuffle and split a data pytree (leading sample axis) into ``agents`` equal parts,
    stacked on a new leading axis (the remainder is dropped)."""
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    per = n // agents
    if per < 1:
        raise ValueError(f"{n} samples cannot be split across {agents} agents")
    idx = np.random.default_rng(seed).permutation(n)[: per * agents].reshape(agents, per)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[idx]), data)


def split_dirichlet(data, labels, agents: int, alpha: float, seed: int = 0):
    """Heterogeneous split: agent i's label proportions ~ Dirichlet(α) (small α = very
    skewed). Each agent gets ``n // agents`` samples, drawn without replacement from each
    label's pool while it lasts (then with replacement), stacked on a leading axis."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    labels = np.asarray(labels)
    n = len(labels)
    per = n // agents
    if per < 1:
        raise ValueError(f"{n} samples cannot be split across {agents} agents")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: list(rng.permutation(np.nonzero(labels == c)[0])) for c in classes}
    rows = []
    for _ in range(agents):
        counts = rng.multinomial(per, rng.dirichlet(alpha * np.ones(len(classes))))
        take = []
        for c, k in zip(classes, counts):
            pool = pools[c]
            got = [pool.pop() for _ in range(min(k, len(pool)))]
            extra = rng.choice(np.nonzero(labels == c)[0], k - len(got)) if k > len(got) else []
            take += got + list(extra)
        rows.append(np.asarray(take, int))
    idx = np.stack(rows)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[idx]), data)


DEC_PROBLEMS = {"dec-quadratic": dec_quadratic, "quadratic": dec_quadratic, "dec-pl": dec_pl,
                "pl": dec_pl}
