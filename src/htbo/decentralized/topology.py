"""Network topologies as pure generators of mixing matrices (ALGORITHMS.md §1).

Every generator returns a symmetric, doubly stochastic ``W`` (``np.ndarray``, m×m) with
Metropolis–Hastings weights ``W_ij = 1/(1 + max(d_i, d_j))`` on edges and
``W_ii = 1 − Σ_{j≠i} W_ij``. :func:`edge_coloring` splits the edges into matchings so that
mixing needs one ``ppermute`` per colour (see :mod:`htbo.decentralized.mixing`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["metropolis", "ring", "torus", "exponential", "erdos_renyi", "complete", "star",
           "TOPOLOGIES", "parse_network", "check_mixing_matrix", "spectral_gap",
           "edge_coloring", "is_connected"]


def _check_m(m, lo=1):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < lo:
        raise ValueError(f"number of agents must be an integer >= {lo}, got {m!r}")


def metropolis(adj) -> np.ndarray:
    """Metropolis–Hastings weights of an undirected graph given by a 0/1 adjacency matrix."""
    A = np.asarray(adj, bool)
    A = (A | A.T) & ~np.eye(len(A), dtype=bool)
    deg = A.sum(1)
    W = np.where(A, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    W[np.diag_indices_from(W)] = 1.0 - W.sum(1)
    return W


def _adj(m, edges):
    A = np.zeros((m, m), bool)
    for i, j in edges:
        if i != j:
            A[i, j] = A[j, i] = True
    return A


def ring(m: int) -> np.ndarray:
    _check_m(m)
    return metropolis(_adj(m, [(i, (i + 1) % m) for i in range(m)]))


def torus(r: int, c: int) -> np.ndarray:
    """2-D torus of ``r × c`` agents (agent ``i = a*c + b``), 4 neighbours each."""
    _check_m(r), _check_m(c)
    idx = lambda a, b: (a % r) * c + (b % c)  # noqa: E731
    return metropolis(_adj(r * c, [(idx(a, b), idx(a + 1, b)) for a in range(r) for b in range(c)]
                           + [(idx(a, b), idx(a, b + 1)) for a in range(r) for b in range(c)]))


def exponential(m: int) -> np.ndarray:
    """Static exponential graph: i ~ i ± 2^k (mod m) for 2^k < m (undirected version)."""
    _check_m(m)
    edges, k = [], 1
    while k < m:
        edges += [(i, (i + k) % m) for i in range(m)]
        k *= 2
    return metropolis(_adj(m, edges))


def is_connected(W) -> bool:
    A = np.asarray(W) != 0
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j in np.nonzero(A[i])[0]:
            if j not in seen:
                seen.add(int(j))
                todo.append(int(j))
    return len(seen) == len(A)


def erdos_renyi(m: int, p: float = 0.3, seed: int = 0, max_tries: int = 1000) -> np.ndarray:
    """Erdős–Rényi G(m, p), redrawn (same seed stream) until connected."""
    _check_m(m)
    if not 0 < p <= 1:
        raise ValueError(f"erdos_renyi: p must be in (0, 1], got {p}")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        U = np.triu(rng.random((m, m)) < p, 1)
        W = metropolis(U)
        if is_connected(W):
            return W
    raise ValueError(f"erdos_renyi: no connected graph in {max_tries} draws for m={m}, p={p}")


def complete(m: int) -> np.ndarray:
    _check_m(m)
    return np.full((m, m), 1.0 / m)


def star(m: int) -> np.ndarray:
    """Agent 0 is the hub."""
    _check_m(m)
    return metropolis(_adj(m, [(0, i) for i in range(1, m)]))


def _torus_m(m: int) -> np.ndarray:
    r = int(np.sqrt(m))
    while m % r:
        r -= 1
    return torus(r, m // r)


TOPOLOGIES = {"ring": ring, "torus": _torus_m, "exponential": exponential,
              "erdos_renyi": erdos_renyi, "er": erdos_renyi, "complete": complete, "star": star}


def parse_network(text: str, m: int | None = None) -> np.ndarray:
    """``"ring:8"``, ``"torus:16"`` (most square r×c), ``"torus:4x4"``, ``"er:16:0.3"``
    (p; optional seed as a 4th field), or ``NAME`` with ``m`` given."""
    parts = str(text).split(":")
    name = parts[0].strip().lower().replace("-", "_")
    if name not in TOPOLOGIES:
        raise ValueError(f"unknown topology {parts[0]!r}; choose from {sorted(TOPOLOGIES)}")
    if len(parts) > 1 and parts[1]:
        if name == "torus" and "x" in parts[1]:
            r, c = (int(v) for v in parts[1].split("x"))
            return torus(r, c)
        try:
            m = int(parts[1])
        except ValueError:
            raise ValueError(f"bad agent count in network {text!r}") from None
    if m is None:
        raise ValueError(f"network {text!r} needs a number of agents (NAME:M)")
    if name in ("er", "erdos_renyi"):
        p = float(parts[2]) if len(parts) > 2 else 0.3
        seed = int(parts[3]) if len(parts) > 3 else 0
        return erdos_renyi(m, p, seed)
    if len(parts) > 2:
        raise ValueError(f"topology {name} takes no parameter besides M, got {text!r}")
    return TOPOLOGIES[name](m)


def check_mixing_matrix(W, tol: float = 1e-10) -> np.ndarray:
    """Raise ValueError unless W is square, symmetric, nonnegative, doubly stochastic and
    connected; return it as float64."""
    W = np.asarray(W, float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be square, got shape {W.shape}")
    if not np.allclose(W, W.T, atol=tol):
        raise ValueError("W must be symmetric")
    if (W < -tol).any():
        raise ValueError("W must be nonnegative")
    if not np.allclose(W.sum(1), 1.0, atol=tol):
        raise ValueError("W rows must sum to 1 (doubly stochastic)")
    if not is_connected(W):
        raise ValueError("the graph of W must be connected")
    return W


def spectral_gap(W) -> float:
    """``1 − max(|λ_2|, |λ_m|)``: the per-round contraction of gossip is ``1 − gap``."""
    ev = np.sort(np.abs(np.linalg.eigvalsh(np.asarray(W, float))))[::-1]
    return float(1.0 - ev[1]) if len(ev) > 1 else 1.0


def _greedy(edges, m):
    used: list[set[int]] = [set() for _ in range(m)]
    colours: list[list[tuple[int, int]]] = []
    for i, j in edges:
        c = 0
        while c in used[i] or c in used[j]:
            c += 1
        if c == len(colours):
            colours.append([])
        colours[c].append((i, j))
        used[i].add(c)
        used[j].add(c)
    return colours


def edge_coloring(W, tries: int = 64) -> list[list[tuple[int, int]]]:
    """Split the edges of W's graph into matchings (lists of ``(i, j)``, ``i < j``).

    Greedy colouring over the natural edge order and ``tries`` seeded shuffles, keeping the
    fewest colours (deterministic). Greedy guarantees ``≤ 2Δ − 1``; the tests check
    ``≤ Δ + 1`` on every built-in topology at the sizes used.
    """
    W = np.asarray(W)
    m = len(W)
    edges = [(i, j) for i in range(m) for j in range(i + 1, m) if W[i, j] != 0]
    best = _greedy(edges, m)
    rng = np.random.default_rng(0)
    for _ in range(tries):
        if len(best) <= max(1, int((W != 0).sum(1).max()) - 1):
            break  # Δ colours: optimal
        order = rng.permutation(len(edges))
        cand = _greedy([edges[k] for k in order], m)
        if len(cand) < len(best):
            best = cand
    return [sorted(c) for c in best]
