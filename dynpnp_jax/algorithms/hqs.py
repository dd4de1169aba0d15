"""Half-quadratic splitting with a known operator.

* ``hqs``  -- classic HQS for denoising (A = I): ``x = (y + mu v) / (1 + mu)``, ``v = prior(x)``,
  ``v_0 = y``, a constant ``mu``.
* ``dpir`` -- plug-and-play HQS for a known degradation (Zhang et al., DPIR, TPAMI 2021): the
  exact x-step ``x_t = (A^T A + rho_t I)^{-1} (A^T y + rho_t v_{t-1})`` (``mu`` is DPIR's rho),
  ``v_t = prior(x_t, sigma_t)`` with ``sigma_t`` falling geometrically from 49/255 to the noise
  level and ``rho_t = 0.23 max(noise, 0.255/255)^2 / sigma_t^2``; ``x_0 = v_0`` the operator's
  natural start (``y`` for a blur, bicubic up-sampling for SR, a filled-in ``y`` for inpainting).
  Optional ``relax_t`` (``v_t = x_t + relax_t (prior(x_t) - x_t)``) and ``inertia_t`` (the
  x-step's prior term ``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})``): unset, the loop is DPIR's.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array
    vprev: jax.Array  # v_{t-2}; a scalar placeholder unless relax / inertia are set


def init(p, op, y, start="initial"):
    x0, v0 = p.start(op, y, start)
    return State(x0, v0, v0 if p.cfg.relaxed else jnp.zeros((), v0.dtype))


def step(p, s, op, y, hp):
    relaxed = p.cfg.relaxed
    z = s.v + hp.inertia * (s.v - s.vprev) if relaxed else s.v  # extrapolated prior term
    x, info = p.prox(op, y, z, hp.mu, s.x, hp.delta)
    v = p.denoise(x, hp.sigma, hp.t)
    if relaxed:  # relaxed prior step
        v = x + hp.relax * (v - x)
    return State(x, v, s.v if relaxed else s.vprev), info


HQS = Algorithm(
    name="hqs", summary="classic HQS for denoising, exact x-step with A = I",
    numbers=("mu", "sigma"), init=lambda p, op, y: init(p, op, y, "y"), step=step,
    traits=Traits(x_kind="prox", takes_operator="none", choose_steps=False, schedule=False,
                  known_degradation=False, start="y"),
    defaults=dict(mu=0.1), iters=2)

DPIR = Algorithm(
    name="dpir", summary="plug-and-play HQS for a known degradation with DPIR's schedule",
    numbers=("mu", "sigma", "relax", "inertia"), init=init, step=step,
    traits=Traits(x_kind="choose"))
