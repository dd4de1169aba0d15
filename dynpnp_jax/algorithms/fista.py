"""PnP-FISTA: proximal gradient descent accelerated (Beck & Teboulle 2009), DPIR's sigma schedule.

The gradient step is taken from an extrapolated point ``w``::

    x_t = w - delta_t A^T (A w - y),   v_t = prior(x_t, sigma_t)
    s_t = (1 + sqrt(1 + 4 s_{t-1}^2)) / 2,   w = v_t + (s_{t-1} - 1) / s_t (v_t - v_{t-1})

``x_0 = v_0 = w_0`` is the operator's natural start, ``s_0 = 1``; the result is ``v``. ``delta``
as in :mod:`~dynpnp_jax.algorithms.pgd` (in (0, 2]; default 1.5, chosen on training images by
``bench/algorithms_table.py --select``: 1 / 1.5 / 1.9 gave 28.50 / 29.10 / 22.45 dB).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .base import Algorithm, Traits
from .pgd import check


class FistaState(NamedTuple):
    x: jax.Array
    v: jax.Array
    w: jax.Array   # the extrapolated point
    s: jax.Array   # the momentum sequence


def fista_init(p, op, y):
    x0, v0 = p.start(op, y, "initial")
    return FistaState(x0, v0, v0, jnp.ones((), v0.dtype))


def fista_step(p, s, op, y, hp):
    x = s.w - hp.delta * p.gradient(op, y, s.w)
    v = p.denoise(x, hp.sigma, hp.t)
    s_new = (1.0 + jnp.sqrt(1.0 + 4.0 * s.s ** 2)) / 2.0
    return FistaState(x, v, v + ((s.s - 1.0) / s_new) * (v - s.v), s_new), {}


FISTA = Algorithm(name="fista", summary="PnP-FISTA: accelerated proximal gradient",
                  numbers=("delta", "sigma"), init=fista_init, step=fista_step,
                  traits=Traits(x_kind="gradient"), defaults=dict(delta=1.5), x_step="none",
                  check=check)
