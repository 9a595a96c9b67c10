"""Where one SOBA / F2SA / N²SBA step spends its flops, bytes, kernels and time.

On ``quadratic_data`` (n_inner = n_outer = 1024, dim_x = dim_y = 100, batch 64, K = 10, no
injected noise; the sizes of the public bilevel benchmark's "simulated" problem), for one
step compiled alone (``jax.jit`` of the step of ``solver.program()``, the runner's):

* XLA's ``cost_analysis()``: flops and "bytes accessed" (the cost model's numbers);
* the same read off the optimized HLO: flops of the ``dot`` ops (2·m·k·n each), the bytes the
  step really needs (rows actually gathered from the data + the other inputs/outputs), and
  the bytes the cost model charges to the ops that read a whole data array (a fused gather
  is charged its entire (n, d) operand, not the 64 rows it reads);
* kernels per step: the thunks the CPU runtime executes (fusions, dots, copies, ...; a
  ``while`` body counts once per trip) — on a step this small, their dispatch overhead,
  not flops or bytes, sets the time;
* wall time per step through ``htbo.run`` (one fori_loop chunk, ``block_until_ready``
  inside the clock, compile apart), median of ``--repeats``.

``--compare-sampler`` also measures, in the same run, the step with :mod:`htbo.prng`'s
sampler (key splits, minibatch indices) swapped back to ``jax.random.split`` /
``jax.random.randint`` (bit-identical samples; on CPU each Threefry call then becomes a
rolled 5-trip ``while`` loop): the "before" of docs/benchmarks.md.

    python benchmarks/profile_step.py                      # ~2 min on 2 cores
    python benchmarks/profile_step.py --compare-sampler    # + the jax.random sampler
    python benchmarks/profile_step.py --hlo-dir out/       # also write the optimized HLO
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import time

import jax
import numpy as np

import htbo
import htbo.prng as prng
from _workload import add_workload_args, solvers
from htbo.problems import quadratic_data

_DTYPE_BYTES = {"f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "pred": 1,
                "f16": 2, "bf16": 2, "u8": 1, "s8": 1}
_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}


def _shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string such as ``f32[64,100]{1,0}`` or a tuple of them."""
    total = 0
    for dt, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shape):
        if dt in _DTYPE_BYTES:
            total += _DTYPE_BYTES[dt] * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


def parse_hlo(text: str):
    """``{computation: [instruction dict]}`` and the name of the entry computation."""
    comps, entry, cur = {}, None, None
    head = re.compile(r"^(ENTRY )?%(\S+) \(.*\{\s*$")
    inst = re.compile(r"^\s*(?:ROOT )?%(\S+) = (.+?) ([a-z][\w-]*)\((.*)$")
    for line in text.splitlines():
        m = head.match(line)
        if m:
            cur = m.group(2)
            comps[cur] = []
            if m.group(1):
                entry = cur
            continue
        if line.startswith("}"):
            cur = None
            continue
        m = inst.match(line) if cur else None
        if m:
            name, shape, op, rest = m.groups()
            args = rest.split(")", 1)[0]
            attrs = dict(re.findall(r"\b(calls|body|condition|to_apply)=%([\w.\-]+)", rest))
            trip = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', rest)
            comps[cur].append(dict(name=name, shape=shape, op=op, rest=rest,
                                   operands=re.findall(r"%([\w.\-]+)", args), attrs=attrs,
                                   trip=int(trip.group(1)) if trip else 1))
    return comps, entry


