"""Decentralized solvers, written for ONE agent (see :mod:`htbo.decentralized.solvers.dnsvrb`)."""
from __future__ import annotations

from .dnsvrb import DEC_SOLVERS, DNSVRB, dnsvrb

__all__ = ["DNSVRB", "dnsvrb", "DEC_SOLVERS"]
