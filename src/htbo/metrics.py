"""Evaluation metrics (never counted in SFO or wall time).

``‖∇φ(x)‖`` is exact when the problem provides ``grad_phi``; otherwise it is computed on the
full data by an accurate lower-level solve (L-BFGS, warm-started at the solver's ŷ) and the
implicit-function linear system ``∇²_yy g · w = ∇_y f`` by conjugate gradients::

    ∇φ(x) = ∇_x f(x, y*) − ∇²_xy g(x, y*) w.

That route assumes g strongly convex in y. Runs using it check, at their first evaluation,
the curvature of g in y at the solver's point (Lanczos on Hessian-vector products,
:func:`check_lower_curvature`) and warn once (:class:`NonconvexLowerLevelWarning`) when it
is negative: such a problem should say ``hypergradient=False``.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


__all__ = ["solve_lower", "implicit_grad_phi", "evaluate", "NonconvexLowerLevelWarning",
           "check_lower_curvature", "curvature_watch"]


class NonconvexLowerLevelWarning(UserWarning):
    """g has negative curvature in y where a run's ‖∇φ‖ is evaluated by L-BFGS + CG."""


def _full(problem, which):
    fn = problem.f if which == "f" else problem.g
    data = problem.data_f if which == "f" else problem.data_g
    return lambda x, y: fn(x, y, data)


def solve_lower(problem, x, y_init, iters: int = 200):
    """``argmin_y g(x, y)`` on the full data by L-BFGS (projected if ``project_y`` is set)."""
    g = _full(problem, "g")
    if problem.project_y is not None:  # projected gradient descent with a backtracked step
        return _projected_gd(problem, g, x, y_init, iters)
    flat0, unravel = ravel_pytree(y_init)
    obj = lambda v: g(x, unravel(v))  # noqa: E731
    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(obj)

    def body(carry, _):
        v, st = carry
        val, grad = vg(v, state=st)
        upd, st = opt.update(grad, st, v, value=val, grad=grad, value_fn=obj)
        return (optax.apply_updates(v, upd), st), None

    (v, _), _ = jax.lax.scan(body, (flat0, opt.init(flat0)), None, length=iters)
    return unravel(v)


def _projected_gd(problem, g, x, y, iters):
    grad = jax.grad(g, argnums=1)

    def body(carry, _):
        y, lr = carry
        gy = grad(x, y)
        cand = problem.project_y(jax.tree_util.tree_map(lambda a, b: a - lr * b, y, gy))
        ok = g(x, cand) <= g(x, y)
        y = jax.tree_util.tree_map(lambda c, a: jnp.where(ok, c, a), cand, y)
        return (y, jnp.where(ok, lr * 1.5, lr * 0.5)), None

    return jax.lax.scan(body, (y, jnp.asarray(1.0)), None, length=iters)[0][0]


def implicit_grad_phi(problem, x, y_star, cg_iters: int = 200, tol: float = 1e-10):
    """``∇φ(x)`` from a lower-level solution ``y_star`` via CG on ``∇²_yy g w = ∇_y f``."""
    f, g = _full(problem, "f"), _full(problem, "g")
    fx, fy = jax.grad(f, argnums=(0, 1))(x, y_star)
    gy = lambda xx, yy: jax.grad(g, argnums=1)(xx, yy)  # noqa: E731
    hvp = lambda w: jax.jvp(lambda yy: gy(x, yy), (y_star,), (w,))[1]  # noqa: E731
    w, _ = jax.scipy.sparse.linalg.cg(hvp, fy, tol=tol, maxiter=cg_iters)
    cross = jax.vjp(lambda xx: gy(xx, y_star), x)[1](w)[0]  # ∇²_xy g · w
    return optax.tree.sub(fx, cross)


def evaluate(problem, x, y_hat, inner_iters: int = 200, cg_iters: int = 200) -> dict:
    """Metrics at ``(x, ŷ)``: ``grad_norm``, ``phi``, ``y_err`` (= ‖ŷ − y*(x)‖), user metrics.

    ``problem`` should be the clean problem (no injected noise); jit this function. A problem
    with ``hypergradient=False`` (a nonconvex lower level, where y*(x) and ∇φ are not
    defined) gets only its user metrics: no lower solve, no CG.
    """
    if not problem.hypergradient:
        return dict(problem.metrics(x, y_hat)) if problem.metrics is not None else {}
    if problem.y_star is not None:
        ys = problem.y_star(x)
    else:
        ys = solve_lower(problem, x, y_hat, inner_iters)
    if problem.grad_phi is not None:
        gphi = problem.grad_phi(x)
    else:
        gphi = implicit_grad_phi(problem, x, ys, cg_iters)
    phi = problem.phi(x) if problem.phi is not None else _full(problem, "f")(x, ys)
    out = {"grad_norm": optax.tree.norm(gphi), "phi": phi,
           "y_err": optax.tree.norm(optax.tree.sub(y_hat, ys))}
    if problem.metrics is not None:
        out.update(problem.metrics(x, y_hat))
    return out


_warned: set = set()


def check_lower_curvature(problem, x, y, iters: int = 20, rtol: float = 1e-3) -> float | None:
    """The smallest eigenvalue of ``∇²_yy g(x, y)`` (full data, Lanczos with ≤ ``iters``
    HVPs: an upper bound of the true one) when it is below ``-rtol`` times the largest in
    magnitude, else None. Then a :class:`NonconvexLowerLevelWarning` is issued, once per
    problem and process."""
    from .diagnostics.conditioning import lower_conditioning
    c = lower_conditioning(problem, x, y, iters)
    if not c.mu < -rtol * max(abs(c.L), abs(c.mu)):
        return None
    key = (problem.name, id(problem.g))
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"problem {problem.name!r}: g has negative curvature in y at the evaluated point "
            f"(smallest eigenvalue of the y-Hessian {c.mu:.3g}, largest {c.L:.3g}): the lower "
            "level is not convex, so phi and grad_norm from L-BFGS + CG are unreliable; build "
            "the problem with hypergradient=False (then only its own metrics are reported)",
            NonconvexLowerLevelWarning, stacklevel=2)
    return c.mu


def curvature_watch(problem, params, metrics_fn=None):
    """An ``on_emit`` for the run loop that checks the curvature of g in y at member 0's
    ``params(state) = (x, ŷ)`` after the first evaluation (:func:`check_lower_curvature`);
    None when the run does not use the evaluation-only ‖∇φ‖ (``metrics_fn`` given, a
    closed-form ``grad_phi``, or ``hypergradient=False``)."""
    if metrics_fn is not None or not problem.hypergradient or problem.grad_phi is not None:
        return None
    done = []

    def on_emit(step, states, rows):
        if not done:
            done.append(step)
            x, y = params(jax.tree_util.tree_map(lambda a: a[0], states))
            check_lower_curvature(problem, x, y)
    return on_emit
