"""Decentralized layer: topologies, gossip, the normalized method and its baselines."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import htbo
from htbo.decentralized import (decentralized_pl, decentralized_quadratic, make_dec_solver,
                                make_dense_mixer, make_mixer, parse_network, run_network, spectral_gap)
from htbo.decentralized.topology import (TOPOLOGIES, check_mixing_matrix, complete,
                                         edge_coloring, erdos_renyi, exponential, max_degree,
                                         metropolis_hastings, ring, star, torus)
from htbo.schedules import exponential as exp_decay

# expected neighbour counts (degree) per topology, m agents
CASES = [(ring(8), [2] * 8), (torus(4, 4), [4] * 16), (exponential(8), [5] * 8),
         (complete(5), [4] * 5), (star(6), [5] + [1] * 5)]


@pytest.mark.parametrize("W, degrees", CASES)
def test_topologies_are_symmetric_doubly_stochastic_with_the_right_sparsity(W, degrees):
    check_mixing_matrix(W)
    assert np.allclose(W, W.T) and np.allclose(W.sum(0), 1) and np.allclose(W.sum(1), 1)
    assert list((W > 0).sum(1) - 1) == degrees


def test_erdos_renyi_is_connected_and_seeded():
    W = erdos_renyi(12, 0.25, seed=3)
    check_mixing_matrix(W)
    assert spectral_gap(W) > 0
    assert np.array_equal(W, erdos_renyi(12, 0.25, seed=3))


def test_check_mixing_matrix_rejects_bad_matrices():
    with pytest.raises(ValueError, match="symmetric"):
        check_mixing_matrix(np.array([[0.5, 0.5], [0.2, 0.8]]))
    with pytest.raises(ValueError, match="disconnected"):
        check_mixing_matrix(np.eye(3))
    with pytest.raises(ValueError, match="unknown network"):
        parse_network("hypercube:8")


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_gossip_preserves_the_mean_and_contracts_at_the_spectral_gap_rate(name):
    W = parse_network(f"{name}:9")
    X = np.random.default_rng(0).standard_normal((9, 4))
    mean = X.mean(0)
    rate = 1 - spectral_gap(W)
    Y = X.copy()
    for t in range(1, 31):
        Y = W @ Y
        assert np.allclose(Y.mean(0), mean)
        # ‖W^t X − X̄‖ ≤ (1 − gap)^t ‖X − X̄‖, and the rate is attained for a worst-case X
        assert np.linalg.norm(Y - mean) <= rate**t * np.linalg.norm(X - mean) + 1e-12
    lam, vec = np.linalg.eigh(W)
    k = np.argmax(np.where(np.isclose(lam, 1), -np.inf, np.abs(lam)))
    v = vec[:, k]
    assert np.isclose(np.linalg.norm(np.linalg.matrix_power(W, 10) @ v), rate**10)


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_ppermute_mixer_equals_w_times_x_under_vmap(name):
    W = parse_network(f"{name}:10")
    mix = make_mixer(W)
    assert mix.edges == (np.count_nonzero(W) - 10) // 2
    assert mix.rounds == len(edge_coloring(W)) <= max_degree(W) + 1
    X = {"a": jax.random.normal(jax.random.key(1), (10, 3)), "b": jnp.arange(10.0)}
    out = jax.vmap(mix, axis_name="agents")(X)
    np.testing.assert_allclose(np.asarray(out["a"]), W @ np.asarray(X["a"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["b"]), W @ np.arange(10.0), atol=1e-5)
    dense = jax.vmap(make_dense_mixer(W), axis_name="agents")(X)
    np.testing.assert_allclose(np.asarray(dense["a"]), W @ np.asarray(X["a"]), atol=1e-5)


def _graphs():
    """Named topologies at several sizes, Erdős–Rényi draws and random graphs (any degree
    pattern), as (label, W)."""
    out = [(f"{n}:{m}", parse_network(f"{n}:{m}")) for n in sorted(TOPOLOGIES)
           for m in (2, 5, 8, 9, 16)]
    out += [(f"erdos-renyi:20 p=0.4 seed {k}", erdos_renyi(20, 0.4, seed=k)) for k in range(3)]
    rng = np.random.default_rng(0)
    for k in range(60):
        m = int(rng.integers(3, 25))
        upper = np.triu(rng.random((m, m)) < rng.uniform(0.1, 0.9), 1)
        out.append((f"random {k}", metropolis_hastings(upper | upper.T)))
    return out


def test_edge_coloring_is_proper_covers_each_edge_once_with_at_most_delta_plus_one():
    for label, W in _graphs():
        m = len(W)
        edges = {(i, j) for i in range(m) for j in range(i + 1, m) if W[i, j] != 0}
        colours = edge_coloring(W)
        coloured = [e for c in colours for e in c]
        assert len(coloured) == len(set(coloured)) and set(coloured) == edges, label
        for c in colours:  # a matching: no agent twice
            nodes = [a for e in c for a in e]
            assert len(nodes) == len(set(nodes)), (label, c)
        delta = int(((W != 0).sum(1) - 1).max())
        assert max_degree(W) == delta and len(colours) <= delta + 1, (label, len(colours))
    # the greedy colouring used 15 and 10 here; Δ + 1 = 9 and 7. Odd K_m needs m colours.
    assert len(edge_coloring(complete(9))) == 9
    assert len(edge_coloring(exponential(9))) == 7
    assert len(edge_coloring(ring(8))) == 2 and len(edge_coloring(star(8))) == 7


@pytest.mark.parametrize("net, true_edges", [("ring:5", 5), ("star:8", 7),
                                             ("erdos-renyi:16", None)])
def test_bytes_and_rounds_count_only_real_edges(net, true_edges):
    """The simulated count (the rows' ``bytes_sent`` per step) and the
    distributed jaxpr counter agree with the graph's true edge count: the (k, k) self-sends
    that pad a matching are not traffic (they made ring:5 336 and 360 B/agent, not 240)."""
    from htbo.decentralized import distributed as dist, make_dec_solver, make_network_problem
    from htbo.decentralized.simulate import mixer_for, network_setup
    W = parse_network(net)
    m = len(W)
    E = (np.count_nonzero(W) - m) // 2
    assert true_edges is None or E == true_edges
    mix, solver = mixer_for(W), make_dec_solver("dnsvrb")
    prob = make_network_problem("quadratic", m)
    assert mix.edges == E and mix.rounds <= max_degree(W) + 1
    # one step mixes w = (x, y, z) and the tracker s: 2 × 15 float32 = 120 bytes per message,
    # one message each way along every edge
    net_bytes = 2 * E * 120
    comm = dist.count_communication(solver, prob, mix, m)
    # the rows' bytes_sent per step (per agent), and the state size it must equal
    counters = network_setup(prob, solver, W)[1]["counters"]
    assert counters["bytes_sent"] == pytest.approx(net_bytes / m)
    assert comm["bytes"] == net_bytes
    # the 6 leaves of (w, s) travel packed: one ppermute per edge colour, not 6
    assert comm["rounds"] == mix.rounds
    # rows: bytes_sent = steps × this, checked on ring:5 in the NumPy recursion test


def _quadratic_grads(p):
    """NumPy float64 closed-form gradients of the decentralized quadratic, all agents at once:
    g_i = ½yᵀA_i y + xᵀC_i y + a_iᵀy, f_i = ½yᵀÃ_i y + xᵀC̃_i y + ã_iᵀy + ½xᵀB̃_i x + b̃_iᵀx."""
    d = {k: np.asarray(v[:, 0], np.float64) for k, v in p.data_f.items()}
    sym = {k: 0.5 * (d[k] + np.swapaxes(d[k], 1, 2)) for k in ("A", "At", "Bt")}

    def mv(M, v):  # per agent M_i v_i
        return np.einsum("mij,mj->mi", M, v)

    def mtv(M, v):  # per agent M_iᵀ v_i
        return np.einsum("mij,mi->mj", M, v)

    def g(x, y):
        return mv(d["C"], y), mv(sym["A"], y) + mtv(d["C"], x) + d["a"]

    def f(x, y):
        return (mv(d["Ct"], y) + mv(sym["Bt"], x) + d["bt"],
                mv(sym["At"], y) + mtv(d["Ct"], x) + d["at"])
    return f, g


def test_dnsvrb_matches_an_independent_numpy_recursion():
    """D-NSVRB (penalty route, STORM, tracking, per-variable normalization) on the noise-free
    quadratic (one sample per agent: minibatches are deterministic), 5 agents on a ring,
    against the update of the dnsvrb docstring written out in NumPy float64:
    w⁺ = W w − η_v(t) s_v/‖s_v‖; u⁺ = D(w⁺) + (1 − β)(u − D(w)); s⁺ = W s + u⁺ − u;
    u₀ = s₀ = D(w₀), z₀ = y₀. One run of 5 steps (one compilation): the rows of every step
    (consensus, ‖∇φ(x̄)‖, bytes, rounds) and the final state (w and s) must agree."""
    m, lam, beta, steps = 5, 10.0, 0.5, 5
    W = ring(m)
    with jax.enable_x64(True):
        p = decentralized_quadratic(m=m, dim_x=3, dim_y=2, dtype=jnp.float64)
        dec = make_dec_solver("dnsvrb", eta_x=exp_decay(0.3, 0.8), eta_y=0.1, eta_z=0.2,
                              lam=lam, beta=beta)
        res = run_network(p, dec, W, steps=steps, seeds=[0], n_evals=steps)
    f, g = _quadratic_grads(p)

    def D(w):
        fx, fy = f(w["x"], w["y"])
        gx_y, gy_y = g(w["x"], w["y"])
        gx_z, gy_z = g(w["x"], w["z"])  # the same sample at (x, z), as in dnsvrb
        return {"x": fx + lam * (gx_y - gx_z), "y": fy / lam + gy_y, "z": gy_z}

    def eta(k, t):
        return {"x": 0.3 * 0.8**t, "y": 0.1, "z": 0.2}[k]

    x0, y0 = np.asarray(p.x0, np.float64), np.asarray(p.y0, np.float64)
    w = {"x": x0, "y": y0, "z": y0}
    u = s = D(w)
    rows = {r["step"]: r for r in res.rows}
    for t in range(steps):
        w_new = {k: W @ w[k] - eta(k, t) * s[k] / np.linalg.norm(s[k], axis=1, keepdims=True)
                 for k in w}
        u_new = {k: v + (1 - beta) * (u[k] - old) for (k, v), old in
                 zip(D(w_new).items(), D(w).values())}
        s = {k: W @ s[k] + u_new[k] - u[k] for k in s}
        w, u = w_new, u_new
        r = rows[t + 1]
        xbar = w["x"].mean(0)
        assert r["consensus"] == pytest.approx(np.mean(np.sum((w["x"] - xbar) ** 2, 1)),
                                               rel=1e-9, abs=1e-15), t + 1
        with jax.enable_x64(True):
            gn = float(jnp.linalg.norm(p.grad_phi(jnp.asarray(xbar))))
        assert r["grad_norm"] == pytest.approx(gn, rel=1e-9), t + 1
        # an odd ring: 3 colours, 5 edges; w and s are 14 float64 = 112 B per message,
        # 2 · 5 messages per step over 5 agents
        assert r["comm_rounds"] == 3 * (t + 1) and r["bytes_sent"] == 224 * (t + 1)
    for k in ("x", "y", "z"):
        np.testing.assert_allclose(np.asarray(res.states.w[k][0]), w[k], rtol=1e-10,
                                   atol=1e-12, err_msg=f"w[{k}] after {steps} steps")
        np.testing.assert_allclose(np.asarray(res.states.s[k][0]), s[k], rtol=1e-10,
                                   atol=1e-12, err_msg=f"s[{k}] after {steps} steps")
    assert np.abs(w["x"] - x0).max() > 0.1  # the iterates did move


def _decay(v):
    return exp_decay(v, 0.998)


def test_noise_free_consensus_and_stationarity_on_heterogeneous_quadratic():
    """8 heterogeneous agents on a ring, float64, penalty λ = 1e5 (bias ≈ 18/λ ≈ 2e-4 here),
    normalized steps decaying as 0.3·0.998^t, STORM β = 0.5, 6000 steps."""
    with jax.enable_x64(True):
        p = decentralized_quadratic(m=8, dtype=jnp.float64)
        s = make_dec_solver("dnsvrb", eta_x=_decay(0.3), eta_y=_decay(0.3), eta_z=_decay(0.3),
                            lam=1e5, beta=0.5)
        res = run_network(p, s, ring(8), steps=6000, seeds=[0], n_evals=2)
    last = res.rows[-1]
    assert res.rows[0]["grad_norm"] > 10
    assert last["consensus"] < 1e-6 and last["grad_norm"] < 1e-3, last
    assert last["comm_rounds"] == 6000 * 2  # one mixing per step, 2 colours on a ring
    assert last["sfo"] == 6000 * 6  # 3 oracle calls, twice for STORM, batch 1


def test_penalty_route_finds_the_right_x_on_a_pl_nonconvex_lower_level():
    """g_i = Σ r_j² + 3 sin² r_j (r = y − Mx): nonconvex, PL, y*(x) = Mx. x* is closed-form.
    Built and run in float64 (x64 on); the check against x* is done in NumPy float64."""
    with jax.enable_x64(True):
        p = decentralized_pl(m=6, dim=4, dtype=jnp.float64)
        s = make_dec_solver("dnsvrb", eta_x=_decay(0.2), eta_y=_decay(0.2), eta_z=_decay(0.2),
                            lam=1e4, beta=1.0)
        res = run_network(p, s, parse_network("exponential:6"), steps=5000, seeds=[0],
                          n_evals=1)
        assert res.states.w["x"].dtype == jnp.float64  # the run really is in float64
        xbar = np.asarray(jnp.mean(res.states.w["x"][0], axis=0))
        M = np.asarray(jax.jacobian(p.y_star)(jnp.asarray(xbar)))
    bbar = np.asarray(p.data_f["b"][:, 0]).mean(0)
    xstar = np.linalg.solve(M.T @ M + 0.5 * np.eye(4), M.T @ bbar)
    assert np.linalg.norm(xstar) > 0.5
    assert np.linalg.norm(xbar - xstar) < 1e-2, (xbar, xstar)
    assert res.rows[-1]["y_err"] < 1e-2


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_default_step_sizes_are_stable_on_every_topology(name):
    """The defaults (noise off) stay finite and improve on 8 agents. Normalized and clipped
    steps are bounded by construction; the unnormalized methods are the ones at risk."""
    p = decentralized_quadratic(m=8)
    W = parse_network(f"{name}:8")
    for solver in ("dsvrb", "dsgd-bilevel"):
        res = run_network(p, make_dec_solver(solver), W, steps=300, seeds=[0], n_evals=1)
        assert res.nonfinite is None
        assert res.rows[-1]["grad_norm"] < res.rows[0]["grad_norm"], (solver, res.rows)


def test_unstable_unnormalized_steps_diverge_with_a_clear_message():
    p = decentralized_quadratic(m=8)
    s = make_dec_solver("dsvrb", eta_x=2.0, eta_y=2.0, eta_z=2.0)
    with pytest.raises(htbo.NonFiniteError, match="non-finite .* at step"):
        run_network(p, s, ring(8), steps=1000, seeds=[0], n_evals=2)


def test_normalized_method_beats_unnormalized_baselines_under_stable_noise():
    """8 agents on a ring, decentralized quadratic (κ = 2), α-stable(1.5) noise of scale 1 on
    every oracle call, 6,000 SFO per agent, seeds 0–4, inner steps 0.05, STORM β = 0.1 for
    the VR methods, every method its best x-step of a grid (a baseline's best must be inside
    its grid). λ = 100: its noise-free floor is 0.23 — at λ = 10 every method sits on the
    ≈ 1.8 penalty floor and the comparison would measure the bias, not the noise."""
    p = decentralized_quadratic(m=8).replace(noise=htbo.parse_noise("stable:1.5"))
    W = ring(8)

    def tuned(name, etas, **hp):
        """Every eta × 5 seeds in one compiled program (htbo.tune), 6,000 SFO per agent."""
        from htbo.decentralized.simulate import network_setup

        def make(**kw):
            return network_setup(p, make_dec_solver(name, **kw), W)[0]
        base = dict(eta_y=0.05, eta_z=0.05, lam=100.0, **hp)
        kw = network_setup(p, make_dec_solver(name, **base), W)[1]
        res = htbo.tune(p, make, {"eta_x": list(etas)}, budget=6_000, seeds=5, hp=base,
                        n_evals=1, run_kwargs=kw, extend=False, eval_seeds=0)
        out = [(t["params"]["eta_x"], t["median"])
               for t in sorted(res.table, key=lambda t: t["point"])]
        return min(out, key=lambda e: e[1]), out

    best = {"dnsvrb": tuned("dnsvrb", (0.01, 0.03, 0.1), beta=0.1),
            "dsvrb": tuned("dsvrb", (0.003, 0.01, 0.03), beta=0.1),
            "dsgd-bilevel": tuned("dsgd-bilevel", (0.001, 0.003, 0.01))}
    for k in ("dsvrb", "dsgd-bilevel"):
        (eta, _), grid = best[k]
        assert grid[0][0] < eta < grid[-1][0], (k, grid)
    med = {k: v[0][1] for k, v in best.items()}
    assert med["dnsvrb"] < 0.8 * med["dsvrb"] and med["dnsvrb"] < 0.8 * med["dsgd-bilevel"], best


def test_iid_split_is_a_disjoint_equal_partition():
    from htbo.decentralized.problems import split_iid
    data = {"a": np.arange(103.0)[:, None] * np.ones((1, 2)), "t": np.arange(103)}
    parts = split_iid(data, 4, seed=1)
    assert parts["a"].shape == (4, 25, 2) and parts["t"].shape == (4, 25)
    flat = np.asarray(parts["t"]).ravel()
    assert len(set(flat)) == 100  # disjoint
    np.testing.assert_array_equal(np.asarray(parts["a"])[..., 0], np.asarray(parts["t"]))


def test_dirichlet_split_skews_labels_as_alpha_shrinks():
    from htbo.decentralized.problems import split_dirichlet
    labels = np.repeat(np.arange(10), 100)
    data = {"t": labels}

    def mean_max_share(alpha):
        parts = np.asarray(split_dirichlet(data, labels, 8, alpha, seed=0)["t"])
        return np.mean([np.bincount(p, minlength=10).max() / len(p) for p in parts])
    skewed, mild = mean_max_share(0.05), mean_max_share(100.0)
    assert skewed > 0.7 and mild < 0.25, (skewed, mild)
    with pytest.raises(ValueError, match="alpha"):
        split_dirichlet(data, labels, 8, 0.0)


def test_disjoint_dirichlet_split_never_repeats_a_sample():
    from htbo.decentralized.problems import dirichlet_indices
    labels = np.repeat(np.arange(10), 100)
    idx, props = dirichlet_indices(labels, 8, 0.05, seed=0, replace=False)
    assert idx.shape == (8, 125) and props.shape == (8, 10)
    assert len(set(idx.ravel())) == idx.size  # disjoint although pools run dry at α = 0.05
    want = np.full((8, 10), 0.4 / 9) + np.eye(8, 10) * (0.6 - 0.4 / 9)  # agent i: 60% label i
    same, _ = dirichlet_indices(labels, 8, 1.0, seed=3, replace=False, proportions=want)
    # fixed shares are used (the last agents get what is left: 8 × 125 = all 1000 samples)
    assert [np.bincount(labels[r], minlength=10).argmax() for r in same[:6]] == list(range(6))


# -- evaluation-only network metrics and the pooled problem -----------------------------------
def test_evaluation_only_network_metrics_equal_the_closed_forms():
    """network_metrics without closed forms (L-BFGS + CG on the pooled problem) == with them."""
    from htbo.decentralized.simulate import network_metrics
    p = decentralized_quadratic(m=4)
    xs = jax.random.normal(jax.random.key(1), (4, 5))
    ys = jax.random.normal(jax.random.key(2), (4, 5))
    closed = network_metrics(p, xs, ys)
    assert p.grad_phi is not None
    bare = p.replace(y_star=None, phi=None, grad_phi=None)
    ev = jax.jit(network_metrics)(bare, xs, ys)
    assert set(closed) == set(ev) == {"grad_norm", "phi", "y_err", "consensus"}
    for k in closed:
        assert float(ev[k]) == pytest.approx(float(closed[k]), rel=1e-4), k
    assert float(closed["grad_norm"]) > 1.0  # away from x*: a non-trivial comparison


def _toy_stacked(m=3, n=4, d=2, seed=0):
    """f_i = mean_j ½‖y − a_ij‖², g_i = mean_j ½‖y − x − c_ij‖² (agent i's n samples)."""
    rng = np.random.default_rng(seed)
    a, c = rng.standard_normal((m, n, d)), rng.standard_normal((m, n, d))
    f = lambda x, y, b: 0.5 * jnp.mean(jnp.sum((y - b["a"]) ** 2, -1))  # noqa: E731
    g = lambda x, y, b: 0.5 * jnp.mean(jnp.sum((y - x - b["c"]) ** 2, -1))  # noqa: E731
    p = htbo.BilevelProblem(f=f, g=g, x0=np.zeros((m, d)), y0=np.zeros((m, d)),
                            data_f={"a": jnp.asarray(a, jnp.float32)},
                            data_g={"c": jnp.asarray(c, jnp.float32)}, noise="gauss")
    return p, a, c


def test_pooled_problem_merges_agents_and_its_phi_is_the_mean_of_the_agents_objectives():
    from htbo.decentralized import pooled_problem
    p, a, c = _toy_stacked()
    pooled = pooled_problem(p)
    assert pooled.x0.shape == (2,) and pooled.y0.shape == (2,) and pooled.noise is None
    assert pooled.data_f["a"].shape == (12, 2) and pooled.data_g["c"].shape == (12, 2)
    x = np.array([0.3, -0.7])
    ystar = x + c.reshape(-1, 2).mean(0)  # argmin of (1/m) Σ g_i, by hand
    gy = jax.grad(pooled.g, argnums=1)(jnp.asarray(x), jnp.asarray(ystar), pooled.data_g)
    np.testing.assert_allclose(gy, 0.0, atol=1e-6)  # ... is the pooled lower solution
    per_agent = [0.5 * np.mean(np.sum((ystar - a[i]) ** 2, -1)) for i in range(3)]
    assert float(pooled.f(x, ystar, pooled.data_f)) == pytest.approx(np.mean(per_agent),
                                                                     rel=1e-5)


# -- decentralized hyper-cleaning ----------------------------------------------------------
def _rows_of(a):
    return [r.tobytes() for r in np.asarray(a)]


def test_decentralized_hypercleaning_splits_the_centralized_data_into_disjoint_shards():
    """digits, 4 agents, iid and dirichlet:0.3: shards of the centralized training and
    validation sets, global x, the network objective = the centralized one; a short
    simulated D-NSVRB run gives finite metrics incl. the network-average test accuracy."""
    from htbo.decentralized import decentralized_hypercleaning, pooled_problem
    from htbo.problems import hypercleaning
    m, n_train, n_val = 4, 200, 100
    c = hypercleaning("digits", 0.5, n_train=n_train, n_val=n_val)
    train_rows = {r: i for i, r in enumerate(_rows_of(c.data_g["a"]))}
    val_rows = set(_rows_of(c.data_f["a"]))
    probs = {}
    for split in ("iid", "dirichlet:0.3"):
        p = decentralized_hypercleaning(m, "digits", 0.5, split=split, n_train=n_train,
                                        n_val=n_val)
        probs[split] = p
        assert p.x0.shape == (m, n_train) and p.y0["w"].shape == (m, 64, 10)
        idx = np.asarray(p.data_g["idx"])
        assert idx.shape == (m, n_train // m) and p.data_f["a"].shape == (m, n_val // m, 64)
        assert sorted(idx.ravel()) == list(range(n_train))  # disjoint, covering all
        for i in range(m):  # agent i's rows are the centralized rows idx[i], labels included
            assert [train_rows[r] for r in _rows_of(p.data_g["a"][i])] == list(idx[i])
            np.testing.assert_array_equal(p.data_g["t"][i], np.asarray(c.data_g["t"])[idx[i]])
        vr = [r for i in range(m) for r in _rows_of(p.data_f["a"][i])]
        assert len(set(vr)) == n_val and set(vr) == val_rows
        # (1/m) Σ g_i and (1/m) Σ f_i are the centralized g and f
        pooled = pooled_problem(p)
        x = jax.random.normal(jax.random.key(0), (n_train,))
        y = jax.tree_util.tree_map(lambda a: 0.1 * jnp.ones_like(a), c.y0)
        assert float(pooled.g(x, y, pooled.data_g)) == pytest.approx(
            float(c.g(x, y, c.data_g)), rel=1e-5)
        assert float(pooled.f(x, y, pooled.data_f)) == pytest.approx(
            float(c.f(x, y, c.data_f)), rel=1e-5)
    share = {k: np.mean([np.bincount(np.asarray(t)).max() / len(t) for t in p.data_f["t"]])
             for k, p in probs.items()}
    assert share["dirichlet:0.3"] > share["iid"] + 0.1, share
    res = run_network(probs["dirichlet:0.3"], make_dec_solver("dnsvrb", batch=8, eta_x=1.0),
                      ring(m), steps=20, seeds=[1], n_evals=1)
    last = res.rows[-1]
    for k in ("grad_norm", "phi", "y_err", "consensus", "test_acc", "f1", "avg_test_acc"):
        assert last[k] is not None and np.isfinite(last[k]), k
    assert 0.3 < last["avg_test_acc"] <= 1 and last["phi"] < res.rows[0]["phi"], last


@pytest.mark.parametrize("kw, msg", [(dict(split="foo"), "split must be 'iid' or"),
                                     (dict(split="dirichlet:-1"), "split must be"),
                                     (dict(m=300, n_train=200), "more agents than samples"),
                                     (dict(n_train=201), "not a multiple of the 4 agents")])
def test_decentralized_hypercleaning_rejects_bad_arguments(kw, msg):
    from htbo.decentralized import decentralized_hypercleaning
    with pytest.raises(ValueError, match=msg):
        decentralized_hypercleaning(**{"m": 4, "dataset": "digits", **kw})
