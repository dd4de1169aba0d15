"""RED, regularisation by denoising (Romano, Elad, Milanfar 2017), by gradient descent.

The RED regulariser ``mu / 2 x^T (x - prior(x))`` has the gradient ``mu (x - prior(x))`` (for a
locally homogeneous denoiser with a symmetric Jacobian), so per iteration t::

    v_t = prior(x_{t-1}, sigma_t)
    x_t = x_{t-1} - delta_t / (1 + mu_t) [A^T (A x_{t-1} - y) + mu_t (x_{t-1} - v_t)]

The step is relative to ``1 / (1 + mu)``, the inverse Lipschitz constant of the gradient for
``||A|| <= 1`` (so ``delta`` in (0, 2), default 1). Its fixed point solves
``A^T (A x - y) + mu (x - prior(x)) = 0``: the fixed point of HQS with penalty ``mu``; hence the
defaults: DPIR's sigma schedule and its rho as ``mu``, times 4 (``rho_scale``, chosen on training
images by ``bench/algorithms_table.py --select``: 1 / 2 / 4 / 6 gave 27.70 / 28.19 / 28.52 / 28.46
dB at 8 iterations). ``x_0 = v_0`` is the operator's natural
start; the result is ``x`` (RED's estimate; ``v`` is the denoiser's output).
"""
from __future__ import annotations

from typing import NamedTuple

import jax

from .base import Algorithm, Traits


class State(NamedTuple):
    x: jax.Array
    v: jax.Array


def check(cfg, values, bad) -> None:
    bad("delta", (values["delta"] <= 0) | (values["delta"] >= 2), "RED's step (relative to "
        "1 / (1 + mu)) must be in (0, 2)", "Use delta=1")


def step(p, s, op, y, hp):
    v = p.denoise(s.x, hp.sigma, hp.t)
    x = s.x - hp.delta / (1.0 + hp.mu) * (p.gradient(op, y, s.x) + hp.mu * (s.x - v))
    return State(x, v), {}


RED = Algorithm(name="red", summary="RED by gradient descent with DPIR's schedule",
                numbers=("delta", "mu", "sigma"),
                init=lambda p, op, y: State(*p.start(op, y, "initial")), step=step,
                traits=Traits(x_kind="gradient"), defaults=dict(delta=1.0), x_step="none",
                rho_scale=4.0,
                output=lambda s: s.x, check=check)
