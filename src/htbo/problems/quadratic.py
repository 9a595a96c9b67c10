"""Bilevel quadratics with closed-form ``y*``, ``φ`` and ``∇φ`` (docs/problems.md).

``g(x,y) = ½ yᵀA y + xᵀC y + aᵀy``, ``f(x,y) = ½ yᵀÃ y + xᵀC̃ y + ãᵀy + ½ xᵀB̃ x + b̃ᵀx``;
``y*(x) = −A⁻¹(Cᵀx + a)``, ``∇φ(x) = B̃x + b̃ + C̃ y* − C A⁻¹(Ã y* + C̃ᵀx + ã)``.

* :func:`quadratic` — the deterministic quadratic (no data); stochasticity comes only from
  injected noise.
* :func:`quadratic_data` — a data-sampled quadratic whose per-sample matrices are rank-one
  factors (``A_i = u_i u_iᵀ + μI``, ``C_i = p_i q_iᵀ``, …), never materialized; Gaussian or
  Student-t factors make the data noise itself heavy-tailed. Exact metrics come from the
  mean matrices.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from .base import PROBLEMS, BilevelProblem

__all__ = ["quadratic", "quadratic_data", "quadratic_matrices", "closed_forms"]


def closed_forms(A, C, a, At, Ct, at, Bt, bt):
    """``(y_star, phi, grad_phi)`` of the quadratic with these (mean) matrices."""
    A, C, a, At, Ct, at, Bt, bt = (jnp.asarray(m) for m in (A, C, a, At, Ct, at, Bt, bt))

    def y_star(x):
        return -jnp.linalg.solve(A, C.T @ x + a)

    def f_val(x, y):
        return 0.5 * y @ At @ y + x @ Ct @ y + at @ y + 0.5 * x @ Bt @ x + bt @ x

    def phi(x):
        return f_val(x, y_star(x))

    def grad_phi(x):
        ys = y_star(x)
        return Bt @ x + bt + Ct @ ys - C @ jnp.linalg.solve(A, At @ ys + Ct.T @ x + at)

    return y_star, phi, grad_phi


def _phi_hessian(A, C, At, Ct, Bt):
    J = -np.linalg.solve(A, C.T)  # dy*/dx, (dy, dx)
    H = Bt + Ct @ J + J.T @ Ct.T + J.T @ At @ J
    return 0.5 * (H + H.T)


def quadratic_matrices(dim_x: int = 10, dim_y: int = 20, kappa: float = 10.0,
                       coupling: float = 1.0, phi_curvature: float = 0.5, scale: float = 5.0,
                       seed: int = 0) -> dict:
    """Random matrices of :func:`quadratic`: ``A`` has spectrum in ``[1, κ]`` (μ = 1, ℓ = κ),
    ``‖C‖ ≈ coupling``, and ``B̃`` is shifted so that φ is strongly convex with smallest
    Hessian eigenvalue ``phi_curvature``. ``scale`` sets the size of the linear terms."""
    if dim_x < 1 or dim_y < 1:
        raise ValueError(f"dims must be >= 1, got dim_x={dim_x}, dim_y={dim_y}")
    if not kappa >= 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if not phi_curvature > 0:
        raise ValueError(f"phi_curvature must be > 0, got {phi_curvature}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim_y, dim_y)))
    A = (q * np.linspace(1.0, kappa, dim_y)) @ q.T
    C = coupling * rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    r = rng.standard_normal((dim_y, dim_y)) / np.sqrt(dim_y)
    At = r @ r.T
    Ct = rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    m = rng.standard_normal((dim_x, dim_x)) / np.sqrt(dim_x)
    Bt = m @ m.T
    H = _phi_hessian(A, C, At, Ct, Bt)
    Bt = Bt + (phi_curvature - np.linalg.eigvalsh(H)[0]) * np.eye(dim_x)
    a = scale * rng.standard_normal(dim_y) / np.sqrt(dim_y)
    at = scale * rng.standard_normal(dim_y) / np.sqrt(dim_y)
    bt = scale * rng.standard_normal(dim_x)
    return dict(A=A, C=C, a=a, At=At, Ct=Ct, at=at, Bt=Bt, bt=bt)


@PROBLEMS.register("quadratic", "deterministic bilevel quadratic, closed-form y*, φ, ∇φ "
                   "(noise injected; default α-stable(1.5))")
def quadratic(dim_x: int = 10, dim_y: int = 20, kappa: float = 10.0, coupling: float = 1.0,
              phi_curvature: float = 0.5, scale: float = 5.0, seed: int = 0,
              dtype=jnp.float32) -> BilevelProblem:
    """The deterministic bilevel quadratic of docs/problems.md (no data, exact y*, φ, ∇φ).

    Without injected noise the oracles are exact; add noise with
    :func:`htbo.problems.with_noise`.
    """
    M = quadratic_matrices(dim_x, dim_y, kappa, coupling, phi_curvature, scale, seed)
    J = {k: jnp.asarray(v, dtype) for k, v in M.items()}

    def g(x, y, batch=None):
        return 0.5 * y @ J["A"] @ y + x @ J["C"] @ y + J["a"] @ y

    def f(x, y, batch=None):
        return (0.5 * y @ J["At"] @ y + x @ J["Ct"] @ y + J["at"] @ y
                + 0.5 * x @ J["Bt"] @ x + J["bt"] @ x)

    y_star, phi, grad_phi = closed_forms(*(J[k] for k in ("A", "C", "a", "At", "Ct", "at", "Bt", "bt")))
    return BilevelProblem(
        f=f, g=g, x0=jnp.zeros(dim_x, dtype), y0=jnp.zeros(dim_y, dtype),
        y_star=y_star, phi=phi, grad_phi=grad_phi, name="quadratic",
        info=dict(dim_x=dim_x, dim_y=dim_y, kappa=kappa, coupling=coupling, seed=seed))


@PROBLEMS.register("quadratic-data", "data-sampled bilevel quadratic (rank-one per-sample "
                   "factors, Gaussian or Student-t), exact metrics")
def quadratic_data(n_inner: int = 1024, n_outer: int = 1024, dim_x: int = 100,
                   dim_y: int = 100, kappa: float = 10.0, coupling: float = 1.0,
                   mu: float = 0.1, phi_curvature: float = 0.1, factors: str = "gauss",
                   df: float = 2.5, seed: int = 0, dtype=jnp.float32) -> BilevelProblem:
    """A data-sampled bilevel quadratic with rank-one per-sample factors.

    Per sample ``i`` (all vectors drawn once, stored as ``(n, d)`` factor arrays)::

        G_i(x,y) = ½ (u_iᵀy)² + ½ μ‖y‖² + (p_iᵀx)(q_iᵀy) + a_iᵀy
        F_i(x,y) = ½ (ũ_iᵀy)² + (p̃_iᵀx)(q̃_iᵀy) + ã_iᵀy + ½ (r_iᵀx)² + b_iᵀx + ½ ρ‖x‖²

    with ``u_i = D s_i`` (``D² = diag(linspace(1, κ))`` sets the lower-level conditioning),
    ``q_i = Γᵀp_i + e_i`` so that ``E[p qᵀ] = Γ`` (``‖Γ‖ ≈ coupling``), and ``ρ`` chosen so φ
    is strongly convex (smallest Hessian eigenvalue ``phi_curvature``). ``factors='t'`` draws
    every random factor from a Student-t(``df``) law normalized to unit variance where it
    exists, so minibatch gradients are naturally heavy-tailed. Exact metrics use the
    empirical mean matrices, so they are exact for the finite data set.
    """
    if n_inner < 1 or n_outer < 1:
        raise ValueError(f"n_inner and n_outer must be >= 1, got {n_inner}, {n_outer}")
    if factors not in ("gauss", "t"):
        raise ValueError(f"factors must be 'gauss' or 't', got {factors!r}")
    if not mu > 0:
        raise ValueError(f"mu must be > 0 for a strongly convex lower level, got {mu}")
    rng = np.random.default_rng(seed)

    def draw(*shape):
        if factors == "gauss":
            return rng.standard_normal(shape)
        z = rng.standard_t(df, shape)
        return z / np.sqrt(df / (df - 2)) if df > 2 else z

    dscale = np.sqrt(np.linspace(1.0, kappa, dim_y))
    gam = coupling * rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    gam_t = rng.standard_normal((dim_x, dim_y)) / np.sqrt(dim_y)
    a_mean = rng.standard_normal(dim_y)
    at_mean = rng.standard_normal(dim_y)
    b_mean = rng.standard_normal(dim_x)

    def pq(n, G):
        p = draw(n, dim_x)  # unit-variance coordinates
        q = p @ G + 0.5 * draw(n, dim_y)
        return p, q

    u = draw(n_inner, dim_y) * dscale
    p, q = pq(n_inner, gam)
    a = a_mean + draw(n_inner, dim_y)
    ut = draw(n_outer, dim_y) / np.sqrt(dim_y)
    pt, qt = pq(n_outer, gam_t)
    at = at_mean + draw(n_outer, dim_y)
    r = draw(n_outer, dim_x) / np.sqrt(dim_x)
    b = b_mean + draw(n_outer, dim_x)

    A = u.T @ u / n_inner + mu * np.eye(dim_y)
    C = p.T @ q / n_inner
    At = ut.T @ ut / n_outer
    Ct = pt.T @ qt / n_outer
    Bt0 = r.T @ r / n_outer
    rho = max(0.0, phi_curvature - np.linalg.eigvalsh(_phi_hessian(A, C, At, Ct, Bt0))[0])
    Bt = Bt0 + rho * np.eye(dim_x)
    y_star, phi, grad_phi = closed_forms(A, C, a.mean(0), At, Ct, at.mean(0), Bt, b.mean(0))
    cast = lambda d: {k: jnp.asarray(v, dtype) for k, v in d.items()}  # noqa: E731
    data_g = cast(dict(u=u, p=p, q=q, a=a))
    data_f = cast(dict(u=ut, p=pt, q=qt, a=at, r=r, b=b))
    half_mu, half_rho = 0.5 * mu, 0.5 * rho

    def g(x, y, batch):
        uy = batch["u"] @ y
        return jnp.mean(0.5 * uy**2 + (batch["p"] @ x) * (batch["q"] @ y) + batch["a"] @ y) \
            + half_mu * y @ y

    def f(x, y, batch):
        uy, rx = batch["u"] @ y, batch["r"] @ x
        return jnp.mean(0.5 * uy**2 + (batch["p"] @ x) * (batch["q"] @ y) + batch["a"] @ y
                        + 0.5 * rx**2 + batch["b"] @ x) + half_rho * x @ x

    defaults, L_g, L_phi = _data_defaults(u, mu, A, C, At, Ct, Bt)
    return BilevelProblem(
        f=f, g=g, x0=jnp.zeros(dim_x, dtype), y0=jnp.zeros(dim_y, dtype),
        data_f=data_f, data_g=data_g, y_star=y_star, phi=phi, grad_phi=grad_phi,
        name="quadratic-data", solver_defaults=defaults,
        info=dict(n_inner=n_inner, n_outer=n_outer, dim_x=dim_x, dim_y=dim_y, kappa=kappa,
                  mu=mu, rho=float(rho), factors=factors, seed=seed, L_g=L_g, L_phi=L_phi))


DATA_BATCH = 32


def _data_defaults(u, mu, A, C, At, Ct, Bt, batch: int = DATA_BATCH, draws: int = 300):
    """Stable starting hyperparameters of :func:`quadratic_data`, from its data.

    One sample's lower-level Hessian ``u_i u_iᵀ + μI`` has the eigenvalue ``‖u_i‖² + μ``
    (about ``dim_y (1 + κ)/2``), far above the mean curvature κ, so minibatch steps on y, z
    and v must stay below ``1/L_g``: ``L_g`` is the largest top eigenvalue over ``draws``
    random minibatches of ``batch`` samples (the default batch of every solver here). The
    outer steps were measured stable on the default problem, with and without noise
    (docs/tuning.md): plain penalty methods need a slow x (η = 1e-3, λ = 10) so that the
    inner loops keep up; N²SBA moves x by η = 0.1 per step.
    """
    rng = np.random.default_rng(0)
    L_g = max(float(np.linalg.eigvalsh(u[i].T @ u[i] / batch)[-1])
              for i in (rng.integers(0, len(u), batch) for _ in range(draws))) + mu
    L_phi = float(np.linalg.eigvalsh(_phi_hessian(A, C, At, Ct, Bt))[-1])
    inner = float(f"{1.0 / L_g:.2g}")
    batches = dict(batch_in=batch, batch_out=batch, batch=batch, batch_hvp=batch)
    penalty = dict(lam=10.0, eta=1e-3)
    defaults = {"*": dict(alpha=inner, tau=inner, rho=inner, neumann_lr=inner, **batches),
                "n2sba": dict(lam=10.0, eta=0.1), "f2ba": penalty, "f2sa": penalty,
                "clipped-f2sa": penalty, "soba": dict(eta=3e-3), "clipped-soba": dict(eta=3e-3),
                "stocbio": dict(eta=3e-3)}
    return defaults, L_g, L_phi
