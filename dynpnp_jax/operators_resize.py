"""The MATLAB ``imresize`` down-sampler as a degradation operator (super-resolution).

``Imresize`` is ``A x = R_h x R_w^T`` per image and channel, with ``R_h`` (``h x H``) and
``R_w`` (``w x W``) the matrices of :func:`dynpnp_jax.resize.resize_matrix` for the scale
``1 / s``: MATLAB's antialiased Keys cubic (``a = -0.5``, stretched by ``s``), its sampling grid
(output pixel ``i`` at input coordinate ``s i + (1 - s) / 2``, 1-based) and its symmetric
boundary (mirrored indices). It is exactly ``resize.imresize(x, 1 / s)`` before any rounding --
the degradation the super-resolution literature makes its low-resolution inputs with -- and
not a circular stand-in.

* ``adjoint(w) = R_h^T w R_w``;
* ``normal_solve(rhs, mu) = (A^T A + mu I)^{-1} rhs`` in closed form: ``A^T A`` is the Kronecker
  product of ``G_h = R_h^T R_h`` and ``G_w = R_w^T R_w``; with their eigendecompositions
  ``G = Q diag(l) Q^T`` (computed once, in float64, by :meth:`Imresize.from_shape`),
  ``x = Q_h [(Q_h^T rhs Q_w) / (l_h l_w^T + mu)] Q_w^T``;
* ``initial(y)`` = MATLAB ``imresize(y, s)`` (bicubic up-sampling), the solver's start and
  the literature's bicubic baseline.

Every matrix carries a leading batch axis (one set per image, as every operator here), so
images of one size batch together. Products run at ``Precision.HIGHEST`` (on GPU/TPU the default
matmul precision would round the operator to bfloat16).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .operators import Operator, _check_images, _per_image
from .resize import resize_matrix

Array = jax.Array
__all__ = ["Imresize"]

_HI = jax.lax.Precision.HIGHEST


def _rows(m: Array, x: Array) -> Array:
    """``m @ x`` along the rows of each image: m (B, p, H), x (B, H, W, C) -> (B, p, W, C)."""
    return jnp.einsum("bph,bhwc->bpwc", m, x, precision=_HI)


def _cols(m: Array, x: Array) -> Array:
    """``x @ m^T`` along the columns: m (B, q, W), x (B, H, W, C) -> (B, H, q, C)."""
    return jnp.einsum("bqw,bhwc->bhqc", m, x, precision=_HI)


@struct.dataclass
class Imresize(Operator):
    """MATLAB ``imresize(x, 1 / scale)`` (bicubic, antialiased, symmetric boundary) on NHWC
    batches of ``H x W`` images, ``H`` and ``W`` multiples of ``scale``. Build it with
    :meth:`from_shape`; see the module docstring."""

    rh: Array   # (B, H/s, H)  down-sampling matrix of the rows
    rw: Array   # (B, W/s, W)  of the columns
    uh: Array   # (B, H, H/s)  imresize up (bicubic), for initial()
    uw: Array   # (B, W, W/s)
    qh: Array   # (B, H, H)    eigenvectors of R_h^T R_h
    lh: Array   # (B, H)       its eigenvalues
    qw: Array   # (B, W, W)
    lw: Array   # (B, W)
    scale: int = struct.field(pytree_node=False, default=2)
    capabilities = frozenset({"closed_form"})

    @classmethod
    def from_shape(cls, height: int, width: int, scale: int, batch: int = 1,
                   dtype=jnp.float32) -> "Imresize":
        """The operator for HR images of ``height x width`` (multiples of ``scale``)."""
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise ValueError(f"scale: expected a positive integer factor (2, 3, 4), got "
                             f"{scale!r}. Fix: pass e.g. scale=2.")
        for arg, n in (("height", height), ("width", width)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < scale or (
                    n % scale):
                raise ValueError(f"{arg}: expected a multiple of scale={scale} (>= {scale}), got "
                                 f"{n!r}. Fix: modcrop the image to the scale first "
                                 f"(dynpnp_jax.resize.modcrop(img, {scale})).")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}. Fix: e.g. 1.")
        s = int(scale)
        h, w = int(height) // s, int(width) // s
        rh = resize_matrix(int(height), h, 1.0 / s)
        rw = resize_matrix(int(width), w, 1.0 / s)
        uh = resize_matrix(h, int(height), float(s))
        uw = resize_matrix(w, int(width), float(s))
        lh, qh = np.linalg.eigh(rh.T @ rh)
        lw, qw = np.linalg.eigh(rw.T @ rw)
        lh, lw = np.clip(lh, 0, None), np.clip(lw, 0, None)  # PSD: drop -1e-17 round-off

        def b(a):
            return jnp.broadcast_to(jnp.asarray(a, dtype), (batch, *a.shape))

        return cls(rh=b(rh), rw=b(rw), uh=b(uh), uw=b(uw), qh=b(qh), lh=b(lh), qw=b(qw),
                   lw=b(lw), scale=s)

    # -- shapes
    def input_shape(self, y_shape) -> tuple:
        b, h, w, c = y_shape
        return (b, self.rh.shape[-1], self.rw.shape[-1], c)

    def _check(self, x: Array, arg: str, hr: bool) -> None:
        _check_images(x, arg)
        want = ((self.rh.shape[-1], self.rw.shape[-1]) if hr
                else (self.rh.shape[-2], self.rw.shape[-2]))
        if tuple(x.shape[1:3]) != want:
            kind = "high-resolution" if hr else "low-resolution"
            raise ValueError(f"{arg}: this Imresize operator (scale {self.scale}) takes "
                             f"{kind} images of {want[0]}x{want[1]}, got "
                             f"{x.shape[1]}x{x.shape[2]}. Fix: build it with "
                             f"Imresize.from_shape(H, W, scale) for the HR size of these images.")
        if x.shape[0] != self.rh.shape[0]:
            raise ValueError(f"{arg}: a batch of {x.shape[0]} images for an operator of "
                             f"{self.rh.shape[0]}. Fix: from_shape(..., batch={x.shape[0]}).")

    # -- the operator
    def __call__(self, x: Array) -> Array:
        self._check(x, "x", hr=True)
        return _cols(self.rw, _rows(self.rh, x))

    def adjoint(self, w: Array) -> Array:
        self._check(w, "w", hr=False)
        return _cols(jnp.swapaxes(self.rw, 1, 2), _rows(jnp.swapaxes(self.rh, 1, 2), w))

    def normal_solve(self, rhs: Array, mu) -> Array:
        self._check(rhs, "rhs", hr=True)
        z = _cols(jnp.swapaxes(self.qw, 1, 2), _rows(jnp.swapaxes(self.qh, 1, 2), rhs))
        m = _per_image(jnp.broadcast_to(jnp.asarray(mu, rhs.dtype), (rhs.shape[0],)), 3)
        z = z / (self.lh[:, :, None, None] * self.lw[:, None, :, None] + m)
        return _cols(self.qw, _rows(self.qh, z))

    def initial(self, y: Array) -> Array:
        """MATLAB ``imresize(y, scale)``: bicubic up-sampling of the LR image (no rounding)."""
        self._check(y, "y", hr=False)
        return _cols(self.uw, _rows(self.uh, y))

    def loss_grad(self, x: Array, r: Array):
        raise ValueError("Imresize is a fixed, known operator: an A-step does not adapt it. "
                         "Fix: use it with a known-degradation mode (dpir, admm, ...).")
