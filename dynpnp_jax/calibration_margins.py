"""The margin of the ``likelihood`` calibration, measured on training images.

:mod:`dynpnp_jax.calibration` keeps the given kernel unless the best candidate of its search beats
it by ``LIKELIHOOD_MARGIN`` nats per pixel (``LIKELIHOOD_MARGIN_FRAME`` on frames with unknown
boundaries). This module measures where to put that margin: how much the search "improves" on
right kernels (false gains) and on wrong ones (the right kernel scaled or rotated), on the tuning
images degraded the ``dpir`` way, and the equal-error threshold between the two::

    python -m dynpnp_jax.calibration_margins --limit 10                      # LIKELIHOOD_MARGIN
    python -m dynpnp_jax.calibration_margins --limit 10 --boundary unknown   # ..._FRAME

It needs the tuning images and kernels of :mod:`dynpnp_jax.tune` (which runs the solver), so it
lives apart from :mod:`dynpnp_jax.calibration`, which the solver imports.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .calibration import estimate_kernel, support_size, warp_kernel
from .data.degradations import frame_crop
from .tune import degrade_dpir, load_tune_images, training_kernels

__all__ = ["equal_error_margin", "main", "margin_statistics"]


def margin_statistics(images, kerns, noises, *, wrong=(("scale", 1.25), ("angle", 10.0)),
                      progress=True, boundary: str = "circular") -> dict:
    """How much the likelihood search "improves" on a RIGHT kernel (false gains: model mismatch
    of the Gaussian image prior) and on WRONG ones (the given kernel scaled / rotated), per pixel,
    on training images degraded the ``dpir`` way (uint8 circular blur, seeded noise). The margin
    is set between the two (``python -m dynpnp_jax.calibration_margins``); never on test images.
    ``boundary='unknown'``: the same on frames (the blurred image's part no wrapped pixel
    reaches, :func:`dynpnp_jax.data.degradations.frame_crop`), scored made periodic."""
    cases = [(i, j, n) for i in range(len(images)) for j in range(len(kerns)) for n in noises]
    it = tqdm(cases, desc="margin statistics") if progress else cases
    right, wrong_gain = [], {f"{p}={v:g}": [] for p, v in wrong}
    for i, j, n in it:
        gt, kt = images[i], np.asarray(kerns[j], np.float64)
        gt = gt[: gt.shape[0] // 8 * 8, : gt.shape[1] // 8 * 8]
        y = degrade_dpir(gt, kt, n).astype(np.float32)
        if boundary == "unknown":
            y = frame_crop(y, kt.shape)
        y = y[None, ..., None]
        _, th = estimate_kernel(y, kt, n / 255.0, margin=0.0, boundary=boundary)
        right.append(float(th["gain"][0]))
        for p, v in wrong:
            kw = np.asarray(warp_kernel(jnp.asarray(kt, jnp.float32), support_size(kt.shape, ((p, (v,)),)),
                                        **{p: v}))
            _, th = estimate_kernel(y, kw, n / 255.0, margin=0.0, boundary=boundary)
            wrong_gain[f"{p}={v:g}"].append(float(th["gain"][0]))
    return {"right": right, "wrong": wrong_gain}


def equal_error_margin(right, wrong) -> float:
    """The margin at which the fraction of right kernels moved (gain > margin) equals the
    fraction of wrong kernels kept (gain <= margin)."""
    right, wrong = np.sort(np.asarray(right, np.float64)), np.sort(np.asarray(wrong, np.float64))
    cands = np.unique(np.concatenate([right, wrong, [0.0]]))
    moved = 1.0 - np.searchsorted(right, cands, side="right") / len(right)
    kept = np.searchsorted(wrong, cands, side="right") / len(wrong)
    return float(cands[int(np.argmin(np.abs(moved - kept)))])


def main(argv=None) -> int:
    """``python -m dynpnp_jax.calibration_margins``: the likelihood margin from training images."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m dynpnp_jax.calibration_margins",
                                description=main.__doc__)
    p.add_argument("--noise", type=float, nargs="+", default=[2.55, 7.65])
    p.add_argument("--limit", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--quantile", type=float, default=None,
                   help="set the margin at this quantile of the right-kernel gains instead of "
                        "the equal-error threshold")
    p.add_argument("--boundary", choices=("circular", "unknown"), default="circular",
                   help="unknown: the margin for frames of a larger blurred scene "
                        "(scored on their periodic component)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.limit < 0:
        p.error(f"--limit: expected a number of images >= 0 (0: all), got {args.limit}")
    if not all(np.isfinite(n) and 0 < n < 255 for n in args.noise):
        p.error(f"--noise: expected noise levels on the 8-bit scale in (0, 255), got {args.noise}; "
                "fix: e.g. --noise 2.55 7.65")
    if args.quantile is not None and not 0 <= args.quantile <= 1:
        p.error(f"--quantile: expected a fraction in [0, 1], got {args.quantile}")
    imgs = [np.uint8(np.round(im * 255.0)) for im in load_tune_images()]
    imgs = imgs[: args.limit] if args.limit else imgs
    kerns = training_kernels()  # kernels_12 without its two Levin kernels
    st = margin_statistics(imgs, kerns, args.noise, boundary=args.boundary)
    right = np.asarray(st["right"])
    if args.quantile is not None:
        margin, rule = float(np.quantile(right, args.quantile)), f"quantile {args.quantile}"
    else:
        margin, rule = equal_error_margin(right, np.asarray(st["wrong"]["scale=1.25"])), \
            "equal error rate: right kernels moved = wrong (scale 1.25) kernels kept"
    summary = {"images": len(imgs), "kernels": len(kerns), "noise": args.noise,
               "boundary": args.boundary,
               "rule": rule, "margin": margin,
               "right_gain": {"mean": float(right.mean()), "max": float(right.max()),
                              "kept_at_margin": float(np.mean(right <= margin))},
               "wrong_detected_at_margin": {k: float(np.mean(np.asarray(v) > margin))
                                            for k, v in st["wrong"].items()},
               "wrong_gain_median": {k: float(np.median(v)) for k, v in st["wrong"].items()}}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**summary, "raw": st}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
