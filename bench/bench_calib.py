"""Benchmark: the cost of kernel self-calibration against the plain DPIR loop (issue target:
``calibrated`` at most 2x ``dpir`` on the same image).

    python bench/bench_calib.py                       # Set3G house, Levin k1 told rotated 10 deg
    python bench/bench_calib.py --runs 5 --sparsity --out bench/results/calib-cpu.json

What runs, on one gray Set3G image (``dpir`` protocol degradation: Levin kernel ``--kernel``,
noise 2.55), FFDNet gray, 8 iterations, x8 self-ensemble, the solver told the true kernel
rotated by ``--angle`` degrees:

* ``dpir``: ``restore`` in ``dpir`` mode with the told kernel (the baseline);
* ``calibrated``: ``restore`` in ``calibrated`` mode, ``likelihood`` criterion (the default:
  the kernel family scored by the marginal likelihood of y, then the full loop);
* ``estimate``: ``calibration.estimate_kernel`` alone (the search without the loop);
* ``sparsity`` (with ``--sparsity``): the earlier criterion, a 4-iteration DPIR run per candidate.

Each round runs every variant once, so load changes hit all alike; medians of ``--runs`` rounds
after one warm-up call each (compilation). The PSNR of each output is printed as a check.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def mismatch_problem(image: str, kernel: int, angle: float):
    """One Set3G image blurred the ``dpir`` way by Levin kernel ``kernel`` at noise 2.55, and the
    kernel rotated by ``angle`` degrees that the solver is told: ``(gt, k, told, y, noise)``."""
    from dynpnp_jax import kernels
    from dynpnp_jax.tune import degrade_dpir, set3g_images

    try:
        gt = set3g_images()[image]
    except (FileNotFoundError, KeyError) as err:
        sys.exit(f"--image {image!r}: {err}; set DYNPNP_DATA to shared/data, images are "
                 "cameraman, house, lena256")
    k = np.asarray(kernels.levin(kernel), np.float32)
    noise = 2.55
    y = degrade_dpir(gt, k, noise).astype(np.float32)[None, :, :, None]
    return gt, k, kernels.rotate(k, angle), y, noise


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="house", help="Set3G image: cameraman, house, lena256")
    ap.add_argument("--kernel", type=int, default=1, help="Levin kernel 1..8 (default 1)")
    ap.add_argument("--angle", type=float, default=10.0, help="rotation of the told kernel")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sparsity", action="store_true", help="also time the sparsity criterion")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs must be >= 1, got {args.runs}")
    if not 1 <= args.kernel <= 8:
        ap.error(f"--kernel must be 1..8 (Levin), got {args.kernel}")

    import jax
    import dynpnp_jax as dj
    from dynpnp_jax import calibration
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.tune import psnr_uint8

    gt, k, told, y, noise = mismatch_problem(args.image, args.kernel, args.angle)
    net = dj.load_network("ffdnet-gray")
    params = {"prior": net, "A": Blur.from_kernel(told, 1)}
    base = dict(iters=8, noise_level=noise / 255, ensemble=True, keep_images=False)
    cfgs = {"dpir": dj.make_config("dpir", **base),
            "calibrated": dj.make_config("calibrated", **base)}
    if args.sparsity:
        cfgs["sparsity"] = dj.make_config("calibrated", calib_criterion="sparsity", **base)
    jobs = {n: (lambda c=c: dj.restore(params, y, c)[0].block_until_ready())
            for n, c in cfgs.items()}
    jobs["estimate"] = lambda: calibration.estimate_kernel(y, told, noise / 255)[0].block_until_ready()
    first, psnrs = {}, {}
    for n, job in jobs.items():
        t0 = time.perf_counter()
        out = job()
        first[n] = time.perf_counter() - t0
        if n != "estimate":
            psnrs[n] = psnr_uint8(np.uint8(np.round(np.clip(np.asarray(out)[0, :, :, 0], 0, 1) * 255)), gt)
    times = {n: [] for n in jobs}
    for r in range(args.runs):
        for n, job in jobs.items():
            t0 = time.perf_counter()
            job()
            times[n].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.runs} (load {os.getloadavg()[0]:.1f}): " +
              ", ".join(f"{n} {v[-1]:.2f}" for n, v in times.items()), file=sys.stderr, flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"\njax {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPUs; Set3G "
          f"{args.image}, Levin k{args.kernel} told rotated {args.angle:g} deg, noise {noise}, "
          f"T=8, x8; seconds, median of {args.runs}\n")
    print("| variant | seconds | / dpir | PSNR (dB) |\n|---|---|---|---|")
    for n in jobs:
        p = f"{psnrs[n]:.2f}" if n in psnrs else "-"
        print(f"| {n} | {med[n]:.3f} | {med[n] / med['dpir']:.2f}x | {p} |")
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(["bench/bench_calib.py"] + (argv or sys.argv[1:])),
                                        "jax": jax.__version__, "cpus": os.cpu_count(),
                                        "times": times, "median": med, "first_call": first,
                                        "psnr": psnrs, "load_after": os.getloadavg()}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
