"""The three steps of the dynamic plug-and-play loop as pure functions.

x-steps share one signature ``x_step(op, x, y, v, delta, mu, *, cg_iters) -> x``:

* ``gradient`` -- Eq. (6) as a true gradient step on Eq. (4):
  ``x - delta * [A^T (A x - y) + mu (x - v)]``.
* ``authors``  -- what the authors' notebooks run: ``lambda x + delta A^T y + delta v`` with
  ``lambda = 1 - delta (1 + mu)``, i.e. Eq. (6) with ``A^T A`` taken as ``I`` and the prior term
  ``delta * v`` instead of ``delta * mu * v`` (docs/algorithm.md, ``authors``).
* ``exact``    -- the minimiser of Eq. (4): ``(A^T A + mu I)^{-1} (A^T y + mu v)``; closed form for
  identity and gain maps, FFT for a convolution, a dense solve for the row-mix.
* ``fft``      -- ``exact`` restricted to the convolution operator (as in IRCNN/DPIR).
* ``cg``       -- ``cg_iters`` conjugate-gradient steps on the same normal equations, warm-started
  at the current ``x`` (the paper mentions CG in section 3.2); a ``lax`` loop (at most
  :data:`CG_ITERS_MAX` steps), so its length never unrolls into the compiled program.

The prior step is ``v = prior(x, sigma_t)`` (Eq. 7), with the plugged network (``sigma_t`` reaches
noise-conditioned networks only).

A-steps share ``a_step(op, x, v, y, g, alpha) -> op``:

* ``none``     -- keep A.
* ``gradient`` -- Eq. (10) as a true gradient step on Eq. (9):
  ``A - alpha * grad_A ||A x + g(y) - y||^2``.
* ``kernel``   -- the gradient step of ``gradient`` on a blur kernel, projected back onto
  kernels (non-negative, sum 1, inside the given support).
* ``authors``  -- the notebooks' update of the row-mix matrix M (docs/algorithm.md, ``authors``):
  ``S_c = yhat_c + (v_c^T M v_c)[:H, :]``, ``M <- M - rho * mean_c(S_c)[:, :H]`` with
  ``yhat = y - g(y)``. It is not the gradient of any loss written in the paper; we reproduce it
  because it is what produced the published numbers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import calibration
from .operators import RowMix, _per_image, has

Array = jax.Array
CG_ITERS_MAX = 1000  # x_step='cg': a bound on cg_iters (a warm-started handful is the use)


# ---------------------------------------------------------------------------------- x-steps
def x_gradient(op, x, y, v, delta, mu, *, cg_iters: int = 0):
    d, m = _per_image(delta, x.ndim), _per_image(mu, x.ndim)
    return x - d * (op.adjoint(op(x) - y) + m * (x - v))


def x_authors(op, x, y, v, delta, mu, *, cg_iters: int = 0):
    d, m = _per_image(delta, x.ndim), _per_image(mu, x.ndim)
    lam = 1.0 - d * (1.0 + m)
    return lam * x + d * op.adjoint(y) + d * v


def x_exact(op, x, y, v, delta, mu, *, cg_iters: int = 0):
    return op.normal_solve(op.adjoint(y) + _per_image(mu, x.ndim) * v, mu)


def x_fft(op, x, y, v, delta, mu, *, cg_iters: int = 0):
    if not has(op, "fft"):
        raise ValueError(f"x_step='fft' needs a circular convolution (operator='conv', Blur), got "
                         f"{type(op).__name__}; use x_step='exact' for the other operators")
    return x_exact(op, x, y, v, delta, mu)


def x_cg(op, x, y, v, delta, mu, *, cg_iters: int = 3):
    """``cg_iters`` CG steps on ``(A^T A + mu I) x = A^T y + mu v`` per image, from ``x``."""
    m = _per_image(mu, x.ndim)

    def normal(z):
        return op.adjoint(op(z)) + m * z

    def dot(a, b):
        return jnp.sum(a * b, axis=(1, 2, 3), keepdims=True)

    r = op.adjoint(y) + m * v - normal(x)

    def body(_, c):
        x, r, p, rs = c
        ap = normal(p)
        step = rs / jnp.maximum(dot(p, ap), 1e-30)
        x = x + step * p
        r = r - step * ap
        rs_new = dot(r, r)
        return x, r, r + (rs_new / jnp.maximum(rs, 1e-30)) * p, rs_new

    x, *_ = jax.lax.fori_loop(0, int(cg_iters), body, (x, r, r, dot(r, r)))
    return x


X_STEPS = {"gradient": x_gradient, "authors": x_authors, "exact": x_exact, "fft": x_fft,
           "cg": x_cg}
GRADIENT_X_STEPS = ("gradient", "authors")  # one gradient-like step: delta must keep it stable
SOLVE_X_STEPS = ("exact", "fft", "cg")      # solve the normal equations: mu must be > 0


def check_x_step(kind: str, values: dict, bad) -> None:
    """Domain rules of an x-step ``kind`` on concrete per-iteration ``values`` (a dict of numpy
    arrays); ``bad(name, condition, why, fix)`` raises."""
    if kind in GRADIENT_X_STEPS:
        bad("delta", values["delta"] <= 0, "the x-step size must be > 0", "Use e.g. delta=0.01")
        bad("delta", values["delta"] * (1 + np.maximum(values["mu"], 0)) >= 2,
            "the gradient x-step diverges when delta * (1 + mu) >= 2 (its contraction factor "
            "1 - delta (1 + mu) leaves (-1, 1))", "Use a smaller delta")
    elif kind in SOLVE_X_STEPS:
        bad("mu", values["mu"] <= 0, "the exact x-step needs a penalty > 0 (A^T A alone is "
            "singular for down-sampling and masks)", "Use mu > 0 (dpir_schedule gives DPIR's "
            "values)")


# ---------------------------------------------------------------------------------- prior
def prior_step(net, x: Array, sigma=None) -> Array:
    """``v = prior(x)`` (Eq. 7); a noise-conditioned network (FFDNet) also gets the iteration's
    noise level ``sigma`` (per image, [0, 1] scale), the others ignore it."""
    return net.prior(x, sigma)


# ---------------------------------------------------------------------------------- A-steps
def a_none(op, x, v, y, g, alpha):
    return op


def a_loss(op, x, y, g) -> Array:
    """Per-image mean of the A-loss ``||A x + g(y) - y||^2`` (Eq. 9)."""
    return jnp.mean((op(x) + g - y) ** 2, axis=(1, 2, 3))


def a_gradient(op, x, v, y, g, alpha):
    return op.descend(op.loss_grad(x, op(x) + g - y), alpha)


def a_authors(op, x, v, y, g, alpha):
    if not isinstance(op, RowMix):
        raise ValueError(f"a_step='authors' needs operator='rowmix', got {type(op).__name__}")
    h = op.m.shape[-1]
    if v.shape[2] < h:
        raise ValueError(f"a_step='authors' needs width >= height, got {v.shape[1]}x{v.shape[2]}; "
                         "rotate portrait images by 90 degrees first (the authors protocol does)")
    yhat = y - g
    mv = op(v)
    # (v_c^T M v_c)[:H, :H] = v_c[:, :H]^T (M v_c)[:, :H]
    quad = jnp.einsum("biwc,bixc->bwxc", v[:, :, :h, :], mv[:, :, :h, :])
    s = jnp.mean(yhat[:, :, :h, :] + quad, axis=-1)
    return RowMix(m=op.m - _per_image(alpha, 3) * s)


def a_kernel(op, x, v, y, g, alpha):
    """The paper's A-step on a blur kernel, projected onto kernels (``k >= 0``, sum 1, the given
    support): :func:`dynpnp_jax.calibration.a_step_kernel`."""
    if not has(op, "kernel"):
        raise ValueError(f"a_step='kernel' needs a blur operator (Blur, Downsample), got "
                         f"{type(op).__name__}")
    return calibration.a_step_kernel(op, x, v, y, g, alpha)


A_STEPS = {"none": a_none, "gradient": a_gradient, "authors": a_authors, "kernel": a_kernel}
