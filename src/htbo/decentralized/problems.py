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

from ..problems.base import BilevelProblem
from ..registry import Registry
from ..problems.quadratic import _phi_hessian, closed_forms, quadratic_matrices

__all__ = ["decentralized_quadratic", "decentralized_pl", "decentralized_hypercleaning",
           "agent_slice", "pooled_problem", "split_iid", "split_dirichlet", "dirichlet_indices",
           "parse_split", "DEC_PROBLEMS"]


#: name -> constructor ``(m=agents, **kwargs)`` of a problem stacked over agents (memoized)
DEC_PROBLEMS = Registry("decentralized problem", memoize=True)


def agent_slice(problem: BilevelProblem, i: int = 0) -> BilevelProblem:
    """Agent ``i``'s own problem (its data and initial points)."""
    return jax.tree_util.tree_map(lambda a: a[i], problem)


def _mean_batch(fn):
    """Per-agent objectives given by one 'sample' of matrices; mean over the minibatch."""
    return lambda x, y, batch: jnp.mean(jax.vmap(lambda b: fn(x, y, b))(batch))


@DEC_PROBLEMS.register("quadratic", "heterogeneous bilevel quadratics, closed-form network "
                       "metrics")
def decentralized_quadratic(m: int = 8, dim_x: int = 5, dim_y: int = 5, kappa: float = 2.0,
                            heterogeneity: float = 1.0, phi_curvature: float = 0.5,
                            seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """Heterogeneous agents: the bilevel quadratic of ``quadratic_matrices(seed)`` with per-agent
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


@DEC_PROBLEMS.register("pl", "nonconvex PL lower level r² + 3 sin² r, y*(x) = Mx exactly")
def decentralized_pl(m: int = 8, dim: int = 5, rho: float = 0.5, heterogeneity: float = 1.0,
                     seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """A lower level that is nonconvex but PL (docs/problems.md):
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


def split_dirichlet(data, labels, agents: int, alpha: float, seed: int = 0, *,
                    replace: bool = True, proportions=None):
    """Heterogeneous split: agent i's label proportions ~ Dirichlet(α) (small α = very
    skewed). Each agent gets ``n // agents`` samples, drawn without replacement from each
    label's pool while it lasts, then (``replace=True``) with replacement from that label, or
    (``replace=False``: disjoint shards) from the labels that still have samples, in
    proportion to the agent's own shares. Stacked on a leading axis.
    ``proportions`` (agents × labels) fixes the shares instead of drawing them."""
    idx, _ = dirichlet_indices(labels, agents, alpha, seed, replace=replace,
                               proportions=proportions)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[idx]), data)


