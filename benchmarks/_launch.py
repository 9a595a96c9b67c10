"""Shared by bench_distributed.py and decentralized_cleaning.py: a decentralized plan run with
one local process per agent, as ``htbo launch`` runs it (claim a run directory, write the
plan, start the agents on it), and what process 0 measured."""
from __future__ import annotations

import json
import re
import tempfile
import time

from htbo.decentralized.launch import launch
from htbo.jobs import claim_run_dir

# JAX's compile log (JAX_LOG_COMPILES) for a program whose last argument is a traced int32
# scalar: the chunk of a traced number of steps (and its non-finite replay)
_CHUNK_COMPILE = re.compile(r"^Compiling jit\(\w+\) with global shapes and types "
                            r"\(.*ShapedArray\(int32\[\]\)\)\.", re.M)


def launch_plan(plan, agents: int, *, timeout_s: float = 600, env: dict | None = None) -> dict:
    """Run ``plan`` (one entry, network of ``agents``) in a temporary directory; returns
    ``rows`` (history.jsonl), ``run_s`` and ``compile_s`` (process 0's compiled-chunk and
    compile seconds, from runs.jsonl), ``wall_s`` (the agents' start to their end) and
    ``chunk_compiles`` (XLA compilations of the chunk program in process 0, from its log)."""
    env = dict(env or {}, JAX_LOG_COMPILES="1")
    with tempfile.TemporaryDirectory() as tmp:
        with claim_run_dir(tmp, plan, command="launch_plan") as path:
            t0 = time.perf_counter()
            launch(agents, ["--plan", str(path / "config.json")], path, timeout_s=timeout_s,
                   env=env, quiet=True)
            wall = time.perf_counter() - t0
            log = (path / "logs" / "agent-0.log").read_text()
            read = lambda name: [json.loads(s) for s in (path / name).read_text()  # noqa: E731
                                 .splitlines()]
            fin = [r for r in read("runs.jsonl") if r["status"] == "finished"][-1]
            return dict(rows=read("history.jsonl"), run_s=fin["run_s"],
                        compile_s=fin["compile_s"], wall_s=wall,
                        chunk_compiles=len(_CHUNK_COMPILE.findall(log)))
