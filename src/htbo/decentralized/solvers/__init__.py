"""Decentralized solvers, written for ONE agent (see :mod:`htbo.decentralized.solvers.dnsvrb`)."""
from __future__ import annotations

from functools import partial

from .dnsvrb import DecSolver, dnsvrb

DEC_SOLVERS = {
    "dnsvrb": dnsvrb,
    "dsvrb": partial(dnsvrb, update="plain"),
    "dsvrb-clip": partial(dnsvrb, update="clip"),
    "dsgd-bilevel": partial(dnsvrb, update="plain", beta=1.0, tracking=False),
}

__all__ = ["DecSolver", "dnsvrb", "DEC_SOLVERS"]
