"""The effective noise level of a deblurring problem: sensor noise plus kernel (model) error.

A kernel estimated from a photograph is a little wrong everywhere; the data then misfit the
blur model by ``(k - k') * x``, which the loop is not told about. Told only the sensor noise,
DPIR's loop fits that misfit and rings. :func:`effective_noise_level` returns a level for the
loop that accounts for both, from the blurred picture and the kernel alone.

Why not the data residual: measured (docs/results/effective_noise.md), the residual
``y - k' * x`` of a fit with a wrong kernel is as small as with the right one -- a blur's
misfit ``(k - k') * x`` is itself (nearly) a blur ``k' * x'`` of some other image ``x'``, so a
fit absorbs it into ``x'`` as ringing instead of leaving it in the residual (the pilot
least-squares fit's residual over that of pure noise, :func:`pilot_residual`, stayed within
1.0-1.8 for kernels from exact to a Gaussian for a motion blur, exact kernels up to 1.25). What tells a wrong kernel
apart is the prior: the ringing it forces into the estimate.

The rule (its constants chosen on training images, ../shared/data/tune):

1. ``sigma_s``: the sensor noise, :func:`dynpnp_jax.noise_estimation.estimate_noise_level`
   (or given), at least ``floor``.
2. The pilot: DPIR's loop (``make_config('dpir', iters, noise_level=...)``, the given boundary
   and saturation handling) on a centre crop of ``y`` (at most ``crop`` pixels a side: a crop
   of a 'valid' blur is itself one), at ``sigma_s`` and at ``2 sigma_s``.
3. ``R = rms(x(sigma_s) - x(2 sigma_s)) / rms(valid(k * (x(sigma_s) - x(2 sigma_s))))``
   (:func:`spectral_ratio`): doubling the level removes detail from a restoration with the right
   kernel, and ringing besides from one with a wrong kernel. The detail passes the kernel, the
   ringing lies at the kernel's weak frequencies and does not: a wrong kernel raises ``R``.
   (``D = rms(x(sigma_s) - x(2 sigma_s)) / sigma_s`` is recorded as well; it depends more on the
   image's texture.)
4. ``sigma_eff = sigma_s * clip((R / R0 * (sigma_s / 2.55) ** GAMMA) ** BETA, 1, MAX_RATIO)``.

Cost: two runs of the loop on the crop (on the shared 2-core CPU about 2 x 3-10 s at 256x256
plus compilation).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from .networks import Network
from .noise_estimation import estimate_noise_level
from .operators import Blur
from .solver import make_config, restore
from .weights import load_network

__all__ = ["effective_noise_level", "pilot_residual", "spectral_ratio", "level_ratio",
           "EffectiveNoise", "R0", "BETA", "GAMMA", "MAX_RATIO", "CROP"]

#: rule constants, chosen on the training images (docs/results/effective_noise.md)
R0 = 5.5
BETA = 3.0
GAMMA = 0.0
MAX_RATIO = 4.0
#: the pilot's crop side (pixels)
CROP = 256
#: the pilot loop's iterations (the restore command's deblurring default)
ITERS = 8
#: conjugate-gradient steps of :func:`pilot_residual`'s least-squares fit
CG_ITERS = 40
SIGMA_1 = 49.0 / 255.0
RHO_WEIGHT = 0.23
NOISE_SEED = 20240


@dataclasses.dataclass(frozen=True)
class EffectiveNoise:
    """What :func:`effective_noise_level` found (levels in 8-bit units)."""
    sigma: float                      # the effective level
    sensor: float                     # the sensor level the rule started from (after the floor)
    sensor_estimate: Optional[float]  # the estimator's output (None when given)
    d: float                          # rms(x(s) - x(2 s)) / s on the crop
    r: float                          # spectral_ratio(x(s), x(2 s), k) on the crop
    ratio: float                      # sigma / sensor
    crop: tuple                       # the pilot crop's (height, width)
    diverged: bool = False            # the pilot at the sensor level diverged (ratio: max)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def spectral_ratio(x1, x2, kernel) -> float:
    """``rms(x1 - x2) / rms(valid(k * (x1 - x2)))`` on the crop (``x1``, ``x2``: ``(H, W, C)``
    restorations at the sensor level and twice it): detail that doubling the level removes
    passes the kernel, ringing (at the kernel's weak frequencies) does not."""
    from scipy.signal import fftconvolve
    k = np.asarray(kernel, np.float64)
    df = np.asarray(x1, np.float64) - np.asarray(x2, np.float64)
    if df.ndim == 2:
        df = df[..., None]
    bd = np.stack([fftconvolve(df[..., c], k, mode="valid") for c in range(df.shape[-1])], -1)
    kh, kw = k.shape
    inner = df[kh - 1 - kh // 2:df.shape[0] - kh // 2, kw - 1 - kw // 2:df.shape[1] - kw // 2]
    den = float(np.sqrt(np.mean(bd ** 2)))
    return float(np.sqrt(np.mean(inner ** 2)) / den) if den > 0 else float("inf")


def level_ratio(r: float, sensor: float = 2.55, *, r0: Optional[float] = None,
                beta: Optional[float] = None, gamma: Optional[float] = None,
                max_ratio: Optional[float] = None) -> float:
    """``clip((r / r0 * (sensor / 2.55) ** gamma) ** beta, 1, max_ratio)``: the rule's factor on
    the sensor level (8-bit units) from the pilot's :func:`spectral_ratio` ``r``."""
    r0 = R0 if r0 is None else float(r0)
    beta = BETA if beta is None else float(beta)
    gamma = GAMMA if gamma is None else float(gamma)
    max_ratio = MAX_RATIO if max_ratio is None else float(max_ratio)
    if not np.isfinite(r):
        return max_ratio
    f = max(r, 0.0) / r0 * (max(float(sensor), 1e-3) / 2.55) ** gamma
    return float(np.clip(f ** beta, 1.0, max_ratio))


def _check(y, k):
    y = np.asarray(y)
    if y.ndim == 4:
        if y.shape[0] != 1:
            raise ValueError(f"y: expected one picture, (H, W, C) or (1, H, W, C); got shape "
                             f"{y.shape}; fix: pass the pictures one at a time")
        y = y[0]
    if y.ndim == 2:
        y = y[..., None]
    if y.ndim != 3 or y.shape[-1] not in (1, 3):
        raise ValueError(f"y: expected a picture (H, W), (H, W, C) or (1, H, W, C) with C = 1 "
                         f"or 3; got shape {y.shape}")
    k = np.asarray(k, np.float64)
    if k.ndim != 2:
        raise ValueError(f"kernel: expected a 2-D (kh, kw) array, got shape {k.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y: contains NaN or Inf; expected finite values on the [0, 1] scale")
    if not np.isfinite(k).all() or k.sum() <= 0:
        raise ValueError("kernel: expected finite values with a positive sum (a blur kernel)")
    if k.shape[0] > y.shape[0] or k.shape[1] > y.shape[1]:
        raise ValueError(f"kernel: a {k.shape[0]}x{k.shape[1]} kernel is larger than the "
                         f"{y.shape[0]}x{y.shape[1]} picture")
    return y, k / k.sum()


def _centre_crop(y: np.ndarray, side: int) -> np.ndarray:
    h, w = y.shape[:2]
    ch, cw = min(h, side), min(w, side)
    i, j = (h - ch) // 2, (w - cw) // 2
    return y[i:i + ch, j:j + cw]


def effective_noise_level(y, kernel, *, sensor: Optional[float] = None, floor: float = 0.0,
                          prior=None, boundary: str = "unknown", saturation: str = "off",
                          crop: int = CROP, iters: int = ITERS, r0: Optional[float] = None,
                          beta: Optional[float] = None, gamma: Optional[float] = None,
                          max_ratio: Optional[float] = None) -> EffectiveNoise:
    """The loop's noise level for deblurring ``y`` with an (estimated) ``kernel``.

    Args:
      y: the blurred picture on the [0, 1] scale, ``(H, W)``, ``(H, W, C)`` or ``(1, H, W, C)``
        (C = 1 or 3).
      kernel: ``(kh, kw)``, normalised here to sum 1.
      sensor: the sensor noise std in 8-bit units; ``None``: estimated
        (:func:`~dynpnp_jax.noise_estimation.estimate_noise_level`).
      floor: the least sensor level (8-bit units), e.g. the restore command's 1/255.
      prior: a :class:`~dynpnp_jax.Network` or name (default ``ffdnet-color`` / ``ffdnet-gray``
        by the channels).
      boundary, saturation: as :func:`dynpnp_jax.make_config` (the restore command's
        ``'unknown'`` and ``'auto'``).
      crop: the pilot's centre crop side (at least the kernel's size plus 16).
      iters: the pilot loop's iterations.
      r0, beta, gamma, max_ratio: the rule's constants (default :data:`R0`, :data:`BETA`,
        :data:`GAMMA`, :data:`MAX_RATIO`).

    Returns:
      :class:`EffectiveNoise` (``.sigma``: the level in 8-bit units; ``.sensor``: the level it
      started from; ``.r``: the pilot's statistic).

    Raises:
      ValueError: non-finite input, a wrong rank or channel count, a kernel larger than the
        picture or with a non-positive sum, a negative or non-finite sensor level or floor.
    """
    y3, k = _check(y, kernel)
    y3 = np.asarray(y3, np.float32)
    est = None
    if sensor is None:
        est = float(estimate_noise_level(y3[None])[0]) * 255.0
        sensor = est
    sensor, floor = float(sensor), float(floor)
    if not np.isfinite(sensor) or sensor < 0:
        raise ValueError(f"sensor: expected a finite level >= 0 in 8-bit units, got {sensor}")
    if not np.isfinite(floor) or floor < 0:
        raise ValueError(f"floor: expected a finite level >= 0 in 8-bit units, got {floor}")
    base = max(sensor, floor, 0.255)  # DPIR's schedule ends at 0.255/255 at the least
    side = max(int(crop), max(k.shape) + 16)
    yc = _centre_crop(y3, side)
    if not isinstance(prior, Network):
        prior = load_network(prior or ("ffdnet-color" if y3.shape[-1] == 3 else "ffdnet-gray"))
    op = Blur.from_kernel(k.astype(np.float32), 1, boundary=boundary)

    def run(level):
        cfg = make_config("dpir", int(iters), noise_level=level / 255.0, boundary=boundary,
                             saturation=saturation, keep_images=False)
        out, _ = restore({"prior": prior, "A": op}, yc[None], cfg)
        return np.asarray(out, np.float64)[0]

    consts = dict(r0=r0, beta=beta, gamma=gamma, max_ratio=max_ratio)
    try:
        x1 = run(base)
    except FloatingPointError:
        ratio = level_ratio(np.inf, base, **consts)
        return EffectiveNoise(sigma=base * ratio, sensor=base, sensor_estimate=est,
                              d=float("inf"), r=float("inf"), ratio=ratio,
                              crop=tuple(yc.shape[:2]), diverged=True)
    try:
        x2 = run(2 * base)
    except FloatingPointError:
        x2 = None
    if x2 is None:
        d = r = float("inf")
    else:
        d = float(np.sqrt(np.mean((x1 - x2) ** 2)) * 255.0 / base)
        r = spectral_ratio(x1, x2, k)
    ratio = level_ratio(r, base, **consts)
    return EffectiveNoise(sigma=base * ratio, sensor=base, sensor_estimate=est, d=d, r=r,
                          ratio=ratio, crop=tuple(yc.shape[:2]))


# ------------------------------------------------------------ the data residual (measured, unused)
def _fftconv(a: np.ndarray, k: np.ndarray, mode: str) -> np.ndarray:
    from scipy.signal import fftconvolve
    return np.stack([fftconvolve(a[..., c], k, mode=mode) for c in range(a.shape[-1])], -1)


def _fit_residual(y: np.ndarray, k: np.ndarray, rho: float, iters: int) -> np.ndarray:
    """``y - valid(k * x1)``, ``x1`` the CG solution of ``(A^T A + rho) x = A^T y + rho x0``
    with ``x0`` = ``y`` edge-padded by the kernel's reach (DPIR's first x-step on a frame)."""
    kh, kw = k.shape
    kf = k[::-1, ::-1]
    x0 = np.pad(y, ((kh - 1 - kh // 2, kh // 2), (kw - 1 - kw // 2, kw // 2), (0, 0)),
                mode="edge")

    def normal(x):
        return _fftconv(_fftconv(x, k, "valid"), kf, "full") + rho * x

    b = _fftconv(y, kf, "full") + rho * x0
    x = x0.copy()
    r = b - normal(x)
    p = r.copy()
    rr = float(np.vdot(r, r))
    stop = 1e-10 * float(np.vdot(b, b))
    for _ in range(int(iters)):
        if rr <= stop:
            break
        ap = normal(p)
        alpha = rr / float(np.vdot(p, ap))
        x += alpha * p
        r -= alpha * ap
        rr_new = float(np.vdot(r, r))
        p = r + (rr_new / rr) * p
        rr = rr_new
    return y - _fftconv(x, k, "valid")


def pilot_residual(y, kernel, sigma: float, *, iters: int = CG_ITERS) -> tuple[float, float]:
    """The data-residual statistic this module measured and does NOT use (see the module
    docstring): the residual std of DPIR's first x-step (``rho = 0.23 (sigma / (49/255))^2``,
    a 'valid' frame, CG) for ``y`` and for white noise of std ``sigma`` (both [0, 1] scale)."""
    y, k = _check(y, kernel)
    y = np.asarray(y, np.float64)
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma: expected a finite level > 0 on the [0, 1] scale, got {sigma}")
    rho = RHO_WEIGHT * (sigma / SIGMA_1) ** 2
    r = _fit_residual(y, k, rho, iters)
    rn = _fit_residual(np.random.RandomState(NOISE_SEED).normal(0.0, sigma, y.shape), k, rho,
                       iters)
    return float(r.std()), float(rn.std())
