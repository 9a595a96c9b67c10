"""Per-sample gradient noise of a problem's *own* data (no injected noise).

``per_sample_grad_norms`` gives ``‖∇ℓ_i − mean_j ∇ℓ_j‖`` for every sample ``i`` of a data set
(ℓ = f on ``data_f`` or g on ``data_g``, single-sample batches): the natural noise of a
one-sample oracle. Its tail index is estimated by :func:`htbo.diagnostics.tail.hill_alpha`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["per_sample_grad_norms"]


def per_sample_grad_norms(problem, which: str, x, y, wrt: str = "y",
                          chunk: int = 256) -> np.ndarray:
    """Norms of the centred per-sample gradients of ``f`` (``which='f'``) or ``g`` at
    ``(x, y)`` with respect to ``wrt`` (``'x'``, ``'y'`` or ``'xy'``), one per sample.

    Gradients are computed ``chunk`` samples at a time (vmapped), never all at once.
    """
    if which not in ("f", "g"):
        raise ValueError(f"which must be 'f' or 'g', got {which!r}")
    argnums = {"x": (0,), "y": (1,), "xy": (0, 1)}.get(wrt)
    if argnums is None:
        raise ValueError(f"wrt must be 'x', 'y' or 'xy', got {wrt!r}")
    fn, data = (problem.f, problem.data_f) if which == "f" else (problem.g, problem.data_g)
    if data is None:
        raise ValueError(f"problem {problem.name!r} has no data for {which}")
    n = problem.n_f if which == "f" else problem.n_g

    def flat_grad(batch):
        return ravel_pytree(jax.grad(fn, argnums=argnums)(x, y, batch))[0]

    mean = jax.jit(flat_grad)(data)  # mean loss ⇒ mean of the per-sample gradients

    @jax.jit
    def norms(idx):
        def one(i):
            batch = jax.tree_util.tree_map(lambda a: a[i][None], data)
            return jnp.linalg.norm(flat_grad(batch) - mean)
        return jax.vmap(one)(idx)

    chunk = max(1, min(chunk, n))
    out = []
    for start in range(0, n, chunk):
        idx = np.arange(start, start + chunk) % n  # the last chunk wraps round; trimmed below
        out.append(np.asarray(norms(idx))[: min(chunk, n - start)])
    return np.concatenate(out)
