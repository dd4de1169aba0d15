"""Input checks shared by the public entry points: the one owner of the image rules.

The data contract, stated once: images are float NHWC batches ``(B, H, W, C)`` with values in
[0, 1] (noise may push a few values slightly outside). Checks on *values* (NaN, range, scaling)
run only on concrete arrays: under ``jax.jit``/``grad``/``vmap`` the values are tracers and only
the shape and dtype rules apply, so the public functions stay transformable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_concrete", "check_images", "check_finite_output", 
           "to_landscape"]


def is_concrete(x) -> bool:
    """Whether ``x`` (an array or pytree of arrays) holds values, not tracers."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_images(name: str, arr, *, ref_shape=None, channels: int | None = None,
                 allow_any_channels: bool = False, unit_range: bool = True):
    """Validate a batch of images; return it as float32 (unchanged when traced).

    Args:
      name: the argument's name, for messages (``'y'``).
      arr: the batch.
      ref_shape: a shape ``arr`` must have (e.g. ``clean`` must have ``y``'s shape).
      channels: the channel count a network takes (1-channel networks take any count when
        ``allow_any_channels``); used to spot channels-first (NCHW) input.
      unit_range: the values are an image's, in [0, 1] up to noise (False: measurements of
        another kind, e.g. Fourier coefficients; only finiteness is checked).

    Raises:
      ValueError: wrong rank, empty batch or zero-sized image, non-float dtype, channels-first
        layout, NaN/Inf, values outside [0, 1] beyond noise, data scaled to [-1, 1] or [0, 2].
    """
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        arr = np.asarray(arr)
    shape = tuple(arr.shape)
    if len(shape) != 4:
        hint = (" (add a batch axis: y[None])" if len(shape) == 3 else
                " (add batch and channel axes: y[None, ..., None])" if len(shape) == 2 else "")
        raise ValueError(f"{name} must be a batch of NHWC images of rank 4 (B, H, W, C), got "
                         f"shape {shape}{hint}")
    if min(shape) == 0:
        raise ValueError(f"{name} has shape {shape}: an empty batch or a zero-sized image; give at "
                         "least one image of at least 1x1 pixels")
    b, h, w, c = shape
    looks_nchw = c > 4 and shape[1] in (1, 3) and c != channels
    if c > 4 and not looks_nchw and channels is not None and c != channels:
        raise ValueError(f"{name} has {c} channels; images have 1 (gray) or 3 (RGB) channels "
                         f"(shape {shape} is read as B, H, W, C)")
    if looks_nchw or (channels is not None and c != channels and not allow_any_channels):
        if looks_nchw:
            raise ValueError(
                f"{name} of shape {shape} looks channels-first (NCHW: {shape[1]} channels of "
                f"{h}x{w}... read as {c} channels of {h}x{w}); this library takes NHWC: "
                f"use np.transpose({name}, (0, 2, 3, 1))")
        raise ValueError(f"{name} has {c} channel(s), the network takes {channels}; give a "
                         f"{channels}-channel image (e.g. np.repeat({name}, {channels}, -1) for "
                         "gray input) or choose a network with matching channels")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(f"{name} must be float32 with values in [0, 1], got dtype {arr.dtype}; "
                         f"convert 8-bit images with {name}.astype(np.float32) / 255")
    if ref_shape is not None and shape != tuple(ref_shape):
        raise ValueError(f"{name} must have shape {tuple(ref_shape)}, got {shape}")
    if not is_concrete(arr) or isinstance(arr, jax.ShapeDtypeStruct):
        return arr
    a = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)});"
                         f" clean the input (e.g. np.nan_to_num) first")
    if not unit_range:
        return arr.astype(jnp.float32) if arr.dtype != jnp.float32 else arr
    lo, hi = float(a.min()), float(a.max())
    if hi > 2.0 or lo < -1.0:
        raise ValueError(f"{name} must hold values in [0, 1] (noise may push them slightly "
                         f"outside), got range [{lo:.3g}, {hi:.3g}]; divide 8-bit images by 255")
    # a noisy [0, 1] image has only a few values far outside; data scaled to [-1, 1] has many
    # below -0.25, data divided by 127.5 many above 1.25
    if np.mean(a < -0.25) > 0.05:
        raise ValueError(f"{name} looks scaled to [-1, 1] ({100 * np.mean(a < -0.25):.0f}% of the "
                         f"values below -0.25, range [{lo:.3g}, {hi:.3g}]); this library takes "
                         f"[0, 1]: use ({name} + 1) / 2")
    if np.mean(a > 1.25) > 0.05:
        raise ValueError(f"{name} looks scaled to [0, 2] ({100 * np.mean(a > 1.25):.0f}% of the "
                         f"values above 1.25, range [{lo:.3g}, {hi:.3g}], e.g. divided by 127.5); "
                         f"this library takes [0, 1]: divide 8-bit images by 255")
    return arr.astype(jnp.float32) if arr.dtype != jnp.float32 else arr


def check_finite_output(name: str, arr, *, what: str = "the restored images") -> None:
    """Raise ``FloatingPointError`` when a concrete result holds NaN or Inf (never score it)."""
    if not is_concrete(arr):
        return
    a = np.asarray(arr)
    bad = ~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
    if bad.any():
        raise FloatingPointError(
            f"{what} of image(s) {np.flatnonzero(bad).tolist()} in {name} are not finite (NaN or "
            "Inf): the iteration diverged. Check the hyper-parameters (step sizes too large, "
            "negative penalties) and the operator; a non-finite result is never scored")


def to_landscape(img, rotate: bool, inverse: bool = False):
    """Rotate an ``(..., H, W, C)`` image by 90 degrees counter-clockwise (``inverse``: back)."""
    if not rotate:
        return img
    return np.rot90(img, k=-1 if inverse else 1, axes=(-3, -2))
