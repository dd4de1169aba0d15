"""MATLAB-compatible bicubic resizing and the SR evaluation helpers (numpy, float64 inside).

``imresize(img, scale)`` reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` (antialiasing on
by default, as in MATLAB), which the super-resolution literature uses to make low-resolution
inputs and bicubic baselines. Written from the published algorithm:

* the cubic convolution kernel of Keys with ``a = -0.5``, support ``[-2, 2]``;
* when shrinking (``scale < 1``) with antialiasing, the kernel is stretched: ``h(x) = scale *
  cubic(scale * x)``, width ``4 / scale``;
* output pixel ``x`` (1-based) maps to the input coordinate ``u = x / scale + 0.5 * (1 - 1 /
  scale)``; it takes the ``ceil(width) + 2`` input pixels from ``floor(u - width / 2)`` on,
  with weights ``h(u - index)`` normalised to sum 1;
* out-of-range indices are mirrored (symmetric padding: ``0, 1, ..., n-1, n-1, ..., 0, ...``);
* the output size is ``ceil(scale * size)``; the two axes are resized one after the other,
  the one with the smaller scale first (rows first for equal scales).

Other libraries (compared in tests/test_degradations.py):
``torch.nn.functional.interpolate(mode='bicubic', align_corners=False, antialias=True)`` uses the
same ``a = -0.5`` kernel, the same coordinate mapping and the same stretched kernel when
shrinking, so it agrees with this function away from the borders, up- and down-scaling; near the
borders torch drops the taps that fall outside and renormalises instead of mirroring. With
``antialias=False`` torch's bicubic uses ``a = -0.75`` and differs everywhere.
"""
from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool = True
                  ) -> np.ndarray:
    """The ``(out_len, in_len)`` matrix of MATLAB's bicubic resizing along one axis."""
    width = 4.0
    if scale < 1 and antialiasing:
        def kernel(t):
            return scale * _cubic(scale * t)
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]  # 1-based output index
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based input coordinate
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left + np.arange(taps)[None, :]  # (out, taps), 1-based, may leave [1, in_len]
    w = kernel(u - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # mirror: the index sequence 1..n, n..1, 1..n, ... (period 2n)
    j = np.mod(idx.astype(np.int64) - 1, 2 * in_len)
    j = np.where(j < in_len, j, 2 * in_len - 1 - j)  # 0-based
    m = np.zeros((out_len, in_len), np.float64)
    np.add.at(m, (np.broadcast_to(np.arange(out_len)[:, None], j.shape), j), w)
    return m


# the most entries of one axis's dense resize matrix (float64: 512 MB); an 8192-pixel side
# enlarged 1x, or 2048 enlarged 4x, fits
MAX_MATRIX = 2 ** 26


def _out_len(n: int, s: float) -> int:
    # MATLAB: ceil(scale * size); the tiny tolerance keeps 30 * 0.1 from becoming 4
    return max(1, int(math.ceil(n * s - 1e-9)))


def imresize(img, scale: float | None = None, *, output_shape=None, antialiasing: bool = True
             ) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for an ``(H, W)`` or ``(H, W, C)`` array.

    ``scale`` > 1 enlarges, < 1 shrinks (e.g. ``1 / 4``); or give ``output_shape=(h, w)``
    (then each axis has the scale ``h / H``, ``w / W``, as MATLAB with an output size).
    Float images keep their dtype (no clipping); integer images (e.g. uint8) are rounded and
    clipped to their range, as MATLAB does.
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "fiu":
        raise ValueError(f"img: expected a numeric (H, W) or (H, W, C) image, got shape "
                         f"{arr.shape} dtype {arr.dtype}; fix: resize one image at a time "
                         "(e.g. x[0] for an NHWC batch) as float or uint8")
    h, w = arr.shape[:2]
    if (scale is None) == (output_shape is None):
        raise ValueError("scale: expected exactly one of scale or output_shape, got "
                         f"scale={scale!r}, output_shape={output_shape!r}; fix: pass one of them")
    if scale is not None:
        try:
            s = float(scale)
        except (TypeError, ValueError):
            s = float("nan")
        if not math.isfinite(s) or s <= 0:
            raise ValueError(f"scale: expected a positive number, got {scale!r}; fix: pass e.g. "
                             "scale=1/4 to shrink by 4, scale=2 to enlarge by 2")
        scales = (s, s)
        out = (_out_len(h, s), _out_len(w, s))
    else:
        try:
            out = tuple(int(v) for v in output_shape)
        except (TypeError, ValueError):
            out = ()
        if len(out) != 2 or min(out) < 1:
            raise ValueError(f"output_shape: expected (h, w) positive integers, got "
                             f"{output_shape!r}; fix: pass output_shape=(h, w)")
        scales = (out[0] / h, out[1] / w)
    for axis in (0, 1):  # the dense (out, in) matrix, and the (out, taps) one of a tiny scale
        n, sc = arr.shape[axis], scales[axis]
        taps = math.ceil(4.0 / sc if (sc < 1 and antialiasing) else 4.0) + 2
        need = out[axis] * max(n, taps)
        if need > MAX_MATRIX:
            raise ValueError(f"{'scale' if scale is not None else 'output_shape'}: resizing axis "
                             f"{axis} from {n} to {out[axis]} pixels (scale {sc:.3g}) needs a "
                             f"{out[axis]} x {max(n, taps)} matrix, {need} entries; expected at most "
                             f"MAX_MATRIX = 2^26 ({MAX_MATRIX * 8 // 2 ** 20} MB of float64); fix: "
                             "resize crops (tiles) of the image, or check the scale (scale=1/4 "
                             "shrinks by 4)")
    x = arr.astype(np.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
        m = resize_matrix(x.shape[axis], out[axis], scales[axis], antialiasing)
        x = np.moveaxis(np.tensordot(m, x, axes=(1, axis)), 0, axis)
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        return np.clip(np.round(x), info.min, info.max).astype(arr.dtype)
    return x.astype(arr.dtype)


def rgb2ycbcr_y(img) -> np.ndarray:
    """The Y channel of MATLAB's ``rgb2ycbcr`` for RGB in [0, 1] (last axis = 3 channels):
    ``16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``, in [16/255, 235/255].

    uint8 input is first scaled to [0, 1]. The result is float (not rounded: MATLAB's uint8
    version rounds ``255 * Y``). Used for super-resolution PSNR/SSIM on the luminance.
    """
    arr = np.asarray(img)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"img: expected an RGB image with 3 channels on the last axis, got shape "
                         f"{arr.shape}; fix: pass (H, W, 3) (grayscale images need no conversion)")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float64) / 255.0
    elif arr.dtype.kind != "f":
        raise ValueError(f"img: expected float RGB in [0, 1] or uint8, got dtype {arr.dtype}; "
                         "fix: convert with img.astype(np.float32) / 255")
    dt = arr.dtype
    a = arr.astype(np.float64)
    y = 16.0 / 255.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0
    return y.astype(dt)


def modcrop(img, m: int) -> np.ndarray:
    """Crop the bottom/right so that H and W are multiples of ``m`` (the SR scale).

    ``(H, W)`` and ``(H, W, C)`` arrays crop their first two axes, NHWC ``(B, H, W, C)``
    batches axes 1 and 2.
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m: expected a positive integer, got {m!r}; fix: pass the scale factor, "
                         "e.g. m=4")
    arr = np.asarray(img) if not hasattr(img, "shape") else img
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"img: expected (H, W), (H, W, C) or (B, H, W, C), got shape "
                         f"{tuple(arr.shape)}; fix: pass one image or an NHWC batch")
    ax = 1 if arr.ndim == 4 else 0
    h, w = arr.shape[ax], arr.shape[ax + 1]
    if h < m or w < m:
        raise ValueError(f"img: a {h}x{w} image is smaller than m={m}; expected H, W >= m; "
                         "fix: use a larger image or a smaller m")
    sl = (slice(None),) * ax + (slice(0, h - h % m), slice(0, w - w % m))
    return arr[sl]
