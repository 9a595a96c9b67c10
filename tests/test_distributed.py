"""Real multi-process runs on localhost (one process per agent, gloo collectives).

Slow-ish by nature (process start + jax.distributed handshake): a handful of launches. The
gossip method below is a user solver and problem given to ``htbo launch`` as
``module:Class`` / ``module:function``, so its iterates can be checked against a dense NumPy
recursion; D-NSVRB is checked against the simulated mode step by step.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from htbo.decentralized import distributed as dist
from htbo.problems.base import BilevelProblem
from htbo.solvers.base import Solver, family, numeric

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
ETA, SIGMA, D = 0.3, 0.1, 3
ENV = {"PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}


# -- a tiny decentralized method written for ONE agent (gossip + noisy local gradient) ------
class GossipState(NamedTuple):
    x: Any
    y: Any
    hp: Any


@family
class Gossip(Solver):
    """x ← Σ_j W_ij x_j − η (x − b_i + σ N): a user solver (not registered)."""

    kind = "decentralized"
    comm_per_step = 1
    base_name = "gossip"
    sfo_per_step = 1
    eta: float = numeric(ETA)
    sigma: float = numeric(SIGMA)

    def init(self, p, x0, y0, key, hp):
        return GossipState(x0, y0, hp)

    def step(self, p, st, key, mix):
        k = jax.random.fold_in(key, jax.lax.axis_index("agents"))
        noise = st.hp["sigma"] * jax.random.normal(k, st.x.shape)
        x = mix(st.x) - st.hp["eta"] * (st.x - p.data_f[0] + noise)
        return GossipState(x, st.y, st.hp)

    def params(self, st):
        return st.x, st.y


def ring_w(m):
    W = np.zeros((m, m))
    for i in range(m):
        for j in (i - 1, i, i + 1):
            W[i, j % m] += 1.0 / 3.0
    return W


def _targets(m, d=D):
    return np.arange(m * d, dtype=np.float32).reshape(m, d) / (m * d)


def gossip_problem(m: int = 4, dim: int = D):
    """The network problem: f_i = ½‖x − b_i‖² (one sample b_i per agent), g = ½‖y − x‖², so
    φ(x) = mean_i ½‖x − b_i‖², ∇φ(x) = x − b̄ and y*(x) = x."""
    b = _targets(m, dim)
    bbar = jnp.asarray(b.mean(0))
    return BilevelProblem(f=lambda x, y, d: 0.5 * jnp.sum((x - d[0]) ** 2),
                          g=lambda x, y, d: 0.5 * jnp.sum((y - x) ** 2),
                          x0=np.ones((m, dim), np.float32), y0=np.zeros((m, dim), np.float32),
                          data_f=b[:, None], name="gossip-quadratic", y_star=lambda x: x,
                          phi=lambda x: 0.5 * jnp.mean(jnp.sum((x - jnp.asarray(b)) ** 2, 1)),
                          grad_phi=lambda x: x - bbar)


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


def _gossip_argv(out, m, steps, *extra, seeds="5"):
    return ["launch", "--problem", "test_distributed:gossip_problem",
            "--solver", "test_distributed:Gossip", "--network", f"ring:{m}", "--steps",
            str(steps), "--n-evals", str(steps), "--seeds", seeds, "--noise", "none",
            "--heartbeat", "5", "--timeout", "90", "--no-progress", "--out", str(out), *extra]


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
    """Through the CLI (``htbo launch``) with a user solver and problem: iterates, rows and
    output files; the launcher's progress lines relay agent 0's."""
    from htbo.cli import main
    from htbo.decentralized.simulate import NetworkSolver, mixer_for
    m, steps = 4, 30
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    out = tmp_path / "gossip"
    argv = _gossip_argv(out, m, steps, "--save-iterates", seeds="0,3")
    argv.remove("--no-progress")
    assert main(argv) == 0
    cap = capsys.readouterr()
    progress = [ln for ln in cap.err.splitlines() if ln.startswith("[htbo launch] step")]
    assert len(progress) == 2 * (steps + 1) and progress[-1].startswith(
        f"[htbo launch] step {steps}/{steps} seed 3 (2/2): grad_norm"), cap.err
    assert "| test_distributed:Gossip | 2 | 30 |" in (out / "summary.md").read_text()
    recs = [json.loads(s) for s in (out / "runs.jsonl").read_text().splitlines()]
    fin = [r for r in recs if r["status"] == "finished"]
    assert len(fin) == 1 and fin[0]["mode"] == "distributed" and fin[0]["agents"] == m
    assert fin[0]["network"] == f"ring:{m}" and fin[0]["seeds"] == [0, 3]
    assert fin[0]["noise"] == "none" and fin[0]["compile_s"] > 0 and fin[0]["run_s"] > 0
    assert (out / "plot.png").stat().st_size > 10_000
    its = np.load(out / "iterates.npz")
    prob = gossip_problem(m)
    W = ring_w(m)
    solver = NetworkSolver(Gossip(), mixer_for(W))
    init, step, _ = solver.program()
    for seed in (0, 3):
        ref = dense_reference(m, steps, seed=seed)
        ikey, key = jax.random.split(jax.random.key(seed))  # as the run loop does
        st = jax.jit(init)(prob, prob.x0, prob.y0, ikey, solver.hp)
        for t in range(1, steps + 1):
            key, sub = jax.random.split(key)
            st = jax.jit(step)(prob, st, sub)
            got = its[f"seed{seed}_step{t}_leaf0"]
            np.testing.assert_allclose(got, np.asarray(st.x), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got, ref[t - 1], rtol=1e-4, atol=1e-5)
    rows = [json.loads(s) for s in (out / "history.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == list(range(steps + 1))
    last = [r for r in rows if r["step"] == steps and r["seed"] == 0][0]
    # per step: one mixing call = 2 exchanges (the 2 edge colours of ring:4); per agent 2
    # messages of D float32 (one to each neighbour)
    assert last["sfo"] == steps and last["comm_rounds"] == 2 * steps and last["agents"] == m
    assert last["bytes_sent"] == steps * 2 * D * 4
    xs = dense_reference(m, steps, seed=0)[-1]
    assert last["consensus"] == pytest.approx(np.mean(np.sum((xs - xs.mean(0)) ** 2, 1)),
                                              rel=1e-3)
    assert last["grad_norm"] == pytest.approx(
        np.linalg.norm(xs.mean(0) - _targets(m).mean(0)), rel=1e-3, abs=1e-6)
    assert last["time_s"] > 0


def test_dead_agent_stops_run_with_clear_error(tmp_path, monkeypatch, capsys):
    from htbo.cli import main
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    t0 = time.monotonic()
    rc = main(_gossip_argv(tmp_path, 3, 200, "--fail-agent", "1", "--fail-at-step", "20"))
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1
    assert "agent 1 of 3" in err and "code 3" in err and "step 20" in err, err
    assert str(tmp_path / "logs" / "agent-1.log") in err
    assert elapsed < 45, f"took {elapsed:.1f}s to report the dead agent"
    from htbo.decentralized.launch import last_step
    for k in (0, 2):  # the surviving agents were stopped before finishing the 200 steps
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
    # both leave --noise unset: the problem's documented noise, else the library default
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


def _start_long_launch(tmp_path, m=2):
    from htbo.decentralized.launch import last_step
    env = dict(os.environ, **ENV)
    argv = _gossip_argv(tmp_path / "run", m, 10**8)
    argv[argv.index("--n-evals") + 1] = str(10**5)
    argv[argv.index("--timeout") + 1] = "600"
    logs = [tmp_path / "run" / "logs" / f"agent-{k}.log" for k in range(m)]
    err = open(tmp_path / "stderr", "w")
    proc = subprocess.Popen([sys.executable, "-m", "htbo.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=err, env=env)
    deadline = time.monotonic() + 90
    while not all(log.exists() and last_step(log) for log in logs):  # agents are computing
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "stderr").read_text()
        time.sleep(0.1)
    pids = [int(log.read_text().split(" pid ", 1)[1].split(":", 1)[0]) for log in logs]
    assert all(_alive(p) for p in pids)
    return proc, pids, err


def test_sigterm_to_launch_stops_every_agent(tmp_path):
    """SIGTERM to ``htbo launch`` while 2 agents compute: the launcher stops them (the agents
    end on SIGTERM itself, no SIGKILL escalation) and exits 143 with one line; no agent
    process remains."""
    proc, pids, errf = _start_long_launch(tmp_path)
    try:
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
        errf.close()
        for p in [proc.pid] + pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait()


def test_count_communication_reads_collectives_off_the_step():
    from htbo.decentralized.simulate import mixer_for
    m = 5
    prob, solver, mix = gossip_problem(m), Gossip(), mixer_for(ring_w(m))
    assert dist.count_communication(solver, prob, mix, m) == \
        dict(rounds=mix.rounds, bytes=2 * m * D * 4)
    W = jnp.asarray(ring_w(m), jnp.float32)

    def dense_mix(x):  # all_gather + a row of W, inside a 3-step scan: 3 rounds
        def once(a, _):
            row = W[jax.lax.axis_index("agents")]
            return row @ jax.lax.all_gather(a, "agents"), None
        return jax.lax.scan(once, x, None, length=3)[0]
    assert dist.count_communication(solver, prob, dense_mix, m) == \
        dict(rounds=3, bytes=3 * D * 4 * m * (m - 1))

    def bad_mix(x):
        return jax.lax.psum(x, "agents") / m
    with pytest.raises(ValueError, match="psum"):
        dist.count_communication(solver, prob, bad_mix, m)


def test_dnsvrb_distributed_equals_simulated_and_a_killed_launch_resumes_identically(
        tmp_path, monkeypatch, capsys):
    """The real method (D-NSVRB: STORM + tracking + normalization) on the heterogeneous
    decentralized quadratic with α-stable noise: 2 processes vs the simulated mode, compared
    every 10 steps; then a launch killed (injected agent failure after step 20) and resumed
    with ``htbo launch --resume`` ends with the same history rows as the uninterrupted
    one."""
    from htbo.cli import main
    from htbo.decentralized import make_dec_solver, make_network_problem, parse_network
    from htbo.decentralized.simulate import NetworkSolver, mixer_for
    m, steps, seed = 2, 40, 7
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    base = ["launch", "--problem", "quadratic", "--solver", "dnsvrb", "--network", f"ring:{m}",
            "--noise", "stable:1.5", "--steps", str(steps), "--n-evals", "4", "--seeds",
            f"{seed}-{seed}", "--hp", "beta=0.5", "--heartbeat", "5", "--timeout", "150",
            "--no-progress"]
    full = tmp_path / "full"
    assert main([*base, "--save-iterates", "--out", str(full)]) == 0
    its = np.load(full / "iterates.npz")
    dec = make_dec_solver("dnsvrb", beta=0.5)
    prob = make_network_problem("quadratic", m, noise="stable:1.5")
    mix = mixer_for(parse_network(f"ring:{m}"))
    solver = NetworkSolver(dec, mix)
    init, step, _ = solver.program()
    keys = jax.random.split(jax.random.key(seed))  # as the run loop does
    state = jax.jit(init)(prob, prob.x0, prob.y0, keys[0], solver.hp)
    key = keys[1]
    for t in range(1, steps + 1):
        key, sub = jax.random.split(key)
        state = jax.jit(step)(prob, state, sub)
        if t % 10 == 0:
            np.testing.assert_allclose(its[f"seed{seed}_step{t}_leaf0"],
                                       np.asarray(state.w["x"]), rtol=1e-4, atol=1e-5)
    rows = [json.loads(s) for s in (full / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["sfo"] == steps * dec.sfo_per_step
    assert rows[-1]["comm_rounds"] == steps * mix.rounds
    # per agent: (w, s) = 2 × (x, y, z) = 2 × 15 float32 to its one neighbour (ring:2)
    assert rows[-1]["bytes_sent"] == pytest.approx(steps * 2 * 15 * 4)
    assert rows[-1]["agents"] == m and rows[-1]["mode"] == "distributed"
    assert np.isfinite(rows[-1]["grad_norm"]) and rows[-1]["consensus"] >= 0
    # killed after the evaluation at step 20, then resumed
    cut = tmp_path / "cut"
    assert main([*base, "--fail-agent", "1", "--fail-at-step", "20", "--out", str(cut)]) == 1
    assert main(["launch", "--resume", str(cut), "--no-progress", "--heartbeat", "5"]) == 0
    capsys.readouterr()
    again = [json.loads(s) for s in (cut / "history.jsonl").read_text().splitlines()]
    key_of = lambda r: (r["step"], r["seed"])  # noqa: E731
    assert sorted(map(key_of, again)) == sorted(map(key_of, rows))
    for a, b in zip(sorted(rows, key=key_of), sorted(again, key=key_of)):
        assert a["grad_norm"] == b["grad_norm"] and a["consensus"] == b["consensus"], (a, b)


def test_distributed_executor_compiles_one_chunk_program_for_uneven_chunks():
    """In this process (one device = one agent, no jax.distributed): n_evals=4 over 10 steps
    gives chunks of 2, 3, 3, 2 steps. The chunk length is traced, so the run compiles one
    chunk program (``chunk_compiles == 1``, counted by a jax.monitoring listener) and its
    iterates are the dense recursion's."""
    from htbo.decentralized.simulate import mixer_for
    prob, mix = gossip_problem(1), mixer_for(np.ones((1, 1)))
    seen = []

    def run(n_evals):
        seen.clear()
        res, ex = dist.run_distributed(
            prob, Gossip(), mix, steps=10, seeds=[5], n_evals=n_evals,
            on_emit=lambda step, st, rows: seen.append((step, np.asarray(
                dist.gather(st.x))[:, 0])))
        return res, ex
    one, ex1 = run(1)
    uneven, ex4 = run(4)
    assert [s for s, _ in seen] == [0, 2, 5, 8, 10]
    assert ex1.chunk_compiles == ex4.chunk_compiles == 1 and uneven.compile_s > 0
    ref = dense_reference(1, 10, seed=5)
    for step, xs in seen[1:]:
        np.testing.assert_allclose(xs, ref[step - 1], rtol=1e-5, atol=1e-6)
