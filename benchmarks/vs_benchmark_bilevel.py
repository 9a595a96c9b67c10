"""Side by side, in one run: the public bilevel benchmark's own SOBA / F2SA code vs htbo's.

The peer is benchopt/benchmark_bilevel (https://github.com/benchopt/benchmark_bilevel). Its
code is never copied here: this script imports it from a local checkout, in a second Python
process that runs in an environment with the peer's requirements, and asks that process to
time the peer's compiled ``one_epoch`` while this process times htbo. Repeats alternate
(peer, htbo, peer, htbo, ...) so that load from other jobs hits both sides alike; the
per-pair ratio (each peer repeat over the htbo repeat right after it) is reported next to
the ratio of medians.

What one iteration is, on each side (batch 64, n = 1024 per level, dims 100, K = 10):

  SOBA  peer: one ``soba_one_iter`` = one inner block of 64 samples for ∇_z g and the joint
              vector-Jacobian product (∇²_zz g v, ∇²_xz g v), one outer block of 64 for ∇f.
        htbo: one ``soba`` step = ∇F (64), one joint HVP (64), ∇_y G (64); 3 minibatches.
        Both: 128 SFO + 64 HVP in the usual count.
  F2SA  peer: one ``f2sa_one_iter`` = ``n_inner_steps`` = 10 inner steps, each ∇_z g at y,
              ∇_z g at z and ∇_z f at y (3 × 64), then ∇_x f, ∇_x g at y, ∇_x g at z (3 × 64).
        htbo: one ``f2sa`` step, inner_steps = 10: 10 steps on z (64), 10 on y (64 + 64), then
              ∇_x F, ∇_x G at y, ∇_x G at z (3 × 64).
        Both: 3·10·64 + 3·64 = 2,112 SFO.

The problems: the peer's "simulated" dataset (its defaults: 1024 samples per level, dims 100)
stores every per-sample matrix densely — (n, 100, 100) arrays for the inner Hessian, the
outer Hessian and the cross term of each level, although each is rank one — and reads a
contiguous block of 64 samples per oracle. htbo's ``quadratic_data`` (same sizes) stores
the rank-one factors ((n, 100) arrays) and gathers 64 random rows. So the headline ratio is
"each library's own code on its own form of the simulated quadratic". With ``--dense`` (on
by default) the peer process also exports its exact dense matrices and htbo runs on them
too ("htbo, peer's dense data"), which separates the cost of the representation from the
cost of the step machinery.

Timing on both sides: compile excluded (the peer's own warm-up in ``set_objective`` plus one
untimed epoch; htbo's ahead-of-time compile, reported apart), ``block_until_ready`` inside
the timed region; peer: one ``one_epoch`` call of ``eval_freq`` (its default, 128)
iterations per repeat; htbo: one ``htbo.run(..., n_evals=1)`` chunk of ``--steps-*`` steps.

Getting the peer (once):

    git clone https://github.com/benchopt/benchmark_bilevel /work/peer-bilevel
    python3 -m venv /work/peer-venv
    /work/peer-venv/bin/pip install benchopt jax scikit-learn jaxopt

Run (from the htbo checkout, in htbo's environment):

    python benchmarks/vs_benchmark_bilevel.py --peer /work/peer-bilevel \\
        --peer-python /work/peer-venv/bin/python            # ~5 min on 2 cores
    ... --repeats 3 --no-dense                               # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HOW_TO_GET_PEER = """\
