"""PnP Douglas-Rachford splitting, with a DPIR-style schedule.

Per iteration t with penalty ``mu_t``, denoiser level ``sigma_t`` and relaxation ``relax_t``::

    x_t = argmin_x ||A x - y||^2 / 2 + mu_t ||x - z||^2 / 2      (the data term's prox at z)
    v_t = prior(2 x_t - z, sigma_t)                             (the prior at the reflection)
    z  <- z + relax_t (v_t - x_t)

``relax = 1`` is Douglas-Rachford, ``2`` Peaceman-Rachford. ``z_0 = x_0 = v_0`` is the operator's
natural start; the result is ``v``. Defaults: DPIR's sigma schedule, 1.5 times DPIR's rho
(``rho_scale``, chosen on training images by ``bench/algorithms_table.py --select``: 1 / 1.5 / 2
gave 29.44 / 30.24 / 30.20 dB), ``relax = 1``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array
    z: jax.Array


def init(p, op, y):
    x0, v0 = p.start(op, y, "initial")
    return State(x0, v0, x0)


def step(p, s, op, y, hp):
    x, info = p.prox(op, y, s.z, hp.mu, s.x, hp.delta)
    v = p.denoise(2.0 * x - s.z, hp.sigma, hp.t)
    return State(x, v, s.z + hp.relax * (v - x)), info


DRS = Algorithm(name="drs", summary="PnP Douglas-Rachford splitting with DPIR's schedule",
                numbers=("mu", "sigma", "relax"), init=init, step=step,
                traits=Traits(x_kind="prox"), rho_scale=1.5)
