"""Decentralized bilevel solvers (per-agent steps with named-axis mixing)."""
from .dnsvrb import DecSolver, d_clip, d_sgd, d_storm, dnsvrb

__all__ = ["DecSolver", "dnsvrb", "d_storm", "d_clip", "d_sgd"]
