"""The paper's loops (Wang et al., ECCV 2020): the dynamic plug-and-play HQS.

* ``authors``  -- as the authors' notebooks ran it: the row-mix A, the ``authors`` x-step
  ``x = (1 - delta (1 + mu)) x + delta A^T y + delta v``, ``v = prior(x)``, the notebooks' row-mix
  A-step with step ``alpha``; ``x_0 = A^T y``, ``v_0 = 0``.
* ``gradient`` -- the principled version: the x-step a true gradient step on
  ``||A x - y||^2 / 2 + mu ||x - v||^2 / 2`` (or ``exact``, ``fft``, ``cg``), ``v = prior(x)``, and
  the A-step ``A - alpha grad_A ||A x + g(y) - y||^2`` on the chosen operator (a per-pixel gain by
  default); ``x_0 = v_0 = A^T y``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array


def _step(p, s, op, y, hp):
    x, info = p.prox(op, y, s.v, hp.mu, s.x, hp.delta)
    return State(x, p.denoise(x, hp.sigma, hp.t)), info


AUTHORS = Algorithm(
    name="authors", summary="the paper's loop as the authors ran it (row-mix A, their x- and A-steps)",
    numbers=("delta", "mu", "alpha", "sigma"),
    init=lambda p, op, y: State(*p.start(op, y, "adjoint_zero_v")), step=_step,
    traits=Traits(x_kind="choose", takes_operator="rowmix", choose_steps=False, schedule=False,
                  known_degradation=False),
    defaults=dict(delta=0.01, mu=0.1, alpha=1e-5), x_step="authors", a_step="authors",
    operator="rowmix", iters=2)

GRADIENT = Algorithm(
    name="gradient", summary="the paper's loop as written: gradient x-step, prior, gradient A-step",
    numbers=("delta", "mu", "alpha", "sigma"),
    init=lambda p, op, y: State(*p.start(op, y, "adjoint")), step=_step,
    traits=Traits(x_kind="choose", schedule=False, known_degradation=False),
    defaults=dict(delta=0.01, mu=0.1, alpha=1e-5), x_step="gradient", a_step="gradient",
    operator="gain", iters=2)
