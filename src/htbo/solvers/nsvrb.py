"""NSVRB: normalized STORM on the HVP hypergradient on one machine (a method of ours: no
paper cited here defines it) — D-NSVRB with ``route="hvp"`` on a one-agent network.

The update is not written here: this solver runs the one-agent D-NSVRB program
(:class:`htbo.decentralized.solvers.dnsvrb.DNSVRB`) under ``vmap(axis_name="agents")`` over
a leading agent axis of size 1. With ``W = [[1]]`` mixing is the identity and tracking
reduces to ``s = u``, so one step on the variables ``w = (x, y, v)`` reads::

    w⁺ = w − η_w T_w(u_w)                       per variable (η_v is ``eta_z``)
    u⁺ = D(w⁺; b) + (1 − β)(u − D(w; b))        STORM, the same minibatch b at both points
    D^x = ∇_x F(x, y) + ∇²_xy G(x, y) v,   D^y = ∇_y G(x, y),
    D^v = ∇²_yy G(x, y) v + ∇_y F(x, y)

``T`` is ``update`` for x and ``inner_update`` (None: the same) for y and v: normalized
``d / max(‖d‖, eps)``, ``plain`` or ``clip`` (``d · min(1, c/‖d‖)``, ``c = clip``). β = 1
is no variance reduction. ``u₀ = D(w₀)`` is evaluated once at the start. Per step: SFO
``2 · batch``, HVP ``batch``, both doubled by STORM when β < 1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..decentralized.solvers.dnsvrb import DNSVRB
from ..schedules import ScalarOrSchedule, exponential
from .base import Solver, numeric, solver, structural

_UPDATES = ("normalized", "plain", "clip")

# noise-free settings of the generic solver tests: a normalized x step needs a decaying η;
# plain y and v steps settle exactly
_EXACT = dict(eta_x=exponential(0.5, 0.996), eta_y=0.3, eta_z=0.3, inner_update="plain")


def _one_agent_mix(tree):
    """Mixing over ``W = [[1]]``: the identity."""
    return tree


def _stack(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], tree)


@solver("nsvrb", "NSVRB (ours): normalized STORM on the HVP hypergradient, one machine "
        "(one-agent D-NSVRB)", tests=dict(noise_free=(_EXACT, 3000), small=dict(batch=2)))
class NSVRB(Solver):
    """One-agent D-NSVRB on the HVP route: ``eta_x``, ``eta_y``, ``eta_z`` (the step of v),
    ``beta`` (STORM weight; 1: none), ``update`` / ``inner_update``, ``clip``."""

    eta_x: ScalarOrSchedule = numeric(0.02, schedule=True, doc="step of x")
    eta_y: ScalarOrSchedule = numeric(0.05, schedule=True, doc="step of y")
    eta_z: ScalarOrSchedule = numeric(0.05, schedule=True, doc="step of v")
    beta: float = numeric(0.1, low=0.0, high=1.0, high_closed=True, optional=True, off=1.0,
                          doc="STORM weight (1: no variance reduction)")
    clip: float | None = numeric(None, optional=True, label="clipping threshold",
                                 doc="clip level of 'clip' updates")
    batch: int = structural(1)
    update: str = structural("normalized", type=str, choices=_UPDATES, doc="T of x")
    inner_update: str | None = structural(None, type=str, choices=_UPDATES + (None,),
                                          doc="T of y and v (None: as update)")
    eps: float = structural(1e-12, type=float, doc="floor of the norms")

    def check(self):
        clipped = "clip" in (self.update, self.inner_update)
        if clipped and not self.active("clip"):
            raise ValueError(f"nsvrb: a 'clip' update needs a clip level clip, got none "
                             f"(update={self.update!r}, inner_update={self.inner_update!r})")
        if not clipped and self.active("clip"):
            raise ValueError(f"nsvrb: clip={self.clip!r} is used only with a 'clip' update, got "
                             f"update={self.update!r}, inner_update={self.inner_update!r}")

    @property
    def sfo_per_step(self) -> int:
        return (2 if self.active("beta") else 1) * 2 * self.batch

    @property
    def hvp_per_step(self) -> int:
        return (2 if self.active("beta") else 1) * self.batch

    @property
    def sfo_at_init(self) -> int:
        """The start's one evaluation of the directions (not in the per-step counts)."""
        return 2 * self.batch

    @property
    def hvp_at_init(self) -> int:
        return self.batch

    def _dnsvrb(self, **numbers):
        return DNSVRB(route="hvp", tracking=False, batch=self.batch, update=self.update,
                      inner_update=self.inner_update, eps=self.eps, **numbers)

    def as_dnsvrb(self):
        """The D-NSVRB solver whose one-agent run this is (same values, ``route="hvp"``,
        no tracking)."""
        return self._dnsvrb(eta_x=self.eta_x, eta_y=self.eta_y, eta_z=self.eta_z,
                            beta=self.beta, **({"clip": self.clip} if self.active("clip")
                                               else {}))

    def _program(self):
        # the canonical D-NSVRB program of this structure (numbers are placeholders)
        return self._dnsvrb(beta=0.5 if self.active("beta") else 1.0).program()

    def init(self, problem, x0, y0, key, hp):
        dinit = self._program()[0]
        leaf = jax.tree_util.tree_leaves(hp)[0]
        dhp = dict(hp, lam=jnp.ones_like(leaf))   # λ: unused on the HVP route
        return jax.vmap(lambda x, y: dinit(problem, x, y, key, dhp),
                        axis_name="agents")(_stack(x0), _stack(y0))

    def step(self, problem, state, key):
        dstep = self._program()[1]
        return jax.vmap(lambda st: dstep(problem, st, key, _one_agent_mix),
                        axis_name="agents")(state)

    def params(self, state):
        return jax.tree_util.tree_map(lambda a: a[0], self._program()[2](state))


nsvrb = NSVRB