vs_benchmark_bilevel.py needs a local checkout of the public bilevel benchmark and a Python
environment with its requirements (they are not htbo's dependencies):

    git clone https://github.com/benchopt/benchmark_bilevel /work/peer-bilevel
    python3 -m venv /work/peer-venv
    /work/peer-venv/bin/pip install benchopt jax scikit-learn jaxopt

then run

    python benchmarks/vs_benchmark_bilevel.py --peer /work/peer-bilevel \\
        --peer-python /work/peer-venv/bin/python
"""

PEER_SOLVERS = {"soba": "SOBA", "f2sa": "F2SA"}


# ---------------------------------------------------------------------------------------------
# peer side: runs under --peer-python, imports only the peer's code (+ jax, benchopt)
# ---------------------------------------------------------------------------------------------
def _peer_driver(peer: str) -> None:
    """Serve JSON commands on stdin; answer one JSON line per command on the original stdout.

    The peer prints progress to stdout, so the protocol gets its own file descriptor and
    everything else goes to stderr.
    """
    import importlib.util

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, peer)

    import jax
    import numpy as np

    def load(name, rel):
        spec = importlib.util.spec_from_file_location(name, os.path.join(peer, rel))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    solvers, carries, iters = {}, {}, None
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "setup":
            iters = msg.get("iters")
            t0 = time.perf_counter()
            dataset = load("peer_dataset_simulated", "datasets/simulated.py").Dataset.get_instance()
            data = dataset.get_data()
            objective = load("peer_objective", "objective.py").Objective.get_instance()
            objective.set_data(**data)
            problem = objective.get_objective()
            info = dict(jax=jax.__version__, data_s=time.perf_counter() - t0,
                        dataset={k: getattr(dataset, k) for k in dataset.parameters},
                        solvers={})
            for name in msg["solvers"]:
                cls = load(f"peer_solver_{name}", f"solvers/{name}.py").Solver
                s = cls.get_instance()
                t0 = time.perf_counter()
                s.set_objective(**problem)  # builds the jitted one_epoch + the peer's warm-up
                n = iters or s.eval_freq
                carry = s.init()
                carry = jax.block_until_ready(s.one_epoch(carry, n))  # untimed: compile for n
                solvers[name], carries[name] = (s, n), carry
                info["solvers"][name] = dict(
                    params={k: getattr(s, k) for k in s.parameters}, iters_per_epoch=n,
                    setup_and_compile_s=time.perf_counter() - t0)
            if msg.get("export"):
                # the peer's exact arrays, read from the closures of its oracles
                out = {}
                for level, key in (("inner", "pb_inner"), ("outer", "pb_outer")):
                    fn = data[key][0]
                    fn = getattr(fn, "__wrapped__", fn)
                    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__))
                    for k in ("hess_inner", "hess_outer", "cross", "linear_inner", "linear_outer"):
                        out[f"{level}_{k}"] = np.asarray(cells[k].cell_contents)
                np.savez(msg["export"], **out)
                info["exported"] = {k: list(v.shape) for k, v in out.items()}
            print(json.dumps(info), file=proto)
        elif msg["cmd"] == "time":
            name = msg["solver"]
            (s, n), carry = solvers[name], carries[name]
            t0 = time.perf_counter()
            carry = s.one_epoch(carry, n)
            jax.block_until_ready(carry)
            dt = time.perf_counter() - t0
            carries[name] = carry
            finite = bool(np.all(np.isfinite(np.asarray(carry["outer_var"]))))
            print(json.dumps(dict(s_per_iter=dt / n, iters=n, finite=finite)), file=proto)
        elif msg["cmd"] == "quit":
            return


class Peer:
    def __init__(self, python: str, peer: str):
        self.workdir = tempfile.mkdtemp(prefix="htbo-peer-")  # the peer caches into ./__cache__
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--peer-driver", peer],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL if not os.environ.get(
                                         "HTBO_PEER_VERBOSE") else None,
                                     text=True, cwd=self.workdir)

    def ask(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the peer process died (rerun with HTBO_PEER_VERBOSE=1 to see why)")
        return json.loads(line)

    def close(self):
        try:
            self.ask(cmd="quit")
        except Exception:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# htbo side
# ---------------------------------------------------------------------------------------------
def htbo_solvers():
    from htbo.solvers import f2sa, soba
    return {"soba": soba(eta=0.01, rho=0.01, batch=64),
            "f2sa": f2sa(eta=0.01, lam=10.0, inner_steps=10, batch_in=64, batch_out=64,
                         alpha=0.01, tau=0.01)}


def dense_problem(path: str):
    """An htbo problem on the peer's exact dense per-sample matrices (x outer, y inner).

    Per sample: ½ yᵀH_i y + ½ xᵀB_i x + xᵀC_i y + a_iᵀy + b_iᵀx (the peer's README form)."""
    import jax.numpy as jnp
    import numpy as np
    from htbo.problems import BilevelProblem

    z = np.load(path)
    level = lambda p: {k: jnp.asarray(z[f"{p}_{n}"]) for k, n in  # noqa: E731
                       (("H", "hess_inner"), ("B", "hess_outer"), ("C", "cross"),
                        ("a", "linear_inner"), ("b", "linear_outer"))}

    def loss(x, y, batch):
        return jnp.mean(0.5 * jnp.einsum("j,njk,k->n", y, batch["H"], y)
                        + 0.5 * jnp.einsum("j,njk,k->n", x, batch["B"], x)
                        + jnp.einsum("j,njk,k->n", x, batch["C"], y)
                        + batch["a"] @ y + batch["b"] @ x)

    dy, dx = z["inner_linear_inner"].shape[1], z["inner_linear_outer"].shape[1]
    return BilevelProblem(f=loss, g=loss, x0=jnp.zeros(dx), y0=jnp.zeros(dy),
                          data_f=level("outer"), data_g=level("inner"), name="peer-dense")


def time_htbo(problem, solver, steps: int):
    import htbo
    res = htbo.run(problem, solver, steps=steps, seeds=[0], n_evals=1)
    return res.run_s / steps, res.compile_s


# ---------------------------------------------------------------------------------------------
def _q(xs, q):
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def _fmt(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=HOW_TO_GET_PEER)
    ap.add_argument("--peer", help="path of a checkout of benchopt/benchmark_bilevel")
    ap.add_argument("--peer-python", default=None,
                    help="python of an environment with the peer's requirements "
                         "(benchopt, jax, scikit-learn, jaxopt); default: this python")
    ap.add_argument("--solvers", default="soba,f2sa")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps-soba", type=int, default=2000, help="htbo steps per SOBA repeat")
    ap.add_argument("--steps-f2sa", type=int, default=300, help="htbo steps per F2SA repeat")
    ap.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True,
                    help="also time htbo on the peer's own dense matrices (default: on)")
    ap.add_argument("--json", default=None, help="also write all raw timings here")
    ap.add_argument("--peer-driver", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer_driver:
        return _peer_driver(a.peer_driver)
    if not a.peer:
        print(HOW_TO_GET_PEER, file=sys.stderr)
        sys.exit(2)
    if not os.path.isfile(os.path.join(a.peer, "solvers", "soba.py")):
        print(f"{a.peer} does not look like a checkout of benchmark_bilevel "
              "(no solvers/soba.py)\n\n" + HOW_TO_GET_PEER, file=sys.stderr)
        sys.exit(2)
    names = [s.strip() for s in a.solvers.split(",") if s.strip()]
    bad = [s for s in names if s not in PEER_SOLVERS]
    if bad:
        ap.error(f"--solvers: unknown {bad}; choose from {sorted(PEER_SOLVERS)}")

    import jax
    from htbo.problems import quadratic_data

    commit = ""
    try:
        commit = subprocess.run(["git", "-C", a.peer, "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        pass
    if not commit and os.path.isfile(os.path.join(a.peer, ".peer_commit")):
        commit = open(os.path.join(a.peer, ".peer_commit")).read().strip()
    tmp = tempfile.mkdtemp(prefix="htbo-vs-")
    export = os.path.join(tmp, "peer_dense.npz") if a.dense else None
    peer = Peer(a.peer_python or sys.executable, a.peer)
    try:
        print("setting up the peer (data generation, its warm-up compile) ...", flush=True)
        info = peer.ask(cmd="setup", solvers=names, export=export)
        print(f"peer: {a.peer} (commit {commit[:12] or 'unknown'}), JAX {info['jax']}; "
              f"htbo: JAX {jax.__version__} on {jax.devices()[0].platform}, "
              f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
        ds = info["dataset"]
        print(f"peer dataset 'simulated': n = {ds['n_samples_inner']}/{ds['n_samples_outer']}, "
              f"dims {ds['dim_inner']}/{ds['dim_outer']}; htbo: quadratic_data(n_inner=1024, "
              "n_outer=1024, dim_x=100, dim_y=100)")
        for n in names:
            si = info["solvers"][n]
            print(f"peer {PEER_SOLVERS[n]}: {si['params']}, {si['iters_per_epoch']} iterations "
                  f"per timed epoch; set-up + compile {si['setup_and_compile_s']:.1f} s")
        problems = {"htbo": quadratic_data(n_inner=1024, n_outer=1024, dim_x=100, dim_y=100)}
        if a.dense:
            problems["htbo, peer's dense data"] = dense_problem(export)
        sv = htbo_solvers()
        steps = {"soba": a.steps_soba, "f2sa": a.steps_f2sa}
        runs = {(n, side): [] for n in names for side in ["peer", *problems]}
        compiles = {k: [] for k in runs}
        load = []
        for r in range(a.repeats):
            for n in names:
                load.append(os.getloadavg()[0])
                out = peer.ask(cmd="time", solver=n)
                runs[(n, "peer")].append(out["s_per_iter"])
                if not out["finite"]:
                    print(f"  note: the peer's {PEER_SOLVERS[n]} iterate is not finite "
                          "(its default step sizes on this data)", flush=True)
                for side, prob in problems.items():
                    t, c = time_htbo(prob, sv[n], steps[n])
                    runs[(n, side)].append(t)
                    compiles[(n, side)].append(c)
            print(f"  repeat {r + 1}/{a.repeats}: " + ", ".join(
                f"{n} {side} {_fmt(runs[(n, side)][-1])}" for n in names
                for side in ["peer", *problems]), flush=True)
    finally:
        peer.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nPer iteration, {a.repeats} alternating repeats (median [25%, 75%]); load average "
          f"during the run {min(load):.1f}–{max(load):.1f} on {os.cpu_count()} cores\n")
    print("| solver | side | time / iter | compile (s) | peer ÷ this: ratio of medians | "
          "median of paired ratios |")
    print("|---|---|---|---|---|---|")
    for n in names:
        p = runs[(n, "peer")]
        for side in ["peer", *problems]:
            ts = runs[(n, side)]
            cell = f"{_fmt(statistics.median(ts))} [{_fmt(_q(ts, .25))}, {_fmt(_q(ts, .75))}]"
            if side == "peer":
                print(f"| {PEER_SOLVERS[n]} | peer one_epoch | {cell} | — | — | — |")
            else:
                ratio = statistics.median(p) / statistics.median(ts)
                paired = statistics.median(pp / t for pp, t in zip(p, ts))
                print(f"| {PEER_SOLVERS[n]} | {side} | {cell} | "
                      f"{statistics.median(compiles[(n, side)]):.2f} | {ratio:.0f}× | "
                      f"{paired:.0f}× |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(peer_info=info, peer_commit=commit, load=load,
                           runs={f"{n}|{side}": v for (n, side), v in runs.items()},
                           compiles={f"{n}|{side}": v for (n, side), v in compiles.items()}),
                      fh, indent=1)


if __name__ == "__main__":
    main()
