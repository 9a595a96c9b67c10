"""``htbo diagnose``: measure a problem's noise tail and conditioning, suggest a method.

Wire into the main parser with ``configure(subparsers)``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["configure", "cmd_diagnose"]


def cmd_diagnose(args) -> int:
    from ..jobs import load_json
    from ..parsing import parse_assignments
    from .diagnosis import diagnose
    from .report import write_report

    pargs = parse_assignments(args.problem_arg, "--problem-arg", schedules=False)
    x = y = None
    if args.at:  # the last checkpointed iterate of a run (its problem and noise too)
        from ..jobs import final_iterate
        problem, x, y, where = final_iterate(args.at)
        if args.noise is not None:
            from ..problems import with_noise
            problem = with_noise(problem, args.noise)
        pargs = load_json(os.path.join(args.at, "config.json"), "--at").get("problem_args", {})
        print(f"[htbo] diagnose at {args.at}: {where['label']}, seed {where['seed']}, step "
              f"{where['step']}", file=sys.stderr)
    else:  # the noise a run of this problem would have (the plan's rule)
        from ..plan import Plan, jsonable_hp
        problem, _ = Plan(problem=args.problem, problem_args=jsonable_hp(pargs),
                          noise=args.noise).resolve_problem()
    print(f"[htbo] diagnose {problem.name}: {args.n_samples:,} draws of each oracle at batch "
          f"{args.batch}, noise {problem.noise or 'none'}", file=sys.stderr)
    ref = None if args.at else args.problem
    if args.at:
        from ..jobs import read_plan
        ref = read_plan(args.at, "--at").problem
    diag = diagnose(problem, x=x, y=y, n_samples=args.n_samples, batch=args.batch,
                    seed=args.seed, progress=not args.no_progress, problem_args=pargs,
                    first_order=args.first_order, problem_ref=ref)
    paths = write_report(diag, args.out)
    rec = diag.recommendation
    for t in diag.tails.values():
        a = "deterministic" if t.status == "deterministic" else (
            f"α̂ = {t.block_sum} (block sums), Hill {t.hill}")
        print(f"{t.oracle}: {a}")
    print(f"κ̂ = {diag.kappa:.3g} (L̂ = {diag.L:.3g}, μ̂ = {diag.mu:.3g})")
    print(f"recommendation ({rec['noise_class']} noise): {rec['family']}")
    for e in rec["evidence"]:
        print(f"  evidence: {e}")
    if not rec["evidence"]:
        print("  evidence: no measured setting matches this kind of problem and noise class")
    for c in rec["commands"]:
        print(f"  {c}")
    print(f"report: {paths['md']}\njson:   {paths['json']}\nplot:   {paths['png']}")
    return 0


def configure(subparsers) -> None:
    """Add the ``diagnose`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "diagnose", help="measure the gradient-noise tail index and the lower-level "
                         "conditioning; suggest a method and an htbo tune command")
    p.add_argument("--problem", default="quadratic")
    p.add_argument("--problem-arg", action="append", metavar="KEY=VALUE",
                   help="problem constructor argument (repeatable)")
    p.add_argument("--noise", default=None,
                   help="injected noise to diagnose with (default: the noise a run of this "
                        "problem has, as htbo run; with --at, the run's noise); use the law you "
                        "will run with")
    p.add_argument("--at", default=None, metavar="RUN_DIR",
                   help="diagnose at the last checkpointed iterate of a run (first solver, "
                        "first seed) with the run's problem and noise")
    p.add_argument("--n-samples", type=int, default=10_000,
                   help="draws per oracle (>= 1000; default 10000)")
    p.add_argument("--batch", type=int, default=1, help="minibatch size of each draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-order", action="store_true",
                   help="recommend methods without Hessian-vector products only")
    p.add_argument("--out", default="htbo-diagnose", help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_diagnose)
