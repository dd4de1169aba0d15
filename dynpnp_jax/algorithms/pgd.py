"""PnP proximal gradient descent, with DPIR's sigma schedule.

Per iteration t with step ``delta_t`` and denoiser level ``sigma_t``::

    x_t = v_{t-1} - delta_t A^T (A v_{t-1} - y)       (a gradient step on the data term)
    v_t = prior(x_t, sigma_t)

``x_0 = v_0`` is the operator's natural start; the result is ``v``. ``delta`` (default 1.9,
chosen on training images by ``bench/algorithms_table.py --select``: 1 / 1.5 / 1.9 gave 28.08 /
28.75 / 29.07 dB at 8 iterations) must stay below ``2 / ||A||^2``; the built-in operators have ``||A|| <= 1`` (kernels
summing to 1, masks in [0, 1]), a user's operator may not. No linear system is solved: the
operator's forward and adjoint are all it uses.
"""
from __future__ import annotations

from typing import NamedTuple

import jax

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array


def check(cfg, values, bad) -> None:
    bad("delta", (values["delta"] <= 0) | (values["delta"] > 2), "the gradient step on the data "
        "term must be in (0, 2] (below 2 / ||A||^2; built-in operators have ||A|| <= 1)",
        "Use delta=1 (1 / ||A||^2 for ||A|| = 1)")


def pgd_step(p, s, op, y, hp):
    x = s.v - hp.delta * p.gradient(op, y, s.v)
    return State(x, p.denoise(x, hp.sigma, hp.t)), {}


_TRAITS = Traits(x_kind="gradient")

PGD = Algorithm(name="pgd", summary="PnP proximal gradient descent with DPIR's sigma schedule",
                numbers=("delta", "sigma"), init=lambda p, op, y: State(*p.start(op, y, "initial")),
                step=pgd_step, traits=_TRAITS, defaults=dict(delta=1.9), x_step="none",
                check=check)
