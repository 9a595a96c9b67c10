"""The bilevel problem: pure objectives over pytrees, data, optional closed forms.

``min_x φ(x) = f(x, y*(x))`` with ``y*(x) = argmin_y g(x, y)``.

``f(x, y, batch)`` and ``g(x, y, batch)`` are pure JAX functions returning the *mean* loss
over a minibatch ``batch`` (a pytree whose leading axis indexes samples), or over no data
(``batch is None``) for deterministic / noise-only problems. ``data_f`` and ``data_g`` hold
the full data sets (``None`` when there is none). A problem is a JAX pytree whose leaves are
its data and initial points, so the runner passes it through ``jit`` as an argument instead
of baking the data into the compiled program.

A minimax problem ``min_x max_y f`` is the bilevel problem with ``g = −f`` (see
:mod:`htbo.problems.minimax`): the hypergradient is then ``∇_x f(x, y*(x))``.

**Traits** are typed fields the library acts on: ``kind`` (``"bilevel"`` or ``"minimax"``),
``default_noise`` (the noise a run uses when none is given; ``None``: the library's rule,
none for problems with data, α-stable(1.5) without), ``metric`` (what runs rank by),
``eval_options`` (accuracy of the evaluation-only hypergradient), ``hypergradient`` (False
for a nonconvex lower level: no y*(x), no ∇φ), ``solver_defaults`` (recommended
hyperparameters per solver name, ``"*"`` for all) and ``agent_metrics`` (decentralized
problems: metrics also averaged over agents). ``info`` is descriptive only (sizes, seeds,
sources), never read by the library.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..noise import Noise, parse_noise
from ..registry import Registry

__all__ = ["BilevelProblem", "validate_problem", "with_noise", "tree_check_finite", "KINDS",
           "PROBLEMS"]

#: name -> problem constructor (keyword arguments); memoized, so equal arguments give the
#: same problem object and runs on it share compiled programs
PROBLEMS = Registry("problem", memoize=True)

_DYNAMIC = ("x0", "y0", "data_f", "data_g")
_SAMPLING = ("replace", "noreplace")
KINDS = ("bilevel", "minimax")


@dataclass(frozen=True, eq=False)
class BilevelProblem:
    """A stochastic bilevel problem.

    Attributes:
      f, g: ``(x, y, batch) -> scalar``, mean upper / lower loss on a minibatch.
      x0, y0: initial points (pytrees).
      data_f, data_g: data pytrees (leading axis = samples) or ``None``.
      noise: heavy-tailed noise added to every oracle output (:mod:`htbo.noise`), or None.
      sampling: ``'replace'`` (i.i.d. uniform indices) or ``'noreplace'`` (distinct indices
        within one minibatch).
      project_y: optional projection of the lower-level variable onto its feasible set.
      y_star, phi, grad_phi: optional closed forms ``x -> ...`` used only for metrics.
      metrics: optional ``(x, y) -> dict[str, scalar]`` of extra user metrics.
      hvp_noise: whether ``noise`` is also added to Hessian/Jacobian-vector products.
      name: a label for histories and plots.
      kind, default_noise, metric, eval_options, hypergradient, solver_defaults,
      agent_metrics: the traits (module docstring).
      info: descriptive facts (sizes, seeds, data source); never drives behaviour.
    """

    f: Callable
    g: Callable
    x0: Any
    y0: Any
    data_f: Any = None
    data_g: Any = None
    noise: Noise | None = None
    sampling: str = "replace"
    project_y: Callable | None = None
    y_star: Callable | None = None
    phi: Callable | None = None
    grad_phi: Callable | None = None
    metrics: Callable | None = None
    hvp_noise: bool = True
    name: str = "custom"
    kind: str = "bilevel"
    default_noise: str | None = None
    metric: str = "grad_norm"
    eval_options: dict = field(default_factory=dict)
    hypergradient: bool = True
    solver_defaults: dict = field(default_factory=dict)
    agent_metrics: tuple = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"problem {self.name!r}: kind must be one of {KINDS}, got "
                             f"{self.kind!r}")
        if not isinstance(self.hypergradient, bool):
            raise ValueError(f"problem {self.name!r}: hypergradient must be True or False, "
                             f"got {self.hypergradient!r}")
        if self.default_noise is not None:
            parse_noise(self.default_noise)  # a bad string fails here, naming itself
        object.__setattr__(self, "agent_metrics", tuple(self.agent_metrics))
        # what users naturally pass: integer starting points and noise strings
        for k in ("x0", "y0"):
            object.__setattr__(self, k, _float_tree(getattr(self, k), f"problem {self.name!r}: {k}"))
        if self.noise is not None and not isinstance(self.noise, Noise):
            object.__setattr__(self, "noise", parse_noise(self.noise))
        for k in ("f", "g"):
            if not callable(getattr(self, k)):
                raise ValueError(f"problem {self.name!r}: {k} must be a function "
                                 f"(x, y, batch) -> scalar, got {type(getattr(self, k)).__name__}")

    def replace(self, **changes) -> "BilevelProblem":
        return dataclasses.replace(self, **changes)

    @property
    def minimax(self) -> bool:
        return self.kind == "minimax"

    def defaults_for(self, solver: str) -> dict:
        """The hyperparameters this problem recommends for ``solver`` (its own entry over
        the ``"*"`` entry)."""
        table = self.solver_defaults or {}
        return {**dict(table.get("*", ())), **dict(table.get(solver, ()))}

    @property
    def n_f(self) -> int | None:
        return _n_samples(self.data_f)

    @property
    def n_g(self) -> int | None:
        return _n_samples(self.data_g)


def _float_tree(tree, what: str):
    """Integer / bool leaves become float32 arrays; anything that is not numeric is an error."""
    def one(a):
        if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.inexact):
            return a
        try:
            arr = np.asarray(a)
        except Exception:  # noqa: BLE001 - tracers and exotic leaves pass through
            return a
        if arr.dtype == object:
            raise ValueError(f"{what} must be numeric arrays (a pytree of them), got "
                             f"{type(a).__name__}")
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
            return jnp.asarray(arr, jnp.float32)
        return a
    return jax.tree_util.tree_map(one, tree)


def _flatten(p: BilevelProblem):
    children = tuple(getattr(p, k) for k in _DYNAMIC)
    aux = tuple((f.name, getattr(p, f.name)) for f in dataclasses.fields(p) if f.name not in _DYNAMIC)
    # the treedef must be hashable: dicts become sorted tuples of pairs
    aux = tuple((k, _freeze(v)) for k, v in aux)
    return children, aux


def _unflatten(aux, children):
    obj = object.__new__(BilevelProblem)
    for k, v in zip(_DYNAMIC, children):
        object.__setattr__(obj, k, v)
    for k, v in aux:
        object.__setattr__(obj, k, _thaw(v))
    return obj


class _FrozenDict(tuple):
    """A dict as a hashable, sorted tuple of pairs (pytree aux data must be hashable)."""


def _thaw(v):
    if isinstance(v, _FrozenDict):
        return {k: _thaw(x) for k, x in v}
    if isinstance(v, tuple) and type(v) is tuple:
        return tuple(_thaw(x) for x in v)
    return v


def _freeze(v):
    if isinstance(v, dict):
        return _FrozenDict(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


jax.tree_util.register_pytree_node(BilevelProblem, _flatten, _unflatten)


def _n_samples(data) -> int | None:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        return None
    return int(np.shape(leaves[0])[0])


def with_noise(problem: BilevelProblem, noise: Noise | str | None) -> BilevelProblem:
    """The same problem with ``noise`` added to all its oracles (``None`` removes it)."""
    return problem.replace(noise=parse_noise(noise))


def tree_check_finite(tree, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if any leaf has NaN or inf (host-side check)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            where = jax.tree_util.keystr(path) or "(root)"
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{what}{where} contains {bad} non-finite value(s) (NaN or inf)")


def _check_data(data, which: str) -> None:
    leaves, _ = jax.tree_util.tree_flatten_with_path(data)
    sizes = {jax.tree_util.keystr(p) or "(root)": (np.shape(l)[0] if np.ndim(l) else None)
             for p, l in leaves}
    if any(s is None for s in sizes.values()):
        raise ValueError(f"{which}: every data leaf needs a leading sample axis; got scalars at "
                         f"{[k for k, s in sizes.items() if s is None]}")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{which}: data leaves disagree on the number of samples: {sizes}")
    if sizes and next(iter(sizes.values())) == 0:
        raise ValueError(f"{which}: data set is empty")
    tree_check_finite(data, which)


def _float_leaves(tree, which: str):
    """``(where, dtype)`` of the floating leaves (the dtype a jitted program sees)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dt = getattr(leaf, "dtype", None)
        try:
            dt = jax.dtypes.canonicalize_dtype(np.result_type(leaf) if dt is None else dt)
        except TypeError:
            continue
        if jnp.issubdtype(dt, jnp.floating):
            yield f"{which}{jax.tree_util.keystr(path)}", np.dtype(dt)


