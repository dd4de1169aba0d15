"""The self-calibration example figure and convergence curves (docs/results/calibration.md).

    python bench/calib_figure.py --out docs/figures/calibration.png

One Set3G image, ``dpir`` protocol degradation (Levin kernel ``--kernel``, noise 2.55), the
solver told the true kernel rotated by ``--angle`` degrees. Rows: the true / told / estimated
kernels (``calibrated`` mode, likelihood criterion) with their relative RMS error to the truth,
and the restorations with their PSNR: ``dpir`` with the told kernel, ``calibrated``, ``dpir``
with the true kernel, and the paper's A-step (``dpir`` with ``a_step='kernel'``, a projected
gradient step on the kernel every iteration, ``--alpha``). Bottom: PSNR and kernel error per
iteration for each (the calibrated kernel is chosen before the loop, so its error is flat; the
A-step's moves every iteration).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="cameraman")
    ap.add_argument("--kernel", type=int, default=1)
    ap.add_argument("--angle", type=float, default=10.0)
    ap.add_argument("--alpha", type=float, default=1e-6,
                    help="the A-step size (a_step='kernel'; 1e-6: the least harmful on training images)")
    ap.add_argument("--out", type=Path, default=Path("docs/figures/calibration.png"))
    args = ap.parse_args(argv)

    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import dynpnp_jax as dj
    from dynpnp_jax import calibration as cal
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.tune import psnr_uint8

    from bench_calib import mismatch_problem  # bench/ is this script's directory

    gt, k, told, y, noise = mismatch_problem(args.image, args.kernel, args.angle)
    clean = (gt / 255.0).astype(np.float32)[None, :, :, None]
    net = dj.load_network("ffdnet-gray")
    true_a = Blur.from_kernel(k, 1)
    base = dict(iters=8, noise_level=noise / 255, ensemble=True, keep_images=False)
    runs = {
        f"dpir, told k rotated {args.angle:g} deg": (told, dj.make_config("dpir", **base)),
        "calibrated (likelihood)": (told, dj.make_config("calibrated", **base)),
        f"paper's A-step (alpha {args.alpha:g})": (told, dj.make_config(
            "dpir", a_step="kernel", alpha=args.alpha, **base)),
        "dpir, true k": (k, dj.make_config("dpir", **base)),
    }
    outs = {}
    for name, (kk, cfg) in runs.items():
        out, tr = dj.restore({"prior": net, "A": Blur.from_kernel(kk, 1)}, y, cfg, clean=clean,
                             true_A=true_a)
        o = np.uint8(np.round(np.clip(np.asarray(out)[0, :, :, 0], 0, 1) * 255))
        kern = np.asarray(tr.kernel[0]) if tr.kernel is not None else kk
        err = (np.asarray(tr.kernel_err)[:, 0] if tr.kernel_err is not None else
               np.full(cfg.iters, float(cal.kernel_distance(jnp.asarray(kk)[None], jnp.asarray(k)[None])[0])))
        outs[name] = (o, psnr_uint8(o, gt), np.asarray(tr.psnr)[:, 0], err, kern)
        print(f"{name}: {outs[name][1]:.2f} dB, kernel error {err[-1]:.3f}", flush=True)

    fig = plt.figure(figsize=(15, 9.5))
    gs = fig.add_gridspec(3, 5, height_ratios=[1, 1.4, 1.1])
    est = outs["calibrated (likelihood)"][4]
    kerr = lambda kk: float(cal.kernel_distance(jnp.asarray(kk)[None], jnp.asarray(k)[None])[0])  # noqa: E731
    for i, (title, kk) in enumerate((("true kernel", k), (f"told: rotated {args.angle:g} deg", told),
                                     ("calibrated estimate", est),
                                     ("after the paper's A-step", outs[list(runs)[2]][4]))):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(cal.center_kernel(kk, 31), cmap="magma")
        ax.set_title(f"{title}\nerror {kerr(kk):.2f}", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(gs[1, 0])
    ax.imshow(y[0, :, :, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"observed, {psnr_uint8(np.uint8(np.round(np.clip(y[0, :, :, 0], 0, 1) * 255)), gt):.2f} dB",
                 fontsize=9)
    ax.axis("off")
    for i, (name, (o, p, _, _, _)) in enumerate(outs.items()):
        ax = fig.add_subplot(gs[1, i + 1])
        ax.imshow(o, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}\n{p:.2f} dB", fontsize=9)
        ax.axis("off")
    ax1 = fig.add_subplot(gs[2, :2])
    ax2 = fig.add_subplot(gs[2, 3:])
    for name, (_, _, curve, err, _) in outs.items():
        it = np.arange(1, len(curve) + 1)
        ax1.plot(it, curve, marker="o", label=name)
        ax2.plot(it, err, marker="o", label=name)
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("PSNR (dB, float)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("kernel error (relative RMS)")
    ax2.grid(alpha=0.3)
    fig.suptitle(f"Set3G {args.image}, Levin k{args.kernel}, noise 2.55, FFDNet, T=8, x8", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
