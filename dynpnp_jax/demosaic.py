"""Bayer colour filter arrays: the mosaic, its operator and two classical demosaicers.

A Bayer sensor observes one colour per pixel, in 2x2 tiles. ``pattern`` names the tile's colours
row by row: ``'RGGB'`` (the default) is R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1) --
DPIR's ``utils_mosaic.masks_CFA_Bayer`` and MATLAB ``demosaic(I, 'rggb')``. ``'BGGR'``,
``'GRBG'`` and ``'GBRG'`` are the other three phases.

* :func:`bayer_mask` -- the (H, W, 3) float32 mask, 1 where a channel is observed (exactly one
  channel per pixel);
* :func:`mosaic` -- ``mask * img``, the (..., H, W, 3) observation of the demosaicing task, and
  :func:`to_cfa` -- its one-plane form (the sensor's raw values, (..., H, W));
* :func:`malvar` -- Malvar, He and Cutler, "High-quality linear interpolation for demosaicing of
  Bayer-patterned color images", ICASSP 2004: gradient-corrected bilinear interpolation, the
  paper's four 5x5 filters (below), the method of MATLAB's ``demosaic``;
* :func:`bilinear` -- per-channel bilinear interpolation (3x3 filters);
* :class:`Bayer` -- :class:`~dynpnp_jax.operators.Mask` with a Bayer mask (its exact x-step is
  the pixel-wise ``rhs / (m + mu)``), whose :meth:`~Bayer.initial` -- the solver's start -- is
  :func:`malvar` of ``y``.

The Malvar-He-Cutler filters (all divided by 8; the centre is the pixel being filled; each sums
to 8, so a flat image stays flat)::

  G at R or B          R at G, R left/right   R at G, R above/below   R at B (B at R)
   .  .  -1  .  .       .  .  1/2  .  .        .  .  -1  .  .          .   .  -3/2  .   .
   .  .   2  .  .       . -1   .  -1  .        . -1   4  -1  .          .   2   .    2   .
  -1  2   4  2 -1      -1  4   5   4 -1       1/2 .   5   .  1/2      -3/2  .   6    .  -3/2
   .  .   2  .  .       . -1   .  -1  .        . -1   4  -1  .          .   2   .    2   .
   .  .  -1  .  .       .  .  1/2  .  .        .  .  -1  .  .          .   .  -3/2  .   .

(B at G uses the same two middle filters with B in place of R.) Each filter is applied to the
one-plane CFA; the observed colour of a pixel is kept as it is, so both interpolations reproduce
the observed samples exactly.

Boundary: the CFA is extended by **reflection about the edge sample** (``numpy.pad(...,
mode='reflect')``: column -1 is column 1, as DPIR's ``dm_matlab`` pads with torch's
``'reflect'``). This keeps the Bayer phase (column -1 has the colour of column 1); the
symmetric extension that repeats the edge sample (column -1 = column 0) would put a green
sample where the pattern has a red one. MATLAB's own treatment of the outermost two pixels may
differ; the demosaicing protocol's score leaves a 10-pixel border out
(:data:`dynpnp_jax.data.degradations.DEMOSAIC_BORDER`).

Everything here is jittable JAX on (..., H, W[, 3]) arrays (numpy input is accepted; convert
the result with ``np.asarray``), float32.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from .operators import Mask

__all__ = ["PATTERNS", "bayer_mask", "mosaic", "to_cfa", "malvar", "bilinear", "Bayer",
           "check_pattern", "MALVAR_FILTERS"]

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_CH = {"R": 0, "G": 1, "B": 2}

# Malvar, He, Cutler (2004), the four 5x5 filters (times 1/8): see the module docstring.
_G_AT_RB = np.array([[0, 0, -1, 0, 0],
                     [0, 0, 2, 0, 0],
                     [-1, 2, 4, 2, -1],
                     [0, 0, 2, 0, 0],
                     [0, 0, -1, 0, 0]], np.float64) / 8
_ROW = np.array([[0, 0, 0.5, 0, 0],          # the colour whose samples are left and right
                 [0, -1, 0, -1, 0],
                 [-1, 4, 5, 4, -1],
                 [0, -1, 0, -1, 0],
                 [0, 0, 0.5, 0, 0]], np.float64) / 8
_COL = _ROW.T.copy()                          # the colour whose samples are above and below
_DIAG = np.array([[0, 0, -1.5, 0, 0],         # R at B, B at R (samples on the diagonals)
                  [0, 2, 0, 2, 0],
                  [-1.5, 0, 6, 0, -1.5],
                  [0, 2, 0, 2, 0],
                  [0, 0, -1.5, 0, 0]], np.float64) / 8
#: name -> 5x5 filter (float64), as in the paper; ``row``/``col``: at a green pixel, the colour
#: whose samples lie left and right / above and below.
MALVAR_FILTERS = {"g_at_rb": _G_AT_RB, "row": _ROW, "col": _COL, "diag": _DIAG}

_BIL_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float64) / 4
_BIL_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float64) / 4


def check_pattern(pattern: str) -> str:
    """``pattern`` upper-cased if it is one of :data:`PATTERNS`, else a ValueError with the fix."""
    p = str(pattern).upper()
    if p not in PATTERNS:
        raise ValueError(f"pattern: expected a Bayer pattern, one of {', '.join(PATTERNS)}, got "
                         f"{pattern!r}. Fix: e.g. pattern='RGGB'.")
    return p


def _colour_at(pattern: str, i: int, j: int) -> int:
    """The channel (0 R, 1 G, 2 B) observed at the pixel of parity (i, j)."""
    return _CH[pattern[2 * (i % 2) + (j % 2)]]


def bayer_mask(h: int, w: int, pattern: str = "RGGB") -> np.ndarray:
    """The (h, w, 3) float32 Bayer mask: 1 at the channel each pixel observes, 0 elsewhere
    (every pixel observes exactly one channel)."""
    p = check_pattern(pattern)
    m = np.zeros((int(h), int(w), 3), np.float32)
    for i in range(2):
        for j in range(2):
            m[i::2, j::2, _colour_at(p, i, j)] = 1.0
    return m


def mosaic(img, pattern: str = "RGGB"):
    """The Bayer observation ``mask * img`` of an (..., H, W, 3) image: (..., H, W, 3), one
    non-zero channel per pixel (the demosaicing operator's ``A x``). Same array kind as
    ``img`` (numpy in, numpy out)."""
    if np.shape(img)[-1:] != (3,) or np.ndim(img) < 3:
        raise ValueError(f"img: mosaic needs an RGB image (..., H, W, 3), got shape "
                         f"{tuple(np.shape(img))}. Fix: a colour image; a gray image has no "
                         f"colours to sample.")
    h, w = np.shape(img)[-3:-1]
    m = bayer_mask(h, w, pattern)
    if isinstance(img, np.ndarray):  # numpy keeps its dtype (a uint8 image: a uint8 mosaic)
        return (img * m).astype(img.dtype)
    return img * jnp.asarray(m, jnp.asarray(img).dtype)


def to_cfa(mos):
    """The one-plane CFA (..., H, W) of a mosaic (..., H, W, 3): the sum over channels (only
    one is non-zero per pixel)."""
    return jnp.sum(jnp.asarray(mos, jnp.float32), axis=-1)


def _check_cfa(cfa, reach: int):
    cfa = jnp.asarray(cfa, jnp.float32)
    if cfa.ndim < 2:
        raise ValueError(f"cfa: expected a one-plane CFA (H, W) or a batch (..., H, W), got "
                         f"shape {tuple(cfa.shape)}. Fix: to_cfa(mosaic) for an (H, W, 3) "
                         f"mosaic.")
    h, w = cfa.shape[-2:]
    if min(h, w) <= reach:
        raise ValueError(f"cfa: a {h}x{w} CFA is too small for the reflected border of "
                         f"{reach} pixels; expected at least {reach + 1} pixels a side. Fix: "
                         f"a larger image.")
    return cfa


def _filter(padded, k: np.ndarray, h: int, w: int):
    """Correlation of the padded planes (..., H + 2r, W + 2r) with ``k`` (only its non-zero
    taps), the (..., H, W) result."""
    out = 0.0
    for a, b in zip(*np.nonzero(k)):
        out = out + float(k[a, b]) * padded[..., a:a + h, b:b + w]
    return out


def _pad(x, r: int):
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    return jnp.pad(x, pad, mode="reflect")


def malvar(cfa, pattern: str = "RGGB"):
    """Malvar-He-Cutler demosaicing of a one-plane CFA (..., H, W) -> (..., H, W, 3) float32.

    At each pixel the observed colour is kept; the missing two come from the 5x5 filters of the
    module docstring applied to the CFA (reflected about the edge sample). Not clipped (the
    result may leave [0, 1] slightly at edges; round/clip it for an 8-bit image). Jittable."""
    p = check_pattern(pattern)
    cfa = _check_cfa(cfa, 2)
    h, w = cfa.shape[-2:]
    padded = _pad(cfa, 2)
    planes = {name: _filter(padded, k, h, w) for name, k in MALVAR_FILTERS.items()}
    out = [None, None, None]
    ii = (jnp.arange(h) % 2)[:, None]
    jj = (jnp.arange(w) % 2)[None, :]
    for c in range(3):
        val = jnp.zeros_like(cfa)
        for i in range(2):
            for j in range(2):
                own = _colour_at(p, i, j)
                if c == own:
                    src = cfa
                elif c == 1:
                    src = planes["g_at_rb"]
                elif own == 1:  # R or B at a green pixel: where do that colour's samples lie?
                    src = planes["row"] if _colour_at(p, i, j + 1) == c else planes["col"]
                else:  # R at B, B at R
                    src = planes["diag"]
                val = jnp.where((ii == i) & (jj == j), src, val)
        out[c] = val
    return jnp.stack(out, axis=-1)


def bilinear(cfa, pattern: str = "RGGB"):
    """Bilinear demosaicing of a one-plane CFA (..., H, W) -> (..., H, W, 3) float32: each
    channel's samples (zeros elsewhere) filtered with ``[[0,1,0],[1,4,1],[0,1,0]] / 4`` (green)
    or ``[[1,2,1],[2,4,2],[1,2,1]] / 4`` (red, blue), reflected about the edge sample. Observed
    samples are kept exactly. Jittable."""
    p = check_pattern(pattern)
    cfa = _check_cfa(cfa, 1)
    h, w = cfa.shape[-2:]
    m = jnp.asarray(bayer_mask(h, w, p))
    out = []
    for c in range(3):
        plane = cfa * m[..., c]
        k = _BIL_G if c == 1 else _BIL_RB
        out.append(_filter(_pad(plane, 1), k, h, w))
    return jnp.stack(out, axis=-1)


@struct.dataclass
class Bayer(Mask):
    """The demosaicing operator: ``A x = m * x`` with ``m`` a Bayer mask (B, H, W, 3) (one
    observed channel per pixel; the inherited exact x-step is pixel-wise, ``rhs / (m + mu)``).
    Its start (:meth:`initial`) is the Malvar-He-Cutler interpolation of ``y``, as DPIR's
    demosaicing script starts (``matlab_init``). Build it with :meth:`from_pattern`."""

    pattern: str = struct.field(pytree_node=False, default="RGGB")

    @classmethod
    def from_pattern(cls, h: int, w: int, pattern: str = "RGGB", batch: int | None = None
                     ) -> "Bayer":
        """The operator for (h, w) images with a ``pattern`` mosaic, for ``batch`` images."""
        p = check_pattern(pattern)
        m = bayer_mask(h, w, p)[None]
        if batch is not None:
            m = np.broadcast_to(m, (batch,) + m.shape[1:])
        return cls(m=jnp.asarray(m), pattern=p)

    def initial(self, y):
        """Malvar-He-Cutler demosaicing of the mosaic ``y`` (B, H, W, 3)."""
        self._check(y, "y")
        return malvar(to_cfa(self.m * y), self.pattern).astype(y.dtype)