def dirichlet_indices(labels, agents: int, alpha: float, seed: int = 0, *,
                      replace: bool = True, proportions=None):
    """``(idx, proportions)`` of :func:`split_dirichlet`: ``idx[i]`` are agent i's
    ``n // agents`` row numbers, ``proportions[i]`` its label shares (over
    ``np.unique(labels)``)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    labels = np.asarray(labels)
    n = len(labels)
    per = n // agents
    if per < 1:
        raise ValueError(f"{n} samples cannot be split across {agents} agents")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if proportions is not None:
        proportions = np.asarray(proportions, float)
        if proportions.shape != (agents, len(classes)):
            raise ValueError(f"proportions must have shape {(agents, len(classes))}, got "
                             f"{proportions.shape}")
    pools = {c: list(rng.permutation(np.nonzero(labels == c)[0])) for c in classes}
    rows, props = [], []
    for i in range(agents):
        p = rng.dirichlet(alpha * np.ones(len(classes))) if proportions is None \
            else proportions[i]
        props.append(p)
        counts = rng.multinomial(per, p if proportions is None else p / p.sum())
        take, short = [], 0
        for c, k in zip(classes, counts):
            pool = pools[c]
            got = [pool.pop() for _ in range(min(k, len(pool)))]
            if replace and k > len(got):
                got += list(rng.choice(np.nonzero(labels == c)[0], k - len(got)))
            short += k - len(got)
            take += got
        for _ in range(0 if replace else short):  # disjoint: borrow from labels with samples left
            left = np.array([len(pools[c]) > 0 for c in classes])
            w = np.where(left, p + 1e-12, 0.0)
            take.append(pools[classes[rng.choice(len(classes), p=w / w.sum())]].pop())
        rows.append(np.asarray(take, int))
    return np.stack(rows), np.stack(props)


def parse_split(split: str):
    """``"iid"`` → ``("iid", None)``; ``"dirichlet:ALPHA"`` → ``("dirichlet", ALPHA)``."""
    kind, _, arg = str(split).strip().lower().partition(":")
    if kind == "iid" and not arg:
        return "iid", None
    if kind == "dirichlet":
        try:
            alpha = float(arg)
        except ValueError:
            alpha = float("nan")
        if alpha > 0 and np.isfinite(alpha):
            return "dirichlet", alpha
    raise ValueError(f"split must be 'iid' or 'dirichlet:ALPHA' with ALPHA > 0 (e.g. "
                     f"dirichlet:0.3), got {split!r}")


def pooled_problem(problem: BilevelProblem) -> BilevelProblem:
    """The network problem of a stacked ``problem`` as ONE centralized problem: the agent
    and sample axes of ``data_f`` / ``data_g`` merged (m × n samples → m·n), agent 0's
    ``x0`` / ``y0``, the same ``f``, ``g``, closed forms and metrics, no injected noise.

    When every ``f_i`` / ``g_i`` is the mean over agent i's n samples (shards of equal size),
    ``f_pooled = (1/m) Σ f_i`` and ``g_pooled = (1/m) Σ g_i``, so the pooled
    ``φ(x) = f_pooled(x, y*(x))`` is the network objective ``(1/m) Σ f_i(x, y*(x))`` with
    ``y*(x) = argmin (1/m) Σ g_i(x, ·)``. Works on traced problems (inside ``jit``)."""
    def merge(a):
        return jnp.reshape(a, (a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))

    def pool(data):
        return None if data is None else jax.tree_util.tree_map(merge, data)
    first = lambda t: jax.tree_util.tree_map(lambda a: a[0], t)  # noqa: E731
    return problem.replace(x0=first(problem.x0), y0=first(problem.y0),
                           data_f=pool(problem.data_f), data_g=pool(problem.data_g), noise=None)


@DEC_PROBLEMS.register("hypercleaning", "hyper-cleaning split over agents (i.i.d. or "
                       "Dirichlet), evaluation-only network metrics")
def decentralized_hypercleaning(m: int = 8, dataset: str = "mnist", corruption: float = 0.5,
                                model: str = "linear", split: str = "iid", reg: float = 0.2,
                                x_init: float = -2.0, n_train: int | None = None,
                                n_val: int | None = None, hidden: int = 64, seed: int = 0,
                                init_seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """Data hyper-cleaning split over ``m`` agents (:func:`htbo.problems.hypercleaning`).

    The centralized training set (n_train corrupted samples) and validation set are cut
    into ``m`` disjoint shards of equal size (``n_train/m`` and ``n_val/m`` per agent):
    ``split="iid"`` (uniformly at random) or ``"dirichlet:ALPHA"`` (agent i's label shares
    ~ Dirichlet(α), the same shares for its training part — by true label — and its
    validation part; :func:`split_dirichlet` with disjoint shards). The test set is not
    split. ``x ∈ R^{n_train}`` is the GLOBAL vector of sample-weight logits (every agent
    holds a copy; agent i's g reads only its own samples' entries ``x[idx_i]``), ``y`` the
    shared model::

        g_i(x, y) = mean_{j ∈ train_i} σ(x_j) ℓ(y; a_j, t̃_j) + (reg/2) ‖y‖²
        f_i(x, y) = mean_{j ∈ val_i} ℓ(y; a_j, t_j)

    so ``(1/m) Σ g_i`` and ``(1/m) Σ f_i`` are the centralized g and f. The default
    ``n_train`` / ``n_val`` (per data source) are rounded down to multiples of ``m``; given
    values must be multiples. Metrics: the centralized ones (``test_acc``, ``f1``, …) and,
    per agent, ``test_acc`` (the ``agent_metrics`` trait, averaged by
    :func:`htbo.decentralized.simulate.network_metrics`). Injected noise: none by default.
    """
    from ..problems.hypercleaning import _DEFAULT_SPLIT, hypercleaning, load_images, load_split
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"need at least one agent, got m={m!r}")
    kind, alpha = parse_split(split)
    source = load_images(dataset)[0]
    sizes = {}
    for what, given, default in (("n_train", n_train, _DEFAULT_SPLIT[source][0]),
                                 ("n_val", n_val, _DEFAULT_SPLIT[source][1])):
        n = default - default % m if given is None else int(given)
        if n < m:
            raise ValueError(f"{what}={n} samples cannot be split across {m} agents "
                             "(more agents than samples)")
        if n % m:
            raise ValueError(f"{what}={n} is not a multiple of the {m} agents: use "
                             f"{n - n % m} or {n - n % m + m}")
        sizes[what] = n
    c = hypercleaning(dataset, corruption, model, reg, x_init, sizes["n_train"],
                      sizes["n_val"], hidden, seed, init_seed, dtype)
    if kind == "iid":
        train = split_iid(c.data_g, m, seed)
        val = split_iid(c.data_f, m, seed + 1)
        skew = None
    else:
        true = load_split(dataset, corruption, sizes["n_train"], sizes["n_val"],
                          seed)["train_true"]
        tidx, props = dirichlet_indices(true, m, alpha, seed, replace=False)
        vidx, _ = dirichlet_indices(np.asarray(c.data_f["t"]), m, alpha, seed + 1,
                                    replace=False, proportions=props)
        train = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[tidx]), c.data_g)
        val = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[vidx]), c.data_f)
        skew = [float(np.bincount(true[r]).max() / len(r)) for r in tidx]
    stack = lambda t: jax.tree_util.tree_map(  # noqa: E731
        lambda a: jnp.broadcast_to(a, (m,) + a.shape), t)
    info = dict(c.info, m=m, split=f"{kind}" + (f":{alpha:g}" if alpha else ""),
                agent_train=sizes["n_train"] // m, agent_val=sizes["n_val"] // m,
                agent_max_label_share=skew)
    return BilevelProblem(f=c.f, g=c.g, x0=stack(c.x0), y0=stack(c.y0), data_f=val,
                          data_g=train, metrics=c.metrics, name="dhypercleaning", info=info,
                          agent_metrics=("test_acc",), default_noise="none",
                          hypergradient=c.hypergradient, metric=c.metric,
                          eval_options=c.eval_options)

