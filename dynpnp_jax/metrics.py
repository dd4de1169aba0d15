"""Image quality metrics in JAX: PSNR, SSIM (Wang et al.) and 8-bit quantisation.

Data contract (the library's, stated once): images are NHWC arrays, float32 with values in
[0, 1]. Every metric here is batched: it takes ``x`` and ``ref`` of shape (B, H, W, C) and
returns one value per image, shape (B,). Each function checks its inputs in Python (shapes and
dtypes only, so it also works on tracers inside a user's ``jax.jit``) and then calls one
jit-compiled kernel; ``data_range`` is passed to it as a float32 array, so changing the number
never recompiles, only a new shape/dtype or a new ``gaussian``/``mode`` flag does. All are
differentiable.

``data_range`` is the distance between the smallest and largest value the *convention* of the
inputs allows, not the range found in the data:

* our float images in [0, 1]: ``data_range=1.0`` (the default);
* 8-bit images as uint8 (or as floats holding 0..255): ``data_range=255``.

Both give the same PSNR and SSIM for the same picture: PSNR depends on ``data_range**2 / MSE``
and SSIM's constants ``C1 = (K1 * data_range)**2``, ``C2 = (K2 * data_range)**2`` scale like the
(co)variances, so ``ssim(u8, v8, data_range=255) == ssim(u8 / 255, v8 / 255, data_range=1)``.
The one trap is mixing them (uint8 inputs with the default ``data_range=1.0``).

SSIM follows scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)``, which is Wang et al. (2004): an 11 x 11 Gaussian
window (sigma 1.5, truncated at radius 5 and normalised, as ``scipy.ndimage.gaussian_filter``
with ``truncate=3.5``), K1 = 0.01, K2 = 0.03, averaged over the pixels whose whole window lies
inside the image (skimage filters with reflection padding and then crops (win - 1) / 2 border
pixels before averaging; filtering with a 'valid' window gives exactly those pixels, so no
padding is done here). Several channels: the mean of the per-channel SSIMs.

Departures, and why:

* The filter is a separable sum of shifted slices, not ``lax.conv``: on TPU/GPU a float32
  convolution at default precision runs in bf16/tf32, which moves SSIM in the 3rd decimal;
  element-wise adds are exact float32 everywhere.
* Moments are taken of the images minus a per-image, per-channel constant (the mean of both
  images). Variances are shift invariant, and the constant is added back to the local means, so
  the value is unchanged, but ``E[x^2] - E[x]^2`` no longer cancels catastrophically in float32
  (skimage computes in float64).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["psnr", "ssim", "ssim_uniform", "quantize", "QUANTIZE_MODES"]

K1 = 0.01
K2 = 0.03
GAUSSIAN_SIGMA = 1.5
GAUSSIAN_RADIUS = int(3.5 * GAUSSIAN_SIGMA + 0.5)  # = 5, scipy's truncate=3.5 -> an 11-tap window
UNIFORM_SIZE = 7  # skimage's default window when gaussian_weights=False (old compare_ssim)
QUANTIZE_MODES = ("round", "truncate")


def _gaussian_taps(sigma: float, radius: int) -> np.ndarray:
    """The 1-D normalised Gaussian that ``scipy.ndimage.gaussian_filter`` uses."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


_GAUSS_TAPS = _gaussian_taps(GAUSSIAN_SIGMA, GAUSSIAN_RADIUS)
_UNIFORM_TAPS = np.full(UNIFORM_SIZE, 1.0 / UNIFORM_SIZE)


