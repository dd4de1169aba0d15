"""Accelerator benchmark: ``restore`` and the networks on a GPU/TPU, one short prepared run.

    python bench/bench_device.py --out results/device.json           # on the accelerator
    python bench/bench_device.py --smoke                             # CPU: tiny sizes, checks it runs

For sessions lent a device machine (which has neither ``../shared`` nor internet): the weights
must travel with the working tree. Convert them here first into a folder inside the checkout
that git ignores, and carry it::

    DYNPNP_CACHE=$PWD/weights/cache python -c "import dynpnp_jax as dp; [dp.load_network(n) for n in ('dncnn-s25', 'dmphn-1-2-4', 'stack4-dmphn', 'dncnn-b-color')]"
    # device run (carry weights/cache):  DYNPNP_CACHE=$PWD/weights/cache python bench/bench_device.py

Measures, on ``jax.devices()[0]`` (synthetic noisy images; timing does not depend on content):

* DnCNN-S forward, batch 1 and 8, 256/512/1024, float32 (and bfloat16 compute): ms, GFLOP/s;
* ``restore`` authors and gradient mode, T=2 and T=8, batch 1 and 8, 512x512: ms per image;
* FFDNet (gray) forward, float32 and bfloat16, batch 1/8/32 at 512x512: ms, images/s;
* the DPIR deblurring loop (FFDNet-gray, Levin kernel 1, 8 iterations, with and without x8
  self-ensemble) at batch 1/8/32, float32 and bfloat16, with the PSNR cost of bfloat16 on Set3G
  house (``--dpir-image``; needs ``DYNPNP_DATA`` with ``kernels/Levin09.mat``), and the PyTorch
  reference loop where ``bench.torch_ref`` has one;
* DMPHN 1-2-4 and Stack(4)-DMPHN forward on a 1280x720 frame: ms;
* compile times. Prints a Markdown table; ``--out`` writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import dynpnp_jax as dp

if __package__ in (None, ""):  # run as a script: make `bench` importable
    import os, sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time(fn, *args, reps=5):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return first, statistics.median(ts)


def dncnn_gflop(h, w, c=1, depth=17, f=64):
    return 2 * 9 * h * w * (c * f + (depth - 2) * f * f + f * c) / 1e9


def _torch_rows(add, net, sizes, batches, s, reps, rng):
    """The PyTorch reference on the same device (cuDNN, eager), for ratios in the same run."""
    try:
        import torch

        from bench.torch_ref import TorchDnCNN, torch_restore
    except Exception as err:  # no torch here: say so
        add(("PyTorch reference", "-", f"skipped: {type(err).__name__}: {err}", "", ""))
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tnet = TorchDnCNN.from_flax(net).to(dev)

    def ttime(fn, *a):
        def once():
            with torch.no_grad():
                out = fn(*a)
            if dev == "cuda":
                torch.cuda.synchronize()
            return out
        once()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            once()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    for s_ in sizes:
        for b in batches:
            x = torch.from_numpy(rng.uniform(0, 1, (b, 1, s_, s_)).astype(np.float32)).to(dev)
            med = ttime(tnet, x)
            add((f"PyTorch DnCNN-S forward float32 ({dev})", f"{b}x{s_}x{s_}", f"{med * 1e3:.1f} ms",
                 f"{dncnn_gflop(s_, s_) * b / med:.0f} GFLOP/s", f"torch {torch.__version__}"))
    for mode, kw in (("authors", dict(mu=0.1, delta=0.01, alpha=1e-5)),
                     ("gradient", dict(delta=0.3, mu=0.3, alpha=1e-3))):
        for iters in (2, 8):
            for b in batches:
                y = torch.from_numpy(rng.uniform(0, 1, (b, 1, s, s)).astype(np.float32)).to(dev)
                med = ttime(lambda yy: torch_restore(tnet, yy, mode, iters, **kw), y)
                add((f"PyTorch restore {mode} T={iters} ({dev})", f"{b}x{s}x{s}",
                     f"{med * 1e3 / b:.1f} ms/image", "", ""))


def _dncnn_rows(add, args, sizes, batches, reps, rng):
    """DnCNN-S forward (float32/bfloat16), restore authors/gradient, and the PyTorch reference."""
    net = dp.load_network("dncnn-s25")
    if args.image:  # PSNR cost of bfloat16 compute on a real image (sigma 25)
        from PIL import Image

        from dynpnp_jax.metrics import psnr

        clean = np.asarray(Image.open(args.image).convert("L"), np.float32)[None, ..., None] / 255
        noisy = clean + np.random.RandomState(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
        for dtype in (jnp.float32, jnp.bfloat16):
            n = net.replace(module=net.module.clone(dtype=dtype))
            out = jnp.clip(jax.jit(lambda v, x: v.prior(x))(n, jnp.asarray(noisy)), 0, 1)
            add((f"DnCNN-S PSNR {jnp.dtype(dtype).name}", f"{args.image.split('/')[-1]} sigma 25",
                 f"{float(psnr(out, clean)[0]):.3f} dB", "", ""))
    for dtype in (jnp.float32, jnp.bfloat16):
        mod = net.module.clone(dtype=dtype)
        n = net.replace(module=mod)
        fwd = jax.jit(lambda v, x: v.prior(x))
        for s in sizes:
            for b in batches:
                x = jnp.asarray(rng.uniform(0, 1, (b, s, s, 1)).astype(np.float32))
                first, med = _time(fwd, n, x, reps=reps)
                gf = dncnn_gflop(s, s) * b / med
                add((f"DnCNN-S forward {jnp.dtype(dtype).name}", f"{b}x{s}x{s}",
                             f"{med * 1e3:.1f} ms", f"{gf:.0f} GFLOP/s", f"compile+first {first:.2f} s"))
    s = 64 if args.smoke else 512
    for mode, kw in (("authors", dict(mu=0.1, delta=0.01, alpha=1e-5)),
                     ("gradient", dict(delta=0.3, mu=0.3, alpha=1e-3))):
        for iters in (2, 8):
            for b in batches:
                y = rng.uniform(0, 1, (b, s, s, 1)).astype(np.float32)
                cfg = dp.make_config(mode, iters=iters, keep_images=False, **kw)
                first, med = _time(lambda yy: dp.restore({"prior": net}, yy, cfg)[0], y, reps=reps)
                add((f"restore {mode} T={iters}", f"{b}x{s}x{s}",
                             f"{med * 1e3 / b:.1f} ms/image", "", f"compile+first {first:.2f} s"))
    _torch_rows(add, net, sizes, batches, s, reps, rng)


def _dpir_rows(add, args, reps, rng):
    """FFDNet forward and the DPIR deblurring loop: float32 vs bfloat16, batch scaling."""
    from dynpnp_jax import kernels
    from dynpnp_jax.operators import Blur

    ff = dp.load_network("ffdnet-gray")
    k = kernels.levin(1)
    s = 64 if args.smoke else 512
    batches = (1, 2) if args.smoke else (1, 16)
    nets = {"float32": ff, "bfloat16": ff.replace(module=ff.module.clone(dtype=jnp.bfloat16))}
    fwd = jax.jit(lambda v, x, sg: v.prior(x, sg))
    for name, n in nets.items():
        for b in batches:
            x = jnp.asarray(rng.uniform(0, 1, (b, s, s, 1)).astype(np.float32))
            first, med = _time(fwd, n, x, jnp.full((b,), 10 / 255, jnp.float32), reps=reps)
            add((f"FFDNet-gray forward {name}", f"{b}x{s}x{s}", f"{med * 1e3:.2f} ms",
                 f"{b / med:.0f} images/s", f"compile+first {first:.2f} s"))
    for ens in (False, True):
        cfg = dp.make_config("dpir", iters=8, noise_level=2.55 / 255, ensemble=ens,
                             keep_images=False)
        for name, n in nets.items():
            for b in batches:
                y = rng.uniform(0, 1, (b, s, s, 1)).astype(np.float32)
                params = {"prior": n, "A": Blur.from_kernel(k, 1)}
                first, med = _time(lambda yy: dp.restore(params, yy, cfg)[0], y, reps=reps)
                add((f"DPIR deblur T=8{' x8' if ens else ''} {name}", f"{b}x{s}x{s}",
                     f"{med * 1e3 / b:.2f} ms/image", f"{b / med:.1f} images/s",
                     f"compile+first {first:.2f} s"))
    if args.dpir_image:  # the PSNR cost of bfloat16 in the whole loop (DPIR protocol, noise 2.55)
        from PIL import Image
        from scipy import ndimage

        gt = np.asarray(Image.open(args.dpir_image).convert("L"))
        yl = ndimage.convolve(gt, k, mode="wrap").astype(np.float32) / 255
        yl = (yl + np.random.RandomState(0).normal(0, 2.55 / 255, yl.shape)).astype(np.float32)
        cfg = dp.make_config("dpir", iters=8, noise_level=2.55 / 255, ensemble=True)
        for name, n in nets.items():
            out = dp.restore({"prior": n, "A": Blur.from_kernel(k, 1)}, yl[None, ..., None], cfg)[0]
            o = np.round(np.clip(np.asarray(out, np.float64)[0, ..., 0], 0, 1) * 255)
            p = 10 * np.log10(255 ** 2 / np.mean((o - gt) ** 2))
            add((f"DPIR PSNR {name}", f"{args.dpir_image.split('/')[-1]} Levin k1 noise 2.55",
                 f"{p:.3f} dB", "", "x8, 8 iterations"))
    try:
        import torch

        from bench.torch_ref import TorchFFDNet, torch_dpir  # added with bench_dpir
    except Exception as err:
        add(("PyTorch DPIR reference", "-", f"skipped: {type(err).__name__}", "", ""))
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tnet = TorchFFDNet.from_flax(ff).to(dev)
    for b in batches:
        y = torch.from_numpy(rng.uniform(0, 1, (b, 1, s, s)).astype(np.float32)).to(dev)
        ts = []
        for i in range(reps + 1):
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad():
                torch_dpir(tnet, y, k, iters=8, noise_level=2.55 / 255)
            if dev == "cuda":
                torch.cuda.synchronize()
            if i:
                ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        add((f"PyTorch DPIR deblur T=8 float32 ({dev})", f"{b}x{s}x{s}",
             f"{med * 1e3 / b:.2f} ms/image", f"{b / med:.1f} images/s", f"torch {torch.__version__}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check that it runs)")
    p.add_argument("--out", default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dmphn", nargs="*", default=["dmphn-1-2-4", "stack4-dmphn"],
                   help="DMPHN networks to time (converted weights must be in the cache)")
    p.add_argument("--no-dpir", action="store_true", help="skip the FFDNet / DPIR rows")
    p.add_argument("--dpir-only", action="store_true",
                   help="only the FFDNet / DPIR rows (the DnCNN and restore rows are skipped)")
    p.add_argument("--dpir-image", default=None,
                   help="a gray PNG (Set3G house) for the PSNR cost of bfloat16 in the DPIR loop")
    p.add_argument("--image", default=None,
                   help="a gray PNG (e.g. Set12 01.png) for the PSNR cost of bfloat16")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error(f"--reps must be >= 1, got {args.reps}")
    rows, res = [], {"device": str(jax.devices()[0]), "n_devices": len(jax.devices()),
                     "jax": jax.__version__}
    print(f"device: {res['device']} ({res['n_devices']} device(s)), jax {jax.__version__}",
          flush=True)

    def add(row):  # print each row as it completes: nothing finished is lost
        rows.append(row)
        print("| " + " | ".join(row) + " |", flush=True)
    sizes = [64] if args.smoke else [256, 512, 1024]
    batches = [1, 2] if args.smoke else [1, 8]
    reps = 1 if args.smoke else args.reps
    rng = np.random.RandomState(0)
    if not args.dpir_only:
        _dncnn_rows(add, args, sizes, batches, reps, rng)
    if not args.no_dpir:
        _dpir_rows(add, args, reps, rng)
    hw = (64, 128) if args.smoke else (720, 1280)
    for name in args.dmphn:
        try:
            deb = dp.load_network(name, download=False)
        except Exception as err:  # weights not carried: say so, go on
            add((f"{name} forward", "-", f"skipped: {type(err).__name__}", "", ""))
            continue
        x = jnp.asarray(rng.uniform(0, 1, (1,) + hw + (3,)).astype(np.float32))
        first, med = _time(jax.jit(lambda v, xx: v.prior(xx)), deb, x, reps=max(1, reps // 2))
        add((f"{name} forward", f"1x{hw[0]}x{hw[1]}", f"{med * 1e3:.1f} ms", "",
                     f"compile+first {first:.2f} s"))
    res["rows"] = rows
    print("\nsummary\n")
    print("| what | shape | time | throughput | note |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
