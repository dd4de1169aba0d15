"""Benchmark: the DPIR deblurring loop (FFDNet gray prior, known blur) on CPU, JAX vs PyTorch.

    python bench/bench_dpir.py                          # 256 and 512, 3 rounds (about 5-8 min)
    python bench/bench_dpir.py --sizes 256 --runs 5 --out /tmp/dpir.json

What runs (one gray Set12 image per size: 01.png at 256, 08.png at 512, other sizes a crop of
08.png or a mirrored tiling of it; circular blur by Levin kernel ``--kernel`` (default 1, 19x19),
Gaussian noise 2.55/255, seed 0):

* ``jax``: ``restore(params, y, make_config("dpir", iters=8, noise_level=2.55/255))`` with
  ``params = {"prior": load_network("ffdnet-gray"), "A": Blur.from_kernel(k, 1)}`` -- the public
  function (validation + the jitted loop + the finiteness check), ``keep_images`` at its default;
  ``jax x8`` the same with ``ensemble=True`` (iteration t sees the (t mod 8)-th flip/rotation);
* ``net``: the 8 FFDNet forwards alone, chained in one jitted function with the same sigma
  schedule and the same input size: the work the loop cannot avoid. The loop's overhead over
  them is reported in % (target: at most +10 %), with the forward's GFLOP/s;
* ``loop alone``: ``restore`` with the same config and operator but a pass-through prior (a
  weightless noise-conditioned "network" returning its input): the x-steps, schedule,
  bookkeeping and dispatch without FFDNet, i.e. what the loop adds, measured directly. On a
  shared machine "restore - 8 forwards" is the difference of two noisy numbers; this one is
  small and stable;
* ``torch`` / ``torch+malloc``: ``torch_dpir`` (``bench/torch_ref.py``: the same loop in eager
  PyTorch, ``torch.fft`` x-step, ``TorchFFDNet.from_flax``), plain and x8, in two persistent
  worker processes, one with the default environment and one started with
  ``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184`` (glibc reads them at
  process start; they keep torch's large activation buffers in the heap instead of a fresh
  ``mmap`` per layer). The workers never import JAX (weights, images and the schedule come from
  ``dpir_schedule`` and the converted weights via an ``.npz`` file).

Every size is timed in rounds; each round runs every variant once (JAX in this process, torch in
the workers, one at a time), so a change of load on the shared machine hits all variants alike.
Medians (and minima) of ``--runs`` rounds, after one warm-up call per variant (JAX: compile).
The workers' first plain output per size is compared with JAX's (max abs difference, PSNR): a
check that both sides compute the same thing. Rows are printed as each size completes; the load
average (``os.getloadavg``, as ``uptime`` shows it) is printed before and after and stored with
``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}
NOISE = 2.55 / 255
SET12 = {256: "01.png", 512: "08.png"}
VARIANTS = ("jax", "jax_x8", "net", "torch", "torch_x8", "torch_malloc", "torch_malloc_x8")
MIN_SIZE = 32


def ffdnet_gflop(h: int, w: int, channels: int = 1, features: int = 64, depth: int = 15) -> float:
    """GFLOP of one FFDNet forward (2 * 9 * Cin * Cout per conv and half-resolution pixel)."""
    chans = [4 * channels + 1] + [features] * (depth - 1) + [4 * channels]
    per_px = sum(2 * 9 * a * b for a, b in zip(chans[:-1], chans[1:]))
    return per_px * ((h + 1) // 2) * ((w + 1) // 2) / 1e9


def passthrough_network(dj):
    """A :class:`dynpnp_jax.Network` whose module returns its input (a noise-conditioned
    'image' network like FFDNet, without weights): ``restore`` with it runs the loop alone."""
    import flax.linen as nn

    class PassThrough(nn.Module):
        @nn.compact
        def __call__(self, x, sigma):
            return x

    return dj.Network(module=PassThrough(), variables={}, kind="image", channels=1,
                      noise_input=True, name="pass-through")


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def test_image(size: int, data_dir: Path) -> np.ndarray:
    """A size x size gray image in [0, 1] from Set12 (crop, or mirrored tiling above 512)."""
    from PIL import Image

    name = SET12.get(size, "08.png")
    img = np.asarray(Image.open(data_dir / "set12" / name).convert("L"), np.float32) / 255.0
    if size > img.shape[0]:
        reps = -(-size // img.shape[0])
        img = np.pad(img, ((0, reps * img.shape[0] - img.shape[0]),) * 2, mode="symmetric")
    return np.ascontiguousarray(img[:size, :size])


def degrade(clean: np.ndarray, k: np.ndarray, seed: int = 0) -> np.ndarray:
    """Circular convolution with ``k`` (centre (kh//2, kw//2), as ``Blur``) + noise 2.55/255."""
    from scipy import ndimage

    y = ndimage.convolve(clean.astype(np.float64), k.astype(np.float64), mode="wrap")
    y += np.random.default_rng(seed).normal(0.0, NOISE, y.shape)
    return y.astype(np.float32)


# ------------------------------------------------------------------------------ torch worker
def torch_worker(blob_path: str) -> None:
    """Persistent worker: one JSON request per stdin line, ``{"size": S, "x8": bool, "save":
    path or null}``; runs ``torch_dpir`` once and answers ``{"t": seconds}``."""
    import torch

    from bench.torch_ref import TorchFFDNet, torch_dpir

    blob = np.load(blob_path)
    variables = {"params": {}}
    for key in blob.files:
        if key.startswith("conv"):
            layer, kind = key.split(".")
            variables["params"].setdefault(layer, {})[kind] = blob[key]
    net = TorchFFDNet.from_flax(variables)
    k, sigmas, rhos = blob["kernel"], blob["sigmas"], blob["rhos"]
    iters = len(sigmas)
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                      "env": {v: os.environ.get(v) for v in MALLOC_ENV}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        y = torch.from_numpy(blob[f"y{req['size']}"])[None, None]
        t0 = time.perf_counter()
        out = torch_dpir(net, y, k, iters, sigmas=sigmas, rhos=rhos, ensemble=req["x8"])
        dt = time.perf_counter() - t0
        if req.get("save"):
            np.save(req["save"], out.numpy()[0, 0])
        print(json.dumps({"t": dt}), flush=True)


class TorchWorker:
    """A persistent :func:`torch_worker` subprocess started with ``extra_env`` added."""

    def __init__(self, blob: Path, extra_env: dict):
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
        env.update(extra_env)
        cmd = [sys.executable, str(Path(__file__).absolute()), "--torch-worker", str(blob)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker failed to start (exit {self.proc.wait()})")
        self.info = json.loads(line)

    def run(self, size: int, x8: bool, save: str | None = None) -> float:
        self.proc.stdin.write(json.dumps({"size": size, "x8": x8, "save": save}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"torch worker died (exit {self.proc.wait()})")
        return json.loads(line)["t"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ------------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512],
                    help=f"square image sizes (>= {MIN_SIZE} and >= the kernel size)")
    ap.add_argument("--runs", type=int, default=3, help="timed rounds per size (>= 1)")
    ap.add_argument("--iters", type=int, default=8, help="DPIR iterations (default 8)")
    ap.add_argument("--kernel", type=int, default=1, help="Levin kernel, 1..8 (default 1)")
    ap.add_argument("--no-x8", action="store_true", help="skip the self-ensemble variants")
    ap.add_argument("--out", type=Path, help="write all numbers to this JSON file")
    ap.add_argument("--torch-worker", metavar="BLOB", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_worker:
        return args
    if args.runs < 1:
        ap.error(f"--runs must be >= 1, got {args.runs}")
    if args.iters < 1:
        ap.error(f"--iters must be >= 1, got {args.iters}")
    if not 1 <= args.kernel <= 8:
        ap.error(f"--kernel must be 1..8 (the Levin kernels), got {args.kernel}")
    bad = [s for s in args.sizes if s < MIN_SIZE]
    if bad:
        ap.error(f"--sizes must be >= {MIN_SIZE}, got {bad}")
    if len(set(args.sizes)) != len(args.sizes):
        ap.error(f"--sizes has duplicates: {args.sizes}")
    if args.out is not None and not args.out.parent.is_dir():
        ap.error(f"--out: folder {args.out.parent} does not exist")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.torch_worker:
        return torch_worker(args.torch_worker)

    import jax
    import jax.numpy as jnp

    import dynpnp_jax as dj
    from dynpnp_jax import kernels, paths
    from dynpnp_jax.operators import Blur

    data_dir = paths.data_dir()
    if data_dir is None or not (data_dir / "set12").is_dir():
        sys.exit("Set12 not found: set DYNPNP_DATA or DYNPNP_SHARED")
    k = np.asarray(kernels.levin(args.kernel), np.float32)
    if min(args.sizes) < max(k.shape):
        sys.exit(f"--sizes must be >= the kernel size {k.shape}, got {min(args.sizes)}")

    start = time.perf_counter()
    load_before = loadavg()
    print(f"jax {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; load average before: {load_before}",
          flush=True)
    net = dj.load_network("ffdnet-gray")
    sigmas, rhos = dj.dpir_schedule(args.iters, NOISE)
    clean = {s: test_image(s, data_dir) for s in args.sizes}
    ys = {s: degrade(c, k) for s, c in clean.items()}
    op = Blur.from_kernel(k, 1)
    params = {"prior": net, "A": op}
    cfgs = {False: dj.make_config("dpir", iters=args.iters, noise_level=NOISE),
            True: dj.make_config("dpir", iters=args.iters, noise_level=NOISE, ensemble=True)}
    x8s = (False,) if args.no_x8 else (False, True)

    @jax.jit
    def forwards(net, x, sig):
        b = x.shape[0]
        for t in range(args.iters):  # chained: nothing can be shared between the forwards
            x = net.prior(x, jnp.broadcast_to(sig[t], (b,)))
        return x

    sig32 = jnp.asarray(sigmas, jnp.float32)
    # the loop with a pass-through prior: what the loop adds besides the network, measured
    # directly (small, so robust to load where "restore - 8 forwards" is not)
    null_params = {"prior": passthrough_network(dj), "A": op}
    results: dict = {}
    rows = []
    header = ("| size | x8 | JAX restore | JAX 8 fwd | restore vs 8 fwd | loop alone | "
              "loop alone / 8 fwd | GFLOP/s | torch | torch+malloc | torch / JAX | "
              "torch+malloc / JAX |")
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "blob.npz"
        arrays = {f"y{s}": y for s, y in ys.items()}
        for layer, p in net.variables["params"].items():
            arrays[f"{layer}.kernel"] = np.asarray(p["kernel"])
            arrays[f"{layer}.bias"] = np.asarray(p["bias"])
        np.savez(blob, kernel=k, sigmas=sigmas, rhos=rhos, **arrays)
        workers = {"torch": TorchWorker(blob, {}), "torch_malloc": TorchWorker(blob, MALLOC_ENV)}
        info = {n: w.info for n, w in workers.items()}
        print(f"torch {info['torch']['torch']}, threads {info['torch']['threads']}; "
              f"malloc worker env {info['torch_malloc']['env']}", flush=True)
        print(f"\nDPIR, FFDNet gray, Levin kernel {args.kernel} {k.shape[0]}x{k.shape[1]}, "
              f"{args.iters} iterations, seconds, median of {args.runs}\n", flush=True)
        print(header, flush=True)
        print("|" + "---|" * (header.count("|") - 1), flush=True)
        try:
            for size in args.sizes:
                y = jnp.asarray(ys[size][None, :, :, None])
                jobs = {}
                for x8 in x8s:
                    sfx = "_x8" if x8 else ""
                    jobs["jax" + sfx] = (lambda c=cfgs[x8]:
                                         dj.restore(params, y, c)[0].block_until_ready())
                    for name, w in workers.items():
                        jobs[name + sfx] = (lambda w=w, x8=x8: w.run(size, x8))
                jobs["net"] = lambda: forwards(net, y, sig32).block_until_ready()
                for x8 in x8s:
                    jobs["loop_x8" if x8 else "loop"] = (
                        lambda c=cfgs[x8]: dj.restore(null_params, y, c)[0].block_until_ready())
                first, check = {}, {}
                for name, job in jobs.items():  # warm-up: JAX compiles, torch primes oneDNN
                    t0 = time.perf_counter()
                    if name in workers:  # keep the plain output, to compare with JAX's
                        save = str(Path(tmp) / f"{name}{size}.npy")
                        first[name] = workers[name].run(size, False, save)
                        check[name] = np.load(save)
                    elif name in ("jax", "jax_x8"):
                        out = dj.restore(params, y, cfgs[name == "jax_x8"])[0].block_until_ready()
                        first[name] = time.perf_counter() - t0
                        check[name] = np.asarray(out)[0, :, :, 0]
                    else:
                        job()
                        first[name] = time.perf_counter() - t0
                diffs = {n: float(np.abs(check[n] - check["jax"]).max())
                         for n in ("torch", "torch_malloc")}
                psnrs = {n: psnr(v, clean[size]) for n, v in check.items()}
                times = {n: [] for n in jobs}
                for rnd in range(args.runs):
                    for name, job in jobs.items():
                        t0 = time.perf_counter()
                        got = job()
                        times[name].append(got if name.startswith("torch")
                                           else time.perf_counter() - t0)
                    print(f"  [{size}] round {rnd + 1}/{args.runs} (load {loadavg()}): " +
                          ", ".join(f"{n} {v[-1]:.2f}" for n, v in times.items()),
                          file=sys.stderr, flush=True)
                med = {n: statistics.median(v) for n, v in times.items()}
                gflops = ffdnet_gflop(size, size) * args.iters / med["net"]
                res = {"times": times, "median": med, "min": {n: min(v) for n, v in times.items()},
                       "first_call": first, "max_abs_diff_vs_jax": diffs, "psnr": psnrs,
                       "psnr_y": psnr(ys[size], clean[size]), "net_gflops": gflops,
                       "load": loadavg()}
                results[str(size)] = res
                for x8 in x8s:
                    sfx = "_x8" if x8 else ""
                    j = med["jax" + sfx]
                    row = {"size": size, "x8": x8, "jax": j, "net": med["net"],
                           "overhead": (j - med["net"]) / med["net"], "loop": med["loop" + sfx],
                           "loop_share": med["loop" + sfx] / med["net"],
                           "torch": med["torch" + sfx], "torch_malloc": med["torch_malloc" + sfx]}
                    rows.append(row)
                    print(f"| {size} | {'yes' if x8 else 'no'} | {j:.3f} | {med['net']:.3f} | "
                          f"{100 * row['overhead']:+.1f}% | {row['loop']:.3f} | "
                          f"{100 * row['loop_share']:.1f}% | {gflops:.0f} | {row['torch']:.3f} | "
                          f"{row['torch_malloc']:.3f} | {row['torch'] / j:.2f}x | "
                          f"{row['torch_malloc'] / j:.2f}x |", flush=True)
                print(f"  [{size}] PSNR y {res['psnr_y']:.2f} dB; " +
                      ", ".join(f"{n} {p:.2f}" for n, p in psnrs.items()) +
                      f" dB; max |torch - jax| {max(diffs.values()):.2g}; first call (s): " +
                      ", ".join(f"{n} {v:.2f}" for n, v in first.items()) +
                      f"; load {res['load']}", file=sys.stderr, flush=True)
        finally:
            for w in workers.values():
                w.close()
    load_after = loadavg()
    print(f"\nload average before: {load_before}; after: {load_after}; total "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "jax": jax.__version__, "cpus": os.cpu_count(), "workers": info,
            "iters": args.iters, "kernel": f"levin({args.kernel})", "noise": NOISE,
            "sigmas": sigmas.tolist(), "rhos": rhos.tolist(), "runs": args.runs,
            "load_before": load_before, "load_after": load_after, "rows": rows,
            "results": results}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