def hlo_profile(text: str, data_shapes: set[str]):
    """Kernels per step, dot flops, real vs cost-model bytes of ops reading whole data arrays."""
    comps, entry = parse_hlo(text)
    out = dict(kernels=0, rng_loop_kernels=0, while_trips=0, dot_flops=0, gathered_bytes=0,
               charged_bytes=0, whole_array_ops=0)

    def walk(comp, mult, in_rng=False):
        shapes = {i["name"]: i["shape"] for i in comps[comp]}
        for i in comps[comp]:
            op = i["op"]
            if op in _FREE:
                continue
            if op == "while":
                # a loop carrying only integers is a rolled Threefry hash (JAX's CPU lowering)
                rng = in_rng or not re.search(r"\bf(16|32|64)\[", i["shape"])
                out["while_trips"] += mult * i["trip"]
                walk(i["attrs"]["body"], mult * i["trip"], rng)
                walk(i["attrs"]["condition"], mult * (i["trip"] + 1), rng)
                continue
            if op == "call":
                walk(i["attrs"]["to_apply"], mult, in_rng)
                continue
            out["kernels"] += mult
            out["rng_loop_kernels"] += mult if in_rng else 0
            if op == "dot":
                lhs = _dims(shapes.get(i["operands"][0], ""))
                con = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", i["rest"])
                k = int(np.prod([lhs[int(c)] for c in con.group(1).split(",") if c])) if con else 1
                out["dot_flops"] += mult * 2 * int(np.prod(_dims(i["shape"]))) * k
            whole = [o for o in i["operands"] if shapes.get(o, "").split("{")[0] in data_shapes]
            if whole:
                out["whole_array_ops"] += mult
                out["gathered_bytes"] += mult * _shape_bytes(i["shape"])
                out["charged_bytes"] += mult * sum(_shape_bytes(shapes[o]) for o in whole)

    walk(entry, 1)
    return out


def _dims(shape: str) -> list[int]:
    m = re.findall(r"\[([\d,]*)\]", shape)
    return [int(d) for d in m[0].split(",") if d] if m else []


@contextlib.contextmanager
def jax_random_sampler():
    """Route key splits and minibatch indices through jax.random (the same samples, rolled
    loops)."""
    saved = prng._fast_path
    prng._fast_path = lambda key: False
    try:
        yield
    finally:
        prng._fast_path = saved


def profile(problem, solver, hlo_path=None):
    jax.clear_caches()  # jit caches by function: a swapped sampler must be traced anew
    st = solver.start(problem, jax.random.key(1))  # hyperparameters are data in the state
    compiled = jax.jit(solver.program()[1]).lower(problem, st, jax.random.key(0)).compile()
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    text = compiled.as_text()
    if hlo_path:
        with open(hlo_path, "w") as fh:
            fh.write(text)
    data_shapes = {f"f32[{','.join(map(str, np.shape(a)))}]"
                   for a in jax.tree_util.tree_leaves((problem.data_f, problem.data_g))}
    h = hlo_profile(text, data_shapes)
    small = sum(_shape_bytes(f"f32[{','.join(map(str, np.shape(a)))}]")
                for a in jax.tree_util.tree_leaves((st, problem.x0, problem.y0)))
    return dict(flops=float(ca.get("flops", 0)), bytes=float(ca.get("bytes accessed", 0)),
                needed_bytes=h["gathered_bytes"] + 2 * small, **h)


def wall(problem, solver, steps, repeats):
    ts = [htbo.run(problem, solver, steps=steps, seeds=[0], n_evals=1) for _ in range(repeats)]
    return statistics.median(r.run_s / steps for r in ts), statistics.median(r.compile_s for r in ts)


def machine_rates(repeats: int = 7):
    """Measured here, same run: streaming bandwidth of a 16 MB matvec (memory-bound; fits in
    a large L3 like the step's 4 MB of data) and dot throughput (512³ matmul), both through
    XLA on this CPU. Used only for the floor."""
    import jax.numpy as jnp
    k = jax.random.key(0)
    big, vec = jax.random.normal(k, (4096, 1024)), jnp.ones(1024)
    sq = jax.random.normal(k, (512, 512))
    mv = jax.jit(lambda a, v: a @ v)
    mm = jax.jit(lambda a: a @ a)

    def best(f, *args):
        jax.block_until_ready(f(*args))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    return dict(bytes_per_s=big.size * 4 / best(mv, big, vec),
                flops_per_s=2 * 512 ** 3 / best(mm, sq))


