"""PnP-ADMM (Venkatakrishnan et al. 2013; Chan et al. 2017), with a DPIR-style schedule.

Scaled form, per iteration t with penalty ``mu_t`` (rho) and denoiser level ``sigma_t``::

    u   <- u * mu_{t-1} / mu_t                 (the scaled dual follows the penalty)
    x_t  = argmin_x ||A x - y||^2 / 2 + mu_t ||x - (v_{t-1} - u)||^2 / 2
    v_t  = prior(x_t + u, sigma_t)
    u   <- u + x_t - v_t

``x_0 = v_0`` is the operator's natural start, ``u_0 = 0``; the result is ``v``. Defaults: DPIR's
sigma schedule from ``noise_level`` and twice DPIR's rho (``rho_scale``, chosen on training images
by ``bench/algorithms_table.py --select``: 1 / 1.5 / 2 / 3 gave 29.30 / 30.27 / 30.40 / 30.04 dB). The x-step is the operator's closed form, or CG for an
operator given by its forward alone.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array
    u: jax.Array      # the scaled dual variable
    mu: jax.Array     # the previous iteration's penalty (the dual's scale)


def init(p, op, y):
    x0, v0 = p.start(op, y, "initial")
    return State(x0, v0, jnp.zeros_like(v0), jnp.ones((), v0.dtype))


def step(p, s, op, y, hp):
    u = s.u * (s.mu / hp.mu)
    x, info = p.prox(op, y, s.v - u, hp.mu, s.x, hp.delta)
    v = p.denoise(x + u, hp.sigma, hp.t)
    return State(x, v, u + x - v, jnp.asarray(hp.mu, s.mu.dtype)), info


ADMM = Algorithm(name="admm", summary="PnP-ADMM (scaled dual) with DPIR's schedule",
                 numbers=("mu", "sigma"), init=init, step=step, traits=Traits(x_kind="prox"),
                 rho_scale=2.0)
