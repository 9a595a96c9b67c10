"""One registry type for everything a user picks by name: problems, solvers (bilevel,
minimax, decentralized), decentralized problems, topologies and noise laws.

A :class:`Registry` maps a name to an object and a one-line summary; ``htbo list`` and the
command-line help read the summaries. Registering is one decorator (or call) in the file
that defines the object::

    @PROBLEMS.register("quadratic", "bilevel quadratic with closed forms")
    def quadratic(dim_x=10, ...): ...

A registry built with ``memoize=True`` (the problem registries) returns the constructor
memoized on its arguments: problems are immutable and compiled programs are keyed on a
problem's functions, so two calls ``quadratic(dim_x=3)`` return the same object and every
run on it shares one compilation. Unhashable arguments fall back to a fresh build.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

__all__ = ["Registry", "memoize", "import_all"]


def import_all(package: str, path) -> None:
    """Import every public module of a package (its ``__path__``): a file dropped into
    ``htbo/solvers``, ``htbo/problems`` or ``htbo/noise`` registers itself, no other edit."""
    import importlib
    import pkgutil
    for m in pkgutil.iter_modules(path):
        if not m.name.startswith("_"):
            importlib.import_module(f"{package}.{m.name}")


def memoize(constructor: Callable, maxsize: int = 16) -> Callable:
    """``constructor`` memoized on its (hashable) arguments; unhashable ones rebuild."""
    memo = functools.lru_cache(maxsize=maxsize)(constructor)

    @functools.wraps(constructor)
    def build(*args, **kwargs):
        try:
            return memo(*args, **kwargs)
        except TypeError as e:
            if "unhashable" not in str(e):
                raise
            return constructor(*args, **kwargs)
    build.cache_clear = memo.cache_clear
    build.__wrapped__ = constructor
    return build


class Registry:
    """Names → objects, with a summary line each. ``kind`` names the registry in errors."""

    def __init__(self, kind: str, *, memoize: bool = False):
        self.kind = kind
        self.memoize = memoize
        self._items: dict[str, Any] = {}
        self._summary: dict[str, str] = {}
        self._meta: dict[str, dict] = {}

    def register(self, name: str, summary: str = "", obj: Any = None, **meta):
        """Register ``obj`` under ``name`` (as a decorator when ``obj`` is omitted); returns
        the registered object (memoized for a memoizing registry). ``meta``: anything the
        library or its tests read back with :meth:`meta` (e.g. a solver's test settings)."""
        def add(o):
            if self.memoize and callable(o) and not hasattr(o, "cache_clear"):
                o = memoize(o)
            self._items[name] = o
            self._summary[name] = summary or _first_line(o)
            self._meta[name] = dict(meta)
            return o
        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. an example registered by a test)."""
        self.get(name)
        for d in (self._items, self._summary, self._meta):
            d.pop(name, None)

    def meta(self, name: str) -> dict:
        """The ``meta`` given at registration."""
        self.get(name)
        return self._meta.get(name, {})

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; available: "
                             f"{', '.join(sorted(self._items))}") from None

    def summary(self, name: str) -> str:
        return self._summary.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def describe(self) -> list[str]:
        """``name — summary`` lines (for ``htbo list``)."""
        width = max((len(n) for n in self._items), default=0)
        return [f"{n:<{width}}  {self._summary[n]}".rstrip() for n in self.names()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _first_line(obj) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().split("\n")[0].rstrip(".") if doc.strip() else ""
