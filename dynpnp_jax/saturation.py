"""Saturated highlights: pixels of ``y`` at the sensor's ceiling do not obey ``y = k * x + n``.

A camera clips: it records ``y = min(k * x + n, level)``. Where the true blurred value exceeds the
ceiling (lamps, specular highlights) the recorded value is too small, and fitting it as data makes
the deblurring x-step invent ringing around every highlight.

Two data terms are offered (``make_config(..., saturation=...)``), both through the masked exact
x-step that unknown boundaries use (:func:`dynpnp_jax.boundary.masked_solve`: the data term
``||M (A x - y)||^2`` with a per-pixel, per-channel mask ``M``):

* ``'auto'`` (the default choice) -- the saturated pixels of ``y`` (at or within
  :data:`MARGIN` of ``clip_level``) are unobserved: ``M`` is the product of the boundary's
  frame mask and ``observed(y)``, fixed for the whole loop; the unobserved pixels of ``y`` are
  filled with the current estimate's blur every iteration (as the margin of an unknown
  boundary).
* ``'clipped'`` -- the clipped forward model ``y = min(A x, level)`` (Whyte et al., IJCV 2014;
  Cho et al., ICCV 2011): a saturated pixel is a data point only while the current estimate's
  blur lies *below* the ceiling (then it is pulled up to it); once the blur reaches the ceiling
  it is consistent with the clipped ``y`` and drops out. ``M`` is re-derived from the current
  estimate every iteration (:func:`clipped_mask`).

The measured comparison (``bench/saturation.py``, docs/results/saturation.md) chose the default.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

MARGIN = 1.0 / 255  # "near" the clipping level: within one 8-bit step of it
MODES = ("off", "auto", "clipped")


def observed(y: Array, level) -> Array:
    """``1`` where ``y`` is below ``level - MARGIN`` (a valid observation), ``0`` where it is at or
    near the clipping level; per pixel and channel, the dtype of ``y``."""
    return (y < level - MARGIN).astype(y.dtype)


def clipped_mask(obs: Array, blurred: Array, level) -> Array:
    """The clipped model's mask at the current estimate: observed pixels stay observed; a
    saturated one (``obs == 0``) counts only while the estimate's blur is below ``level``."""
    return jnp.maximum(obs, (blurred < level).astype(obs.dtype))


def saturated_fraction(y, level: float = 1.0) -> np.ndarray:
    """The fraction of saturated values of each image of a concrete ``y`` (B, H, W, C)."""
    y = np.asarray(y)
    return np.mean(y >= level - MARGIN, axis=tuple(range(1, y.ndim)))


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
