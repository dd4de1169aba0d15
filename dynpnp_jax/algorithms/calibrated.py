"""``calibrated``: DPIR's loop after re-choosing the given blur kernel (kernel self-calibration).

A kernel family around the given kernel (rotation, scale, extra Gaussian width;
:func:`dynpnp_jax.calibration.warp_kernel`) is searched inside the compiled program before the
loop (``prepare``), scored by the marginal likelihood of ``y`` (``calib_criterion='likelihood'``,
no network runs) or by a cheap DPIR run per candidate (``'sparsity'``); the given kernel is
kept unless a candidate beats it by ``calib_margin``. Then the loop is ``dpir``'s
(:mod:`dynpnp_jax.algorithms.hqs`) with the chosen kernel. With ``saturation`` on, the
``'sparsity'`` criterion's runs use the saturation-aware data term and their residual counts the
unsaturated values of ``y`` only; the ``'likelihood'`` criterion (a Fourier-domain score of the
whole frame) sees every value: measured on frames with 10-17 % of their values clipped, they do
not move the kernel it prefers (docs/results/saturation.md), and a window with fewer clipped
values chose worse.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import calibration as cal
from .. import saturation as sat
from ..operators import Blur
from ..validation import is_concrete
from .base import Algorithm, Traits, dpir_schedule_traced
from .hqs import init, step


def resolve(params: dict, y_shape, cfg):
    """Default stages, margin and kernel support from the given kernel (static settings)."""
    if cfg.calib_margin is None:  # the criterion's default, set on training images
        cfg = cfg.replace(calib_margin=0.0 if cfg.calib_criterion != "likelihood" else
                          cal.LIKELIHOOD_MARGIN_FRAME if cfg.boundary == "unknown" else
                          cal.LIKELIHOOD_MARGIN)
    k = params["A"].k
    stages = cfg.calib_stages
    if not stages:
        if not is_concrete(k):
            raise ValueError("calibrated mode: with a traced kernel, give calib_stages explicitly")
        stages = cal.default_stages(cal.is_delta(k), cfg.calib_grid, cfg.calib_criterion)
    size = cfg.calib_size
    kmax = max(k.shape[1:])
    if size and size < kmax:
        raise ValueError(f"calib_size={size} is smaller than the given kernel ({k.shape[1]}x"
                         f"{k.shape[2]}): the calibrated kernel's support must hold it. Fix: "
                         f"calib_size >= {kmax + 1 - kmax % 2} (or 0: from the given kernel and "
                         f"the scales searched)")
    if not size:
        size = cal.support_size(k.shape[1:], stages)
    cfg = cfg.replace(calib_stages=stages, calib_size=int(size))
    check_crop(cfg, y_shape)
    return cfg


def prepare(params: dict, y, op, cfg, run):
    """The search: returns the Blur with the chosen kernels and the chosen family parameters.
    ``run(params, y, cfg)`` runs a loop (the ``sparsity`` criterion's cheap DPIR runs)."""
    b, h, w, _ = y.shape
    size = cfg.calib_size
    k_given = jnp.broadcast_to(op.k, (b,) + op.k.shape[1:])
    c = min(cfg.calib_crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    y_c = y[:, top:top + c, left:left + c, :]
    sig, rho = dpir_schedule_traced(cfg.calib_iters, cfg.noise)
    coarse = type(cfg)(mode="dpir", iters=cfg.calib_iters, x_step="exact", a_step="none",
                       operator="identity", keep_images=False, clip_output=False, has_sigma=True,
                       delta=jnp.zeros_like(sig), mu=rho, alpha=jnp.zeros_like(sig), sigma=sig,
                       relax=jnp.ones_like(sig), inertia=jnp.zeros_like(sig), tol=jnp.float32(0),
                       noise=cfg.noise, saturation=cfg.saturation, clip_level=cfg.clip_level)
    # saturation on: the cheap runs use its data term and score the unsaturated values only
    seen = sat.observed(y_c, cfg.clip_level) if sat.is_on(cfg.saturation) else None
    margin = min(size // 2 + 4, c // 4)  # the crop is not periodic: score its interior only
    var_n = jnp.maximum(cfg.noise, 0.255 / 255) ** 2

    def kernels_for(theta):
        return jax.vmap(cal.warp_kernel, in_axes=(0, None, 0, 0, 0))(
            k_given, size, theta["scale"], theta["angle"], theta["width"])

    def score(theta):
        kern = kernels_for(theta)
        if cfg.calib_criterion == "likelihood":
            return cal.likelihood_score(y, kern, jnp.square(cfg.noise),
                                        frame=cfg.boundary == "unknown")
        opc = Blur(k=kern)
        out, _ = run({"prior": params["prior"], "A": opc}, y_c, coarse, None)
        return cal.calibration_score(opc(out) - y_c, out, var_n, margin, seen)

    theta = cal.search(score, b, cfg.calib_stages, cfg.calib_grid, cfg.calib_margin,
                       sequential=cfg.calib_criterion == "likelihood")
    return Blur(k=kernels_for({p: theta[p] for p in cal.PARAMS})), theta


def check_crop(cfg, y_shape) -> None:
    crop = min(cfg.calib_crop, y_shape[1], y_shape[2])
    if cfg.calib_size > crop:
        raise ValueError(f"calibrated mode: the calibrated kernel's support ({cfg.calib_size}"
                         f" px) does not fit the {crop} px crop of the search; use a larger "
                         f"calib_crop (>= {cfg.calib_size}, at most the image) or a smaller "
                         "calib_size")


CALIBRATED = Algorithm(
    name="calibrated", summary="dpir after re-choosing the given blur kernel (self-calibration)",
    numbers=("mu", "sigma", "relax", "inertia"), init=init, step=step,
    traits=Traits(x_kind="choose", requires=("calibrate",), needs_operator=True,
                  calibrates=True),
    prepare=prepare, resolve=resolve)