def _validate(fn: str, x, ref, min_side: int = 1):
    """Checks the public contract (shapes and dtypes only, so it also runs on tracers)."""
    x = x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
    ref = ref if hasattr(ref, "shape") and hasattr(ref, "dtype") else np.asarray(ref)
    for arg, a in (("x", x), ("ref", ref)):
        if a.ndim != 4:
            raise ValueError(
                f"{fn}: `{arg}` must be a batch of images of rank 4 (B, H, W, C), got shape "
                f"{tuple(a.shape)} (rank {a.ndim}). Fix: add the missing axes, e.g. `img[None]` "
                f"for one HxWxC image or `img[None, ..., None]` for one HxW gray image.")
        if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
            raise ValueError(f"{fn}: `{arg}` must have a real float or integer dtype, got "
                             f"{a.dtype}. Fix: convert it, e.g. `{arg}.astype(np.float32)`.")
    if x.shape != ref.shape:
        raise ValueError(
            f"{fn}: `x` and `ref` must have the same shape, got x {tuple(x.shape)} and ref "
            f"{tuple(ref.shape)}. Fix: crop/resize one to the other, and compare images of the "
            f"same channel count (convert gray<->RGB first).")
    if min(x.shape[1], x.shape[2]) < min_side:
        raise ValueError(
            f"{fn}: images must be at least {min_side}x{min_side} pixels for the "
            f"{min_side}x{min_side} window, got H, W = {x.shape[1]}, {x.shape[2]}. Fix: use "
            f"larger images (or crops).")
    if x.shape[0] == 0:
        raise ValueError(f"{fn}: the batch is empty (shape {tuple(x.shape)}). Fix: pass at "
                         f"least one image.")
    return x, ref


def _range(data_range):
    """``data_range`` as a float32 array, so 1, 1.0 and 255 all hit the same compiled code."""
    return jnp.asarray(data_range, jnp.float32)


def _as_float(x, ref):
    """Both inputs in one float dtype: float32, or float64 when an input is (and x64 is on)."""
    dtype = jnp.result_type(x.dtype, ref.dtype, jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):  # e.g. uint8 with int32
        dtype = jnp.float32
    return x.astype(dtype), ref.astype(dtype)


def psnr(x, ref, *, data_range=1.0):
    """Peak signal-to-noise ratio per image, ``10 log10(data_range^2 / MSE)``.

    Args:
      x: (B, H, W, C) images to score (float in [0, 1], or uint8 with ``data_range=255``).
      ref: (B, H, W, C) reference images, same shape.
      data_range: the range of the inputs' convention (1.0 for [0, 1] floats, 255 for 8-bit);
        see the module docstring.

    Returns:
      (B,) float32 PSNR in dB; ``inf`` where an image equals its reference.
    """
    x, ref = _validate("psnr", x, ref)
    return _psnr(x, ref, _range(data_range))


@jax.jit
def _psnr(x, ref, data_range):
    x, ref = _as_float(x, ref)
    mse = jnp.mean(jnp.square(x - ref), axis=(1, 2, 3))
    return 10.0 * jnp.log10(data_range.astype(x.dtype) ** 2 / mse)


def _filter_valid(img, taps: np.ndarray):
    """Separable 'valid' filtering of (B, H, W, C) maps along H and W with 1-D ``taps``."""
    n = len(taps)
    taps = [float(t) for t in taps]
    for axis in (1, 2):
        out_len = img.shape[axis] - n + 1
        acc = None
        for k, w in enumerate(taps):
            term = w * jax.lax.slice_in_dim(img, k, k + out_len, axis=axis)
            acc = term if acc is None else acc + term
        img = acc
    return img


def _mean_ssim(x, ref, data_range, taps: np.ndarray, sample_covariance: bool):
    """Mean SSIM over the valid window positions and channels: (B,)."""
    n = len(taps)
    x, ref = _as_float(x, ref)
    shift = 0.5 * (jnp.mean(x, axis=(1, 2), keepdims=True)
                   + jnp.mean(ref, axis=(1, 2), keepdims=True))
    shift = jax.lax.stop_gradient(shift)  # any constant works; keep it out of the gradient
    xc, rc = x - shift, ref - shift
    b, h, w, c = x.shape
    # One filtering pass over the five moment maps stacked along channels.
    stacked = jnp.concatenate([xc, rc, xc * xc, rc * rc, xc * rc], axis=-1)
    mx, mr, mxx, mrr, mxr = jnp.split(_filter_valid(stacked, taps), 5, axis=-1)
    cov_norm = (n * n) / (n * n - 1.0) if sample_covariance else 1.0
    vx = cov_norm * (mxx - mx * mx)
    vr = cov_norm * (mrr - mr * mr)
    vxr = cov_norm * (mxr - mx * mr)
    ux, ur = mx + shift, mr + shift
    dr = data_range.astype(x.dtype)
    c1, c2 = (K1 * dr) ** 2, (K2 * dr) ** 2
    s = ((2 * ux * ur + c1) * (2 * vxr + c2)) / ((ux * ux + ur * ur + c1) * (vx + vr + c2))
    # Equal pixel counts per channel, so the mean over all = the mean of per-channel means.
    return jnp.mean(s, axis=(1, 2, 3))


