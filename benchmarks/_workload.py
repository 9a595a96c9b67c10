"""The workload shared by bench_iteration.py and profile_step.py: the simulated quadratic of
the public bilevel benchmark (n samples, dims, batch, inner steps) and its CLI options."""
from __future__ import annotations


def add_workload_args(ap, steps: int, steps_help: str | None = None) -> None:
    """``--n --dim --batch --inner-steps --steps --repeats`` with the peer's defaults."""
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=steps, help=steps_help)
    ap.add_argument("--repeats", type=int, default=5)
