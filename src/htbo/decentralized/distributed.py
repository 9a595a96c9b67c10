"""Real multi-process execution of a decentralized method: one process per agent.

The decentralized step is written for ONE agent (``DecSolver.step(problem_i, state_i, key,
mix)``) with named-axis collectives over the axis ``"agents"``. :func:`agent_chunk` scans
``n`` such steps for one agent (:func:`agent_loop`: the same with ``n`` traced, so one
compiled program serves every chunk); the simulated mode ``vmap``\\ s it with
``axis_name="agents"``, this module ``shard_map``\\ s the very same function over a mesh
with one device per process (:func:`distributed_chunk`). Each step draws
``k, sub = split(k)`` from a key shared by all agents; the solver derives its agent's key
with ``fold_in(sub, axis_index("agents"))``, so both modes draw the same numbers.

Configuration (environment variables, see docs/distributed.md):

* ``HTBO_COORDINATOR``  ``host:port`` of process 0's coordination service (required)
* ``HTBO_NUM_PROCESSES``  number of processes = number of agents (required)
* ``HTBO_PROCESS_ID``  this process's id = its agent index, 0-based (required)
* ``HTBO_HEARTBEAT_S``  seconds without heartbeat before a peer is declared dead (default 10)
* ``HTBO_INIT_TIMEOUT_S``  seconds to wait for all processes to join (default 120)
* ``HTBO_SHUTDOWN_TIMEOUT_S``  seconds a finishing process waits for the others (default 60)

Metrics are evaluated at the network average ``x̄`` after gathering all agents' iterates
(outside the clock, never counted); rows are written by process 0 only.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..runner import cast_hp, float_dtype

__all__ = ["ENV", "DistConfig", "config_from_env", "initialize", "agent_mesh", "agent_chunk",
           "agent_loop", "distributed_chunk", "to_global", "gather", "run_distributed",
           "consensus_error", "count_communication"]

AXIS = "agents"
ENV = dict(coordinator="HTBO_COORDINATOR", num_processes="HTBO_NUM_PROCESSES",
           process_id="HTBO_PROCESS_ID", heartbeat_s="HTBO_HEARTBEAT_S",
           init_timeout_s="HTBO_INIT_TIMEOUT_S", shutdown_timeout_s="HTBO_SHUTDOWN_TIMEOUT_S")
_DEFAULTS = dict(heartbeat_s=10, init_timeout_s=120, shutdown_timeout_s=60)


class DistConfig(dict):
    """``coordinator, num_processes, process_id, heartbeat_s, init_timeout_s,
    shutdown_timeout_s`` read from the environment (see module docstring)."""

    __getattr__ = dict.__getitem__


def _int_env(env, key, default=None, lo=0):
    name = ENV[key]
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"environment variable {name} is required for a distributed run "
                             "(see docs/distributed.md)")
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return v


def config_from_env(env=None) -> DistConfig:
    """Read and validate the ``HTBO_*`` variables (clear ValueErrors for bad values)."""
    env = os.environ if env is None else env
    coord = env.get(ENV["coordinator"], "")
    host, _, port = coord.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{ENV['coordinator']} must be host:port, got {coord!r}")
    n = _int_env(env, "num_processes", lo=1)
    pid = _int_env(env, "process_id", lo=0)
    if pid >= n:
        raise ValueError(f"{ENV['process_id']}={pid} must be < {ENV['num_processes']}={n}")
    cfg = DistConfig(coordinator=coord, num_processes=n, process_id=pid)
    for k, d in _DEFAULTS.items():
        cfg[k] = _int_env(env, k, d, lo=1)
    return cfg


def initialize(cfg: DistConfig) -> None:
    """``jax.distributed.initialize`` with short failure detection; gloo collectives on CPU.

    Requires exactly one local device per process (on CPU the launcher sets
    ``XLA_FLAGS=--xla_force_host_platform_device_count=1``; on GPU use one visible GPU).

    JAX's preemption service is switched off: it installs a C++ SIGTERM handler that only
    records a "preemption notice" (for ``multihost_utils.reached_preemption_sync_point``,
    unused here), so an agent would ignore SIGTERM and keep computing. Without it SIGTERM
    has its default effect and ends the process at once, even inside a compiled step.
    """
    # only affects the CPU backend; on GPU, collectives go through NCCL automatically
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_preemption_service", False)
    jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id,
                               initialization_timeout=cfg.init_timeout_s,
                               heartbeat_timeout_seconds=cfg.heartbeat_s,
                               shutdown_timeout_seconds=cfg.shutdown_timeout_s)
    if jax.local_device_count() != 1:
        raise ValueError(f"process {cfg.process_id} sees {jax.local_device_count()} local "
                         "devices; one agent per process needs exactly one (set "
                         "XLA_FLAGS=--xla_force_host_platform_device_count=1 on CPU or "
                         "CUDA_VISIBLE_DEVICES to one GPU)")


def agent_mesh() -> Mesh:
    """A 1-D mesh over all processes' devices, axis ``"agents"``, agent i = process i."""
    devs = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devs), (AXIS,))


