"""Decentralized bilevel problems: one ``BilevelProblem`` whose leaves are stacked over agents.

``x0``, ``y0`` and every data leaf carry a leading agent axis ``m``; ``f`` and ``g`` are the
per-agent objectives ``f_i, g_i`` (agent ``i`` sees its slice: ``vmap`` with ``in_axes=0``
over the problem does that). ``y_star``, ``phi``, ``grad_phi`` are the closed forms of the
*network* problem ``min_x (1/m) Σ f_i(x, y*(x))``, ``y*(x) = argmin (1/m) Σ g_i(x, ·)`` and
take an un-stacked ``x`` — they are used at the network average ``x̄`` for metrics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..problems.base import BilevelProblem, cached
from ..problems.quadratic import _phi_hessian, closed_forms, quadratic_matrices

__all__ = ["decentralized_quadratic", "decentralized_pl", "agent_slice", "split_iid",
           "split_dirichlet", "DEC_PROBLEMS"]


def agent_slice(problem: BilevelProblem, i: int = 0) -> BilevelProblem:
    """Agent ``i``'s own problem (its data and initial points)."""
    return jax.tree_util.tree_map(lambda a: a[i], problem)


def _mean_batch(fn):
    """Per-agent objectives given by one 'sample' of matrices; mean over the minibatch."""
    return lambda x, y, batch: jnp.mean(jax.vmap(lambda b: fn(x, y, b))(batch))


@cached
def decentralized_quadratic(m: int = 8, dim_x: int = 5, dim_y: int = 5, kappa: float = 2.0,
                            heterogeneity: float = 1.0, phi_curvature: float = 0.5,
                            seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """Heterogeneous agents: the §9 quadratic of ``quadratic_matrices(seed)`` with per-agent
    linear terms ``a_i, ã_i, b̃_i`` and couplings ``C_i, C̃_i`` perturbed by ``heterogeneity``
    (mean-zero across agents is not imposed: the network problem uses the agents' means).
    Every ``g_i`` keeps ``A`` (spectrum in [1, κ]); ``B̃`` is shifted so that the network φ is
    strongly convex. Stochasticity comes from injected noise."""
    if m < 1:
        raise ValueError(f"need at least one agent, got m={m}")
    base = quadratic_matrices(dim_x, dim_y, kappa, seed=seed)
    rng = np.random.default_rng(seed + 1)
    h = heterogeneity
    per = {k: np.stack([base[k]] * m) for k in base}
    for k in ("a", "at"):
        per[k] = per[k] + h * rng.standard_normal((m, dim_y))
    per["bt"] = per["bt"] + h * rng.standard_normal((m, dim_x))
    for k in ("C", "Ct"):
        per[k] = per[k] + 0.3 * h * rng.standard_normal((m, dim_x, dim_y)) / np.sqrt(dim_y)
    mean = {k: v.mean(0) for k, v in per.items()}
    H = _phi_hessian(mean["A"], mean["C"], mean["At"], mean["Ct"], mean["Bt"])
    shift = (phi_curvature - np.linalg.eigvalsh(H)[0]) * np.eye(dim_x)
    per["Bt"] = per["Bt"] + shift
    mean["Bt"] = mean["Bt"] + shift
    data = {k: jnp.asarray(v[:, None], dtype) for k, v in per.items()}  # (m, 1 sample, ...)

    def g1(x, y, d):
        return 0.5 * y @ d["A"] @ y + x @ d["C"] @ y + d["a"] @ y

    def f1(x, y, d):
        return 0.5 * y @ d["At"] @ y + x @ d["Ct"] @ y + d["at"] @ y + 0.5 * x @ d["Bt"] @ x \
            + d["bt"] @ x

    ys, phi, gphi = closed_forms(*(mean[k] for k in ("A", "C", "a", "At", "Ct", "at", "Bt", "bt")))
    return BilevelProblem(f=_mean_batch(f1), g=_mean_batch(g1),
                          x0=jnp.zeros((m, dim_x), dtype), y0=jnp.zeros((m, dim_y), dtype),
                          data_f=data, data_g=data, y_star=ys, phi=phi, grad_phi=gphi,
                          name="dquadratic", info=dict(m=m, kappa=kappa, heterogeneity=h))


@cached
def decentralized_pl(m: int = 8, dim: int = 5, rho: float = 0.5, heterogeneity: float = 1.0,
                     seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """A lower level that is nonconvex but PL (ALGORITHMS.md §9):
    ``g_i(x, y) = Σ_j [r_j² + 3 sin²(r_j)]``, ``r = y − Mx`` (the same for every agent;
    ``y*(x) = Mx`` exactly), and heterogeneous ``f_i(x, y) = ½‖y − b_i‖² + ½ρ‖x‖²``. Network:
    ``φ(x) = (1/m) Σ ½‖Mx − b_i‖² + ½ρ‖x‖²``, ``∇φ = Mᵀ(Mx − b̄) + ρx``."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    b = 2.0 * rng.standard_normal(dim) + heterogeneity * rng.standard_normal((m, dim))
    Mj = jnp.asarray(M, dtype)
    bbar = jnp.asarray(b.mean(0), dtype)

    def g1(x, y, d):
        r = y - Mj @ x
        return jnp.sum(r**2 + 3.0 * jnp.sin(r) ** 2)

    def f1(x, y, d):
        return 0.5 * jnp.sum((y - d["b"]) ** 2) + 0.5 * rho * x @ x

    def phi(x):
        return 0.5 * jnp.mean(jnp.sum((Mj @ x - jnp.asarray(b, dtype)) ** 2, axis=1)) \
            + 0.5 * rho * x @ x

    data_f = {"b": jnp.asarray(b[:, None], dtype)}
    data_g = {"b": jnp.zeros((m, 1, 1), dtype)}  # g is the same for all agents
    return BilevelProblem(f=_mean_batch(f1), g=_mean_batch(g1),
                          x0=jnp.zeros((m, dim), dtype), y0=jnp.zeros((m, dim), dtype),
                          data_f=data_f, data_g=data_g, y_star=lambda x: Mj @ x, phi=phi,
                          grad_phi=lambda x: Mj.T @ (Mj @ x - bbar) + rho * x,
                          name="dpl", info=dict(m=m, rho=rho))


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


DEC_PROBLEMS = {"quadratic": decentralized_quadratic, "pl": decentralized_pl}
