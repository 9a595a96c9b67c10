"""Minimax problems ``min_x max_{y ∈ Y} f(x, y)`` (nonconvex–strongly-concave) as bilevel ones.

A minimax problem is the bilevel problem with ``g = −f`` on the same data, so every oracle,
noise model, runner and metric of the library applies unchanged: ``y*(x) = argmax_Y f(x, ·)``,
``φ = Φ = max_Y f(x, ·)`` and, by Danskin's theorem, ``∇Φ(x) = ∇_x f(x, y*(x))`` — also when
``Y`` is a constraint set given by ``project_y`` (where the implicit-function formula would
not apply). Ascent on f is descent on g.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .base import PROBLEMS, BilevelProblem, tree_check_finite

__all__ = ["minimax_problem", "minimax_quadratic"]


def minimax_problem(f: Callable, x0, y0, data=None, project_y: Callable | None = None,
                    y_star: Callable | None = None, phi: Callable | None = None,
                    grad_phi: Callable | None = None, metrics: Callable | None = None,
                    name: str = "minimax", info: dict | None = None,
                    inner_iters: int = 500) -> BilevelProblem:
    """Build ``min_x max_y f(x, y, batch)`` over pytrees ``x``, ``y``.

    ``project_y`` is the projection onto the feasible set of y; ``y0`` must be feasible.
    Without ``grad_phi``, metrics use Danskin's ``∇_x f(x, y*(x))`` with ``y*`` from ``y_star``
    or, failing that, from an accurate full-data (projected) ascent (evaluation only).
    """
    if project_y is not None:
        tree_check_finite(y0, f"problem {name!r}: y0")
        py = project_y(y0)
        if jax.tree_util.tree_structure(py) != jax.tree_util.tree_structure(y0) or any(
                np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(py),
                                                           jax.tree_util.tree_leaves(y0))):
            raise ValueError(f"problem {name!r}: project_y must return a pytree shaped like "
                             f"y0 {jax.tree_util.tree_map(np.shape, y0)}, got "
                             f"{jax.tree_util.tree_map(np.shape, py)}")
        gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                  zip(jax.tree_util.tree_leaves(py), jax.tree_util.tree_leaves(y0)))
        if gap > 1e-5:
            raise ValueError(f"problem {name!r}: y0 is not in the constraint set "
                             f"(its projection moves it by {gap:.3g})")
    problem = BilevelProblem(f=f, g=lambda x, y, batch: -f(x, y, batch), x0=x0, y0=y0,
                             data_f=data, data_g=data, project_y=project_y, y_star=y_star,
                             phi=phi, grad_phi=grad_phi, metrics=metrics, name=name,
                             kind="minimax", info=dict(info or {}))
    if grad_phi is None:
        from ..metrics import solve_lower

        def danskin(x):
            ys = y_star(x) if y_star is not None else solve_lower(problem, x, y0, inner_iters)
            return jax.grad(f)(x, ys, data)

        problem = problem.replace(grad_phi=danskin)
    return problem


@PROBLEMS.register("minimax-quadratic", "min_x max_y c Σcos(x_j) + xᵀBy − ½yᵀCy "
                   "(nonconvex–strongly-concave), closed forms")
def minimax_quadratic(dim_x: int = 10, dim_y: int = 10, kappa: float = 10.0, c: float = 1.0,
                      coupling: float = 1.0, scale: float = 2.0, seed: int = 0,
                      dtype=jnp.float32) -> BilevelProblem:
    """``f(x, y) = c Σ_j cos(x_j) + xᵀB y − ½ yᵀC y``.

    ``C`` has spectrum in ``[1, κ]`` (μ = 1), ``‖B‖ ≈ coupling``. Closed forms:
    ``y*(x) = C⁻¹Bᵀx``, ``Φ(x) = c Σ cos x_j + ½ xᵀBC⁻¹Bᵀx``,
    ``∇Φ(x) = −c sin x + BC⁻¹Bᵀx``; Φ is nonconvex wherever ``c cos x_j`` outweighs the
    quadratic. ``x0`` is drawn with entries of size ``scale``.
    """
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim_y, dim_y)))
    C = (q * np.linspace(1.0, kappa, dim_y)) @ q.T
    B = coupling * rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    M = B @ np.linalg.solve(C, B.T)
    Bj, Cj, Mj = (jnp.asarray(a, dtype) for a in (B, C, M))
    Cinv_Bt = jnp.asarray(np.linalg.solve(C, B.T), dtype)

    def f(x, y, batch=None):
        return c * jnp.sum(jnp.cos(x)) + x @ Bj @ y - 0.5 * y @ Cj @ y

    return minimax_problem(
        f, x0=jnp.asarray(scale * rng.standard_normal(dim_x), dtype),
        y0=jnp.zeros(dim_y, dtype), y_star=lambda x: Cinv_Bt @ x,
        phi=lambda x: c * jnp.sum(jnp.cos(x)) + 0.5 * x @ Mj @ x,
        grad_phi=lambda x: -c * jnp.sin(x) + Mj @ x, name="minimax-quadratic",
        info=dict(dim_x=dim_x, dim_y=dim_y, kappa=kappa, c=c, seed=seed))