def agent_chunk(solver, mix, n: int) -> Callable:
    """``(problem_i, state_i, key) -> (state_i, key)``: ``n`` steps of ONE agent.

    ``key`` (raw uint32 key data) is shared by all agents; each step uses
    ``k, sub = split(k)`` and passes ``sub`` to ``solver.step``.
    """
    def chunk(problem_i, state_i, key):
        def body(c, _):
            st, k = c
            k, sub = jax.random.split(k)
            return (solver.step(problem_i, st, sub, mix), k), None
        (st, k), _ = jax.lax.scan(body, (state_i, jax.random.wrap_key_data(key)), None,
                                  length=n)
        return st, jax.random.key_data(k)
    return chunk


def agent_loop(solver, mix) -> Callable:
    """``(problem_i, state_i, key, n) -> (state_i, key)``: :func:`agent_chunk` with the
    number of steps ``n`` a traced int32 (a ``fori_loop``), so one compiled program serves
    every chunk length; the same keys, hence the same iterates, as :func:`agent_chunk`."""
    def loop(problem_i, state_i, key, n):
        def body(_, c):
            st, k = c
            k, sub = jax.random.split(k)
            return solver.step(problem_i, st, sub, mix), k
        st, k = jax.lax.fori_loop(0, n, body, (state_i, jax.random.wrap_key_data(key)))
        return st, jax.random.key_data(k)
    return loop


class _CompileCounter:
    """Counts XLA backend compilations while active (``jax.monitoring`` event)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count, self.active = 0, False
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event, duration, **_):
        if self.active and event == self.EVENT:
            self.count += 1

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False


_COUNTER: _CompileCounter | None = None


def _compile_counter() -> _CompileCounter:
    global _COUNTER
    if _COUNTER is None:  # one listener per process
        _COUNTER = _CompileCounter()
    return _COUNTER


def _squeeze_agent(fn, n_sharded: int):
    """Adapt a per-agent function to shard_map blocks: drop / restore the local agent axis
    (size 1) on the first ``n_sharded`` arguments and on every output except the last."""
    def wrapped(*args):
        args = [jax.tree_util.tree_map(lambda a: a[0], a) if i < n_sharded else a
                for i, a in enumerate(args)]
        *outs, last = fn(*args)
        outs = [jax.tree_util.tree_map(lambda a: a[None], o) for o in outs]
        return (*outs, last)
    return wrapped


def distributed_chunk(fn: Callable, mesh: Mesh, n_sharded: int, n_out: int = 2):
    """``shard_map`` of a per-agent ``fn`` whose first ``n_sharded`` args are stacked over
    agents (spec ``P("agents")``) and whose remaining args / last output are replicated."""
    def specs(k_sharded, k_total):
        return tuple(P(AXIS) if i < k_sharded else P() for i in range(k_total))

    def call(*args):
        sm = jax.shard_map(_squeeze_agent(fn, n_sharded), mesh=mesh,
                           in_specs=specs(n_sharded, len(args)),
                           out_specs=specs(n_out - 1, n_out), check_vma=False)
        return sm(*args)
    return jax.jit(call)


def to_global(mesh: Mesh, tree, sharded: bool = True):
    """Global arrays from a pytree every process holds in full (stacked over agents when
    ``sharded``, else replicated). ``None`` leaves stay ``None``."""
    sh = NamedSharding(mesh, P(AXIS) if sharded else P())

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sh, lambda idx: a[idx])
    return jax.tree_util.tree_map(one, tree)


def gather(tree):
    """Every agent's values on every process (host numpy), a collective call."""
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def consensus_error(xs) -> float:
    """``(1/m) Σ_i ‖x_i − x̄‖²`` over stacked pytrees (leading axis = agents)."""
    tot = 0.0
    for a in jax.tree_util.tree_leaves(xs):
        a = np.asarray(a, float)
        tot += float(np.sum((a - a.mean(0)) ** 2))
    m = np.asarray(jax.tree_util.tree_leaves(xs)[0]).shape[0]
    return tot / m


