"""Classical baselines for the known-degradation protocol (no network, no solver).

Each baseline maps a :class:`~dynpnp_jax.data.protocols.Problem` to a float32 (H, W, C) image of
the restored size, from what the problem's ``meta`` says about the degradation (``kernel``,
``scale``, ``mask``, ``noise`` on the 8-bit scale). The evaluation CLI runs them beside the
solver's methods, as config methods ``{'mode': NAME}``:

* ``input``  -- the degraded image itself (super-resolution: each LR pixel repeated ``scale``
  times in both directions, so it can be scored at the HR size);
* ``wiener`` -- deblurring: the Wiener filter of the circular blur under a power-law image
  spectrum, ``X = conj(K) Y / (|K|^2 + (s^2 / c) |D|^2)`` per channel, ``|D|^2 = |D_x|^2 +
  |D_y|^2`` (the forward differences' transfer functions, 0 at DC). It is the MMSE filter when the
  image's power spectrum falls as ``c / |D|^2`` (natural images: about 1 / frequency^2) and the
  noise is white of variance ``s^2 = (noise / 255)^2 + 1 / (12 * 255^2)`` (the 8-bit rounding).
  ``c`` is the image's gradient energy, estimated from ``y`` without a free parameter: under this
  model ``mean |grad y|^2 = c mean |K|^2 + 4 s^2``. The DC term (the mean brightness) passes
  unchanged, so a flat image stays flat. (A white signal spectrum, ``NSR = s^2 / var(y)``,
  divided the DC by ``1 + NSR``: a flat or small crop came out darker and far worse than its
  input -- 17.78 dB for a 27.33 dB input on a 32x32 crop of house.) The kernel is centred as
  ``operators.Blur`` centres it (``(kh // 2, kw // 2)``); for a frame with unknown boundaries
  (``Blur(boundary='unknown')``) it filters the frame's mirror extension (2H x 2W, periodic
  without jumps) and keeps the frame;
* ``bicubic`` -- super-resolution: Keys bicubic up-sampling (MATLAB ``imresize``'s cubic) on
  the degradation's own grid, ``operators.Downsample.initial`` (the ``dpir`` solver's start):
  for the DPIR bicubic kernels that is ``imresize(y, s)``; for a centred kernel the grid is
  shifted by (s - 1) / 2 HR pixels, as DPIR's ``shift_pixel`` does;
* ``interp`` -- inpainting: the missing pixels linearly interpolated from the observed ones
  (Delaunay, ``scipy.interpolate.griddata``), nearest observed value outside their hull;
* ``mhc`` -- demosaicing: Malvar-He-Cutler gradient-corrected interpolation (the 5x5 filters of
  the ICASSP 2004 paper, MATLAB ``demosaic``; :func:`dynpnp_jax.demosaic.malvar`), the ``dpir``
  solver's start for this task;
* ``bilinear`` -- demosaicing: per-channel bilinear interpolation of the Bayer samples
  (:func:`dynpnp_jax.demosaic.bilinear`).
"""
from __future__ import annotations

import numpy as np

from . import demosaic
from .operators import Downsample
from .resize import imresize

__all__ = ["BASELINES", "TASKS", "run_baseline"]


def _input(problem) -> np.ndarray:
    y = np.asarray(problem.y, np.float32)
    s = int(problem.meta.get("scale", 1))
    if s > 1:
        y = np.repeat(np.repeat(y, s, axis=0), s, axis=1)
    return y


