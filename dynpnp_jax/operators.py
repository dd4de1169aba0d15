"""Degradation operators A as immutable pytrees (one set of parameters per image).

Every operator acts on a batch of NHWC images ``x`` of shape ``(B, H, W, C)`` and carries
per-image parameters with a leading ``B`` axis, because an A-step may adapt A to each image.
The interface (:class:`Operator`):

* ``op(x)``                     -- ``A x`` (the one method a user's operator must define)
* ``op.adjoint(w)``             -- ``A^T w`` (default: ``jax.linear_transpose`` of ``op(x)``)
* ``op.loss_grad(x, r)``        -- the gradient of the A-loss ``||A x + g(y) - y||^2`` with
  respect to the operator's parameters, given the residual ``r = A x + g(y) - y``; same pytree
  structure as the operator (default: autodiff through ``op(x)``)
* ``op.normal_solve(rhs, mu)``  -- ``(A^T A + mu I)^{-1} rhs`` (the exact x-step; default:
  conjugate gradients to the relative tolerance ``cg_tol`` within ``cg_maxiter`` steps)
* ``op.initial(y)``             -- the solver's starting image (default ``A^T y``)
* ``op.deviation()``            -- ``||A - I||_F / sqrt(#params)`` per image (trajectory statistic)
* ``op.input_shape(y_shape)``   -- the shape of ``x`` for an observation of ``y_shape`` (default:
  the same; override it for operators that change the shape, such as a sub-sampling)

and the A-step is ``op.descend(grad, alpha)`` = parameters minus ``alpha * grad``, which returns
a new operator so that it can ride in the ``lax.scan`` carry.

Operators declare what they can do in ``capabilities`` (a class attribute) instead of the solver
testing their type: ``'closed_form'`` (``normal_solve`` is exact and cheap: FFT, pixel-wise or
dense; without it the exact x-step runs CG and its residual is recorded), ``'fft'`` (a circular
convolution: ``x_step='fft'``), ``'kernel'`` (a blur kernel ``k`` that an A-step may adapt and
whose distance to a true kernel can be measured), ``'unknown_boundary'`` (a blur whose frame may
be extended, ``boundary='unknown'``), ``'calibrate'`` (a kernel that ``calibrated`` mode may
re-choose).

A user's operator is a frozen pytree with ``__call__`` alone::

    @struct.dataclass
    class Subsample(Operator):
        m: jax.Array                      # (B, H, W, C) 0/1 mask
        def __call__(self, x):
            return self.m * jnp.fft.fft2(x, axes=(1, 2), norm="ortho").real

Built-in operators (with their own closed forms):

* ``Identity``, ``GainMap``, ``Convolution``, ``RowMix`` -- start as the identity
  (``make_operator``), for the paper's dynamic A-step;
* ``Blur``        -- circular convolution with a given kernel (deblurring)
* ``Downsample``  -- blur then keep every ``factor``-th pixel (classical super-resolution model)
* ``Mask``        -- pixel-wise mask (inpainting)

Build the last three with ``Blur.from_kernel``, ``Downsample.from_kernel`` and
``Mask.from_mask``: these validate the values (finite, kernel mass 1, mask in [0, 1], something
observed) with a ``ValueError`` naming the argument and the fix. The bare dataclass constructors
(``Blur(k=...)``) are also the pytree constructors JAX calls for gradients and A-steps, so
they check only shapes; ``restore`` refuses what no operator can be (an all-zero kernel, a mask
observing nothing: ``op.check_values()``). Shape mismatches with the images (kernel larger
than the image, mask of another size, image size not a multiple of the factor) are checked
when the operator is applied.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array
BOUNDARIES = ("circular", "unknown")  # Blur.boundary: how y was made at the frame's edges
CAPABILITIES = ("closed_form", "fft", "kernel", "unknown_boundary", "calibrate")
CG_MAXITER_LIMIT = 10_000  # no x-step CG runs longer than this (a bound, not a default)


def _per_image(alpha: Array, ndim: int) -> Array:
    """Broadcast a scalar or ``(B,)`` step to a parameter of rank ``ndim``."""
    alpha = jnp.asarray(alpha)
    return alpha.reshape(alpha.shape + (1,) * (ndim - alpha.ndim))


def has(op, capability: str) -> bool:
    """Whether operator ``op`` declares ``capability`` (one of :data:`CAPABILITIES`)."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown operator capability {capability!r}; expected one of "
                         f"{CAPABILITIES}")
    return capability in getattr(op, "capabilities", ())


def _dot(a, b):
    return jnp.sum(a * b, axis=tuple(range(1, a.ndim)), keepdims=True)