_GATHERS = ("all_gather", "all_gather_invariant")
_COLLECTIVES = ("ppermute", "psum", "pmax", "pmin", "all_to_all", "reduce_scatter",
                "psum_invariant") + _GATHERS


def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for j in (v if isinstance(v, (tuple, list)) else (v,)):
            if hasattr(j, "eqns") or hasattr(j, "jaxpr"):
                yield getattr(j, "jaxpr", j)


def _count(jaxpr, m):
    rounds, nbytes = 0, 0
    for e in jaxpr.eqns:
        name = e.primitive.name
        if name in _COLLECTIVES:
            size = sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize for v in e.invars)
            rounds += 1
            if name == "ppermute":  # self-pairs (k, k) pad a matching for vmap: no traffic
                nbytes += size * sum(1 for src, dst in e.params["perm"] if src != dst)
            elif name in _GATHERS:
                nbytes += size * m * (m - 1)
            else:
                raise ValueError(f"count_communication: cannot count the bytes of {name!r}; "
                                 "only ppermute and all_gather are supported")
            continue
        subs = [_count(j, m) for j in _sub_jaxprs(e)]
        if subs:
            r, b = max(subs, key=lambda t: t[1])  # cond: the most expensive branch
            k = int(e.params.get("length", 1)) if name == "scan" else 1
            rounds, nbytes = rounds + k * r, nbytes + k * b
    return rounds, nbytes


def count_communication(solver, problem, mix, m: int) -> dict:
    """Communication of one step, read off the traced jaxpr of ONE agent's step.

    ``problem`` is stacked over ``m`` agents. Returns ``rounds`` (collective calls per step,
    each ``ppermute`` = one exchange along a matching) and ``bytes`` (sent per step by the
    whole network: ``ppermute``: operand bytes × number of pairs ``src ≠ dst``; ``all_gather``:
    operand bytes × m(m−1)). Other collectives raise a ValueError.
    """
    env = [(AXIS, m)]
    p0 = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:],
                                                               np.asarray(a).dtype), problem)
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    _, st = jax.make_jaxpr(lambda p, k: solver.init(p, p.x0, p.y0, jax.random.wrap_key_data(k),
                                                    getattr(solver, "hp", {})),
                           axis_env=env, return_shape=True)(p0, key)
    jx = jax.make_jaxpr(lambda p, s, k: solver.step(p, s, jax.random.wrap_key_data(k), mix),
                        axis_env=env)(p0, st, key)
    rounds, nbytes = _count(jx.jaxpr, m)
    return dict(rounds=rounds, bytes=nbytes)


def _to_float(v):
    v = float(v)
    return None if math.isnan(v) else v


