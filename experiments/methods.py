"""The methods of the experiments and their starting grids (centres from the earlier
benchmarks and the problems' documented defaults, never from these results; the search
extends any axis whose best value lies on an edge).

Bilevel: the paper's N²SBA; the first-order penalty baselines F2BA, F2SA (λ growing
linearly from λ₀ to 3λ₀ over the run) and clipped F2SA; the HVP methods SOBA, clipped SOBA
and StocBiO; and two methods of ours, normalized SOBA with momentum (``nsoba``) and
normalized STORM on the HVP hypergradient (``nsvrb``). Penalty methods also try the
structural options ``inner_normalized`` ∈ {off, on} and K ∈ {5, 10} (protocol.py). nSVRB
normalizes its x step only (plain y and v steps, like N²SBA's inner loops).
"""
from __future__ import annotations

from protocol import Method

LABELS = ("N²SBA", "F2BA", "F2SA", "clipped F2SA", "SOBA", "clipped SOBA", "StocBiO",
          "nSOBA", "nSVRB")
OURS = ("nSOBA", "nSVRB")


def lam_growth(lam0: float, steps: int):
    """F2SA's λ_t: from λ₀ to 3λ₀ linearly over ``steps`` (a schedule: one value of the λ
    axis; the search scales it as a whole)."""
    from htbo.schedules import linear_growth
    return linear_growth(lam0, 2.0 * lam0 / max(1, steps), 3.0 * lam0)


def bilevel(d: float, centres: dict, *, batch_in: int, batch_out: int, batch: int,
            shared: bool, steps: int, which=None, lams=(3.0, 10.0)) -> list[Method]:
    """The bilevel methods with inner step ``d`` (z, y, v, and StocBiO's γ around it) and
    outer-step centres ``centres[label]``; ``steps``: a K = 5 penalty run's steps (for
    F2SA's λ_t)."""
    inner = dict(alpha=d, tau=d, batch_in=batch_in, batch_out=batch_out,
                 shared_samples=shared)
    near = [float(f"{d / 3:.3g}"), d]
    lam = {"lam": list(lams)}
    ms = [
        Method("N²SBA", "n2sba", centres["N²SBA"], lam, inner, arm="paper", family="penalty"),
        Method("F2BA", "f2ba", centres["F2BA"], lam, inner, family="penalty"),
        Method("F2SA", "f2sa", centres["F2SA"],
               {"lam": [repr(lam_growth(v, steps)) for v in lams]}, inner, family="penalty"),
        Method("clipped F2SA", "clipped-f2sa", centres["clipped F2SA"],
               {"clip": [3.0, 10.0], "lam": [repr(lam_growth(v, steps)) for v in lams]},
               inner, family="penalty"),
        Method("SOBA", "soba", centres["SOBA"], {"rho": near}, dict(batch=batch),
               family="hvp"),
        Method("clipped SOBA", "clipped-soba", centres["clipped SOBA"],
               {"clip": [3.0, 10.0], "rho": near}, dict(batch=batch), family="hvp"),
        Method("StocBiO", "stocbio", centres["StocBiO"], {"neumann_lr": near},
               dict(alpha=d, inner_steps=5, batch_in=batch_in, batch_out=batch_out,
                    batch_hvp=batch_out, neumann_terms=10), family="hvp"),
        Method("nSOBA", "nsoba", centres["nSOBA"], {"rho": near, "momentum": [0.5, 0.9]},
               dict(batch=batch), arm="ours", family="hvp"),
        Method("nSVRB", "nsvrb", centres["nSVRB"],
               {"eta_y": near, "beta": [0.1, 0.5]},
               dict(eta_z=d, batch=batch, inner_update="plain"), arm="ours", family="hvp",
               eta_key="eta_x"),
    ]
    return [m for m in ms if which is None or m.label in which]
