"""Real multi-process runs on localhost (one process per agent, gloo collectives).

Slow-ish by nature (process start + jax.distributed handshake): three launches in total.
"""
from __future__ import annotations

import json
import os
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


def test_distributed_matches_simulated_and_dense_reference(tmp_path):
    m, steps = 4, 50
    out = _launch(tmp_path, m, steps, ["--save-iterates"])
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


def test_launch_cli_rejects_inconsistent_agent_count(tmp_path, capsys):
    from htbo.decentralized.cli import main
    base = ["launch", "--problem", "p", "--solver", "s", "--steps", "5", "--out", str(tmp_path)]
    assert main(base + ["--network", "ring:4", "--agents", "3"]) == 2
    assert "ring:4 has 4 agents but --agents is 3" in capsys.readouterr().err
    assert main(base + ["--network", "ring"]) == 2
    assert "--agents" in capsys.readouterr().err
    assert main(base + ["--network", "ring:4", "--seeds", "1,1"]) == 2
    assert not (tmp_path / "logs").exists()  # nothing was started


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