def run_distributed(problem, solver, mix, *, steps: int, seeds: Sequence[int] = (0,),
                    n_evals: int = 20, evaluate: Callable | None = None,
                    writer: Callable[[list[dict]], None] | None = None,
                    labels: dict | None = None, run_id: str | None = None,
                    comm_bytes_per_step: float | None = None, on_eval: Callable | None = None,
                    keep_iterates: bool = False) -> dict:
    """Run ``solver`` on the stacked ``problem`` with one agent per process.

    Must be called by every process (after :func:`initialize`) with identical arguments.
    ``comm_bytes_per_step``: bytes the network sends per step (default: read off the step's
    jaxpr by :func:`count_communication`). ``evaluate(problem, xs, ys) -> dict`` computes
    metrics from the gathered per-agent parameters (e.g. at the network average);
    ``consensus`` is always added. Rows go to
    ``writer`` on process 0 only. ``on_eval(step)`` is called on every process after each
    evaluation point (used for progress messages and fault injection in tests).
    The chunks between evaluation points run ONE compiled program (:func:`agent_loop`, the
    chunk length is a traced argument), compiled ahead of time at the first chunk.
    Returns ``dict(rows, compile_s, run_s, iterates, run_id, chunk_compiles)``
    (``iterates``: per seed, a list of ``(step, xs)`` when ``keep_iterates``;
    ``chunk_compiles``: XLA backend compilations counted by a ``jax.monitoring`` listener
    while the chunk program was compiled and run — 1 per call).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    mesh = agent_mesh()
    m = mesh.devices.size
    lead = {np.shape(a)[0] for a in jax.tree_util.tree_leaves((problem.x0, problem.y0))}
    if lead != {m}:
        raise ValueError(f"the problem is stacked over {sorted(lead)} agents but the run has "
                         f"{m} processes; they must agree")
    if comm_bytes_per_step is None:
        comm_bytes_per_step = count_communication(solver, problem, mix, m)["bytes"]
    me = jax.process_index()
    run_id = run_id or uuid.uuid4().hex[:8]
    base = dict(run_id=run_id, solver=solver.name, problem=problem.name,
                noise=str(problem.noise) if problem.noise else "none", mode="distributed",
                agents=m, **(labels or {}))
    marks = sorted(set(int(round(steps * i / n_evals)) for i in range(1, n_evals + 1)))
    gproblem = to_global(mesh, problem)
    hp = cast_hp(getattr(solver, "hp", {}), float_dtype(problem))
    init = distributed_chunk(lambda p, x0, y0, k: (solver.init(p, x0, y0,
                                                               jax.random.wrap_key_data(k), hp),
                                                   k), mesh, 3)
    params = jax.jit(jax.vmap(solver.params))
    chunk_fn = distributed_chunk(agent_loop(solver, mix), mesh, 2)
    compiled = None  # ONE program for every chunk length (n is traced)
    counter = _compile_counter()
    chunk_compiles = 0
    compile_s = run_s = 0.0
    rows, iterates = [], {}
    # per agent, as in the simulated mode: exchange rounds (mixing calls × edge colours)
    # and bytes (the network's total / m)
    comm = getattr(solver, "comm_per_step", 0) * getattr(mix, "rounds", 1)
    bytes_per_agent = comm_bytes_per_step / m
    for seed in seeds:
        pair = jax.random.split(jax.random.key(int(seed)))
        ikey, key = (to_global(mesh, jax.random.key_data(k), sharded=False) for k in pair)
        states, _ = init(gproblem, gproblem.x0, gproblem.y0, ikey)
        t_run = 0.0
        iterates[seed] = []

        def emit(step, states):
            xs, ys = params(gather(states))
            if keep_iterates:
                iterates[seed].append((step, jax.device_get(xs)))
            if me != 0:
                return
            r = dict(base, seed=int(seed), step=step, sfo=step * solver.sfo_per_step,
                     hvp=step * getattr(solver, "hvp_per_step", 0), time_s=t_run,
                     comm_rounds=step * comm, bytes_sent=step * bytes_per_agent,
                     consensus=consensus_error(xs))
            if evaluate is not None:
                r.update({k: _to_float(np.asarray(v)) for k, v in
                          evaluate(problem, xs, ys).items()})
            rows.append(r)
            if writer is not None:
                writer([r])

        emit(0, states)
        done = 0
        for mk in marks:
            n = to_global(mesh, np.int32(mk - done), sharded=False)
            with counter:  # backend compiles of the chunk program, at lowering or at a call
                before = counter.count
                if compiled is None:
                    t0 = time.perf_counter()
                    compiled = chunk_fn.lower(gproblem, states, key, n).compile()
                    compile_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                states, key = compiled(gproblem, states, key, n)
                jax.block_until_ready((states, key))
                dt = time.perf_counter() - t0
                chunk_compiles += counter.count - before
            t_run += dt
            run_s += dt
            done = mk
            emit(done, states)
            if on_eval is not None:
                on_eval(done)
    return dict(rows=rows, compile_s=compile_s, run_s=run_s, iterates=iterates, run_id=run_id,
                chunk_compiles=chunk_compiles)
