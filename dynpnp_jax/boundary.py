"""Unknown boundaries: deblurring a frame cut out of a larger scene.

A photograph is not a periodic image: each pixel of ``y`` near the frame's edge saw the scene up
to the kernel's reach *beyond* the frame. Solving ``k * x = y`` with a circular blur (the FFT
x-step of :class:`~dynpnp_jax.operators.Blur`) then treats the opposite edge as the missing
scene, and the mismatch rings across the whole image.

The fix used here (Almeida & Figueiredo, "Deconvolving images with unknown boundaries using the
alternating direction method of multipliers", IEEE TIP 2013; Matakos et al. 2013) keeps the FFT
solve: the unknown image ``x`` lives on a larger grid, the frame plus a margin at least the
kernel's reach on every side, where the blur *is* circular without wrapping into the frame, and
``y`` is observed only on the frame (``mask``). The unobserved margin of ``y`` is filled, at every
iteration, with the blur of the current estimate (``complete``): the complete-data problem is the
circular one, whose fixed point is the solution of the masked problem. The margin starts as the
frame's mirror image (``extend``). The result is cropped back to the frame.

:func:`periodic_component` gives the kernel-likelihood criterion of
:mod:`dynpnp_jax.calibration` a periodic image to score: Moisan's periodic component of the
frame.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

MULTIPLE = 8  # the extended grid's sides are multiples of this (the networks' down-sampling)


def margins(kernel_shape, h: int, w: int, multiple: int = MULTIPLE) -> tuple:
    """``(top, bottom, left, right)``: the margin around an ``h x w`` frame for a kernel of
    ``kernel_shape`` ``(kh, kw)`` (centre ``(kh // 2, kw // 2)``): at least the kernel's reach on
    each side (``kh - 1 - kh // 2`` above, ``kh // 2`` below, the same across), plus what makes
    the extended sides multiples of ``multiple`` (added at the bottom and right)."""
    kh, kw = (int(s) for s in kernel_shape[-2:])
    top, left = max(kh - 1 - kh // 2, 1), max(kw - 1 - kw // 2, 1)
    bottom, right = max(kh // 2, 1), max(kw // 2, 1)
    bottom += -(h + top + bottom) % multiple
    right += -(w + left + right) % multiple
    return top, bottom, left, right


def extend(y: Array, pads: tuple) -> tuple[Array, Array]:
    """``(y_ext, mask)``: ``y`` (B, H, W, C) mirrored into the margins ``pads`` (as
    :func:`margins`; ``'symmetric'`` padding, repeated when a margin exceeds the frame) and the
    observation mask ``(1, H', W', 1)`` (1 on the frame, 0 on the margin)."""
    top, bottom, left, right = pads
    b, h, w, c = y.shape
    y_ext = y
    # symmetric padding in rounds no wider than the image, so any margin works
    for axis, (lo, hi) in ((1, (top, bottom)), (2, (left, right))):
        while lo > 0 or hi > 0:
            size = y_ext.shape[axis]
            a, bb = min(lo, size), min(hi, size)
            widths = [(0, 0)] * 4
            widths[axis] = (a, bb)
            y_ext = jnp.pad(y_ext, widths, mode="symmetric")
            lo, hi = lo - a, hi - bb
    mask = jnp.zeros((1,) + y_ext.shape[1:3] + (1,), y.dtype)
    mask = mask.at[:, top:top + h, left:left + w, :].set(1.0)
    return y_ext, mask


def crop(x: Array, pads: tuple, axis: int = 1) -> Array:
    """The frame of an extended image (spatial axes ``axis`` and ``axis + 1``)."""
    top, bottom, left, right = pads
    h, w = x.shape[axis], x.shape[axis + 1]
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(top, h - bottom)
    idx[axis + 1] = slice(left, w - right)
    return x[tuple(idx)]


def complete(y_ext: Array, mask: Array, blurred: Array) -> Array:
    """The observation on the extended grid: ``y`` on the frame, ``blurred`` (the blur of the
    current estimate) on the margin."""
    return mask * y_ext + (1.0 - mask) * blurred


def masked_solve(op, y_ext: Array, mask: Array, v: Array, mu, x0: Array, iters: int) -> Array:
    """The exact x-step of the masked problem,
    ``argmin_x ||mask (A x - y)||^2 + mu ||x - v||^2`` (per image), by ``iters`` steps of
    conjugate gradients on ``(A^T M A + mu I) x = A^T M y + mu v`` from ``x0``, preconditioned by
    the circular solve ``(A^T A + mu I)^{-1}`` (``op.normal_solve``, FFTs): the two systems differ
    only on the margin, so a few steps suffice. ``x0``: the circular solve with the completed
    ``y`` (:func:`complete`), i.e. one step of the fixed-point (EM) iteration."""
    b = v.shape[0]
    m = jnp.reshape(jnp.broadcast_to(jnp.asarray(mu, v.dtype), (b,)), (b, 1, 1, 1))

    def dot(a, c):
        return jnp.sum(a * c, axis=(1, 2, 3), keepdims=True)

    def hess(x):
        return op.adjoint(mask * op(x)) + m * x

    rhs = op.adjoint(mask * y_ext) + m * v
    r = rhs - hess(x0)
    z = op.normal_solve(r, mu)
    p = z
    rz = dot(r, z)

    def body(_, carry):
        x, r, p, rz = carry
        hp = hess(p)
        php = dot(p, hp)
        alpha = jnp.where(php > 0, rz / jnp.where(php > 0, php, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * hp
        z = op.normal_solve(r, mu)
        rz_new = dot(r, z)
        beta = jnp.where(rz > 0, rz_new / jnp.where(rz > 0, rz, 1.0), 0.0)
        return x, r, z + beta * p, rz_new

    x, *_ = jax.lax.fori_loop(0, int(iters), body, (x0, r, p, rz))
    return x


def periodic_component(y: Array) -> Array:
    """Moisan's periodic-plus-smooth split (J. Math. Imaging Vis. 2011): the periodic component
    ``p = y - s`` per image and channel, where ``s`` is the smooth image whose Laplacian equals the
    jumps of ``y`` across its opposite edges (solved by FFT). ``p`` has no edge discontinuities
    when wrapped, keeps the whole frame's detail (no window), and since ``s`` is smooth,
    ``k * s ~ s``: ``p`` is about a circular blur of ``x - s``. Mean removed."""
    b, h, w, c = y.shape
    v = jnp.zeros_like(y)
    dr = y[:, -1] - y[:, 0]  # (B, W, C): jump across the top/bottom edge
    v = v.at[:, 0].add(dr).at[:, -1].add(-dr)
    dc = y[:, :, -1] - y[:, :, 0]
    v = v.at[:, :, 0].add(dc).at[:, :, -1].add(-dc)
    q = 2 * jnp.cos(2 * jnp.pi * jnp.arange(h) / h)[:, None]
    r = 2 * jnp.cos(2 * jnp.pi * jnp.arange(w) / w)[None, :]
    den = q + r - 4.0
    den = jnp.where(den == 0, 1.0, den)[None, :, :, None]
    sh = jnp.fft.fft2(v, axes=(1, 2)) / den
    sh = sh.at[:, 0, 0].set(0.0)
    s = jnp.real(jnp.fft.ifft2(sh, axes=(1, 2)))
    p = y - s
    return p - jnp.mean(p, axis=(1, 2), keepdims=True)
