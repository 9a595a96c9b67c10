"""Command-line interface: ``htbo demo | run | compare | tune | diagnose | plot | list | launch``.

Hyperparameters are ``--hp KEY=VALUE`` (``compare``: ``--hp SOLVER.KEY=VALUE``); a value is
a number, ``true``/``false``/``none``, or a schedule: ``isqrt:V0:T0`` (V0/sqrt(1+t/T0)),
``power:V0:T0:P``, ``linear:START:RATE:STOP`` or ``exp:V0:RATE``. Grids are
``--grid KEY=V1,V2,...`` (``compare``: ``--grid SOLVER.KEY=V1,V2``).

Every run/compare/tune/demo/launch writes into ``--out`` (refused when it already holds a run,
unless ``--overwrite``; one writer at a time): ``config.json`` (the plan, so ``--resume DIR``
needs nothing else), ``runs.jsonl``, ``history.jsonl``, ``checkpoints/``, ``summary.md`` and
``plot.png``. Errors a user can cause are one line: exit code 2 for bad input, 1 for a
failure (a run that diverged, a full disk, an agent that died).
"""
from __future__ import annotations

import argparse
import signal
import sys

from ..parsing import parse_assignments, parse_seeds, parse_value
from .common import Failure, Terminated

__all__ = ["main", "parse_value", "parse_assignments", "parse_seeds", "build_parser"]

_RESUMABLE = ("run", "compare", "demo", "launch")


def build_parser() -> argparse.ArgumentParser:
    from . import commands, tune
    ap = argparse.ArgumentParser(prog="htbo", description="stochastic bilevel, minimax and "
                                 "decentralized bilevel optimization under heavy-tailed noise")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    commands.configure(sub)
    tune.configure(sub)
    from ..decentralized.cli import configure
    configure(sub)  # htbo launch
    from ..diagnostics.cli import configure as configure_diagnose
    configure_diagnose(sub)  # htbo diagnose
    return ap


def _sigterm(signum, frame):
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    import shlex

    from .. import jobs
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    jobs.COMMAND = "htbo " + shlex.join(argv)  # what a second writer's message shows
    previous = signal.signal(signal.SIGTERM, _sigterm) if \
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else None
    try:
        return args.func(args)
    except (ValueError, ImportError, MemoryError) as e:
        print(f"htbo: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"htbo: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except OSError as e:
        from ..locks import oserror_message
        where = getattr(e, "filename", None) or getattr(args, "out", None) or "."
        print(f"htbo: error: {oserror_message(e, where, 'write')}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
        out = getattr(args, "resume", None) or getattr(args, "out", None)
        if args.cmd in _RESUMABLE and out:
            hint = f"; continue with: htbo {'run' if args.cmd == 'demo' else args.cmd} " \
                   f"--resume {out}"
        elif out:
            hint = f"; start again with --overwrite --out {out}"
        else:
            hint = ""
        print(f"htbo: interrupted; rows and checkpoints written so far are kept{hint}",
              file=sys.stderr)
        return 128 + int(signum)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("\n")[0].split()) if str(e) else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
