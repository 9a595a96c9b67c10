"""The workload shared by bench_iteration.py and profile_step.py: the simulated quadratic of
the public bilevel benchmark (n samples, dims, batch, inner steps), its CLI options and the
three solvers timed on it."""
from __future__ import annotations

from htbo.solvers import f2sa, n2sba, soba


def add_workload_args(ap, steps: int, steps_help: str | None = None) -> None:
    """``--n --dim --batch --inner-steps --steps --repeats`` with the peer's defaults."""
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=steps, help=steps_help)
    ap.add_argument("--repeats", type=int, default=5)


def solvers(batch: int, k: int) -> dict:
    """SOBA, F2SA and N²SBA with minibatch ``batch`` and ``k`` inner steps."""
    inner = dict(inner_steps=k, batch_in=batch, batch_out=batch, alpha=0.01, tau=0.01)
    return {"SOBA": soba(eta=0.01, rho=0.01, batch=batch),
            "F2SA": f2sa(eta=0.01, lam=10.0, **inner),
            "N²SBA": n2sba(eta=0.01, lam=10.0, **inner)}
