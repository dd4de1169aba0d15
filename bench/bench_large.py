"""Benchmark: peak memory of DPIR deblurring of large colour images on CPU (up to 3840x2160).

    python bench/bench_large.py                              # the full table (30-60 min)
    python bench/bench_large.py --sizes 512 1024 --iters 2   # a quick look
    python bench/bench_large.py --sizes 3840x2160 --iters 8 --modes tiled --out /tmp/large.json

What runs: ``restore`` in ``dpir`` mode, ``make_config("dpir", iters=N, noise_level=2.55/255,
keep_images=False)``, with ``params = {"prior": load_network("ffdnet-color"), "A":
Blur.from_kernel(k, 1)}`` -- untiled, and with the prior tiled (``network.tiled(tile, overlap)``,
default ``--tile 768 --overlap 64``: FFDNet colour's receptive field is 26 pixels, so the tiled
prior equals the untiled one up to float rounding).

The image: a synthetic 3840x2160 colour photograph, a 7 x 8 mosaic of CBSD68 photographs at their
native resolution (portrait ones turned to landscape; ``--source gopro`` instead upsamples the one
sharp GoPro frame 3x, bicubic). Smaller sizes are centre crops of it. Each image is blurred
circularly by ``--kernel`` (default ``levin:1``, 19x19; ``gauss:1.6`` etc. as in
``dynpnp_jax.kernels.parse_kernel``) and gets Gaussian noise 2.55/255 (seed 0). Nothing is
written to the repository: the images live in a temporary folder for the run.

Each configuration (size x iterations x tiled/untiled) runs in its own process under
``/usr/bin/time -v``; its "Maximum resident set size" is the peak memory reported (the whole
process: Python, JAX, weights, the image, compilation and the loop). The child also reports its
peak before ``restore`` (imports + weights + image loaded), the wall time of the first
``restore`` call (compile included), the PSNR and the temporary buffer size XLA planned for the
compiled loop (``compiled.memory_analysis()``, from a second compile after the run; the peaks
measured before it are kept separately). A watchdog kills a configuration whose resident memory
passes ``--mem-limit-gb`` (default 16: this machine has 24 GB, shared) and records it as over
the limit; a child killed by the kernel or past ``--timeout`` is recorded as such; the benchmark
goes on. Rows print as they finish, each with the load average; ``--out`` writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOISE = 2.55 / 255
GB = 1024 ** 3
FULL = (2160, 3840)  # (H, W) of the synthetic photograph
TIME = "/usr/bin/time"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse_size(spec: str) -> tuple[int, int]:
    """``'512'`` -> (512, 512); ``'3840x2160'`` -> (2160, 3840) as (H, W) (width first, as
    video sizes are written)."""
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", spec.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size {spec!r}: expected N or WxH (e.g. 3840x2160)")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if h < 32 or w < 32 or h > FULL[0] or w > FULL[1]:
        raise argparse.ArgumentTypeError(f"size {spec!r}: height must be 32..{FULL[0]} and width "
                                         f"32..{FULL[1]} (the synthetic image is 3840x2160)")
    return h, w


def size_name(hw: tuple[int, int]) -> str:
    h, w = hw
    return str(h) if h == w else f"{w}x{h}"


# ------------------------------------------------------------------------------ the image
def photograph(source: str, data_dir: Path) -> np.ndarray:
    """The 2160x3840x3 float32 test photograph in [0, 1] (see the module docstring)."""
    from PIL import Image

    h, w = FULL
    if source == "gopro":
        img = Image.open(data_dir / "gopro" / "sharp" / "000001.png").convert("RGB")
        img = img.resize((w, h), Image.BICUBIC)
        return np.asarray(img, np.float32) / 255.0
    files = sorted((data_dir / "cbsd68").glob("*.png"))
    tiles = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
        tiles.append(a if a.shape[1] >= a.shape[0] else np.rot90(a))
    th, tw = tiles[0].shape[:2]  # 321 x 481
    rows, cols = -(-h // th), -(-w // tw)
    if len(tiles) < rows * cols:
        raise RuntimeError(f"need {rows * cols} CBSD68 images, found {len(tiles)} in {data_dir}")
    grid = [np.concatenate([t[:th, :tw] for t in tiles[r * cols:(r + 1) * cols]], axis=1)
            for r in range(rows)]
    return np.ascontiguousarray(np.concatenate(grid, axis=0)[:h, :w])


def blur_noise(clean: np.ndarray, k: np.ndarray, seed: int = 0) -> np.ndarray:
    """Circular convolution (kernel centre (kh//2, kw//2), as ``Blur``) + noise 2.55/255."""
    h, w = clean.shape[:2]
    kh, kw = k.shape
    big = np.zeros((h, w))
    big[:kh, :kw] = k
    otf = np.fft.rfft2(np.roll(big, (-(kh // 2), -(kw // 2)), axis=(0, 1)))
    y = np.fft.irfft2(np.fft.rfft2(clean, axes=(0, 1)) * otf[..., None], s=(h, w), axes=(0, 1))
    y += np.random.default_rng(seed).normal(0.0, NOISE, y.shape)
    return y.astype(np.float32)


# ------------------------------------------------------------------------------ child
def child(args) -> None:
    """One configuration; prints ``RESULT {json}`` on stdout."""
    import resource

    def peak_gb() -> float:  # ru_maxrss is in KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB

    import jax

    import dynpnp_jax as dj
    from dynpnp_jax import kernels, solver
    from dynpnp_jax.operators import Blur

    (_, k), = kernels.parse_kernel(args.kernel)
    k = np.asarray(k, np.float32)
    net = dj.load_network("ffdnet-color")
    if args.tile:
        net = net.tiled(args.tile, args.overlap)
    y = np.load(args.child_y)[None]
    params = {"prior": net, "A": Blur.from_kernel(k, 1)}
    cfg = dj.make_config("dpir", iters=args.child_iters, noise_level=NOISE,
                         keep_images=args.keep_images)
    base = peak_gb()
    t0 = time.perf_counter()
    out, _ = dj.restore(params, y, cfg)
    out = np.asarray(out)[0]
    t_run = time.perf_counter() - t0
    after = peak_gb()
    clean = np.load(args.child_clean)
    mse = lambda a: float(np.mean((a - clean) ** 2))  # noqa: E731
    res = {"peak_before_restore_gb": base, "peak_after_restore_gb": after, "restore_s": t_run,
           "psnr_y": 10 * np.log10(1 / mse(y[0])), "psnr_out": 10 * np.log10(1 / mse(out))}
    if args.analyse:
        t1 = time.perf_counter()
        compiled = solver._restore_jit.lower(params, jax.ShapeDtypeStruct(y.shape, np.float32),
                                             cfg.normalized(), None, None).compile()
        m = compiled.memory_analysis()
        res.update(xla_temp_gb=m.temp_size_in_bytes / GB, xla_out_gb=m.output_size_in_bytes / GB,
                   xla_arg_gb=m.argument_size_in_bytes / GB, analyse_s=time.perf_counter() - t1)
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------ parent
def run_config(args, y_path: Path, clean_path: Path, iters: int, tile: int, keep: bool) -> dict:
    """Run one configuration under ``/usr/bin/time -v`` with a memory watchdog."""
    import psutil

    cmd = [TIME, "-v", sys.executable, str(Path(__file__).absolute()), "--child",
           "--child-y", str(y_path), "--child-clean", str(clean_path),
           "--child-iters", str(iters), "--tile", str(tile), "--overlap", str(args.overlap),
           "--kernel", args.kernel] + (["--keep-images", "on"] if keep else []) + \
          ([] if args.no_analyse else ["--analyse"])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = {"max_rss": 0.0, "killed": None}
    done = threading.Event()

    def watch():
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.wait(0.2):
            try:
                kids = root.children(recursive=True)
                rss = sum(p.memory_info().rss for p in kids) / GB
            except psutil.Error:
                continue
            state["max_rss"] = max(state["max_rss"], rss)
            why = None
            if rss > args.mem_limit_gb:
                why = f"over the {args.mem_limit_gb:g} GB limit (killed at {rss:.1f} GB)"
            elif time.perf_counter() - t0 > args.timeout:
                why = f"timeout ({args.timeout} s)"
            if why:
                state["killed"] = why
                for p in kids:  # the python child (its /usr/bin/time parent then reports)
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rec = {"iters": iters, "tile": tile, "overlap": args.overlap if tile else 0,
           "keep_images": keep, "wall_s": wall, "rc": proc.returncode,
           "time_v_max_rss_gb": int(m.group(1)) * 1024 / GB if m else None,
           "watchdog_max_rss_gb": state["max_rss"], "load": loadavg()}
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line:
        rec.update(json.loads(line[7:]))
    sig = re.search(r"Command terminated by signal (\d+)", err)
    if state["killed"]:
        rec["status"] = state["killed"]
    elif line is None or proc.returncode:
        tail = err.split("\tCommand being timed")[0].strip().splitlines()[-3:]
        rec["status"] = (f"killed by signal {sig.group(1)} (out of memory?)" if sig
                         else f"failed (exit {proc.returncode}): {' | '.join(tail)}")
    else:
        rec["status"] = "ok"
    return rec


def fmt_row(name: str, rec: dict, budget: float) -> str:
    peak = rec.get("time_v_max_rss_gb")
    peak_s = f"{peak:.2f}" if peak is not None else "-"
    if rec["status"] == "ok":
        verdict = "yes" if peak is not None and peak <= budget else "NO"
    else:
        verdict = rec["status"]
    if rec["tile"]:
        n = rec["tiles"]
        prior = (f"tiled {rec['tile']}/{rec['overlap']}, " +
                 (f"{n[0]}x{n[1]} tiles" if n[0] * n[1] > 1 else "1 tile = untiled"))
    else:
        prior = "untiled"
    if rec["keep_images"]:
        prior += ", keep_images"
    g = lambda k, f="{:.2f}": f.format(rec[k]) if k in rec else "-"  # noqa: E731
    psnr = (f"{rec['psnr_y']:.2f} -> {rec['psnr_out']:.2f}" if "psnr_out" in rec else "-")
    return (f"| {name} | {rec['iters']} | {prior} | {peak_s} | {g('peak_before_restore_gb')} | "
            f"{g('xla_temp_gb')} | {g('restore_s', '{:.0f}')} | {psnr} | {verdict} | "
            f"{rec['load']} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=parse_size, nargs="+",
                    default=[(512, 512), (1024, 1024), (2048, 2048), FULL],
                    help="N (square) or WxH, up to 3840x2160 (default 512 1024 2048 3840x2160)")
    ap.add_argument("--iters", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--modes", nargs="+", choices=("untiled", "tiled"),
                    default=["untiled", "tiled"])
    ap.add_argument("--tile", type=int, default=768, help="tile size of the tiled prior")
    ap.add_argument("--overlap", type=int, default=64, help="tile overlap (>= 2 * 26 + 1)")
    ap.add_argument("--keep-images", choices=("off", "on", "both"), default="off",
                    help="restore's keep_images (default off: the trajectory stores no images)")
    ap.add_argument("--kernel", default="levin:1", help="blur kernel spec (default levin:1)")
    ap.add_argument("--source", choices=("cbsd68", "gopro"), default="cbsd68")
    ap.add_argument("--budget-gb", type=float, default=8.0, help="the memory target")
    ap.add_argument("--mem-limit-gb", type=float, default=16.0,
                    help="kill a configuration above this resident memory")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per configuration")
    ap.add_argument("--no-analyse", action="store_true", help="skip XLA's memory analysis")
    ap.add_argument("--out", type=Path, help="write all numbers to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--analyse", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-y", help=argparse.SUPPRESS)
    ap.add_argument("--child-clean", help=argparse.SUPPRESS)
    ap.add_argument("--child-iters", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.keep_images = args.keep_images == "on"
        return child(args)

    if any(i < 1 for i in args.iters):
        ap.error(f"--iters must be >= 1, got {args.iters}")
    if "tiled" in args.modes and args.tile < 2 * args.overlap:
        ap.error(f"--tile {args.tile} must be at least twice --overlap {args.overlap}")
    if args.overlap < 53:
        ap.error("--overlap must be >= 53 (2 x FFDNet colour's receptive field 26, + 1)")
    if args.mem_limit_gb <= 0 or args.budget_gb <= 0 or args.timeout < 1:
        ap.error("--mem-limit-gb, --budget-gb and --timeout must be positive")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} not found: install GNU time (apt-get install time)")
    try:
        import psutil  # noqa: F401
    except ImportError:
        sys.exit("psutil is needed for the memory watchdog (pip install psutil)")
    args.out and args.out.parent.mkdir(parents=True, exist_ok=True)

    from dynpnp_jax import kernels, load_network, paths
    from dynpnp_jax.tiling import tile_starts

    data_dir = paths.data_dir()
    if data_dir is None:
        sys.exit("test data not found: set DYNPNP_DATA or DYNPNP_SHARED")
    ks = kernels.parse_kernel(args.kernel)
    if len(ks) != 1:
        ap.error(f"--kernel must name one kernel, {args.kernel!r} gives {len(ks)}")
    k = np.asarray(ks[0][1], np.float64)
    if min(min(s) for s in args.sizes) < max(k.shape):
        ap.error(f"every size must be at least the kernel size {k.shape}")
    load_network("ffdnet-color")  # convert once here, not inside a measured child

    keeps = {"off": [False], "on": [True], "both": [False, True]}[args.keep_images]
    tiles = [0 if m == "untiled" else args.tile for m in args.modes]
    start = time.perf_counter()
    load_before = loadavg()
    print(f"{os.cpu_count()} CPUs, {round(__import__('psutil').virtual_memory().total / GB)} GB "
          f"RAM; load average before: {load_before}", flush=True)
    print(f"DPIR, FFDNet colour, kernel {args.kernel} {k.shape[0]}x{k.shape[1]}, noise 2.55/255, "
          f"image: {args.source}; peak = /usr/bin/time -v Maximum resident set size of the "
          f"process; target <= {args.budget_gb:g} GB\n", flush=True)
    print("| image | iters | prior | peak RSS (GB) | before restore (GB) | XLA temp (GB) | "
          "restore (s) | PSNR y -> out (dB) | within target | load |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="pnp_large_") as tmp:
        photo = photograph(args.source, data_dir)
        for hw in args.sizes:
            h, w = hw
            top, left = (FULL[0] - h) // 2, (FULL[1] - w) // 2
            clean = np.ascontiguousarray(photo[top:top + h, left:left + w])
            y_path, c_path = Path(tmp) / "y.npy", Path(tmp) / "clean.npy"
            np.save(c_path, clean)
            np.save(y_path, blur_noise(clean.astype(np.float64), k))
            for iters in args.iters:
                for tile in tiles:
                    for keep in keeps:
                        rec = run_config(args, y_path, c_path, iters, tile, keep)
                        rec.update(size=size_name(hw), height=h, width=w,
                                   tiles=[len(tile_starts(h, min(tile, h), args.overlap)),
                                          len(tile_starts(w, min(tile, w), args.overlap))]
                                   if tile else [1, 1])
                        records.append(rec)
                        print(fmt_row(size_name(hw), rec, args.budget_gb), flush=True)
                        if args.out:  # after every row: a killed run keeps what it measured
                            write_json(args, records, load_before, None)
    load_after = loadavg()
    print(f"\nload average before: {load_before}; after: {load_after}; total "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    if args.out:
        write_json(args, records, load_before, load_after)
        print(f"wrote {args.out}")


def write_json(args, records: list, load_before: str, load_after: str | None) -> None:
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "kernel": args.kernel, "source": args.source, "noise": NOISE, "tile": args.tile,
        "overlap": args.overlap, "budget_gb": args.budget_gb, "load_before": load_before,
        "load_after": load_after, "complete": load_after is not None, "records": records},
        indent=1))


if __name__ == "__main__":
    main()
