"""Real multi-process execution of a decentralized method: one process per agent.

The decentralized step is written for ONE agent (``solver.step(problem_i, state_i, key,
mix)``) with named-axis collectives over the axis ``"agents"``. The simulated mode vmaps
it with ``axis_name="agents"``; :class:`ShardMapExecutor` shard_maps the very same
function over a mesh with one device per process, with the run's members (seeds, grid
points) vmapped inside each agent. It plugs into the one run loop
(:func:`htbo.driver.drive`), so distributed runs get the same evaluation marks, rows,
non-finite detection, checkpoints and resume as every other run. Each step draws
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
(outside the clock, never counted); rows and checkpoints are written by process 0 only.
"""
from __future__ import annotations

import os
import uuid
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..driver import all_finite, drive, evaluator, initial_keys, member_loop, member_replay
from ..runner import cast_hp, check_seeds, float_dtype

__all__ = ["ENV", "DistConfig", "config_from_env", "initialize", "agent_mesh", "to_global",
           "gather", "consensus_error", "count_communication", "ShardMapExecutor",
           "run_distributed"]

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
    init, step = _program(solver)[:2]
    _, st = jax.make_jaxpr(lambda p, k: init(p, p.x0, p.y0, jax.random.wrap_key_data(k),
                                             getattr(solver, "hp", {})),
                           axis_env=env, return_shape=True)(p0, key)
    jx = jax.make_jaxpr(lambda p, s, k: step(p, s, jax.random.wrap_key_data(k), mix),
                        axis_env=env)(p0, st, key)
    rounds, nbytes = _count(jx.jaxpr, m)
    return dict(rounds=rounds, bytes=nbytes)


def _program(solver):
    """``(init, step, params)`` of a declarative solver (its canonical program) or of any
    object with ``init``/``step``/``params`` attributes."""
    if hasattr(solver, "program"):
        return solver.program()
    return solver.init, solver.step, solver.params


def _smap(fn, mesh: Mesh, sharded_in: tuple, sharded_out: tuple):
    """``jit(shard_map(fn))`` of a per-agent ``fn``: arguments / outputs marked ``True`` are
    stacked over agents (the local block's agent axis of size 1 is dropped / restored), the
    others are replicated."""
    def per_agent(*args):
        args = [jax.tree_util.tree_map(lambda a: a[0], a) if sh else a
                for a, sh in zip(args, sharded_in)]
        outs = fn(*args)
        return tuple(jax.tree_util.tree_map(lambda a: a[None], o) if sh else o
                     for o, sh in zip(outs, sharded_out))

    def spec(flags):
        return tuple(P(AXIS) if f else P() for f in flags)
    return jax.jit(jax.shard_map(per_agent, mesh=mesh, in_specs=spec(sharded_in),
                                 out_specs=spec(sharded_out), check_vma=False))


def _swap(tree):
    """(agents, members, ...) <-> (members, agents, ...)."""
    return jax.tree_util.tree_map(lambda a: np.swapaxes(np.asarray(a), 0, 1), tree)


