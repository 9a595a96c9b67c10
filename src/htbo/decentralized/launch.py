"""A supervising launcher: n local agent processes, one clear line when one dies.

:func:`launch` starts ``n_agents`` processes of ``python -m htbo.decentralized.cli agent
...`` on this machine (each ends when the launcher dies: a parent-death signal and a parent
poll) (coordinator on 127.0.0.1 at a free port, one CPU device each, the
``HTBO_*`` variables of :mod:`htbo.decentralized.distributed`), writes each agent's output to
``OUT/logs/agent-K.log`` and watches them, relaying agent 0's progress lines
(``[htbo launch] step N/T ...``) to stderr. As soon as one exits non-zero (or the time limit
passes) it stops the others (SIGTERM to each agent's process group, then SIGKILL after a
grace period) and raises :class:`AgentFailed` whose message is one line: which agent, exit
code, last step reached, log path. SIGTERM or SIGINT to the launcher (when it runs in the
main thread) stops every agent the same way and raises :class:`Interrupted`. It never waits
longer than ``timeout_s`` plus the grace period.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .distributed import ENV

__all__ = ["launch", "AgentFailed", "Interrupted", "free_port", "last_step"]

STEP_RE = re.compile(r"^\[htbo-agent \d+\] step (\d+)", re.M)
PROGRESS_RE = re.compile(r"^\[htbo-agent 0\] (step .*)$")


class AgentFailed(RuntimeError):
    """A distributed run failed; ``agent`` (None on timeout), ``code``, ``step``, ``log``."""

    def __init__(self, message, agent=None, code=None, step=None, log=None):
        super().__init__(message)
        self.agent, self.code, self.step, self.log = agent, code, step, log


class Interrupted(AgentFailed):
    """The launcher received SIGTERM or SIGINT (``signum``) and stopped every agent."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_step(log: Path) -> int | None:
    """The last step an agent reported in its log (``[htbo-agent K] step N`` lines)."""
    try:
        found = STEP_RE.findall(Path(log).read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def _agent_env(k: int, n: int, port: int, heartbeat_s: int, extra: dict | None) -> dict:
    import htbo
    env = dict(os.environ)
    src = str(Path(htbo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    env["XLA_FLAGS"] = " ".join([f for f in env.get("XLA_FLAGS", "").split()
                                 if "device_count" not in f]
                                + ["--xla_force_host_platform_device_count=1"])
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update({ENV["coordinator"]: f"127.0.0.1:{port}", ENV["num_processes"]: str(n),
                ENV["process_id"]: str(k), ENV["heartbeat_s"]: str(heartbeat_s),
                "HTBO_PARENT_PID": str(os.getpid())})  # agents end when the launcher dies
    env.update(extra or {})
    return env


def _signal_group(p, sig) -> None:
    """``sig`` to the agent's process group (its own session); only while it is unreaped, so
    the id cannot have been reused."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop(procs, grace_s: float) -> int:
    """SIGTERM every live agent, wait up to ``grace_s`` in all, SIGKILL the rest; reap all.
    Returns how many needed SIGKILL."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed = 0
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()
            killed += 1
    return killed


def _catch_signals(received: list) -> dict:
    """Record SIGTERM/SIGINT in ``received`` instead of dying (main thread only; a signal
    that is ignored, e.g. SIGINT of a background job, stays ignored). Returns the previous
    handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if prev is not signal.SIG_IGN:
            old[sig] = signal.signal(sig, lambda signum, _frame: received.append(signum))
    return old


class _Tail:
    """New complete lines of a growing file."""

    def __init__(self, path: Path):
        self.path, self.pos, self.rest = path, 0, ""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        *done, self.rest = (self.rest + data.decode(errors="replace")).split("\n")
        return done


def _relay(tail: _Tail | None) -> None:
    if tail is not None:
        for line in tail.lines():
            m = PROGRESS_RE.match(line)
            if m:
                print(f"[htbo launch] {m.group(1)}", file=sys.stderr, flush=True)


def launch(n_agents: int, worker_args: Sequence[str], out_dir, *, timeout_s: float = 600.0,
           heartbeat_s: int = 10, grace_s: float = 5.0, poll_s: float = 0.1,
           env: dict | None = None, python: str = sys.executable, quiet: bool = False) -> Path:
    """Run ``n_agents`` local agent processes with ``worker_args`` (after ``agent``).

    Returns the output directory when every agent exited 0; otherwise stops the rest and
    raises :class:`AgentFailed` (one-line message); on SIGTERM/SIGINT it stops them all and
    raises :class:`Interrupted`. ``env``: extra environment variables. ``quiet``: no progress
    lines (agent 0's ``step`` lines, relayed to stderr) and no final line.
    """
    if isinstance(n_agents, bool) or not isinstance(n_agents, int) or n_agents < 1:
        raise ValueError(f"n_agents must be a positive integer, got {n_agents!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    out = Path(out_dir)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [python, "-m", "htbo.decentralized.cli", "agent", *worker_args]
    procs, files, received = [], [], []
    old_handlers = _catch_signals(received)
    tail = None if quiet else _Tail(logs / "agent-0.log")
    try:
        for k in range(n_agents):
            f = open(logs / f"agent-{k}.log", "w")
            files.append(f)
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          env=_agent_env(k, n_agents, port, heartbeat_s, env),
                                          start_new_session=True))
        start = time.monotonic()
        while True:
            _relay(tail)
            if received:
                t0 = time.monotonic()
                killed = _stop(procs, grace_s)
                name = signal.Signals(received[0]).name
                how = f", {killed} of them by SIGKILL after {grace_s:g} s" if killed else ""
                steps = [last_step(logs / f"agent-{i}.log") for i in range(n_agents)]
                raise Interrupted(f"htbo launch: received {name}; stopped all {n_agents} agents "
                                  f"in {time.monotonic() - t0:.1f} s{how} (last steps per "
                                  f"agent: {steps}); logs: {logs}", received[0])
            codes = [p.poll() for p in procs]
            bad = [k for k, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                # the first to die is the cause; peers blocked in a collective with it fail
                # right after (within one poll): its log stopped changing first
                k = min(bad, key=lambda i: _exit_order(logs / f"agent-{i}.log"))
                _stop(procs, grace_s)
                log = logs / f"agent-{k}.log"
                step = last_step(log)
                at = f"after step {step}" if step is not None else "before its first step"
                raise AgentFailed(f"htbo launch: agent {k} of {n_agents} exited with code "
                                  f"{codes[k]} {at}; stopped the other agents; log: {log}",
                                  k, codes[k], step, log)
            if all(c == 0 for c in codes):
                _relay(tail)
                if not quiet:
                    print(f"htbo launch: {n_agents} agents finished; results in {out}")
                return out
            if time.monotonic() - start > timeout_s:
                _stop(procs, grace_s)
                steps = [last_step(logs / f"agent-{i}.log") for i in range(n_agents)]
                raise AgentFailed(f"htbo launch: time limit {timeout_s:g}s reached (last "
                                  f"steps per agent: {steps}); stopped all agents; logs: {logs}")
            time.sleep(poll_s)
    finally:
        _stop(procs, grace_s)
        for f in files:
            f.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


def _exit_order(log: Path) -> int:
    """Modification time of an agent's log: the agent that died first stopped writing first."""
    try:
        return log.stat().st_mtime_ns
    except OSError:
        return 1 << 62
