"""Saturated highlights: pixels of ``y`` at the sensor's ceiling do not obey ``y = k * x + n``.

A camera clips: it records ``y = min(k * x + n, level)``. Where the true blurred value exceeds the
ceiling (lamps, specular highlights) the recorded value is too small, and fitting it as data makes
the deblurring x-step invent ringing around every highlight.

The values of ``y`` at or within :data:`MARGIN` of ``clip_level`` are *clipped*, per pixel and
channel (:func:`observed`; a colour pixel clipped in one channel keeps its other channels as
data). Two data terms (``make_config(..., saturation=...)``), both through the masked exact x-step
that unknown boundaries use (:func:`dynpnp_jax.boundary.masked_solve`, the data term
``||M (A x - y)||^2`` with a per-value mask ``M``):

* ``'clipped'`` (what ``'auto'`` means, :data:`AUTO`) -- the clipped forward model
  ``y = min(A x, level)`` (Whyte et al., IJCV 2014; Cho et al., ICCV 2011): a clipped value only
  says ``A x >= level``, a one-sided data term. Each x-step solves with the clipped values
  unobserved, then adds as data at the level those whose blur fell below it (the active set of
  the bound, re-derived from the new estimate) and solves again from there. The gradient
  algorithms add the one-sided term's gradient ``A^T min(A x - level, 0)``.
* ``'masked'`` -- the clipped values are unobserved: ``M`` is the product of the boundary's frame
  mask and :func:`observed`, fixed for the loop.

In both the unobserved values of ``y`` are filled with the current estimate's blur every
iteration (as the margin of an unknown boundary), and the denoiser (trained on [0, 1]) sees the
estimate's highlights compressed: ``[KNEE, m]`` mapped linearly onto ``[KNEE, 1]``, ``m`` a high
quantile of the estimate over the clipped values (:func:`peak`), and expanded back (:func:`compress`,
:func:`expand`); the rest of the image is untouched. On a concrete ``y`` in which nothing
reaches the level the loop is the plain one (the same program).

Measured on synthetic saturated frames (``bench/saturation.py``, docs/results/saturation.md):
the one-sided model gains more than the mask and loses nothing on the frames where few values
clip; a dilated mask, a mask shared by the colour channels and a global rescaling of the
denoiser's input all measured worse.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

MARGIN = 1.0 / 255  # "near" the clipping level: within one 8-bit step of it
MODES = ("off", "auto", "masked", "clipped")
AUTO = "clipped"  # what 'auto' means: the data term measured best (docs/results/saturation.md)
OFF = "off"


def resolve(mode: str) -> str:
    """The data term a ``saturation`` argument names (``'auto'`` -> :data:`AUTO`), or a clear
    error for a name not in :data:`MODES`."""
    if mode not in MODES:
        raise ValueError(f"saturation must be one of {MODES}, got {mode!r}. Fix: "
                         "'auto' for a photograph with clipped highlights, 'off' otherwise")
    return AUTO if mode == "auto" else mode


def is_on(mode: str) -> bool:
    """Whether a (resolved) ``saturation`` treats clipped values apart from the rest."""
    return mode != OFF


def one_sided(mode: str) -> bool:
    """Whether a (resolved) ``saturation`` is the clipped model (the one-sided bound at the
    level), not the fixed mask."""
    return mode == "clipped"


KNEE = 0.8  # the denoiser sees values above it compressed (measured: 0.8 > 0.9 > 0.95)
PEAK_QUANTILE = 0.9  # of the estimate at the clipped values (measured: 0.9 > the max, 0.5)


def peak(x: Array, sat: Array) -> Array:
    """``m = max(1, the PEAK_QUANTILE quantile of the estimate over the clipped values)`` per image
    (B,): how bright the highlights are, robust to the x-step's overshoot at a few of them."""
    v = jnp.where(sat > 0, x, jnp.nan).reshape(x.shape[0], -1)
    return jnp.maximum(1.0, jnp.nan_to_num(jnp.nanquantile(v, PEAK_QUANTILE, axis=1), nan=1.0))


def _slope(m: Array, ndim: int) -> tuple[Array, Array]:
    m = m.reshape((-1,) + (1,) * (ndim - 1))
    return (1.0 - KNEE) / jnp.maximum(m - KNEE, 1.0 - KNEE), m > 1.0


def compress(x: Array, m: Array) -> Array:
    """The highlights ``[KNEE, m]`` mapped linearly onto ``[KNEE, 1]``, the rest unchanged (and
    all of ``x`` when ``m <= 1``, bit for bit): a denoiser trained on [0, 1] sees a highlight's
    true value without the rest of the image being rescaled."""
    c, on = _slope(m, x.ndim)
    return jnp.where(on & (x > KNEE), KNEE + (x - KNEE) * c, x)


def expand(u: Array, m: Array) -> Array:
    """The inverse of :func:`compress`."""
    c, on = _slope(m, u.ndim)
    return jnp.where(on & (u > KNEE), KNEE + (u - KNEE) / c, u)


def clipped(y, level: float = 1.0):
    """``True`` where ``y`` is at or within :data:`MARGIN` of ``level`` (NumPy or JAX, per value):
    the complement of :func:`observed`."""
    return y >= level - MARGIN


def observed(y: Array, level) -> Array:
    """``1`` where ``y`` is below ``level - MARGIN`` (a valid observation), ``0`` where it is at or
    near the clipping level; per pixel and channel, the dtype of ``y``."""
    return (~clipped(y, level)).astype(y.dtype)


def saturated_fraction(y, level: float = 1.0) -> np.ndarray:
    """The fraction of saturated values of each image of a concrete ``y`` (B, H, W, C)."""
    y = np.asarray(y)
    return np.mean(clipped(y, level), axis=tuple(range(1, y.ndim)))


def check_level(clip_level) -> float:
    """``clip_level`` as a float in (0, 1], or a clear error."""
    if isinstance(clip_level, (bool, str, bytes)) or np.ndim(clip_level) != 0:
        raise ValueError(f"clip_level must be a number in (0, 1] (the sensor's ceiling on the "
                         f"[0, 1] scale), got {clip_level!r}. Fix: clip_level=1.0 for 8-bit "
                         "images (255 -> 1.0)")
    try:
        level = float(clip_level)
    except (TypeError, ValueError):
        raise ValueError(f"clip_level must be a number in (0, 1], got {clip_level!r}") from None
    if not np.isfinite(level) or not 0 < level <= 1:
        raise ValueError(f"clip_level={clip_level!r} is outside (0, 1]: it is the sensor's "
                         "ceiling on the [0, 1] image scale. Fix: clip_level=1.0 for 8-bit "
                         "images (255 -> 1.0), or divide an 8-bit level by 255 (250/255)")
    return level


def check_observed(y, level: float) -> None:
    """A concrete ``y`` whose every value of some image is saturated leaves nothing to fit."""
    frac = saturated_fraction(y, level)
    full = np.flatnonzero(frac >= 1.0)
    if full.size:
        raise ValueError(f"saturation: every value of image {int(full[0])} of y is at or above "
                         f"clip_level - {MARGIN:.4g} = {level - MARGIN:.4g}: the mask of "
                         "unsaturated pixels leaves nothing observed. Fix: check the image scale "
                         "(y on [0, 1]; divide 8-bit images by 255), raise clip_level, or "
                         "saturation='off'")