def ssim(x, ref, *, data_range=1.0, gaussian=True):
    """Structural similarity (Wang et al. 2004) per image, as skimage computes it.

    Matches ``skimage.metrics.structural_similarity(x[i], ref[i], channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)``
    (to ~1e-6 in float32). This is the SSIM of the ``standard`` protocol (KAIR / DnCNN tables).

    Args:
      x: (B, H, W, C) images to score, H, W >= 11 (>= 7 with ``gaussian=False``).
      ref: (B, H, W, C) reference images, same shape.
      data_range: the range of the inputs' convention (1.0 for [0, 1] floats, 255 for 8-bit).
      gaussian: True for the 11x11 Gaussian window (sigma 1.5); False for a 7x7 uniform window,
        still with population covariance (skimage ``gaussian_weights=False,
        use_sample_covariance=False``).

    Returns:
      (B,) mean SSIM, the mean over channels of each channel's SSIM.
    """
    x, ref = _validate("ssim", x, ref, min_side=len(_GAUSS_TAPS) if gaussian else UNIFORM_SIZE)
    return _ssim(x, ref, _range(data_range), gaussian=bool(gaussian))


@functools.partial(jax.jit, static_argnames=("gaussian",))
def _ssim(x, ref, data_range, *, gaussian):
    taps = _GAUSS_TAPS if gaussian else _UNIFORM_TAPS
    return _mean_ssim(x, ref, data_range, taps, sample_covariance=False)


def ssim_uniform(x, ref, *, data_range=1.0):
    """SSIM with a 7x7 uniform window and sample covariance: the authors' metric.

    This is what old scikit-image ``compare_ssim(X, Y, multichannel=True)`` computed with its
    defaults (``win_size=7``, ``gaussian_weights=False``, ``use_sample_covariance=True``),
    i.e. today's ``structural_similarity(x, ref, channel_axis=-1, data_range=data_range)``.
    Note: called on float images without ``data_range``, old skimage used the float dtype range
    (-1, 1), i.e. ``data_range=2``; the ``authors`` protocol passes that explicitly.

    Args:
      x: (B, H, W, C) images to score, H, W >= 7.
      ref: (B, H, W, C) reference images, same shape.
      data_range: the range of the inputs' convention.

    Returns:
      (B,) mean SSIM over the valid 7x7 window positions and channels.
    """
    x, ref = _validate("ssim_uniform", x, ref, min_side=UNIFORM_SIZE)
    return _ssim_uniform(x, ref, _range(data_range))


@jax.jit
def _ssim_uniform(x, ref, data_range):
    return _mean_ssim(x, ref, data_range, _UNIFORM_TAPS, sample_covariance=True)


def quantize(x, mode: str = "round"):
    """Maps float images in [0, 1] to the nearest 8-bit level and back to float.

    ``round``: ``round(clip(x, 0, 1) * 255) / 255`` (round half to even, like ``np.round``),
    what the ``standard`` protocol does before scoring (KAIR ``single2uint``).
    ``truncate``: ``floor(clip(x, 0, 1) * 255) / 255``, i.e. ``(x * 255).astype(uint8)``, what
    DMPHN's released GoPro outputs and the authors' ``np_to_pil`` did.

    Args:
      x: float array of any shape, nominally in [0, 1]; values outside are clipped.
      mode: "round" or "truncate".

    Returns:
      An array of x's float dtype (float32 for integer inputs) holding k / 255, k in 0..255.
    """
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize: `mode` must be one of {QUANTIZE_MODES}, got {mode!r}. "
                         f"Fix: use 'round' (standard protocol) or 'truncate' (DMPHN outputs).")
    return _quantize(x, mode=mode)


@functools.partial(jax.jit, static_argnames=("mode",))
def _quantize(x, *, mode):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    levels = jnp.clip(x, 0.0, 1.0) * 255.0
    levels = jnp.round(levels) if mode == "round" else jnp.floor(levels)
    # A table rather than `levels / 255`: XLA may divide by multiplying with the reciprocal,
    # which is 1 ulp off numpy's `uint8_image / 255` for some levels.
    table = jnp.asarray(np.arange(256, dtype=np.float64) / 255.0, dtype=x.dtype)
    return table[levels.astype(jnp.int32)]
