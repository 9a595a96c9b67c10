"""Real multi-process runs on localhost (one process per agent, gloo collectives).

Slow-ish by nature (process start + jax.distributed handshake): four launches in total.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from htbo.decentralized import distributed as dist
from htbo.decentralized.launch import AgentFailed, launch, last_step
from htbo.problems.base import BilevelProblem

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
ETA, SIGMA, D = 0.3, 0.1, 3


# -- a tiny decentralized method written for ONE agent (gossip + noisy local gradient) ------
class _Dec(NamedTuple):
    name: str
    init: object
    step: object
    sfo_per_step: int
    comm_per_step: int
    params: object


def ring_w(m):
    W = np.zeros((m, m))
    for i in range(m):
        for j in (i - 1, i, i + 1):
            W[i, j % m] += 1.0 / 3.0
    return W


def ring_mix(m):
    """Σ_j W_ij x_j on a ring via two ppermutes (W of :func:`ring_w`)."""
    right = [(i, (i + 1) % m) for i in range(m)]
    left = [(i, (i - 1) % m) for i in range(m)]

    def mix(x):
        return jax.tree_util.tree_map(
            lambda a: (a + jax.lax.ppermute(a, "agents", right)
                       + jax.lax.ppermute(a, "agents", left)) / 3.0, x)
    return mix


def _targets(m, d=D):
    return np.arange(m * d, dtype=np.float32).reshape(m, d) / (m * d)


def gossip_solver():
    def init(p, x0, y0, key, hp):
        return dict(x=x0, y=y0)

    def step(p, st, key, mix):
        k = jax.random.fold_in(key, jax.lax.axis_index("agents"))
        noise = SIGMA * jax.random.normal(k, st["x"].shape)
        x = mix(st["x"]) - ETA * (st["x"] - p.data_f + noise)
        return dict(x=x, y=st["y"])

    return _Dec("gossip", init, step, 1, 1, lambda st: (st["x"], st["y"]))


def gossip_spec(agents, problem, solver, noise=None, network="ring", hp=None, seed=0):
    """Spec factory used by the agent processes (``--factory test_distributed:gossip_spec``);
    ``hp={"dim": d}`` sets the dimension (default D; the benchmark uses larger ones)."""
    m, d = agents, int((hp or {}).get("dim", D))
    b = _targets(m, d)
    prob = BilevelProblem(f=lambda x, y, d: 0.5 * jnp.sum((x - d) ** 2),
                          g=lambda x, y, d: 0.5 * jnp.sum((y - x) ** 2),
                          x0=np.ones((m, d), np.float32), y0=np.zeros((m, d), np.float32),
                          data_f=b, name="gossip-quadratic")

    def evaluate(p, xs, ys):
        return dict(grad_norm=float(np.linalg.norm(np.mean(xs, 0) - b.mean(0))))

    return dict(problem=prob, solver=gossip_solver(), mix=ring_mix(m), evaluate=evaluate)


def dense_reference(m, steps, seed):
    """Independent numpy recursion X ← W X − η (X − B + σ N_t), same keys as the runner."""
    W, B = ring_w(m), _targets(m).astype(np.float64)
    X = np.ones((m, D))
    key = jax.random.split(jax.random.key(seed))[1]
    out = []
    for _ in range(steps):
        key, sub = jax.random.split(key)
        N = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(sub, i), (D,)))
                      for i in range(m)])
        X = W @ X - ETA * (X - B + SIGMA * N)
        out.append(X)
    return out


def _launch(tmp, m, steps, extra=(), timeout=90.0):
    args = ["--factory", "test_distributed:gossip_spec", "--problem", "gossip",
            "--solver", "gossip", "--network", f"ring:{m}", "--steps", str(steps),
            "--n-evals", str(steps), "--seeds", "5-5", *extra]
    env = {"PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    return launch(m, args, tmp, timeout_s=timeout, heartbeat_s=5, env=env, quiet=True)


# -- tests ---------------------------------------------------------------------------------------
def test_config_from_env_validates():
    ok = {"HTBO_COORDINATOR": "10.0.0.1:1234", "HTBO_NUM_PROCESSES": "4",
          "HTBO_PROCESS_ID": "3", "HTBO_HEARTBEAT_S": "7"}
    cfg = dist.config_from_env(ok)
    assert (cfg.coordinator, cfg.num_processes, cfg.process_id, cfg.heartbeat_s) == \
        ("10.0.0.1:1234", 4, 3, 7)
    for bad, msg in [({"HTBO_COORDINATOR": "nohost"}, "host:port"),
                     ({"HTBO_PROCESS_ID": "4"}, "must be <"),
                     ({"HTBO_NUM_PROCESSES": "x"}, "integer"),
                     ({"HTBO_PROCESS_ID": ""}, "required")]:
        with pytest.raises(ValueError, match=msg):
            dist.config_from_env({**ok, **bad})


def test_distributed_matches_simulated_and_dense_reference(tmp_path, monkeypatch, capsys):
    """Through the CLI (``htbo launch``): iterates, rows, progress lines and output files."""
    from htbo.decentralized.cli import main
    m, steps = 4, 50
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), str(TESTS)]))
    out = tmp_path
    assert main(["launch", "--factory", "test_distributed:gossip_spec", "--problem", "gossip",
                 "--solver", "gossip", "--network", f"ring:{m}", "--steps", str(steps),
                 "--n-evals", str(steps), "--seeds", "5-5", "--noise", "none",
                 "--save-iterates", "--heartbeat", "5", "--timeout", "90",
                 "--out", str(out)]) == 0
    cap = capsys.readouterr()
    progress = [ln for ln in cap.err.splitlines() if ln.startswith("[htbo launch] step")]
    assert len(progress) == steps and progress[-1].startswith(
        f"[htbo launch] step {steps}/{steps} seed 5 (1/1): grad_norm"), cap.err
    assert "| gossip | 1 | 50 |" in (out / "summary.md").read_text() and "| gossip |" in cap.out
    meta = [json.loads(s) for s in (out / "runs.jsonl").read_text().splitlines()]
    assert len(meta) == 1 and meta[0]["mode"] == "distributed" and meta[0]["agents"] == m
    assert meta[0]["network"] == f"ring:{m}" and meta[0]["seeds"] == [5]
    assert meta[0]["noise"] == "none" and meta[0]["compile_s"] > 0 and meta[0]["run_s"] > 0
    assert (out / "plot.png").stat().st_size > 10_000
    its = np.load(out / "iterates.npz")
    ref = dense_reference(m, steps, seed=5)
    # simulated mode: vmap of the same per-agent chunk with axis_name="agents"
    spec = gossip_spec(m, "gossip", "gossip")
    one = dist.agent_chunk(spec["solver"], spec["mix"], 1)
    sim = jax.jit(jax.vmap(one, in_axes=(0, 0, None), out_axes=(0, None),
                           axis_name="agents"))
    prob = spec["problem"]
    st = dict(x=jnp.asarray(prob.x0), y=jnp.asarray(prob.y0))
    key = jax.random.key_data(jax.random.split(jax.random.key(5))[1])
    for t in range(1, steps + 1):
        st, key = sim(prob, st, key)
        got = its[f"seed5_step{t}_leaf0"]
        np.testing.assert_allclose(got, np.asarray(st["x"]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, ref[t - 1], rtol=1e-4, atol=1e-5)
    rows = [json.loads(s) for s in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(steps + 1))
    last = rows[-1]
    assert last["sfo"] == steps and last["comm_rounds"] == steps and last["agents"] == m
    assert last["bytes_sent"] == steps * 2 * D * 4  # per agent: 2 ppermutes of D float32
    xs = ref[-1]
    assert last["consensus"] == pytest.approx(np.mean(np.sum((xs - xs.mean(0)) ** 2, 1)),
                                              rel=1e-3)
    assert last["grad_norm"] == pytest.approx(
        np.linalg.norm(xs.mean(0) - _targets(m).mean(0)), rel=1e-3, abs=1e-6)
    assert last["time_s"] > 0


def test_dead_agent_stops_run_with_clear_error(tmp_path):
    m, t0 = 3, time.monotonic()
    with pytest.raises(AgentFailed) as err:
        _launch(tmp_path, m, 200, ["--fail-agent", "1", "--fail-at-step", "20"], timeout=60)
    elapsed = time.monotonic() - t0
    e = err.value
    assert e.agent == 1 and e.code == 3 and e.step == 20
    msg = str(e)
    assert "\n" not in msg and "agent 1 of 3" in msg and "code 3" in msg and "step 20" in msg
    assert str(tmp_path / "logs" / "agent-1.log") in msg
    assert elapsed < 45, f"took {elapsed:.1f}s to report the dead agent"
    # the surviving agents were stopped before finishing the 200 steps
    for k in (0, 2):
        assert "done" not in (tmp_path / "logs" / f"agent-{k}.log").read_text()
        assert (last_step(tmp_path / "logs" / f"agent-{k}.log") or 0) < 200


@pytest.mark.parametrize("extra, msg", [
    (["--network", "ring:4", "--agents", "3"], "ring:4 has 4 agents but --agents is 3"),
    (["--network", "ring"], "--agents"),
    (["--network", "hypercube:4"], "unknown network 'hypercube'"),
    (["--solver", "nope"], "unknown decentralized solver 'nope'"),
    (["--problem", "nope"], "unknown decentralized problem 'nope'"),
    (["--hp", "eta_x=-1"], "eta_x must be a finite positive"),
    (["--hp", "eta=0.1"], "bad hyperparameters for 'dnsvrb'"),
    (["--noise", "cauchy:1"], "unknown noise"),
    (["--seeds", "1,1"], "duplicate seeds"),
    (["--seeds", "0-x"], "--seeds: expected"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_launch_validates_its_arguments_before_starting_agents(tmp_path, capsys, extra, msg):
    """Bad arguments: one line from the launcher (exit 2), not 'agent 0 exited before its
    first step' with the reason in a log."""
    from htbo.decentralized.cli import main
    argv = ["launch", "--out", str(tmp_path / "o"), "--steps", "5", *extra]
    if "--network" not in extra:
        argv += ["--network", "ring:3"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("htbo: error: ") and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()  # nothing was started


def test_launch_has_run_s_defaults_and_the_agent_worker_is_hidden():
    from htbo.cli import build_parser
    from htbo.decentralized.cli import main
    parser = build_parser()
    assert "SUPPRESS" not in parser.format_help()
    commands = next(a for a in parser._actions if a.dest == "cmd").choices
    assert "launch" in commands and "agent" not in commands
    args = parser.parse_args(["launch"])
    run = parser.parse_args(["run"])
    for k in ("seeds", "steps", "budget", "n_evals", "out"):
        assert getattr(args, k) == getattr(run, k), k
    # both leave --noise unset: the problem's documented noise, else DEFAULT_NOISE
    assert args.noise is None and run.noise is None
    with pytest.raises(SystemExit) as e:  # the worker the launcher starts still parses
        main(["agent", "--help"])
    assert e.value.code == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # zombies are dead
    except FileNotFoundError:
        return False


def test_sigterm_to_launch_stops_every_agent(tmp_path):
    """SIGTERM to ``htbo launch`` while 2 agents compute: the launcher stops them (the agents
    end on SIGTERM itself, no SIGKILL escalation) and exits 143 with one line; no agent
    process remains. Agents used to catch SIGTERM (JAX's preemption notifier) and run on."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    cmd = [sys.executable, "-m", "htbo.cli", "launch", "--factory", "test_distributed:gossip_spec",
           "--network", "ring:2", "--steps", str(10**8), "--n-evals", str(10**5), "--seeds", "1",
           "--noise", "none", "--heartbeat", "5", "--out", str(tmp_path)]
    logs = [tmp_path / "logs" / f"agent-{k}.log" for k in range(2)]
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    pids = []
    try:
        deadline = time.monotonic() + 90
        while not all(last_step(log) for log in logs):  # both agents are computing
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "stderr").read_text()
            time.sleep(0.1)
        pids = [int(log.read_text().split(" pid ", 1)[1].split(":", 1)[0]) for log in logs]
        assert all(_alive(p) for p in pids)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
        err = (tmp_path / "stderr").read_text().strip().splitlines()
        assert rc == 128 + signal.SIGTERM, err
        assert err[-1].startswith("htbo launch: received SIGTERM; stopped all 2 agents in ")
        assert "SIGKILL" not in err[-1], err[-1]  # the agents ended on SIGTERM
        assert not any(_alive(p) for p in pids), pids
        assert elapsed < 10, f"{elapsed:.1f} s from SIGTERM to exit"
    finally:  # never leave our processes behind, whatever failed above
        for p in [proc.pid] + pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait()


def test_count_communication_reads_collectives_off_the_step():
    m = 5
    spec = gossip_spec(m, "g", "g")
    assert dist.count_communication(spec["solver"], spec["problem"], spec["mix"], m) == \
        dict(rounds=2, bytes=2 * m * D * 4)
    W = jnp.asarray(ring_w(m), jnp.float32)

    def dense_mix(x):  # all_gather + a row of W, inside a 3-step scan: 3 rounds
        def once(a, _):
            row = W[jax.lax.axis_index("agents")]
            return row @ jax.lax.all_gather(a, "agents"), None
        return jax.lax.scan(once, x, None, length=3)[0]
    assert dist.count_communication(spec["solver"], spec["problem"], dense_mix, m) == \
        dict(rounds=3, bytes=3 * D * 4 * m * (m - 1))

    def bad_mix(x):
        return jax.lax.psum(x, "agents") / m
    with pytest.raises(ValueError, match="psum"):
        dist.count_communication(spec["solver"], spec["problem"], bad_mix, m)


def test_dnsvrb_distributed_equals_simulated_step_by_step(tmp_path):
    """The real method (D-NSVRB, STORM + tracking + normalization) on the heterogeneous
    decentralized quadratic with α-stable noise: 4 processes on localhost vs the simulated
    mode (vmap over stacked agents), compared at every one of 50 steps."""
    from htbo.decentralized import decentralized_spec
    from htbo.decentralized.simulate import as_network_solver
    m, steps, seed = 4, 50, 7
    args = ["--problem", "quadratic", "--solver", "dnsvrb", "--network", f"ring:{m}",
            "--noise", "stable:1.5", "--steps", str(steps), "--n-evals", str(steps),
            "--seeds", f"{seed}-{seed}", "--hp", "beta=0.5", "--save-iterates"]
    out = launch(m, args, tmp_path, timeout_s=150, heartbeat_s=5,
                 env={"PYTHONPATH": str(SRC)}, quiet=True)
    its = np.load(out / "iterates.npz")
    spec = decentralized_spec(m, "quadratic", "dnsvrb", noise="stable:1.5",
                              network=f"ring:{m}", hp={"beta": 0.5})
    solver = as_network_solver(spec["solver"], spec["mix"])
    prob = spec["problem"]
    ikey, key = jax.random.split(jax.random.key(seed))  # as htbo.run and the agents do
    state = jax.jit(solver.init)(prob, prob.x0, prob.y0, ikey, solver.hp)
    step = jax.jit(solver.step)
    for t in range(1, steps + 1):
        key, sub = jax.random.split(key)
        state = step(prob, state, sub)
        np.testing.assert_allclose(its[f"seed{seed}_step{t}_leaf0"],
                                   np.asarray(state.w["x"]), rtol=1e-4, atol=1e-5)
    rows = [json.loads(s) for s in (out / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["sfo"] == steps * spec["solver"].sfo_per_step
    # communication columns agree with the simulated mode's accounting
    from htbo.decentralized.simulate import payload_bytes
    assert rows[-1]["comm_rounds"] == steps * spec["mix"].rounds
    assert rows[-1]["bytes_sent"] == pytest.approx(
        steps * payload_bytes(spec["solver"], prob, spec["mix"]))
    assert np.isfinite(rows[-1]["grad_norm"]) and rows[-1]["consensus"] >= 0


def test_distributed_runner_compiles_one_chunk_program_for_uneven_chunks():
    """In this process (one device = one agent, no jax.distributed): n_evals=4 over 10 steps
    gives chunks of 2, 3, 3, 2 steps. The chunk length is traced, so the run compiles as
    many XLA programs as a run with a single chunk (counted here by our own jax.monitoring
    listener), reports ``chunk_compiles == 1``, and its iterates are the dense recursion's."""
    spec = gossip_spec(1, "gossip", "gossip")
    counts = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda e, d, **kw: counts.append(e) if e.endswith("backend_compile_duration") else None)

    def run(n_evals):
        before = len(counts)
        res = dist.run_distributed(spec["problem"], spec["solver"], spec["mix"], steps=10,
                                   seeds=[5], n_evals=n_evals, evaluate=spec["evaluate"],
                                   keep_iterates=True)
        return res, len(counts) - before
    run(1)  # warm the programs shared by every run (gather, ...)
    one, n_one = run(1)
    uneven, n_uneven = run(4)
    assert [s for s, _ in uneven["iterates"][5]] == [0, 2, 5, 8, 10]
    assert n_uneven == n_one and one["chunk_compiles"] == uneven["chunk_compiles"] == 1
    assert uneven["compile_s"] > 0
    ref = dense_reference(1, 10, seed=5)
    for step, xs in uneven["iterates"][5][1:]:
        np.testing.assert_allclose(xs, ref[step - 1], rtol=1e-5, atol=1e-6)