class ShardMapExecutor:
    """One agent per process (``shard_map`` over the agents), the run's members vmapped
    inside each agent: the executor of :func:`htbo.driver.drive` for distributed runs.

    Every process builds it with identical arguments and calls the same methods (they hold
    collectives). States are global arrays shaped (agents, members, ...); checkpoints hold
    them as the simulated mode does, (members, agents, ...). ``metrics_fn(problem, xs, ys)``
    evaluates one member from all agents' iterates (default: the network metrics)."""

    def __init__(self, problem, solver, mix, hp_b, seeds, *, metrics_fn: Callable | None = None):
        from .simulate import network_metrics
        self.mesh = agent_mesh()
        m = self.mesh.devices.size
        lead = {np.shape(a)[0] for a in jax.tree_util.tree_leaves((problem.x0, problem.y0))}
        if lead != {m}:
            raise ValueError(f"the problem is stacked over {sorted(lead)} agents but the run "
                             f"has {m} processes; they must agree")
        self.problem, self.solver, self.mix, self.seeds = problem, solver, mix, list(seeds)
        self.hp_b = hp_b
        self.writes = jax.process_index() == 0
        self.gproblem = to_global(self.mesh, problem)
        init, step, params = _program(solver)
        loop, rep = member_loop(step, mix), member_replay(step, mix)
        wrap = jax.random.wrap_key_data

        def init_agent(p, x0, y0, ikeys, hp_b):
            return (jax.vmap(lambda k, hp: init(p, x0, y0, wrap(k), hp))(ikeys, hp_b),)

        def chunk_agent(p, sts, keys, n):
            sts, ks = jax.vmap(lambda s, k: loop(p, s, wrap(k), n))(sts, keys)
            return sts, jax.vmap(jax.random.key_data)(ks), jax.vmap(all_finite)(sts)

        def replay_agent(p, sts, keys, n):
            return (jax.vmap(lambda s, k: rep(p, s, wrap(k), n))(sts, keys),)

        self._init = _smap(init_agent, self.mesh, (True, True, True, False, False), (True,))
        self._chunk = _smap(chunk_agent, self.mesh, (True, True, False, False),
                            (True, False, True))
        self._replay = _smap(replay_agent, self.mesh, (True, True, False, False), (True,))
        self.ev = evaluator(metrics_fn or network_metrics, jax.vmap(params), ())
        self.clean = problem.replace(noise=None)
        self.compiled = None
        self.chunk_compiles = 0
        self._gathered = (None, None)

    # -- helpers ---------------------------------------------------------------------------
    def _repl(self, a):
        return to_global(self.mesh, a, sharded=False)

    def _n(self, n: int):
        return self._repl(np.int32(n))

    def _gather(self, states):
        if self._gathered[0] is not states:  # one gather per evaluation (metrics + checkpoint)
            self._gathered = (states, gather(states))
        return self._gathered[1]

    # -- the executor protocol -------------------------------------------------------------
    def agree(self, value):
        """Process 0's ``value`` on every process (chunk lengths and emission times come from
        each process's own clock; collectives need them equal)."""
        from jax.experimental import multihost_utils
        return multihost_utils.broadcast_one_to_all(np.asarray(value)).item()

    def init(self):
        ikeys, keys = initial_keys(self.seeds)
        args = (self._repl(np.asarray(jax.random.key_data(ikeys))), self._repl(
            jax.tree_util.tree_map(np.asarray, self.hp_b)))
        (states,) = self._init(self.gproblem, self.gproblem.x0, self.gproblem.y0, *args)
        jax.block_until_ready(states)
        return states, self._repl(np.asarray(jax.random.key_data(keys)))

    def template(self):
        """The state structure in the checkpoint layout (members, agents, ...)."""
        from .simulate import NetworkSolver
        init = NetworkSolver(self.solver, self.mix).program()[0]
        ikeys, _ = initial_keys(self.seeds)
        return jax.eval_shape(jax.vmap(init, in_axes=(None, None, None, 0, 0)), self.problem,
                              self.problem.x0, self.problem.y0, ikeys, self.hp_b)

    def compile(self, states, keys):
        counter = _compile_counter()
        with counter:
            before = counter.count
            self.compiled = self._chunk.lower(self.gproblem, states, keys, self._n(1)).compile()
            self.chunk_compiles += counter.count - before

    def run(self, states, keys, n: int):
        counter = _compile_counter()
        with counter:
            before = counter.count
            states, keys, ok = self.compiled(self.gproblem, states, keys, self._n(n))
            jax.block_until_ready((states, keys, ok))
            self.chunk_compiles += counter.count - before
        return states, keys, np.all(gather(ok), axis=0)

    def replay(self, states, keys, n: int):
        (first,) = self._replay(self.gproblem, states, keys, self._n(n))
        first = gather(first)  # (agents, members): the network's first bad step
        big = np.iinfo(np.int32).max
        out = np.min(np.where(first > 0, first, big), axis=0)
        return np.where(out == big, 0, out)

    def metrics(self, states):
        host = _swap(self._gather(states))
        if not self.writes:
            return None
        return jax.device_get(self.ev(self.clean, host))

    def host(self, states, keys):
        host = _swap(self._gather(states))
        return host, jax.random.wrap_key_data(jnp.asarray(gather(keys)))

    def load(self, states, keys):
        return (to_global(self.mesh, _swap(states)),
                self._repl(np.asarray(jax.random.key_data(keys))))


def run_distributed(problem, solver, mix, *, steps: int, seeds: Sequence[int] = (0,),
                    n_evals: int = 20, metrics_fn: Callable | None = None,
                    writer: Callable | None = None, checkpoint: Callable | None = None,
                    resume: dict | None = None, labels: dict | None = None,
                    run_id: str | None = None, on_emit: Callable | None = None,
                    on_nonfinite: str = "continue", hp_b=None, member_labels=None):
    """Run the one-agent ``solver`` on the stacked ``problem`` with one agent per process
    (every process calls it with identical arguments, after :func:`initialize`). Rows (and
    checkpoints) are handed to ``writer`` on process 0 only. Returns ``(RunResult,
    executor)``; ``executor.chunk_compiles`` counts the chunk program's XLA compilations."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    seeds = check_seeds(seeds)
    if hp_b is None:
        hp_b = cast_hp(getattr(solver, "hp", {}), float_dtype(problem), len(seeds))
    ex = ShardMapExecutor(problem, solver, mix, hp_b, seeds, metrics_fn=metrics_fn)
    m = ex.mesh.devices.size
    counters = {"comm_rounds": getattr(solver, "comm_per_step", 0) * getattr(mix, "rounds", 1),
                "bytes_sent": count_communication(solver, problem, mix, m)["bytes"] / m}
    base = dict(run_id=run_id or uuid.uuid4().hex[:8], solver=solver.name,
                problem=problem.name, noise=str(problem.noise) if problem.noise else "none",
                mode="distributed", agents=m, **(labels or {}))
    res = drive(ex, steps=steps, n_evals=n_evals, seeds=seeds,
                member_labels=member_labels or [{} for _ in seeds], base=base,
                sfo_per_step=solver.sfo_per_step,
                hvp_per_step=getattr(solver, "hvp_per_step", 0), counters=counters,
                writer=writer if ex.writes else None,
                checkpoint=checkpoint,
                resume=resume, on_nonfinite=on_nonfinite, on_emit=on_emit)
    return res, ex
