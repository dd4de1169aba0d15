"""Kernel self-calibration: the paper's idea (an A that is adapted inside the loop) where it pays.

A user hands the solver a blur kernel that is not quite right (estimated, measured on another
lens, a Gaussian guess, or nothing at all: the identity). Two ways to adapt it:

* :func:`a_step_kernel` -- the paper's A-step made physical: a gradient step on the A-loss
  ``||k * x + g(y) - y||^2`` with respect to the kernel, projected back onto kernels (``k >= 0``,
  ``sum k = 1``, inside the given support). Registered as ``a_step='kernel'`` in
  :mod:`dynpnp_jax.steps`; it re-estimates ``k`` by least squares on the current estimate, which
  is the estimate's own blur as much as the true one, so it tends to *hurt* (measured in
  RESULTS.md).
* the ``calibrated`` mode of :func:`dynpnp_jax.restore` -- a kernel family around the given
  kernel (scale, rotation, extra Gaussian width: :func:`warp_kernel`) whose parameters are chosen
  inside the jitted program: for each candidate ``k_j`` a cheap DPIR run (a centre crop, a few
  iterations; all candidates at once with ``vmap``) gives ``x_j``, scored by
  :func:`calibration_score`: the normalised sparsity of ``x_j``'s gradients
  ``||grad x||_1 / ||grad x||_2`` (Krishnan et al., CVPR 2011: low for sharp images, high for
  blurry ones and for ringing) plus a discrepancy-principle penalty
  ``GAMMA |log(mean((k_j * x_j - y)^2) / sigma^2)|`` (the residual should have the noise's
  variance). Stages refine one parameter after the other; then the full loop runs with the chosen
  kernel.

Why both terms (measured on Set3G, RESULTS.md): the DPIR loop fits the data almost equally well
with any nearby kernel, so the residual alone barely separates candidates (its ratio to the noise
variance stays within 0.9-1.05 over Gaussian widths 0.7-1.8 when the truth is 1.6) and does not
see a rotation at all; the sparsity measure separates rotations and widths but drifts towards
over-wide kernels, which the discrepancy term stops (their residual jumps above the noise).

Everything is pure JAX: kernels are resampled with bilinear interpolation
(``jax.scipy.ndimage.map_coordinates``), so the family is differentiable in its parameters.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

PARAMS = ("scale", "angle", "width")  # the family's parameters; identity: (1, 0, 0)


# ------------------------------------------------------------------------------ kernel family
def _gauss_taps(width, radius: int) -> Array:
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * t ** 2 / (jnp.square(width) + 1e-6))
    return w / jnp.sum(w)


def warp_kernel(k: Array, size: int, scale=1.0, angle=0.0, width=0.0) -> Array:
    """The kernel ``k`` (``(kh, kw)``, centre ``(kh//2, kw//2)``) on a ``size x size`` grid
    (centre ``size//2``), stretched by ``scale``, rotated by ``angle`` degrees (counter-clockwise)
    and blurred by a Gaussian of std ``width`` pixels; non-negative, sums to 1.

    ``warp_kernel(k, size)`` with the defaults re-centres ``k`` on the larger grid exactly.
    Differentiable in ``scale``, ``angle`` and ``width`` (traced scalars)."""
    kh, kw = k.shape
    c = size // 2
    u = jnp.arange(size, dtype=jnp.float32) - c
    uu, vv = jnp.meshgrid(u, u, indexing="ij")  # output offsets (row, col)
    th = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    s = jnp.asarray(scale, jnp.float32)
    # source offset = R(-theta) (u / s): rotate the kernel by +theta
    cos, sin = jnp.cos(th), jnp.sin(th)
    r_src = (cos * uu - sin * vv) / s + kh // 2
    c_src = (sin * uu + cos * vv) / s + kw // 2
    out = jax.scipy.ndimage.map_coordinates(k.astype(jnp.float32), [r_src, c_src], order=1,
                                            mode="constant", cval=0.0)
    radius = size // 2
    taps = _gauss_taps(width, radius)
    pad = jnp.pad(out, radius)
    out = jax.vmap(lambda row: jnp.convolve(row, taps, mode="valid"))(pad)  # along columns
    out = jax.vmap(lambda col: jnp.convolve(col, taps, mode="valid"), in_axes=1, out_axes=1)(out)
    out = jnp.maximum(out, 0.0)
    return out / jnp.maximum(jnp.sum(out), 1e-12)


def center_kernel(k, size: int) -> np.ndarray:
    """``k`` zero-padded (or cropped) to ``size x size`` keeping its centre ``(kh//2, kw//2)``."""
    k = np.asarray(k, np.float64)
    out = np.zeros((size, size))
    c = size // 2
    kh, kw = k.shape
    for i in range(kh):
        for j in range(kw):
            r, q = i - kh // 2 + c, j - kw // 2 + c
            if 0 <= r < size and 0 <= q < size:
                out[r, q] += k[i, j]
    return out


def kernel_distance(k: Array, k_true: Array) -> Array:
    """RMS difference of two kernel batches ``(B, S, S)`` after centring both on one grid,
    relative to the true kernel's RMS norm."""
    size = max(k.shape[-1], k_true.shape[-1])
    a = jax.vmap(lambda z: warp_kernel(z, size))(k)
    b = jax.vmap(lambda z: warp_kernel(z, size))(k_true)
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=(1, 2)) / jnp.sum(b ** 2, axis=(1, 2)))


# ------------------------------------------------------------------------------ projected A-step
def project_simplex(k: Array) -> Array:
    """Euclidean projection of each ``(B, kh, kw)`` kernel onto ``{k >= 0, sum k = 1}``."""
    b = k.shape[0]
    flat = k.reshape(b, -1)
    srt = -jnp.sort(-flat, axis=1)
    css = jnp.cumsum(srt, axis=1) - 1.0
    idx = jnp.arange(1, flat.shape[1] + 1, dtype=flat.dtype)
    cond = srt - css / idx > 0
    rho = jnp.sum(cond, axis=1, keepdims=True)
    theta = jnp.take_along_axis(css, rho - 1, axis=1) / rho.astype(flat.dtype)
    return jnp.maximum(flat - theta, 0.0).reshape(k.shape)


def a_step_kernel(op, x, v, y, g, alpha):
    """The paper's A-step on a blur kernel, kept physical: ``k <- P(k - alpha grad_k L)`` with
    ``L = ||k * x + g(y) - y||^2`` and ``P`` the projection onto non-negative kernels summing to
    one on the given support. ``alpha`` is per iteration; 0 keeps the kernel."""
    grad = op.loss_grad(x, op(x) + g - y)
    from .operators import _per_image

    k = op.k - _per_image(alpha, 3) * grad.k
    return op.replace(k=project_simplex(k))


# ------------------------------------------------------------------------------ search
GAMMA = 4.0  # weight of the discrepancy penalty in calibration_score
TAU = None   # None: two-sided penalty |log(r / sigma^2)|; a number: one-sided hinge at 1 + TAU


def calibration_score(residual: Array, x: Array, noise_var, margin: int) -> Array:
    """Per image: ``log(||grad x||_1 / ||grad x||_2) + GAMMA |log(r / noise_var)|`` with
    ``r = mean(residual^2)``, on the interior (``margin`` pixels left out on every side); lower is
    better. (With ``TAU`` set, the discrepancy term is the one-sided hinge
    ``max(0, log(r / noise_var) - log(1 + TAU))``: measured worse on Set3G, see RESULTS.md.)"""
    sl = (slice(None), slice(margin, x.shape[1] - margin), slice(margin, x.shape[2] - margin))
    r, x = residual[sl], x[sl]
    gx, gy = jnp.diff(x, axis=1), jnp.diff(x, axis=2)
    l1 = jnp.sum(jnp.abs(gx), axis=(1, 2, 3)) + jnp.sum(jnp.abs(gy), axis=(1, 2, 3))
    l2 = jnp.sqrt(jnp.sum(gx * gx, axis=(1, 2, 3)) + jnp.sum(gy * gy, axis=(1, 2, 3)))
    ratio = jnp.mean(r * r, axis=(1, 2, 3)) / noise_var
    excess = (jnp.abs(jnp.log(ratio)) if TAU is None
              else jnp.maximum(jnp.log(ratio) - jnp.log1p(TAU), 0.0))
    return jnp.log(l1 / jnp.maximum(l2, 1e-12)) + GAMMA * excess
def default_stages(given_is_delta: bool, grid: int = 9) -> tuple:
    """The stages of :func:`search`: ``((param, values), ...)``.

    From a delta (no kernel known) the family is a Gaussian of unknown width; otherwise the given
    kernel's scale, then its rotation, then a finer scale."""
    if given_is_delta:
        return (("width", tuple(float(v) for v in np.linspace(0.0, 3.2, grid))),
                ("width", "refine"))
    return (("scale", tuple(float(v) for v in np.geomspace(0.6, 1 / 0.6, grid))),
            ("angle", tuple(float(v) for v in np.linspace(-20.0, 20.0, grid))),
            ("scale", "refine"))


def refine_values(param: str, center: Array, grid: int) -> Array:
    """A finer grid around the current value (per image): ``(B, grid)``."""
    t = jnp.linspace(-1.0, 1.0, grid)
    if param == "scale":
        return center[:, None] * jnp.power(1.0 / 0.6, t / 8.0)[None]  # +- one coarse step
    if param == "angle":
        return center[:, None] + 2.5 * t[None]
    return jnp.maximum(center[:, None] + 0.2 * t[None], 0.0)  # width