def _check_dtypes(problem: BilevelProblem, name: str) -> None:
    """The iterates share one float dtype; data never widen it (the updates would change
    the iterates' dtype inside compiled loops)."""
    ref = None
    for which in ("x0", "y0"):
        for where, dt in _float_leaves(getattr(problem, which), which):
            if ref is None:
                ref = (where, dt)
            elif dt != ref[1]:
                raise ValueError(f"{name}: {where} is {dt} but {ref[0]} is {ref[1]}: give "
                                 "every leaf of x0 and y0 one float dtype (mixed precision "
                                 "is not supported)")
    if ref is None:
        return
    for which in ("data_f", "data_g"):
        for where, dt in _float_leaves(getattr(problem, which), which):
            if jnp.promote_types(dt, ref[1]) != ref[1]:
                raise ValueError(f"{name}: {where} is {dt}, wider than the iterates' {ref[1]} "
                                 f"({ref[0]}): cast the data to {ref[1]} or x0 and y0 to {dt}")


def validate_problem(problem: BilevelProblem, batch_sizes: tuple[int, ...] = ()) -> None:
    """Check a problem before running it; raise ``ValueError`` with a clear message.

    Checks: finite data and initial points, one float dtype for every leaf of x0 and y0
    and no data leaf of a wider float dtype (mixed precision is refused, naming the leaf),
    consistent sample counts, f and g accept ``(x0, y0, batch)`` and return scalars,
    y-gradients have y's structure, and that ``noreplace`` batches fit in the data.
    """
    name = f"problem {problem.name!r}"
    if problem.sampling not in _SAMPLING:
        raise ValueError(f"{name}: sampling must be one of {_SAMPLING}, got {problem.sampling!r}")
    _check_dtypes(problem, name)
    tree_check_finite(problem.x0, f"{name}: x0")
    tree_check_finite(problem.y0, f"{name}: y0")
    for which, data in (("data_f", problem.data_f), ("data_g", problem.data_g)):
        if data is not None:
            _check_data(data, f"{name}: {which}")
            n = _n_samples(data)
            for b in batch_sizes:
                if problem.sampling == "noreplace" and n is not None and b > n:
                    raise ValueError(f"{name}: batch size {b} exceeds the {n} samples of {which} "
                                     "with sampling='noreplace'")
    for fname, fn, data in (("f", problem.f, problem.data_f), ("g", problem.g, problem.data_g)):
        batch = None if data is None else jax.tree_util.tree_map(lambda a: a[:2], data)
        try:
            out = jax.eval_shape(fn, problem.x0, problem.y0, batch)
        except Exception as e:  # shape errors inside user code
            raise ValueError(f"{name}: {fname}(x0, y0, batch) failed: {type(e).__name__}: {str(e).rstrip('.')}. "
                             "Check that x0 and y0 have the shapes f and g expect.") from e
        if not hasattr(out, "shape") or out.shape != ():
            raise ValueError(f"{name}: {fname}(x, y, batch) must return a scalar, got "
                             f"{getattr(out, 'shape', type(out))}")
    if problem.project_y is not None:
        py = jax.eval_shape(problem.project_y, problem.y0)
        want = jax.eval_shape(lambda y: y, problem.y0)
        if jax.tree_util.tree_structure(py) != jax.tree_util.tree_structure(want) or any(
                a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(py),
                                                   jax.tree_util.tree_leaves(want))):
            raise ValueError(f"{name}: project_y must return a pytree shaped like y0; "
                             f"got {py} for y0 {want}")
    for attr in ("y_star", "grad_phi"):
        fn = getattr(problem, attr)
        ref = problem.y0 if attr == "y_star" else problem.x0
        if fn is not None:
            got = jax.eval_shape(fn, problem.x0)
            if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(ref):
                raise ValueError(f"{name}: {attr}(x) must return a pytree shaped like "
                                 f"{'y0' if attr == 'y_star' else 'x0'}")
