"""``htbo.tune`` and its helpers (the search lives in :mod:`htbo.search`)."""
from __future__ import annotations

from .search import (DEFAULT_MAX_MEMBERS, DEFAULT_MEMORY_LIMIT, TuneResult, default_grid,
                     edge_notes, expand_grid, point_label, tune)

__all__ = ["tune", "TuneResult", "expand_grid", "point_label", "edge_notes", "default_grid",
           "DEFAULT_MAX_MEMBERS", "DEFAULT_MEMORY_LIMIT"]
