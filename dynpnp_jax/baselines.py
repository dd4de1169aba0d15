"""Classical baselines for the known-degradation protocol (no network, no solver).

Each baseline maps a :class:`~dynpnp_jax.data.protocols.Problem` to a float32 (H, W, C) image of
the restored size, from what the problem's ``meta`` says about the degradation (``kernel``,
``scale``, ``mask``, ``noise`` on the 8-bit scale). The evaluation CLI runs them beside the
solver's methods, as config methods ``{'mode': NAME}``:

* ``input``  -- the degraded image itself (super-resolution: each LR pixel repeated ``scale``
  times in both directions, so it can be scored at the HR size);
* ``wiener`` -- deblurring: the Wiener filter of the circular blur, ``X = conj(K) Y / (|K|^2 +
  NSR)`` per channel, with ``NSR = max(noise, 0.255 / 255) ^ 2 / max(var(y) - noise ^ 2, 1e-6)``
  (noise and variance in the same [0, 1] units: the noise-to-signal power ratio of white noise
  and a white signal of the observed variance); the kernel is centred as ``operators.Blur`` centres
  it (``(kh // 2, kw // 2)``); for a frame with unknown boundaries (``Blur(boundary='unknown')``)
  it filters the frame's mirror extension (2H x 2W, periodic without jumps) and keeps the frame;
* ``bicubic`` -- super-resolution: Keys bicubic up-sampling (MATLAB ``imresize``'s cubic) on
  the degradation's own grid, ``operators.Downsample.initial`` (the ``dpir`` solver's start):
  for the DPIR bicubic kernels that is ``imresize(y, s)``; for a centred kernel the grid is
  shifted by (s - 1) / 2 HR pixels, as DPIR's ``shift_pixel`` does;
* ``interp`` -- inpainting: the missing pixels linearly interpolated from the observed ones
  (Delaunay, ``scipy.interpolate.griddata``), nearest observed value outside their hull.
"""
from __future__ import annotations

import numpy as np

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


def _wiener(problem) -> np.ndarray:
    y = np.asarray(problem.y, np.float64)
    k = np.asarray(problem.meta["kernel"], np.float64)
    h, w, _ = y.shape
    noise = max(float(problem.meta.get("noise", 0.0)), 0.255) / 255.0
    nsr = noise ** 2 / max(float(np.var(y)) - noise ** 2, 1e-6)
    if getattr((problem.params_extra or {}).get("A"), "boundary", "circular") == "unknown":
        # a frame: filter its even (mirror) extension, which is periodic without jumps
        y = np.concatenate([y, y[::-1]], 0)
        y = np.concatenate([y, y[:, ::-1]], 1)
    otf = _otf(k, *y.shape[:2])
    filt = np.conj(otf) / (np.abs(otf) ** 2 + nsr)
    out = np.real(np.fft.ifft2(np.fft.fft2(y, axes=(0, 1)) * filt[..., None], axes=(0, 1)))
    return out[:h, :w].astype(np.float32)


def _bicubic(problem) -> np.ndarray:
    import jax.numpy as jnp

    from .operators import Downsample

    s = int(problem.meta["scale"])
    y = np.asarray(problem.y, np.float32)
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


# mode -> (tasks it applies to, function, one-line description)
BASELINES = {
    "input": (("denoise", "deblur", "sr", "inpaint"), _input, "the degraded input itself"),
    "wiener": (("deblur",), _wiener, "Wiener deconvolution with the known kernel"),
    "bicubic": (("sr",), _bicubic, "bicubic up-sampling (MATLAB imresize)"),
    "interp": (("inpaint",), _interp, "linear interpolation of the missing pixels"),
}
TASKS = {mode: tasks for mode, (tasks, _, _) in BASELINES.items()}


def run_baseline(mode: str, problem) -> np.ndarray:
    """The baseline ``mode``'s output for ``problem`` (float32, the restored size)."""
    if mode not in BASELINES:
        raise ValueError(f"unknown baseline {mode!r}; expected one of {sorted(BASELINES)}")
    return BASELINES[mode][1](problem)
