"""Decentralized solvers, written for ONE agent (see :mod:`htbo.decentralized.solvers.dnsvrb`)."""
from __future__ import annotations

from ...registry import import_all
from .dnsvrb import DEC_SOLVERS, DNSVRB, dnsvrb

import_all(__name__, __path__)  # every module of this package registers what it defines

__all__ = ["DNSVRB", "dnsvrb", "DEC_SOLVERS"]
