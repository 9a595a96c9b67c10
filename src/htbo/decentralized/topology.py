"""Network topologies as pure generators of weighted graphs (mixing matrices W).

Every generator returns a symmetric, doubly stochastic ``W`` (``np.ndarray``, m×m) with
Metropolis–Hastings weights ``W_ij = 1/(1 + max(d_i, d_j))`` on edges and
``W_ii = 1 − Σ_{j≠i} W_ij``. ``spectral_gap(W) = 1 − max(|λ₂|, |λ_m|)`` sets the gossip rate:
``‖W^t X − X̄‖ ≤ (1 − gap)^t ‖X − X̄‖``. ``edge_coloring`` splits the edges into at most
``Δ + 1`` matchings (Δ = ``max_degree``, Misra–Gries), one ``ppermute`` (pairwise swap) each.
"""
from __future__ import annotations

import math

import numpy as np

from ..registry import Registry

__all__ = ["metropolis_hastings", "ring", "torus", "exponential", "erdos_renyi", "complete",
           "star", "TOPOLOGIES", "parse_network", "check_mixing_matrix", "spectral_gap",
           "edge_coloring", "max_degree"]


def metropolis_hastings(adj: np.ndarray) -> np.ndarray:
    """Metropolis–Hastings weights of an undirected graph given by a boolean adjacency."""
    adj = np.asarray(adj, bool)
    adj = (adj | adj.T) & ~np.eye(len(adj), dtype=bool)
    deg = adj.sum(1)
    W = np.where(adj, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    W[np.diag_indices_from(W)] = 1.0 - W.sum(1)
    return W


def _adj(m: int, edges) -> np.ndarray:
    a = np.zeros((m, m), bool)
    for i, j in edges:
        if i != j:
            a[i, j] = a[j, i] = True
    return a


def _check_m(m: int, lo: int = 1) -> None:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < lo:
        raise ValueError(f"number of agents must be an integer >= {lo}, got {m!r}")


def ring(m: int) -> np.ndarray:
    _check_m(m)
    return metropolis_hastings(_adj(m, [(i, (i + 1) % m) for i in range(m)]))


def torus(rows: int, cols: int) -> np.ndarray:
    """2-D torus (wrap-around grid) of ``rows × cols`` agents."""
    _check_m(rows)
    _check_m(cols)
    idx = lambda r, c: (r % rows) * cols + (c % cols)  # noqa: E731
    edges = [(idx(r, c), idx(r, c + 1)) for r in range(rows) for c in range(cols)]
    edges += [(idx(r, c), idx(r + 1, c)) for r in range(rows) for c in range(cols)]
    return metropolis_hastings(_adj(rows * cols, edges))


def exponential(m: int) -> np.ndarray:
    """Undirected exponential graph: ``i ~ i ± 2^k (mod m)`` for ``2^k < m``."""
    _check_m(m)
    edges = [(i, (i + 2**k) % m) for i in range(m) for k in range(max(1, math.ceil(math.log2(m))))
             if 2**k < m]
    return metropolis_hastings(_adj(m, edges))


def erdos_renyi(m: int, p: float = 0.3, seed: int = 0, max_tries: int = 1000) -> np.ndarray:
    """A connected Erdős–Rényi G(m, p) graph (resampled until connected)."""
    _check_m(m)
    if not 0 < p <= 1:
        raise ValueError(f"edge probability p must be in (0, 1], got {p}")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        upper = np.triu(rng.random((m, m)) < p, 1)
        W = metropolis_hastings(upper | upper.T)
        if m == 1 or spectral_gap(W) > 1e-9:
            return W
    raise ValueError(f"no connected G({m}, {p}) graph in {max_tries} draws; raise p")


def complete(m: int) -> np.ndarray:
    _check_m(m)
    return metropolis_hastings(~np.eye(m, dtype=bool))


def star(m: int) -> np.ndarray:
    _check_m(m)
    return metropolis_hastings(_adj(m, [(0, i) for i in range(1, m)]))


def _torus_m(m: int) -> np.ndarray:
    r = max(d for d in range(1, int(math.isqrt(m)) + 1) if m % d == 0)
    return torus(r, m // r)


#: name -> generator ``m -> W`` (``htbo list``; ``--network NAME:M``)
TOPOLOGIES = Registry("topology")
TOPOLOGIES.register("ring", "cycle, degree 2", ring)
TOPOLOGIES.register("torus", "near-square 2-D torus, degree 4", _torus_m)
TOPOLOGIES.register("exponential", "i ~ i ± 2^k, degree ≈ 2 log2 m", exponential)
TOPOLOGIES.register("erdos-renyi", "connected G(m, 0.3), seed 0", erdos_renyi)
TOPOLOGIES.register("complete", "every pair", complete)
TOPOLOGIES.register("star", "agent 0 linked to all", star)


def parse_network(spec: str, agents: int | None = None) -> np.ndarray:
    """``'ring:8'``, ``'torus:16'`` (near-square grid), ``'exponential:8'``,
    ``'erdos-renyi:8'``, ``'complete:4'``, ``'star:5'``; or a bare name with ``agents``."""
    name, _, num = spec.strip().lower().partition(":")
    if name not in TOPOLOGIES:
        raise ValueError(f"unknown network {name!r}; expected one of "
                         f"{', '.join(TOPOLOGIES.names())} as NAME:AGENTS")
    try:
        m = int(num) if num else agents
    except ValueError:
        raise ValueError(f"bad network {spec!r}: the number of agents must be an integer") \
            from None
    if m is None:
        raise ValueError(f"network {spec!r} needs a number of agents, e.g. '{name}:8'")
    return TOPOLOGIES.get(name)(m)


def check_mixing_matrix(W, tol: float = 1e-10) -> np.ndarray:
    """Raise ``ValueError`` unless W is square, symmetric, nonnegative, doubly stochastic and
    connected; return it as float64."""
    W = np.asarray(W, np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"mixing matrix must be square, got shape {W.shape}")
    if not np.allclose(W, W.T, atol=tol):
        raise ValueError("mixing matrix must be symmetric")
    if W.min() < -tol:
        raise ValueError("mixing matrix must be nonnegative")
    if not np.allclose(W.sum(1), 1.0, atol=tol):
        raise ValueError("mixing matrix rows must sum to 1 (doubly stochastic)")
    if len(W) > 1 and spectral_gap(W) <= 1e-9:
        raise ValueError("mixing matrix has spectral gap 0: the graph is disconnected")
    return W


def spectral_gap(W) -> float:
    """``1 − max(|λ₂|, |λ_m|)`` of a symmetric W."""
    lam = np.sort(np.abs(np.linalg.eigvalsh(np.asarray(W, np.float64))))[::-1]
    return float(1.0 - lam[1]) if len(lam) > 1 else 1.0


def max_degree(W) -> int:
    """Δ: the largest number of neighbours of an agent (off-diagonal nonzeros of a row)."""
    A = _neighbours(W)
    return max((len(a) for a in A), default=0)


def _neighbours(W) -> list[list[int]]:
    W = np.asarray(W)
    m = len(W)
    return [[j for j in range(m) if j != i and (W[i, j] != 0 or W[j, i] != 0)] for i in range(m)]


def edge_coloring(W) -> list[list[tuple[int, int]]]:
    """A proper edge colouring of W's graph with at most ``Δ + 1`` colours (Vizing's bound):
    a list of matchings, every edge ``(i, j)``, ``i < j``, in exactly one of them.

    Misra & Gries' constructive proof of Vizing's theorem colours the edges one by one; a
    first-fit greedy colouring (which can need up to ``2Δ − 1``) is kept instead when it
    happens to use fewer colours (e.g. 2 on an even ring, where Misra–Gries may use 3).
    """
    nbrs = _neighbours(W)
    edges = [(i, j) for i in range(len(nbrs)) for j in nbrs[i] if i < j]
    best = min((_misra_gries(nbrs, edges), _first_fit(edges)), key=len)
    return [sorted(c) for c in best]


def _first_fit(edges) -> list[list[tuple[int, int]]]:
    colors: list[list[tuple[int, int]]] = []
    used: list[set[int]] = []
    for i, j in edges:
        for c, nodes in enumerate(used):
            if i not in nodes and j not in nodes:
                colors[c].append((i, j))
                nodes.update((i, j))
                break
        else:
            colors.append([(i, j)])
            used.append({i, j})
    return colors


def _misra_gries(nbrs, edges) -> list[list[tuple[int, int]]]:
    """Misra–Gries edge colouring with colours ``0 … Δ``.

    ``at[v]`` maps each colour present at vertex v to the neighbour across that edge. For an
    uncoloured edge (u, v): build a maximal fan ``F = [v = f_0, f_1, …, f_k]`` of neighbours
    of u (edge (u, f_{i+1}) coloured with a colour free at f_i), take c free at u and d free
    at f_k, swap c and d along the path from u whose edges alternate d, c, d, …, then rotate
    the fan up to the first f_w at which d is free (its prefix is still a fan) and colour
    (u, f_w) with d.
    """
    delta = max((len(a) for a in nbrs), default=0)
    palette = range(delta + 1)
    at: list[dict[int, int]] = [{} for _ in nbrs]
    col: dict[tuple[int, int], int] = {}  # edge (min, max) -> its colour

    def color(a, b):
        return col.get((min(a, b), max(a, b)))

    def free(a):
        return next(c for c in palette if c not in at[a])

    def unpaint(a, b):
        c = col.pop((min(a, b), max(a, b)), None)
        if c is not None:
            del at[a][c], at[b][c]

    def paint(a, b, c):  # (a, b) uncoloured, c free at a and at b
        at[a][c], at[b][c] = b, a
        col[min(a, b), max(a, b)] = c

    for u, v in edges:
        fan, infan = [v], {v}
        grown = True
        while grown:  # at[u]: colour -> neighbour of u across the edge of that colour
            grown = False
            for cx, x in at[u].items():
                if x not in infan and cx not in at[fan[-1]]:
                    fan.append(x)
                    infan.add(x)
                    grown = True
                    break
        c, d = free(u), free(fan[-1])
        if c != d:  # swap c <-> d on the alternating path from u (it starts with colour d)
            path, a, want = [], u, d
            while want in at[a]:
                b = at[a][want]
                path.append((a, b, want))
                a, want = b, (c if want == d else d)
            for a, b, _ in path:
                unpaint(a, b)
            for a, b, was in path:
                paint(a, b, c + d - was)
        for w, fw in enumerate(fan):
            if d not in at[fw]:
                break
            if w + 1 < len(fan) and color(u, fan[w + 1]) in at[fw]:
                raise AssertionError("Misra-Gries: fan prefix broken")  # pragma: no cover
        else:  # pragma: no cover - excluded by the theorem
            raise AssertionError("Misra-Gries: no fan vertex with the colour free")
        shifted = [color(u, fan[i + 1]) for i in range(w)] + [d]  # rotate the fan prefix
        for i in range(w + 1):
            unpaint(u, fan[i])
        for i in range(w + 1):
            paint(u, fan[i], shifted[i])
    classes: dict[int, list[tuple[int, int]]] = {}
    for e, c in col.items():
        classes.setdefault(c, []).append(e)
    return [classes[c] for c in sorted(classes)]
