"""The network alone, and the network stacked statically.

* ``prior``  -- ``prior(y)``: one application of the plugged network (one iteration).
* ``static`` -- "static stacking": ``v_t = prior(v_{t-1})``, ``v_0 = y``.
"""
from __future__ import annotations

from .base import Algorithm, Traits
from .dynamic import State


def _step(p, s, op, y, hp):
    return State(s.v, p.denoise(s.v, hp.sigma, hp.t)), {}


_TRAITS = dict(x_kind="none", takes_operator="none", choose_steps=False, schedule=False,
               known_degradation=False, start="y")

PRIOR = Algorithm(
    name="prior", summary="the network alone, prior(y)", numbers=("sigma",),
    init=lambda p, op, y: State(*p.start(op, y, "y")), step=_step,
    traits=Traits(**_TRAITS, fixed_iters=1), x_step="none", iters=1)

STATIC = Algorithm(
    name="static", summary="static stacking: the network applied T times", numbers=("sigma",),
    init=lambda p, op, y: State(*p.start(op, y, "y")), step=_step,
    traits=Traits(**_TRAITS), x_step="none", iters=2)