def _otf(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """The transfer function of ``k`` on an h x w periodic grid, centre (kh // 2, kw // 2)."""
    kh, kw = k.shape
    pad = np.zeros((h, w))
    pad[:kh, :kw] = k
    pad = np.roll(pad, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.fft2(pad)


QUANT_VAR = 1.0 / (12.0 * 255.0 ** 2)  # 8-bit rounding, as a noise variance ([0, 1] scale)


def _diff_weight(h: int, w: int) -> np.ndarray:
    """``|D_x|^2 + |D_y|^2`` of the forward differences on the (h, w) FFT grid (0 at DC)."""
    wy = 2 * np.pi * np.fft.fftfreq(h)
    wx = 2 * np.pi * np.fft.fftfreq(w)
    return (2 - 2 * np.cos(wy))[:, None] + (2 - 2 * np.cos(wx))[None, :]


def wiener_filter(y: np.ndarray, k: np.ndarray, noise: float) -> np.ndarray:
    """The power-law Wiener deconvolution of a periodic (H, W, C) image ``y`` (module docstring);
    ``noise`` on the 8-bit scale. float64 in, float64 out."""
    h, w, _ = y.shape
    s2 = (float(noise) / 255.0) ** 2 + QUANT_VAR
    otf = _otf(k, h, w)
    k2 = np.abs(otf) ** 2
    gx = np.roll(y, -1, axis=1) - y  # circular differences: the FFT's own model
    gy = np.roll(y, -1, axis=0) - y
    grad = float(np.mean(gx ** 2 + gy ** 2))
    # the image's gradient energy c; at least 1e-6 s^2 (a flat image: only the DC passes)
    c = max((grad - 4.0 * s2) / float(np.mean(k2)), 1e-6 * s2)
    filt = np.conj(otf) / (k2 + (s2 / c) * _diff_weight(h, w))
    return np.real(np.fft.ifft2(np.fft.fft2(y, axes=(0, 1)) * filt[..., None], axes=(0, 1)))


def _wiener(problem) -> np.ndarray:
    y = np.asarray(problem.y, np.float64)
    k = np.asarray(problem.meta["kernel"], np.float64)
    h, w, _ = y.shape
    if getattr((problem.params_extra or {}).get("A"), "boundary", "circular") == "unknown":
        # a frame: filter its even (mirror) extension, which is periodic without jumps
        y = np.concatenate([y, y[::-1]], 0)
        y = np.concatenate([y, y[:, ::-1]], 1)
    out = wiener_filter(y, k / k.sum(), float(problem.meta.get("noise", 0.0)))
    return out[:h, :w].astype(np.float32)


def _bicubic(problem) -> np.ndarray:
    import jax.numpy as jnp

    s = int(problem.meta["scale"])
    y = np.asarray(problem.y, np.float32)
    if problem.meta.get("protocol") == "imresize":  # the literature's baseline: imresize(y, s)
        return imresize(y.astype(np.float64), float(s)).astype(np.float32)
    op = Downsample.from_kernel(np.asarray(problem.meta["kernel"], np.float32), s, 1)
    return np.asarray(op.initial(jnp.asarray(y)[None]))[0].astype(np.float32)


def _interp(problem) -> np.ndarray:
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    y = np.asarray(problem.y, np.float64)
    m = np.asarray(problem.meta["mask"], bool)
    if m.ndim == 3:
        m = m[..., 0]
    known = np.argwhere(m)
    missing = np.argwhere(~m)
    out = y.copy()
    if len(missing) == 0 or len(known) == 0:
        return out.astype(np.float32)
    vals = y[m]  # (n_known, C): one triangulation for all channels
    lin = LinearNDInterpolator(known, vals)(missing)
    near = np.isnan(lin).any(axis=-1)
    if near.any():
        lin[near] = NearestNDInterpolator(known, vals)(missing[near])
    out[missing[:, 0], missing[:, 1]] = lin
    return out.astype(np.float32)


def _demosaic(fn):
    def run(problem) -> np.ndarray:
        cfa = demosaic.to_cfa(problem.y)
        return np.asarray(fn(cfa, problem.meta.get("pattern", "RGGB")), np.float32)
    return run


# mode -> (tasks it applies to, function, one-line description)
BASELINES = {
    "input": (("denoise", "deblur", "sr", "inpaint", "demosaic"), _input,
              "the degraded input itself"),
    "wiener": (("deblur",), _wiener, "Wiener deconvolution with the known kernel"),
    "bicubic": (("sr",), _bicubic, "bicubic up-sampling (MATLAB imresize)"),
    "interp": (("inpaint",), _interp, "linear interpolation of the missing pixels"),
    "mhc": (("demosaic",), _demosaic(demosaic.malvar),
            "Malvar-He-Cutler demosaicing (MATLAB demosaic)"),
    "bilinear": (("demosaic",), _demosaic(demosaic.bilinear), "bilinear demosaicing"),
}
TASKS = {mode: tasks for mode, (tasks, _, _) in BASELINES.items()}


def run_baseline(mode: str, problem) -> np.ndarray:
    """The baseline ``mode``'s output for ``problem`` (float32, the restored size)."""
    if mode not in BASELINES:
        raise ValueError(f"mode: unknown baseline {mode!r}; expected one of {sorted(BASELINES)}; "
                         "fix: pick one of those (wiener: deblur, bicubic: sr, interp: inpaint, "
                         "mhc and bilinear: demosaic)")
    need = {"wiener": "kernel", "bicubic": "kernel", "interp": "mask", "mhc": "pattern",
            "bilinear": "pattern"}.get(mode)
    meta = getattr(problem, "meta", None)
    if need is not None and (not isinstance(meta, dict) or need not in meta
                             or (mode == "bicubic" and "scale" not in meta)):
        raise ValueError(f"problem: the {mode!r} baseline needs the degradation's {need} in "
                         f"problem.meta ({mode} applies to {', '.join(TASKS[mode])} problems), got "
                         f"meta keys {sorted(meta) if isinstance(meta, dict) else meta!r}; fix: run "
                         f"it on a {TASKS[mode][0]} problem of the known-degradation protocol")
    return BASELINES[mode][1](problem)