def gather_artifact(n, d, b):
    """Cost-model bytes of gathering ``b`` rows of an ``(n, d)`` array, alone."""
    a = jax.ShapeDtypeStruct((n, d), np.float32)
    idx = jax.ShapeDtypeStruct((b,), np.int32)
    c = jax.jit(lambda a, i: a.at[i].get(mode="clip")).lower(a, idx).compile().cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return float(c["bytes accessed"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_workload_args(ap, 1000, "steps per timed run (÷4 for K-loops)")
    ap.add_argument("--compare-sampler", action="store_true")
    ap.add_argument("--hlo-dir", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    p = quadratic_data(n_inner=a.n, n_outer=a.n, dim_x=a.dim, dim_y=a.dim)
    sv = solvers(a.batch, a.inner_steps)
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f}; quadratic_data n = {a.n}, dims {a.dim}, batch "
          f"{a.batch}, K = {a.inner_steps}\n")
    art = gather_artifact(a.n, a.dim, a.batch)
    print(f"cost model, one gather of {a.batch} rows from ({a.n}, {a.dim}) f32 alone: "
          f"{art / 1e3:.0f} kB 'accessed' (rows really read: {a.batch * a.dim * 4 / 1e3:.1f} kB)\n")
    rates = machine_rates()
    print(f"this machine, now: {rates['bytes_per_s'] / 1e9:.1f} GB/s streaming (16 MB matvec), "
          f"{rates['flops_per_s'] / 1e9:.1f} GFLOP/s (512³ matmul); floor of a step = "
          "max(dot flops / GFLOP/s, bytes needed / GB/s)\n")
    samplers = [("unrolled", contextlib.nullcontext)]
    if a.compare_sampler:
        samplers.append(("jax.random", jax_random_sampler))
    rows = []
    print("| solver | sampler | XLA flops | XLA bytes | dot flops | bytes needed | bytes charged "
          "to whole-array reads | kernels / step | of which in RNG loops | while trips | time / step | µs / kernel | "
          "floor | % of floor | compile (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in sv.items():
        steps = a.steps if name == "SOBA" else max(10, a.steps // 4)
        for label, ctx in samplers:
            with ctx():
                hp = None if not a.hlo_dir else os.path.join(
                    a.hlo_dir, f"{name.replace('²', '2')}-{label}.hlo.txt")
                if hp:
                    os.makedirs(a.hlo_dir, exist_ok=True)
                pr = profile(p, s, hp)
                t, c = wall(p, s, steps, a.repeats)
            floor = max(pr["dot_flops"] / rates["flops_per_s"],
                        pr["needed_bytes"] / rates["bytes_per_s"])
            rows.append(dict(solver=name, sampler=label, time_s=t, compile_s=c, floor_s=floor, **pr))
            print(f"| {name} | {label} | {pr['flops'] / 1e3:.0f} k | {pr['bytes'] / 1e6:.2f} MB | "
                  f"{pr['dot_flops'] / 1e3:.0f} k | {pr['needed_bytes'] / 1e3:.0f} kB | "
                  f"{pr['charged_bytes'] / 1e6:.2f} MB ({pr['whole_array_ops']} ops) | "
                  f"{pr['kernels']} | {pr['rng_loop_kernels']} | {pr['while_trips']} | {t * 1e6:.1f} µs | "
                  f"{t * 1e6 / max(1, pr['kernels']):.2f} | {floor * 1e6:.1f} µs | "
                  f"{100 * floor / t:.0f}% | {c:.2f} |", flush=True)
    print("\nXLA flops/bytes: compiled.cost_analysis() of one step. dot flops: 2·(output size)·"
          "(contracted size) summed over the dot ops. bytes needed: the rows really gathered "
          "+ state in and out. bytes charged to whole-array reads: the cost model's bytes for "
          "the ops with a whole (n, d) data array as operand (the fused gathers). kernels: "
          "thunks the CPU runtime runs per step (while bodies × trips); RNG loops: the rolled "
          "Threefry loops JAX emits on CPU for jax.random calls (integer-only while loops).")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(gather_artifact_bytes=art, rates=rates, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