def cg(matvec, rhs: Array, x0: Array, tol: float, maxiter: int) -> tuple[Array, Array]:
    """Conjugate gradients on the symmetric positive definite ``matvec`` per image (leading
    axis), from ``x0``, until every image's relative residual ``||rhs - A x|| / ||rhs||`` is
    below ``tol`` or after ``maxiter`` steps (a ``lax.while_loop``: the cap is a bound, not an
    unrolled length). Returns ``(x, relative residual per image)``."""
    bnorm = jnp.sqrt(_dot(rhs, rhs))
    scale = jnp.where(bnorm > 0, bnorm, 1.0)
    r = rhs - matvec(x0)
    p = r
    rs = _dot(r, r)

    def cond(c):
        i, _, _, _, rs = c
        return (i < maxiter) & jnp.any(jnp.sqrt(rs) > tol * scale)

    def body(c):
        i, x, r, p, rs = c
        ap = matvec(p)
        pap = _dot(p, ap)
        live = (jnp.sqrt(rs) > tol * scale) & (pap > 0)
        step = jnp.where(live, rs / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = x + step * p
        r = r - step * ap
        rs_new = _dot(r, r)
        beta = jnp.where(live & (rs > 0), rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        return i + 1, x, r, jnp.where(live, r + beta * p, p), jnp.where(live, rs_new, rs)

    _, x, _, _, rs = jax.lax.while_loop(cond, body, (jnp.int32(0), x0, r, p, rs))
    return x, (jnp.sqrt(rs) / scale).reshape(-1)


class Operator:
    """Base of every degradation operator: subclass it as a ``flax.struct.dataclass`` and
    define ``__call__`` (``A x`` on NHWC batches, linear in ``x``); everything else has a
    default derived from the forward alone (see the module docstring). Class attributes:
    ``capabilities`` (what the operator declares it can do), ``cg_tol`` and ``cg_maxiter`` (the
    default CG solve of ``normal_solve``), ``observes_images`` (``y`` is an image in [0, 1], as
    ``restore`` checks; False for measurements of another kind, e.g. Fourier coefficients)."""

    capabilities: frozenset = frozenset()
    cg_tol: float = 1e-5
    cg_maxiter: int = 200
    observes_images: bool = True  # y is an image in [0, 1] (False: e.g. Fourier coefficients)

    def input_shape(self, y_shape) -> tuple:
        """The shape of ``x`` for an observation of ``y_shape`` (default: the same)."""
        return tuple(y_shape)

    def adjoint(self, w: Array) -> Array:
        """``A^T w`` by ``jax.linear_transpose`` of the forward."""
        x = jax.ShapeDtypeStruct(self.input_shape(w.shape), w.dtype)
        (out,) = jax.linear_transpose(self.__call__, x)(w)
        return out

    def loss_grad(self, x: Array, r: Array):
        """Gradient of ``||A x + g - y||^2`` w.r.t. the operator's parameters (autodiff)."""
        _, vjp = jax.vjp(lambda op: op(x), self)
        (g,) = vjp(2.0 * r)
        return g

    def normal_solve_cg(self, rhs: Array, mu, x0=None) -> tuple[Array, Array]:
        """``(A^T A + mu I)^{-1} rhs`` by CG (``cg_tol``, ``cg_maxiter``), differentiable
        (implicitly, ``lax.custom_linear_solve``). Returns ``(x, relative residual per image)``."""
        m = _per_image(jnp.broadcast_to(jnp.asarray(mu, rhs.dtype), (rhs.shape[0],)), rhs.ndim)

        def matvec(z):
            return self.adjoint(self(z)) + m * z

        x0 = jnp.zeros_like(rhs) if x0 is None else x0
        maxiter = int(self.cg_maxiter)

        def solve(mv, b):
            return cg(mv, b, x0, float(self.cg_tol), maxiter)[0]

        x = jax.lax.custom_linear_solve(matvec, rhs, solve, symmetric=True)
        r = rhs - matvec(x)
        res = jnp.sqrt(_dot(r, r)) / jnp.maximum(jnp.sqrt(_dot(rhs, rhs)), 1e-30)
        return x, res.reshape(-1)

    def normal_solve(self, rhs: Array, mu) -> Array:
        """``(A^T A + mu I)^{-1} rhs``; here by CG (operators with a closed form override it)."""
        return self.normal_solve_cg(rhs, mu)[0]

    def initial(self, y: Array) -> Array:
        """The solver's starting image for ``y``: ``A^T y``."""
        return self.adjoint(y)

    def deviation(self) -> Array:
        return jnp.zeros(())

    def check_values(self) -> None:
        """Refuse parameters that make no operator (concrete values only; ``restore`` calls it)."""

    def descend(self, grad, alpha):
        """One gradient step on the operator's parameters: ``p - alpha * grad``."""
        return jax.tree_util.tree_map(lambda p, g: p - _per_image(alpha, p.ndim) * g, self, grad)


_Base = Operator  # the former name


def _same(self, y: Array) -> Array:
    return y


@struct.dataclass
class Identity(Operator):
    """A = I (denoising). Has no parameters, so the A-step leaves it unchanged."""

    capabilities = frozenset({"closed_form"})
    initial = _same

    def __call__(self, x: Array) -> Array:
        return x

    def adjoint(self, w: Array) -> Array:
        return w

    def loss_grad(self, x: Array, r: Array) -> "Identity":
        return self

    def normal_solve(self, rhs: Array, mu) -> Array:
        return rhs / (1.0 + _per_image(mu, rhs.ndim))

    def deviation(self) -> Array:
        return jnp.zeros(())

    @classmethod
    def init(cls, shape) -> "Identity":
        return cls()


@struct.dataclass
class GainMap(Operator):
    """A x = a * x with a per-pixel gain ``a`` of shape ``(B, H, W, 1)`` shared by the channels."""

    capabilities = frozenset({"closed_form"})
    initial = _same

    a: Array

    def __call__(self, x: Array) -> Array:
        return self.a * x

    def adjoint(self, w: Array) -> Array:
        return self.a * w

    def loss_grad(self, x: Array, r: Array) -> "GainMap":
        # d/da sum_c (a x_c + g_c - y_c)^2 = 2 sum_c r_c x_c
        return GainMap(a=2.0 * jnp.sum(r * x, axis=-1, keepdims=True))

    def normal_solve(self, rhs: Array, mu) -> Array:
        return rhs / (self.a * self.a + _per_image(mu, rhs.ndim))

    def deviation(self) -> Array:
        return jnp.sqrt(jnp.mean((self.a - 1.0) ** 2, axis=(1, 2, 3)))

    @classmethod
    def init(cls, shape) -> "GainMap":
        b, h, w, _ = shape
        return cls(a=jnp.ones((b, h, w, 1), jnp.float32))


@struct.dataclass
class Convolution(Operator):
    """Circular convolution with a per-image ``k x k`` kernel (odd k), centred, shared by channels.

    Periodic boundaries make ``adjoint`` exact and the FFT x-step an exact solve (IRCNN/DPIR
    use the same boundary model). The kernel starts as a delta (A = I).
    """

    k: Array  # (B, k, k)
    capabilities = frozenset({"closed_form", "fft", "kernel"})
    initial = _same

    def _otf(self, h: int, w: int) -> Array:
        b, ks, _ = self.k.shape
        p = ks // 2
        big = jnp.zeros((b, h, w), self.k.dtype).at[:, :ks, :ks].set(self.k)
        big = jnp.roll(big, (-p, -p), axis=(1, 2))  # kernel centre to the origin
        return jnp.fft.rfft2(big, axes=(1, 2))[..., None]  # (B, H, W//2+1, 1)

    def _check(self, h, w):
        ks = self.k.shape[-1]
        if ks > h or ks > w:
            raise ValueError(f"convolution kernel of size {ks} does not fit {h}x{w} images; "
                             "use a smaller kernel_size")

    def __call__(self, x: Array) -> Array:
        h, w = x.shape[1:3]
        self._check(h, w)
        return jnp.fft.irfft2(jnp.fft.rfft2(x, axes=(1, 2)) * self._otf(h, w), s=(h, w), axes=(1, 2))

    def adjoint(self, w_: Array) -> Array:
        h, w = w_.shape[1:3]
        self._check(h, w)
        return jnp.fft.irfft2(jnp.fft.rfft2(w_, axes=(1, 2)) * jnp.conj(self._otf(h, w)),
                              s=(h, w), axes=(1, 2))

    def loss_grad(self, x: Array, r: Array) -> "Convolution":
        # d/dk[i,j] sum (k * x + g - y)^2 = 2 sum_c sum_n r[n] x[n - (i-p, j-p)]: a correlation
        h, w = x.shape[1:3]
        ks = self.k.shape[-1]
        p = ks // 2
        corr = jnp.fft.irfft2(jnp.sum(jnp.fft.rfft2(r, axes=(1, 2))
                                      * jnp.conj(jnp.fft.rfft2(x, axes=(1, 2))), axis=-1),
                              s=(h, w), axes=(1, 2))  # corr[d] = sum_n r[n] x[n - d]
        corr = jnp.roll(corr, (p, p), axis=(1, 2))[:, :ks, :ks]
        return Convolution(k=2.0 * corr)

    def normal_solve(self, rhs: Array, mu) -> Array:
        h, w = rhs.shape[1:3]
        otf = self._otf(h, w)
        den = jnp.abs(otf) ** 2 + _per_image(mu, 4)
        return jnp.fft.irfft2(jnp.fft.rfft2(rhs, axes=(1, 2)) / den, s=(h, w), axes=(1, 2))

    def deviation(self) -> Array:
        ks = self.k.shape[-1]
        delta = jnp.zeros((ks, ks), self.k.dtype).at[ks // 2, ks // 2].set(1.0)
        return jnp.sqrt(jnp.mean((self.k - delta) ** 2, axis=(1, 2)))

    @classmethod
    def init(cls, shape, kernel_size: int = 5) -> "Convolution":
        if kernel_size % 2 != 1 or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        b = shape[0]
        k = jnp.zeros((b, kernel_size, kernel_size), jnp.float32)
        return cls(k=k.at[:, kernel_size // 2, kernel_size // 2].set(1.0))


@struct.dataclass
class RowMix(Operator):
    """A dense ``H x H`` matrix applied from the left to every channel: ``(A x)_c = M x_c``.

    This is the A of the authors' notebooks (docs/algorithm.md, ``authors``).
    """

    m: Array  # (B, H, H)
    capabilities = frozenset({"closed_form"})
    initial = _same

    def __call__(self, x: Array) -> Array:
        return jnp.einsum("bik,bkwc->biwc", self.m, x)

    def adjoint(self, w: Array) -> Array:
        return jnp.einsum("bki,bkwc->biwc", self.m, w)

    def loss_grad(self, x: Array, r: Array) -> "RowMix":
        # d/dM sum_c ||M x_c + g_c - y_c||^2 = 2 sum_c r_c x_c^T
        return RowMix(m=2.0 * jnp.einsum("biwc,bkwc->bik", r, x))

    def normal_solve(self, rhs: Array, mu) -> Array:
        b, h, w, c = rhs.shape
        gram = jnp.einsum("bki,bkj->bij", self.m, self.m) + _per_image(mu, 3) * jnp.eye(h)
        sol = jnp.linalg.solve(gram, rhs.reshape(b, h, w * c))
        return sol.reshape(b, h, w, c)

    def deviation(self) -> Array:
        h = self.m.shape[-1]
        return jnp.sqrt(jnp.mean((self.m - jnp.eye(h)) ** 2, axis=(1, 2)))

    @classmethod
    def init(cls, shape) -> "RowMix":
        b, h = shape[0], shape[1]
        return cls(m=jnp.broadcast_to(jnp.eye(h, dtype=jnp.float32), (b, h, h)))


# --------------------------------------------------------------------------------------------
# Known degradations: Blur, Downsample, Mask
# --------------------------------------------------------------------------------------------

_KERNEL_SUM_TOL = 1e-3
_NEG_MASS_MAX = 0.5  # negative mass allowed, relative to the positive mass (bicubic: ~0.23)


def _concrete(v) -> bool:
    """True for a concrete array (numpy or a committed jax.Array), False under tracing / for
    the placeholder leaves JAX sometimes unflattens pytrees with."""
    if isinstance(v, jax.core.Tracer):
        return False
    return isinstance(v, (np.ndarray, jax.Array))


def _check_kernel_values(k, arg: str = "k") -> None:
    """Finite, positive mass, not mostly negative, summing to 1 (per kernel of a (B, kh, kw))."""
    k = np.asarray(k, np.float64)
    k = k.reshape((-1,) + k.shape[-2:])
    bad = ~np.isfinite(k).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{arg}: expected finite kernel values, got NaN/Inf in kernel(s) "
                         f"{np.flatnonzero(bad).tolist()}; fix: clean or reload the kernel "
                         "(e.g. np.nan_to_num(k)) and renormalise k / k.sum()")
    sums = k.sum(axis=(1, 2))
    if (sums <= 0).any():
        raise ValueError(f"{arg}: expected a blur kernel with positive total mass (sum 1), got "
                         f"sum(s) {np.round(sums, 6).tolist()}; fix: pass a non-negative kernel "
                         "(check its sign), then normalise k / k.sum()")
    neg = -np.minimum(k, 0.0).sum(axis=(1, 2))
    pos = np.maximum(k, 0.0).sum(axis=(1, 2))
    if (neg > _NEG_MASS_MAX * pos).any():
        i = int(np.argmax(neg / pos))
        raise ValueError(f"{arg}: expected a (mostly) non-negative kernel (negative mass at most "
                         f"{_NEG_MASS_MAX:g} x the positive mass), got negative mass {neg[i]:.4g} vs "
                         f"positive {pos[i]:.4g} in kernel {i}; fix: clip it, k = np.clip(k, 0, None),"
                         " then renormalise k / k.sum()")
    off = np.abs(sums - 1.0) > _KERNEL_SUM_TOL
    if off.any():
        raise ValueError(f"{arg}: expected a kernel summing to 1 (tolerance {_KERNEL_SUM_TOL:g}), got "
                         f"sum(s) {np.round(sums[off], 6).tolist()}; fix: normalise it, k = k / k.sum()")


def _check_kernel_rank(k, batch, arg: str = "k") -> None:
    """A kernel is (kh, kw) or (B, kh, kw); refuse 1-D kernels and the ambiguous (kh, kw, 1)."""
    shape = tuple(np.shape(k))
    if len(shape) not in (2, 3):
        raise ValueError(f"{arg}: expected a 2-D (kh, kw) kernel or (B, kh, kw) kernels, got shape "
                         f"{shape}; fix: a 1-D kernel k of a separable blur is np.outer(k, k) / "
                         "np.sum(k) ** 2, a horizontal one k[None, :]")
    if len(shape) == 3 and shape[-1] == 1 and shape[0] > 1 and batch in (None, 1):
        raise ValueError(f"{arg}: a 3-D kernel array is (B, kh, kw) kernels, got shape {shape}: "
                         f"{shape[0]} kernels of {shape[1]}x1 pixels. Fix: for one kernel with a "
                         f"channel axis pass k[..., 0]; for {shape[0]} kernels of width 1 pass "
                         f"batch={shape[0]}")


def _kernel_batch(k, batch, dtype, arg: str = "k") -> Array:
    """A (kh, kw) or (B, kh, kw) kernel as a (batch, kh, kw) array of ``dtype``."""
    _check_kernel_rank(k, batch, arg)
    if not isinstance(k, jax.core.Tracer):
        k = np.asarray(k)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3:
        raise ValueError(f"{arg}: expected a (kh, kw) kernel or (B, kh, kw) kernels, got shape "
                         f"{tuple(k.shape)}; fix: squeeze extra axes (e.g. k[..., 0] for a (kh, kw, 1))")
    if batch is not None:
        if k.shape[0] not in (1, batch):
            raise ValueError(f"{arg}: expected 1 or batch={batch} kernels, got {k.shape[0]}; "
                             "fix: pass one kernel per image or a single kernel")
        k = np.broadcast_to(k, (batch,) + k.shape[1:]) if isinstance(k, np.ndarray) else \
            jnp.broadcast_to(k, (batch,) + k.shape[1:])
    return jnp.asarray(k, dtype)


def _check_kernel_mass(k, cls: str) -> None:
    """On concrete kernels: refuse an all-zero or non-finite kernel (no operator at all)."""
    if not _concrete(k) or k.ndim != 3:
        return
    a = np.asarray(k, np.float64).reshape(k.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError(f"k: {cls} kernels must be finite, got NaN/Inf; fix: clean the kernel "
                         "and build the operator with from_kernel")
    if (np.abs(a).sum(axis=1) == 0).any():
        raise ValueError(f"k: {cls} kernel(s) {np.flatnonzero(np.abs(a).sum(axis=1) == 0).tolist()}"
                         " are all zero: that blurs every image to black. Fix: pass the real "
                         f"kernel, normalised to sum 1 ({cls}.from_kernel checks it)")


def _check_kernel_shape(k, cls: str) -> None:
    if _concrete(k) and k.ndim != 3:
        raise ValueError(f"k: {cls} expects kernels of shape (B, kh, kw), got shape {tuple(k.shape)}; "
                         f"fix: use {cls}.from_kernel(k, batch) for a single (kh, kw) kernel")


def _check_images(x, arg: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{arg}: expected an NHWC batch of shape (B, H, W, C), got shape "
                         f"{tuple(x.shape)}; fix: add the missing axes, e.g. x[None, ..., None]")


def _check_fits(k, h: int, w: int, b: int, arg: str) -> None:
    kb, kh, kw = k.shape
    if kh > h or kw > w:
        raise ValueError(f"k: kernel of size {kh}x{kw} is larger than the {h}x{w} image ({arg}); "
                         "expected a kernel no larger than the image; fix: use a larger image "
                         "(pad it) or a smaller kernel")
    if kb not in (1, b):
        raise ValueError(f"k: expected 1 or {b} kernels (one per image of {arg}), got {kb}; "
                         "fix: build the operator with from_kernel(k, batch=B)")


def _delta(kh: int, kw: int, dtype=jnp.float32) -> Array:
    return jnp.zeros((kh, kw), dtype).at[kh // 2, kw // 2].set(1.0)


def _otf(k: Array, h: int, w: int, real: bool = True) -> Array:
    """Transfer function (B, H, W', 1) of the circular convolution with kernel centre (kh//2, kw//2).

    That centre is the one of ``scipy.ndimage.convolve`` for odd and even sizes alike.
    """
    b, kh, kw = k.shape
    big = jnp.zeros((b, h, w), k.dtype).at[:, :kh, :kw].set(k)
    big = jnp.roll(big, (-(kh // 2), -(kw // 2)), axis=(1, 2))  # kernel centre to the origin
    f = jnp.fft.rfft2(big, axes=(1, 2)) if real else jnp.fft.fft2(big, axes=(1, 2))
    return f[..., None]


@partial(jax.jit, static_argnames="adjoint")
def _circ_conv(x: Array, k: Array, adjoint: bool = False) -> Array:
    h, w = x.shape[1:3]
    otf = _otf(k, h, w)
    if adjoint:
        otf = jnp.conj(otf)
    out = jnp.fft.irfft2(jnp.fft.rfft2(x, axes=(1, 2)) * otf, s=(h, w), axes=(1, 2))
    return out.astype(x.dtype)


@partial(jax.jit, static_argnames=("kshape", "s"))
def _kernel_grad(kshape, x: Array, r: Array, s: int = 1) -> Array:
    """d/dk sum (k * x + g - y)^2 given r = k * x + g - y (both (B, H, W, C)).

    With ``s > 1``, ``r`` is the residual of ``(k * x)[::s, ::s]`` and is zero-upsampled first
    (``<r, S K x> = <S^T r, K x>``).

    (k * x)[n] = sum_i k[i] x[n - (i - c)], so the derivative for k[i] is
    2 sum_c sum_n r[n] x[n - (i - c)] = 2 corr[i - c], corr[d] = sum_n r[n] x[n - d].
    """
    _, kh, kw = kshape
    h, w = x.shape[1:3]
    if s > 1:
        r = _upsample(r, s)
    corr = jnp.fft.irfft2(jnp.sum(jnp.fft.rfft2(r, axes=(1, 2))
                                  * jnp.conj(jnp.fft.rfft2(x, axes=(1, 2))), axis=-1),
                          s=(h, w), axes=(1, 2))
    corr = jnp.roll(corr, (kh // 2, kw // 2), axis=(1, 2))[:, :kh, :kw]
    return 2.0 * corr


@jax.jit
def _blur_solve(rhs: Array, k: Array, mu) -> Array:
    h, w = rhs.shape[1:3]
    den = jnp.abs(_otf(k, h, w)) ** 2 + _per_image(mu, 4)
    out = jnp.fft.irfft2(jnp.fft.rfft2(rhs, axes=(1, 2)) / den, s=(h, w), axes=(1, 2))
    return out.astype(rhs.dtype)


@partial(jax.jit, static_argnames="s")
def _blur_decimate(x: Array, k: Array, s: int) -> Array:
    return _circ_conv(x, k)[:, ::s, ::s]


def _upsample(w_: Array, s: int) -> Array:
    """Zero-upsampling (the adjoint of keeping pixels 0, s, 2s, ...)."""
    b, h, w, c = w_.shape
    return jnp.zeros((b, h * s, w * s, c), w_.dtype).at[:, ::s, ::s].set(w_)


@partial(jax.jit, static_argnames="s")
def _upsample_correlate(w_: Array, k: Array, s: int) -> Array:
    return _circ_conv(_upsample(w_, s), k, adjoint=True)


@partial(jax.jit, static_argnames="s")
def _sr_solve(rhs: Array, k: Array, mu, s: int) -> Array:
    """(K^T S^T S K + mu I)^{-1} rhs in closed form (Zhao et al. 2016)."""
    h, w = rhs.shape[1:3]
    mu = _per_image(mu, 4)
    d = _otf(k, h, w, real=False)  # (B, H, W, 1)
    fr = jnp.fft.fft2(rhs, axes=(1, 2))

    def avg(z):  # mean over the s x s aliased blocks: (B, H, W, C) -> (B, H/s, W/s, C)
        return z.reshape(z.shape[0], s, h // s, s, w // s, z.shape[-1]).mean(axis=(1, 3))

    low = avg(d * fr) / (avg(jnp.abs(d) ** 2) + mu)
    fx = (fr - jnp.conj(d) * jnp.tile(low, (1, s, s, 1))) / mu
    return jnp.real(jnp.fft.ifft2(fx, axes=(1, 2))).astype(rhs.dtype)


def _kernel_deviation(k: Array) -> Array:
    kh, kw = k.shape[-2:]
    return jnp.sqrt(jnp.mean((k - _delta(kh, kw, k.dtype)) ** 2, axis=(1, 2)))


def _kernel_size(kernel_size):
    kh, kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    if int(kh) < 1 or int(kw) < 1:
        raise ValueError(f"kernel_size: expected a positive size (int or (kh, kw)), got "
                         f"{kernel_size!r}; fix: pass e.g. kernel_size=25")
    return int(kh), int(kw)


@struct.dataclass
class Blur(Operator):
    """Circular convolution with one known kernel per image, shared by the channels (deblurring).

    ``k`` has shape ``(B, kh, kw)`` (``B`` may be 1 to share one kernel across the batch), any
    size up to the image size, odd or even. Convention: ``Blur(k)(x)[b, :, :, c]`` equals
    ``scipy.ndimage.convolve(x[b, :, :, c], k[b], mode='wrap')``, i.e. the kernel centre is
    ``(kh // 2, kw // 2)`` for odd *and* even sizes (as in the DPIR deblurring scripts, whose
    ``p2o`` FFT uses the same centre). Periodic boundaries make the adjoint (a correlation) and
    the FFT normal solve exact. ``deviation()`` is the RMS distance of ``k`` to a centred delta.

    Build it with ``Blur.from_kernel(k, batch)``, which checks the values.

    ``boundary`` (static) tells :func:`~dynpnp_jax.restore` how ``y`` was made at its edges:
    ``'circular'`` (default: ``y`` is the periodic blur above, as in DPIR's synthetic
    experiments) or ``'unknown'`` (a real photograph, or any blur of a scene larger than the
    frame: each pixel of ``y`` saw the scene up to the kernel's reach beyond the frame). With
    ``'unknown'`` the solver restores a larger image (the frame plus the kernel's reach) and fills
    the unobserved margin of ``y`` with the current estimate's blur at every iteration
    (:mod:`dynpnp_jax.boundary`); the operator's own ``op(x)`` is always the circular one.
    """

    k: Array  # (B, kh, kw)
    boundary: str = struct.field(pytree_node=False, default="circular")
    capabilities = frozenset({"closed_form", "fft", "kernel", "unknown_boundary", "calibrate"})
    initial = _same

    def check_values(self) -> None:
        _check_kernel_mass(self.k, "Blur")

    def __post_init__(self):
        _check_kernel_shape(self.k, "Blur")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary: expected one of {BOUNDARIES}, got {self.boundary!r}. "
                             "Fix: 'circular' for a periodic (synthetic) blur, 'unknown' for a "
                             "real photograph")

    @classmethod
    def from_kernel(cls, k, batch: int | None = None, *, dtype=jnp.float32, check: bool = True,
                    boundary: str = "circular") -> "Blur":
        """``Blur`` from a ``(kh, kw)`` kernel (broadcast to ``batch`` images) or ``(B, kh, kw)``
        kernels. ``check`` validates the values (finite, non-negative mass, sum 1 within 1e-3).
        ``boundary``: ``'circular'`` or ``'unknown'`` (see the class docstring)."""
        _check_kernel_rank(k, batch)
        if check and _concrete(np.asarray(k) if not isinstance(k, jax.Array) else k):
            _check_kernel_values(k)
        return cls(k=_kernel_batch(k, batch, dtype), boundary=boundary)

    def _check(self, x: Array, arg: str = "x") -> None:
        _check_images(x, arg)
        _check_fits(self.k, x.shape[1], x.shape[2], x.shape[0], arg)

    def __call__(self, x: Array) -> Array:
        self._check(x)
        return _circ_conv(x, self.k)

    def adjoint(self, w: Array) -> Array:
        self._check(w, "w")
        return _circ_conv(w, self.k, adjoint=True)

    def loss_grad(self, x: Array, r: Array) -> "Blur":
        self._check(x)
        return Blur(k=_kernel_grad(self.k.shape, x, r).astype(self.k.dtype), boundary=self.boundary)

    def normal_solve(self, rhs: Array, mu) -> Array:
        self._check(rhs, "rhs")
        return _blur_solve(rhs, self.k, mu)

    def deviation(self) -> Array:
        return _kernel_deviation(self.k)

    @classmethod
    def init(cls, shape, kernel_size=5) -> "Blur":
        """A delta kernel (A = I) of ``kernel_size`` (int or (kh, kw)) for images of ``shape``."""
        kh, kw = _kernel_size(kernel_size)
        return cls(k=jnp.broadcast_to(_delta(kh, kw), (shape[0], kh, kw)))


@struct.dataclass
class Downsample(Operator):
    """Blur then decimate: ``A x = (k * x)[:, ::factor, ::factor]`` (circular convolution).

    This is the classical SR degradation of USRNet/DPIR,
    ``ndimage.convolve(x, k, mode='wrap')[0::sf, 0::sf]``: the kernel has the ``Blur``
    convention (centre ``(kh//2, kw//2)``), the kept pixels are ``0, sf, 2 sf, ...`` (offset 0).
    ``A`` maps ``(B, H, W, C)`` to ``(B, H/sf, W/sf, C)``; ``adjoint`` maps back (zero-upsample
    then correlate). H and W must be multiples of ``factor``. ``normal_solve`` is the closed
    form of Zhao et al. (2016): with ``F`` the 2-D DFT of the HR grid, ``d`` the kernel's
    transfer function and ``avg`` the mean over the ``sf x sf`` aliased blocks of the spectrum,
    ``F x = (F rhs - conj(d) * tile(avg(d F rhs) / (avg(|d|^2) + mu))) / mu``.
    ``factor`` is static (``pytree_node=False``).
    """

    k: Array  # (B, kh, kw)
    factor: int = struct.field(pytree_node=False, default=2)
    capabilities = frozenset({"closed_form", "fft", "kernel"})

    def check_values(self) -> None:
        _check_kernel_mass(self.k, "Downsample")

    def __post_init__(self):
        _check_kernel_shape(self.k, "Downsample")
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1:
            raise ValueError(f"factor: expected a positive integer scale, got {f!r}; "
                             "fix: pass an integer such as 2, 3 or 4")

    @classmethod
    def from_kernel(cls, k, factor: int, batch: int | None = None, *, dtype=jnp.float32,
                    check: bool = True) -> "Downsample":
        """``Downsample`` from a ``(kh, kw)`` kernel (broadcast to ``batch``) or ``(B, kh, kw)``."""
        _check_kernel_rank(k, batch)
        if check and _concrete(np.asarray(k) if not isinstance(k, jax.Array) else k):
            _check_kernel_values(k)
        return cls(k=_kernel_batch(k, batch, dtype), factor=factor)

    def _check_hr(self, x: Array, arg: str) -> None:
        _check_images(x, arg)
        b, h, w = x.shape[:3]
        s = self.factor
        if h % s or w % s:
            raise ValueError(f"{arg}: image size {h}x{w} is not a multiple of factor={s}; expected "
                             f"H and W divisible by {s}; fix: crop to a multiple of the factor, "
                             f"e.g. x[:, :{h - h % s}, :{w - w % s}] (dynpnp_jax.resize.modcrop)")
        _check_fits(self.k, h, w, b, arg)

    def __call__(self, x: Array) -> Array:
        self._check_hr(x, "x")
        return _blur_decimate(x, self.k, self.factor)

    def adjoint(self, w_: Array) -> Array:
        _check_images(w_, "w")
        b, h, w = w_.shape[:3]
        _check_fits(self.k, h * self.factor, w * self.factor, b, "w upsampled")
        return _upsample_correlate(w_, self.k, self.factor)

    def loss_grad(self, x: Array, r: Array) -> "Downsample":
        self._check_hr(x, "x")
        g = _kernel_grad(self.k.shape, x, r, self.factor)
        return Downsample(k=g.astype(self.k.dtype), factor=self.factor)

    def normal_solve(self, rhs: Array, mu) -> Array:
        self._check_hr(rhs, "rhs")
        return _sr_solve(rhs, self.k, mu, self.factor)

    def deviation(self) -> Array:
        return _kernel_deviation(self.k)

    def initial(self, y: Array) -> Array:
        """Bicubic up-sampling of ``y`` on the degradation's own grid: the solver's start (DPIR
        starts SR from bicubic up-sampling) and the ``bicubic`` baseline.

        LR pixel ``j`` is the blurred HR image at ``s j - d``, with ``d`` the kernel's centroid
        minus its centre ``(kh//2, kw//2)`` per axis (the DPIR bicubic kernels: ``d = -(s-1)/2``,
        MATLAB ``imresize``'s pixel-centre grid; a centred Gaussian: ``d = 0``, the grid DPIR's
        ``shift_pixel`` restores). Keys cubic (a = -0.5, MATLAB's) via
        ``jax.image.scale_and_translate``."""
        _check_images(y, "y")
        b, h, w, c = y.shape
        s = self.factor
        kh, kw = self.k.shape[1:]
        k = jnp.broadcast_to(self.k, (b, kh, kw)).astype(jnp.float32)
        mass = jnp.maximum(jnp.sum(k, axis=(1, 2)), 1e-12)
        dy = jnp.sum(k * jnp.arange(kh)[None, :, None], axis=(1, 2)) / mass - kh // 2
        dx = jnp.sum(k * jnp.arange(kw)[None, None, :], axis=(1, 2)) / mass - kw // 2

        def one(img, ty, tx):
            return jax.image.scale_and_translate(
                img, (h * s, w * s, c), (0, 1), jnp.array([s, s], jnp.float32),
                jnp.stack([ty, tx]).astype(jnp.float32), method="cubic", antialias=False)

        return jax.vmap(one)(y.astype(jnp.float32), 0.5 - s / 2 - dy, 0.5 - s / 2 - dx)

    @classmethod
    def init(cls, shape, factor: int = 2, kernel_size=5) -> "Downsample":
        """Plain decimation (delta kernel) by ``factor`` for HR images of ``shape``."""
        kh, kw = _kernel_size(kernel_size)
        return cls(k=jnp.broadcast_to(_delta(kh, kw), (shape[0], kh, kw)), factor=factor)


@struct.dataclass
class Mask(Operator):
    """Pixel-wise mask (inpainting): ``A x = m * x``, ``m`` of shape ``(B, H, W, 1)`` (shared by
    the channels) or ``(B, H, W, C)``, values in {0, 1} (1 = observed) or weights in [0, 1].
    Self-adjoint; the normal solve is pixel-wise, ``rhs / (m^2 + mu)``. ``deviation()`` is the
    RMS distance of ``m`` to all-ones. Build it with ``Mask.from_mask(m)``, which checks values.
    """

    m: Array  # (B, H, W, 1 or C)
    capabilities = frozenset({"closed_form"})

    def check_values(self) -> None:
        """Refuse (concrete values) a mask that observes nothing: every image is then black."""
        if not _concrete(self.m):
            return
        seen = np.asarray(self.m, np.float64).reshape(self.m.shape[0], -1).max(axis=1)
        if (seen <= 0).any():
            raise ValueError(f"m: mask(s) {np.flatnonzero(seen <= 0).tolist()} observe no pixel "
                             "(all zero): nothing to restore from. Expected 1 = observed, "
                             "0 = missing; fix: check the mask's polarity (1 - m), and that the "
                             "mask image is not black or coloured in a channel it lacks")

    def __post_init__(self):
        if _concrete(self.m) and self.m.ndim != 4:
            raise ValueError(f"m: Mask expects a mask of shape (B, H, W, 1) or (B, H, W, C), got shape "
                             f"{tuple(self.m.shape)}; fix: use Mask.from_mask(m) for an (H, W) mask")


    @classmethod
    def from_mask(cls, m, batch: int | None = None, *, dtype=jnp.float32, check: bool = True
                  ) -> "Mask":
        """``Mask`` from an ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` mask (bool or float),
        broadcast to ``batch`` images if given. ``check``: finite values in [0, 1]."""
        if not isinstance(m, jax.core.Tracer):
            m = np.asarray(m)
        if m.ndim == 2:
            m = m[None, :, :, None]
        elif m.ndim == 3:
            m = m[None]
        if m.ndim != 4:
            raise ValueError(f"m: expected a mask of shape (H, W), (H, W, C) or (B, H, W, C), got "
                             f"shape {tuple(m.shape)}; fix: squeeze or add axes to match the images")
        if check and isinstance(m, np.ndarray):
            v = m.astype(np.float64)
            if not np.isfinite(v).all():
                raise ValueError("m: expected finite mask values in [0, 1], got NaN/Inf; "
                                 "fix: np.nan_to_num(m) or rebuild the mask")
            if v.min() < -1e-6 or v.max() > 1 + 1e-6:
                raise ValueError(f"m: expected mask values in [0, 1] (1 = observed, 0 = missing), got "
                                 f"range [{v.min():.4g}, {v.max():.4g}]; fix: np.clip(m, 0, 1), or "
                                 "(m > 0).astype(np.float32) for a 0-255 image mask")
            cls(m=jnp.asarray(v if v.ndim == 4 else v, dtype)).check_values()
        if batch is not None:
            if m.shape[0] not in (1, batch):
                raise ValueError(f"m: expected 1 or batch={batch} masks, got {m.shape[0]}; "
                                 "fix: pass one mask per image or a single mask")
            m = jnp.broadcast_to(jnp.asarray(m), (batch,) + tuple(m.shape[1:]))
        return cls(m=jnp.asarray(m, dtype))

    def _check(self, x: Array, arg: str) -> None:
        _check_images(x, arg)
        mb, mh, mw, mc = self.m.shape
        b, h, w, c = x.shape
        if (mh, mw) != (h, w) or mb not in (1, b) or mc not in (1, c):
            raise ValueError(f"m: mask of shape {tuple(self.m.shape)} does not match {arg} of shape "
                             f"{tuple(x.shape)}; expected (B or 1, {h}, {w}, 1 or {c}); fix: build the "
                             "mask at the image size (crop/pad it or the image)")

    def __call__(self, x: Array) -> Array:
        self._check(x, "x")
        return self.m * x

    def adjoint(self, w: Array) -> Array:
        self._check(w, "w")
        return self.m * w

    def loss_grad(self, x: Array, r: Array) -> "Mask":
        self._check(x, "x")
        g = 2.0 * r * x
        if self.m.shape[-1] == 1:
            g = jnp.sum(g, axis=-1, keepdims=True)
        return Mask(m=g.astype(self.m.dtype))

    def normal_solve(self, rhs: Array, mu) -> Array:
        self._check(rhs, "rhs")
        return rhs / (self.m * self.m + _per_image(mu, rhs.ndim))

    def deviation(self) -> Array:
        return jnp.sqrt(jnp.mean((self.m - 1.0) ** 2, axis=(1, 2, 3)))

    def initial(self, y: Array) -> Array:
        """``y`` with its holes filled: the solver's start for inpainting (the plug-and-play
        inpainting scripts start from a filled-in image, not from zeros in the holes).

        Normalised convolution: a hole pixel gets ``(G * (m y)) / (G * m)`` for the narrowest
        Gaussian ``G`` (std 1, 2, 4, ... 64 px; zero outside the image, so opposite borders do
        not mix) whose weight ``G * m`` reaches it; observed pixels keep ``y``. Jittable; large
        holes get a smooth fill."""
        self._check(y, "y")
        b, h, w, c = y.shape
        m = jnp.broadcast_to(self.m, y.shape).astype(jnp.float32)
        p = min(192, max(h, w))  # 3 std of the widest Gaussian, zero padding
        pad = ((0, 0), (0, p), (0, p), (0, 0))
        hp, wp = h + p, w + p
        fy = jnp.fft.rfft2(jnp.pad(m * y, pad), axes=(1, 2))
        fm = jnp.fft.rfft2(jnp.pad(m, pad), axes=(1, 2))
        wy = jnp.fft.fftfreq(hp)[:, None, None]
        wx = jnp.fft.rfftfreq(wp)[None, :, None]
        out = m * y
        done = m > 0.5
        for std in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
            g = jnp.exp(-2 * (jnp.pi * std) ** 2 * (wy ** 2 + wx ** 2))  # Gaussian's transfer
            num = jnp.fft.irfft2(fy * g, s=(hp, wp), axes=(1, 2))[:, :h, :w]
            den = jnp.fft.irfft2(fm * g, s=(hp, wp), axes=(1, 2))[:, :h, :w]
            ok = (den > 1e-3) & ~done
            out = jnp.where(ok, num / jnp.where(ok, den, 1.0), out)
            done = done | ok
        return out.astype(y.dtype)

    @classmethod
    def init(cls, shape) -> "Mask":
        """All ones (A = I) for images of ``shape``, one mask channel."""
        b, h, w, _ = shape
        return cls(m=jnp.ones((b, h, w, 1), jnp.float32))


# Operators that ``make_operator`` can start from the identity without user data. Blur,
# Downsample and Mask need a known kernel / factor / mask, so they are not registered: build
# them with ``Blur.from_kernel``, ``Downsample.from_kernel`` and ``Mask.from_mask``.
OPERATORS = {"identity": Identity, "gain": GainMap, "conv": Convolution, "rowmix": RowMix}


def make_operator(name: str, shape, *, kernel_size: int = 5):
    """The operator ``name`` initialised to the identity for images of ``shape`` (B, H, W, C)."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; expected one of {sorted(OPERATORS)}")
    if name == "conv":
        return Convolution.init(shape, kernel_size)
    return OPERATORS[name].init(shape)
