"""Kernel self-calibration: the paper's idea (an A that is adapted inside the loop) where it pays.

A user hands the solver a blur kernel that is not quite right (estimated, measured on another
lens, a Gaussian guess, or nothing at all: the identity). Two ways to adapt it:

* :func:`a_step_kernel` -- the paper's A-step made physical: a gradient step on the A-loss
  ``||k * x + g(y) - y||^2`` with respect to the kernel, projected back onto kernels (``k >= 0``,
  ``sum k = 1``, inside the given support). Registered as ``a_step='kernel'`` in
  :mod:`dynpnp_jax.steps`; it re-estimates ``k`` by least squares on the current estimate, which
  is the estimate's own blur as much as the true one, so it tends to *hurt* (measured in
  docs/results/calibration.md).
* the ``calibrated`` mode of :func:`dynpnp_jax.restore` -- a kernel family around the given
  kernel (rotation, scale, extra Gaussian width: :func:`warp_kernel`) whose parameters are chosen
  inside the jitted program by a staged search (:func:`search`), then the full loop runs with the
  chosen kernel. Two criteria:

  - ``likelihood`` (default, :func:`likelihood_score`): the marginal likelihood of ``y`` given
    the kernel, the image integrated out under a Gaussian power-law prior (Levin et al.: MAP_k,
    not MAP_{x,k}). Closed form per frequency for a circular blur, no network run: the search
    costs about a fifth of a ``dpir`` run. The given kernel is kept unless the best candidate
    beats it by ``LIKELIHOOD_MARGIN`` nats per pixel (set on training images by
    :mod:`dynpnp_jax.calibration_margins`).
    :func:`estimate_kernel` runs this search alone.
  - ``sparsity`` (the first version, kept for comparison): for each candidate ``k_j`` a cheap
    DPIR run gives ``x_j``, scored by :func:`calibration_score`: the normalised sparsity of
    ``x_j``'s gradients ``||grad x||_1 / ||grad x||_2`` (Krishnan et al., CVPR 2011) plus a
    discrepancy-principle penalty ``GAMMA |log(mean((k_j * x_j - y)^2) / sigma^2)|``. The DPIR
    loop fits the data almost equally well with any nearby kernel, so the residual barely
    separates candidates, and the sparsity measure drifts; it fails on camera-shake kernels and
    costs 9x ``dpir`` (docs/results/calibration.md).

Everything is pure JAX: kernels are resampled with bilinear interpolation
(``jax.scipy.ndimage.map_coordinates``), so the family is differentiable in its parameters.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .boundary import periodic_component
from .operators import _otf, _per_image
from .validation import check_images

Array = jax.Array

PARAMS = ("scale", "angle", "width")  # the family's parameters; identity: (1, 0, 0)


# ------------------------------------------------------------------------------ kernel family
def _gauss_taps(width, radius: int) -> Array:
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * t ** 2 / (jnp.square(width) + 1e-6))
    return w / jnp.sum(w)


def warp_kernel(k: Array, size: int, scale=1.0, angle=0.0, width=0.0) -> Array:
    """The kernel ``k`` (``(kh, kw)``, centre ``(kh//2, kw//2)``) on a ``size x size`` grid
    (centre ``size//2``), stretched by ``scale``, rotated by ``angle`` degrees (counter-clockwise)
    and blurred by a Gaussian of std ``width`` pixels; non-negative, sums to 1.

    ``warp_kernel(k, size)`` with the defaults re-centres ``k`` on the larger grid exactly.
    Differentiable in ``scale``, ``angle`` and ``width`` (traced scalars)."""
    kh, kw = k.shape
    c = size // 2
    u = jnp.arange(size, dtype=jnp.float32) - c
    uu, vv = jnp.meshgrid(u, u, indexing="ij")  # output offsets (row, col)
    th = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    s = jnp.asarray(scale, jnp.float32)
    # source offset = R(-theta) (u / s): rotate the kernel by +theta
    cos, sin = jnp.cos(th), jnp.sin(th)
    r_src = (cos * uu - sin * vv) / s + kh // 2
    c_src = (sin * uu + cos * vv) / s + kw // 2
    out = jax.scipy.ndimage.map_coordinates(k.astype(jnp.float32), [r_src, c_src], order=1,
                                            mode="constant", cval=0.0)
    radius = size // 2
    taps = _gauss_taps(width, radius)
    pad = jnp.pad(out, radius)
    out = jax.vmap(lambda row: jnp.convolve(row, taps, mode="valid"))(pad)  # along columns
    out = jax.vmap(lambda col: jnp.convolve(col, taps, mode="valid"), in_axes=1, out_axes=1)(out)
    out = jnp.maximum(out, 0.0)
    return out / jnp.maximum(jnp.sum(out), 1e-12)


def center_kernel(k, size: int) -> np.ndarray:
    """``k`` zero-padded (or cropped) to ``size x size`` keeping its centre ``(kh//2, kw//2)``."""
    k = np.asarray(k, np.float64)
    out = np.zeros((size, size))
    c = size // 2
    kh, kw = k.shape
    for i in range(kh):
        for j in range(kw):
            r, q = i - kh // 2 + c, j - kw // 2 + c
            if 0 <= r < size and 0 <= q < size:
                out[r, q] += k[i, j]
    return out


def kernel_distance(k: Array, k_true: Array) -> Array:
    """RMS difference of two kernel batches ``(B, S, S)`` after centring both on one grid,
    relative to the true kernel's RMS norm."""
    size = max(k.shape[-1], k_true.shape[-1])
    a = jax.vmap(lambda z: warp_kernel(z, size))(k)
    b = jax.vmap(lambda z: warp_kernel(z, size))(k_true)
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=(1, 2)) / jnp.sum(b ** 2, axis=(1, 2)))


# ------------------------------------------------------------------------------ projected A-step
def project_simplex(k: Array) -> Array:
    """Euclidean projection of each ``(B, kh, kw)`` kernel onto ``{k >= 0, sum k = 1}``."""
    b = k.shape[0]
    flat = k.reshape(b, -1)
    srt = -jnp.sort(-flat, axis=1)
    css = jnp.cumsum(srt, axis=1) - 1.0
    idx = jnp.arange(1, flat.shape[1] + 1, dtype=flat.dtype)
    cond = srt - css / idx > 0
    rho = jnp.sum(cond, axis=1, keepdims=True)
    theta = jnp.take_along_axis(css, rho - 1, axis=1) / rho.astype(flat.dtype)
    return jnp.maximum(flat - theta, 0.0).reshape(k.shape)


def a_step_kernel(op, x, v, y, g, alpha):
    """The paper's A-step on a blur kernel, kept physical: ``k <- P(k - alpha grad_k L)`` with
    ``L = ||k * x + g(y) - y||^2`` and ``P`` the projection onto non-negative kernels summing to
    one on the given support. ``alpha`` is per iteration; 0 keeps the kernel."""
    grad = op.loss_grad(x, op(x) + g - y)
    k = op.k - _per_image(alpha, 3) * grad.k
    return op.replace(k=project_simplex(k))


# ------------------------------------------------------------------------------ search
GAMMA = 4.0  # weight of the discrepancy penalty in calibration_score
TAU = None   # None: two-sided penalty |log(r / sigma^2)|; a number: one-sided hinge at 1 + TAU


def calibration_score(residual: Array, x: Array, noise_var, margin: int,
                      weight: Optional[Array] = None) -> Array:
    """Per image: ``log(||grad x||_1 / ||grad x||_2) + GAMMA |log(r / noise_var)|`` with
    ``r = mean(residual^2)``, on the interior (``margin`` pixels left out on every side); lower is
    better. ``weight`` (0/1, the shape of ``residual``): ``r`` is the mean over the values where
    it is 1 only (the unsaturated values of ``y`` with ``saturation`` on). (With ``TAU`` set, the
    discrepancy term is the one-sided hinge ``max(0, log(r / noise_var) - log(1 + TAU))``:
    measured worse on Set3G, see docs/results/calibration.md.)"""
    sl = (slice(None), slice(margin, x.shape[1] - margin), slice(margin, x.shape[2] - margin))
    r, x = residual[sl], x[sl]
    if weight is not None:  # the mean of r * r over the weighted values: r scaled to match
        w = jnp.broadcast_to(weight, residual.shape)[sl]
        frac = jnp.sum(w, axis=(1, 2, 3), keepdims=True) / w[0].size
        r = w * r / jnp.sqrt(jnp.maximum(frac, 1e-6))
    gx, gy = jnp.diff(x, axis=1), jnp.diff(x, axis=2)
    l1 = jnp.sum(jnp.abs(gx), axis=(1, 2, 3)) + jnp.sum(jnp.abs(gy), axis=(1, 2, 3))
    l2 = jnp.sqrt(jnp.sum(gx * gx, axis=(1, 2, 3)) + jnp.sum(gy * gy, axis=(1, 2, 3)))
    ratio = jnp.mean(r * r, axis=(1, 2, 3)) / noise_var
    excess = (jnp.abs(jnp.log(ratio)) if TAU is None
              else jnp.maximum(jnp.log(ratio) - jnp.log1p(TAU), 0.0))
    return jnp.log(l1 / jnp.maximum(l2, 1e-12)) + GAMMA * excess
# ------------------------------------------------------------------------------ marginal likelihood
# nats per pixel: the equal-error threshold on training images (python -m dynpnp_jax.calibration_margins
# --limit 10: 10 tune images x the 10 training kernels x noise 2.55 / 7.65; 16 % error each way)
LIKELIHOOD_MARGIN = 0.0029
# the same on frames with unknown boundaries, scored on their periodic component (...
# --boundary unknown: 18 % each way; a raised-cosine taper window instead gave 0.0034 and 19 %)
LIKELIHOOD_MARGIN_FRAME = 0.0031
QUANT_VAR = 1.0 / (12.0 * 255.0 ** 2)  # 8-bit rounding of the observation, as a noise variance
ALPHA_RANGE = (0.2, 3.0)  # the image spectrum's exponent a (natural images: about 1)
NEWTON_STEPS = 12


def _freq_weight(h: int, w: int) -> Array:
    """``|D_x|^2 + |D_y|^2`` of the forward differences on the (H, W) FFT grid (0 at DC)."""
    wy = 2 * jnp.pi * jnp.fft.fftfreq(h)
    wx = 2 * jnp.pi * jnp.fft.fftfreq(w)
    return (2 - 2 * jnp.cos(wy))[:, None] + (2 - 2 * jnp.cos(wx))[None, :]


def likelihood_score(y: Array, k: Array, noise_var, frame: bool = False) -> Array:
    """Per image, the negative log marginal likelihood of ``y`` under kernel ``k`` (lower is
    better), per pixel, with the image integrated out (Levin et al., CVPR 2009 / 2011: MAP_k, not
    MAP_{x,k}).

    Model: ``y = k * x + n`` with a circular blur, white noise of variance ``noise_var`` (+ the
    8-bit rounding variance ``QUANT_VAR``) and a stationary Gaussian image whose power spectrum
    falls as a power law of frequency, ``P(w) = c / (|D_x(w)|^2 + |D_y(w)|^2)^a`` (natural images:
    ``a`` near 1). In the Fourier domain every frequency is independent:
    ``-log p(y | k) = sum_w |Y(w)|^2 / (N s(w)) + log s(w)`` with ``s = |K(w)|^2 P(w) + noise_var``
    (DC left out). The image's own statistics ``log c`` and ``a`` are maximised out per candidate
    (a coarse grid for ``log c``, then damped Newton steps in both). No network runs: a few FFTs
    and about 25 passes over the spectrum per candidate, so every candidate kernel is scored on
    the whole image.

    A frame cut out of a larger scene (``Blur(boundary='unknown')``) is not periodic: with
    ``frame=True`` it is replaced by its periodic component
    (:func:`dynpnp_jax.boundary.periodic_component`: the smooth part that carries the edge jumps
    removed, all detail kept). On training frames this separates right from wrong kernels
    slightly better than a window falling to zero at the edges (equal-error rate 18 % against
    19 %, docs/results/calibration.md).

    Args: ``y`` (B, H, W, C); ``k`` (B, kh, kw) kernels; ``noise_var`` scalar or (B,);
    ``frame`` (static bool). Returns (B,)."""
    b, h, w, ch = y.shape
    n = h * w
    if frame:
        yc = periodic_component(y)
    else:
        yc = y - jnp.mean(y, axis=(1, 2), keepdims=True)
    y2 = jnp.sum(jnp.abs(jnp.fft.fft2(yc, axes=(1, 2))) ** 2, axis=-1) / n  # (B, H, W)
    k2 = jnp.abs(_otf(k.astype(jnp.float32), h, w, real=False)[..., 0]) ** 2  # (B, H, W)
    d = _freq_weight(h, w)
    keep = (d > 0).astype(jnp.float32)[None]
    logd = jnp.log(jnp.where(d > 0, d, 1.0))[None]
    var = jnp.reshape(jnp.asarray(noise_var, jnp.float32), (-1, 1, 1)) + QUANT_VAR
    col = lambda v: v[:, None, None]  # noqa: E731

    def value(t, a):
        s = k2 * jnp.exp(col(t) - col(a) * logd) + var
        return jnp.sum(keep * (y2 / s + ch * jnp.log(s)), axis=(1, 2))

    def derivs(t, a):  # gradient and Hessian in (log c, alpha)
        q = k2 * jnp.exp(col(t) - col(a) * logd)
        s = q + var
        d1 = ch / s - y2 / s ** 2                  # d phi / ds
        d2 = 2 * y2 / s ** 3 - ch / s ** 2         # d2 phi / ds2
        w1 = keep * d1 * q
        w2 = keep * (d2 * q * q + d1 * q)
        sm = lambda z: jnp.sum(z, axis=(1, 2))  # noqa: E731
        g = jnp.stack([sm(w1), -sm(w1 * logd)], -1)
        hh = jnp.stack([jnp.stack([sm(w2), -sm(w2 * logd)], -1),
                        jnp.stack([-sm(w2 * logd), sm(w2 * logd * logd)], -1)], -2)
        return g, hh

    a = jnp.ones((b,))
    grid = jnp.linspace(jnp.log(1e-7), jnp.log(1.0), 15)
    vals = jax.vmap(lambda t: value(jnp.full((b,), t), a))(grid)  # (G, B)
    t = grid[jnp.argmin(vals, axis=0)]
    v = jnp.min(vals, axis=0)
    def newton(_, carry):
        t, a, v, lam = carry
        g, hh = derivs(t, a)
        scale = jnp.abs(hh[:, 0, 0]) + jnp.abs(hh[:, 1, 1]) + 1e-12
        hd = hh + (lam * scale)[:, None, None] * jnp.eye(2)
        step = jnp.clip(jnp.linalg.solve(hd, g[..., None])[..., 0], -1.0, 1.0)
        t_new, a_new = t - step[:, 0], jnp.clip(a - step[:, 1], ALPHA_RANGE[0], ALPHA_RANGE[1])
        v_new = value(t_new, a_new)
        ok = v_new < v  # accept only improvements (Levenberg damping otherwise)
        return (jnp.where(ok, t_new, t), jnp.where(ok, a_new, a), jnp.where(ok, v_new, v),
                jnp.where(ok, lam * 0.3, lam * 10.0))

    t, a, v, _ = jax.lax.fori_loop(0, NEWTON_STEPS, newton, (t, a, v, jnp.full((b,), 1e-3)))
    return v / (n * ch)


def search(score, b: int, stages, grid: int, margin: float = 0.0, sequential: bool = False) -> dict:
    """The staged search over the kernel family, per image: ``score(theta) -> (B,)`` (lower is
    better) for ``theta = {'scale', 'angle', 'width'}`` of ``(B,)`` arrays; ``stages`` as
    :func:`default_stages`. A stage moves a parameter only where its best candidate beats the
    current score; at the end the given kernel (1, 0, 0) is kept unless the chosen one is better
    by more than ``margin``. ``sequential``: candidates one at a time (``lax.map``: the memory of
    one candidate) rather than all at once (``vmap``).

    Returns ``theta`` plus ``gain`` (given score - chosen score; 0 when kept) and ``kept``."""
    theta0 = {"scale": jnp.ones((b,)), "angle": jnp.zeros((b,)), "width": jnp.zeros((b,))}
    theta = theta0
    given_score = best_score = score(theta0)
    idx = jnp.arange(b)
    for param, values in stages:
        if values == "refine":
            vals = refine_values(param, theta[param], grid)
        else:
            vals = jnp.broadcast_to(jnp.asarray(values, jnp.float32), (b, len(values)))
        one = lambda v, th=theta, pr=param: score({**th, pr: v})  # noqa: E731
        scores = jax.lax.map(one, vals.T) if sequential else jax.vmap(one, in_axes=1)(vals)
        best = jnp.argmin(scores, axis=0)  # (G, B) -> (B,)
        new = scores[best, idx]
        better = new < best_score
        theta = {**theta, param: jnp.where(better, vals[idx, best], theta[param])}
        best_score = jnp.where(better, new, best_score)
    keep = given_score - best_score <= margin
    theta = {p: jnp.where(keep, theta0[p], v) for p, v in theta.items()}
    return {**theta, "gain": jnp.where(keep, 0.0, given_score - best_score), "kept": keep}


def default_stages(given_is_delta: bool, grid: int = 9, criterion: str = "likelihood") -> tuple:
    """The stages of the search: ``((param, values), ...)``.

    From a delta (no kernel known) the family is a Gaussian of unknown width; otherwise the given
    kernel's scale, then its rotation, then finer grids. The ``likelihood`` criterion costs no
    network runs, so it searches finer grids (at least 9 points), rotation first, by coordinate
    descent (rotation, scale, rotation, then a finer grid of each)."""
    if criterion == "likelihood":
        g = max(grid, 9)
        if given_is_delta:
            return (("width", tuple(float(v) for v in np.linspace(0.0, 4.0, 2 * g - 1))),
                    ("width", "refine"))
        angles = tuple(float(v) for v in np.linspace(-20.0, 20.0, g))
        # rotation first (a rotated kernel otherwise shrinks in the scale stage), then
        # coordinate descent: scale, rotation again, and finer grids of both
        return (("angle", angles), ("scale", tuple(float(v) for v in np.geomspace(0.6, 1 / 0.6, g))),
                ("angle", angles), ("scale", "refine"), ("angle", "refine"))
    if given_is_delta:
        return (("width", tuple(float(v) for v in np.linspace(0.0, 3.2, grid))),
                ("width", "refine"))
    return (("scale", tuple(float(v) for v in np.geomspace(0.6, 1 / 0.6, grid))),
            ("angle", tuple(float(v) for v in np.linspace(-20.0, 20.0, grid))),
            ("scale", "refine"))


def refine_values(param: str, center: Array, grid: int) -> Array:
    """A finer grid around the current value (per image): ``(B, grid)``."""
    t = jnp.linspace(-1.0, 1.0, grid)
    if param == "scale":
        return center[:, None] * jnp.power(1.0 / 0.6, t / 8.0)[None]  # +- one coarse step
    if param == "angle":
        return center[:, None] + 2.5 * t[None]
    return jnp.maximum(center[:, None] + 0.2 * t[None], 0.0)  # width


# ------------------------------------------------------------------------------ y alone
def support_size(k_shape, stages) -> int:
    """The calibrated kernel's grid: the given kernel's size times the widest scale searched, plus
    15 % for rotations, odd, at least 25."""
    widest = max([max(v) if v != "refine" else 1.0 for p, v in stages if p == "scale"] or [1.0])
    size = max(25, int(np.ceil(max(k_shape) * widest * 1.15)))
    return size + 1 - size % 2


def is_delta(k) -> bool:
    kk = np.asarray(k, np.float64)
    return bool(np.allclose(kk[..., kk.shape[-2] // 2, kk.shape[-1] // 2], 1.0, atol=1e-6))


# bounds of the search (each candidate is one likelihood evaluation of the whole image: a few
# FFTs and about 25 passes over the spectrum)
MAX_GRID = 64          # points per stage: the default 9 already resolves 5 degrees and 7 % in
                       # scale before the refine stages; the cost grows linearly with the grid
MAX_STAGE_VALUES = 256  # candidates of one explicit stage
MAX_STAGES = 32
SCALE_RANGE = (0.1, 10.0)  # a stretch outside resamples the kernel from < 1 pixel or off its grid
MAX_WIDTH = 50.0           # extra Gaussian width (pixels): wider is a flat box on any support


def check_stages(stages, arg: str = "stages") -> tuple:
    """``stages`` as a hashable tuple ``((param, values or 'refine'), ...)`` (lists are converted),
    checked: ``param`` in :data:`PARAMS`, ``values`` 1..``MAX_STAGE_VALUES`` finite numbers (scales
    in ``SCALE_RANGE``, widths in ``[0, MAX_WIDTH]``) or ``'refine'``; at most ``MAX_STAGES``."""
    form = ("a tuple of (param, values) stages, e.g. (('angle', (-10.0, 0.0, 10.0)), "
            "('scale', 'refine'))")
    if isinstance(stages, (str, bytes)) or not isinstance(stages, (tuple, list)):
        raise ValueError(f"{arg}: expected {form}, got {stages!r}; fix: pass such a tuple, or None "
                         "for the default stages")
    if not 1 <= len(stages) <= MAX_STAGES:
        raise ValueError(f"{arg}: expected 1..{MAX_STAGES} stages, got {len(stages)}; fix: pass "
                         "None for the default stages")
    out = []
    for i, st in enumerate(stages):
        if isinstance(st, (str, bytes)) or not isinstance(st, (tuple, list)) or len(st) != 2:
            raise ValueError(f"{arg}[{i}]: expected a (param, values) pair, got {st!r}; fix: e.g. "
                             "('angle', (-10.0, 0.0, 10.0))")
        param, vals = st
        if param not in PARAMS:
            raise ValueError(f"{arg}[{i}]: unknown stage parameter {param!r}; expected one of "
                             f"{', '.join(map(repr, PARAMS))}; fix: name one of those")
        if isinstance(vals, str):
            if vals != "refine":
                raise ValueError(f"{arg}[{i}]: expected values (numbers) or 'refine' for {param!r}, "
                                 f"got {vals!r}; fix: pass 'refine' or a tuple of numbers")
            out.append((param, "refine"))
            continue
        try:
            arr = np.asarray(vals, np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 1 or not 1 <= arr.size <= MAX_STAGE_VALUES:
            raise ValueError(f"{arg}[{i}]: expected 1..{MAX_STAGE_VALUES} numbers (or 'refine') for "
                             f"{param!r}, got {vals!r}; fix: pass a flat tuple of numbers")
        if not np.isfinite(arr).all():
            raise ValueError(f"{arg}[{i}]: expected finite {param} values, got {vals!r}; fix: remove "
                             "the NaN/Inf values")
        if param == "scale" and (arr.min() < SCALE_RANGE[0] or arr.max() > SCALE_RANGE[1]):
            raise ValueError(f"{arg}[{i}]: expected scales in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] "
                             f"(a stretch of the given kernel; 1 keeps it), got {vals!r}; fix: "
                             "e.g. (0.8, 1.0, 1.25)")
        if param == "width" and (arr.min() < 0 or arr.max() > MAX_WIDTH):
            raise ValueError(f"{arg}[{i}]: expected widths in [0, {MAX_WIDTH:g}] pixels (the std of "
                             f"an extra Gaussian blur), got {vals!r}; fix: e.g. (0.0, 0.5, 1.0)")
        out.append((param, tuple(float(v) for v in arr)))
    return tuple(out)


def _number(v, arg: str, fix: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{arg}: expected a number, got {v!r}; fix: {fix}") from None
    return f


def estimate_kernel(y, k_given, noise_level, *, stages=None, grid: int = 9, margin=None,
                    size: int = 0, boundary: str = "circular"):
    """Calibrate a blur kernel from the observation alone (no network): the ``likelihood``
    criterion's search of :func:`dynpnp_jax.restore`'s ``calibrated`` mode.

    Args:
      y: (B, H, W, C) blurred, noisy images in [0, 1]: a circular blur, or with
        ``boundary='unknown'`` the frame of a larger blurred scene (made periodic first, as
        :func:`likelihood_score` does with ``frame=True``: its periodic component).
      k_given: (kh, kw) or (B, kh, kw) the kernel the user believes (a delta: nothing known);
        smaller than the images.
      noise_level: noise std of ``y`` on the [0, 1] scale (e.g. 2.55 / 255).
      stages, grid, margin, size: as ``make_config``'s ``calib_*`` (defaults: the likelihood
        stages, ``LIKELIHOOD_MARGIN`` (``LIKELIHOOD_MARGIN_FRAME`` for frames), a support from
        the given kernel). ``stages``: see :func:`check_stages` (lists are accepted);
        ``grid`` 2..``MAX_GRID``; the support ``size`` (given or derived) at most ``min(H, W)``.
    Returns ``(kernels (B, size, size), theta)`` with ``theta`` as ``Trajectory.calib``."""
    y = jnp.asarray(check_images("y", y), jnp.float32)
    b, h, w = y.shape[:3]
    k = np.asarray(k_given, np.float32)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3 or not np.isfinite(k).all() or (k < 0).any() or k.sum() <= 0:
        raise ValueError(f"k_given: expected a non-negative finite (kh, kw) or (B, kh, kw) kernel, "
                         f"got shape {k.shape}; fix: pass e.g. kernels.gaussian(1.6)")
    if k.shape[0] not in (1, b):
        raise ValueError(f"k_given: expected one kernel or one per image (B={b}), got {k.shape[0]}; "
                         "fix: pass a (kh, kw) kernel or a (B, kh, kw) batch")
    if (k.sum(axis=(1, 2)) <= 0).any():
        raise ValueError("k_given: expected every kernel of the batch to have positive mass, got an "
                         "all-zero kernel; fix: pass e.g. kernels.gaussian(1.6) for it")
    if k.shape[1] > h or k.shape[2] > w:
        raise ValueError(f"k_given: a {k.shape[1]}x{k.shape[2]} kernel is larger than the {h}x{w} "
                         "images y; expected a kernel smaller than the images; fix: crop the kernel "
                         "to its support or pass larger images")
    k = k / k.sum(axis=(1, 2), keepdims=True)
    nl = _number(noise_level, "noise_level", "2.55 / 255 for 8-bit noise 2.55")
    if not np.isfinite(nl) or nl < 0 or nl > 1:
        raise ValueError(f"noise_level: expected the noise std on the [0, 1] scale (0..1), got "
                         f"{noise_level!r}; fix: 2.55 / 255 for 8-bit noise 2.55")
    if boundary not in ("circular", "unknown"):
        raise ValueError(f"boundary: expected 'circular' or 'unknown', got {boundary!r}; fix: "
                         "'unknown' for a frame cut out of a larger scene")
    default = LIKELIHOOD_MARGIN_FRAME if boundary == "unknown" else LIKELIHOOD_MARGIN
    margin = default if margin is None else _number(margin, "margin", "leave it None for the default")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin: expected a finite number >= 0 (nats per pixel; 0 takes any "
                         f"improvement), got {margin!r}; fix: leave it None for the default")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or not 2 <= grid <= MAX_GRID:
        raise ValueError(f"grid: expected an integer 2..{MAX_GRID} (points per stage: each point is "
                         "one likelihood evaluation of the whole image per stage; the default 9 "
                         "resolves 5 degrees and 7 % in scale before the refine stages), got "
                         f"{grid!r}; fix: leave the default 9")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size: expected an integer >= 0 (0: from the kernel and the scales), got "
                         f"{size!r}; fix: leave it 0")
    if size and size < max(k.shape[1:]):
        raise ValueError(f"size={size} is smaller than k_given ({k.shape[1]}x{k.shape[2]}); fix: "
                         f"size >= {max(k.shape[1:])} or 0 (from the kernel and the scales)")
    stages = (check_stages(stages) if stages is not None
              else default_stages(is_delta(k), int(grid), "likelihood"))
    given = int(size)
    size = given or support_size(k.shape[1:], stages)
    if size > min(h, w):
        how = "size" if given else "the support derived from k_given and the widest scale searched"
        raise ValueError(f"size: {how} is {size}x{size}, larger than the {h}x{w} images y; expected "
                         f"a support <= {min(h, w)}; fix: pass size= between {max(k.shape[1:])} and "
                         f"{min(h, w)}, or larger images")
    return _estimate(y, jnp.asarray(k), jnp.float32(nl), jnp.float32(margin), stages, int(grid),
                     size, boundary == "unknown")


def _estimate_impl(y, k, nl, margin, stages, grid, size, frame=False):
    b = y.shape[0]
    k = jnp.broadcast_to(k, (b,) + k.shape[1:])

    def kernels_for(theta):
        return jax.vmap(warp_kernel, in_axes=(0, None, 0, 0, 0))(
            k, size, theta["scale"], theta["angle"], theta["width"])

    theta = search(lambda th: likelihood_score(y, kernels_for(th), nl * nl, frame), b, stages,
                   grid, margin, sequential=True)
    return kernels_for(theta), theta


_estimate = jax.jit(_estimate_impl, static_argnames=("stages", "grid", "size", "frame"))

