"""Degradation operators A as immutable pytrees (one set of parameters per image).

Every operator acts on a batch of NHWC images ``x`` of shape ``(B, H, W, C)`` and carries
per-image parameters with a leading ``B`` axis, because the A-step adapts A to each image.
Each implements

* ``op(x)``                     -- ``A x``
* ``op.adjoint(w)``             -- ``A^T w``
* ``op.loss_grad(x, r)``        -- the gradient of the A-loss ``||A x + g(y) - y||^2`` with
  respect to the operator's parameters, given the residual ``r = A x + g(y) - y``
  (ALGORITHM.md section 2, table); same pytree structure as the operator
* ``op.normal_solve(rhs, mu)``  -- ``(A^T A + mu I)^{-1} rhs`` (the exact x-step)
* ``op.deviation()``            -- ``||A - I||_F / sqrt(#params)`` per image (trajectory statistic)

and the A-step is ``op.descend(grad, alpha)`` = parameters minus ``alpha * grad``, which returns
a new operator so that it can ride in the ``lax.scan`` carry.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array


def _per_image(alpha: Array, ndim: int) -> Array:
    """Broadcast a scalar or ``(B,)`` step to a parameter of rank ``ndim``."""
    alpha = jnp.asarray(alpha)
    return alpha.reshape(alpha.shape + (1,) * (ndim - alpha.ndim))


class _Base:
    def descend(self, grad, alpha):
        """One gradient step on the operator's parameters: ``p - alpha * grad``."""
        return jax.tree_util.tree_map(lambda p, g: p - _per_image(alpha, p.ndim) * g, self, grad)


@struct.dataclass
class Identity(_Base):
    """A = I (denoising). Has no parameters, so the A-step leaves it unchanged."""

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
class GainMap(_Base):
    """A x = a * x with a per-pixel gain ``a`` of shape ``(B, H, W, 1)`` shared by the channels."""

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
class Convolution(_Base):
    """Circular convolution with a per-image ``k x k`` kernel (odd k), centred, shared by channels.

    Periodic boundaries make ``adjoint`` exact and the FFT x-step an exact solve (IRCNN/DPIR
    use the same boundary model). The kernel starts as a delta (A = I).
    """

    k: Array  # (B, k, k)

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
class RowMix(_Base):
    """A dense ``H x H`` matrix applied from the left to every channel: ``(A x)_c = M x_c``.

    This is the A of the authors' notebooks (ALGORITHM.md section 1).
    """

    m: Array  # (B, H, H)

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


OPERATORS = {"identity": Identity, "gain": GainMap, "conv": Convolution, "rowmix": RowMix}


def make_operator(name: str, shape, *, kernel_size: int = 5):
    """The operator ``name`` initialised to the identity for images of ``shape`` (B, H, W, C)."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; expected one of {sorted(OPERATORS)}")
    if name == "conv":
        return Convolution.init(shape, kernel_size)
    return OPERATORS[name].init(shape)
