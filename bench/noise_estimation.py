"""Measure the noise-level estimators (``dynpnp_jax.noise_estimation``) on the test sets.

    python bench/noise_estimation.py                                  # everything (long: CBSD68)
    python bench/noise_estimation.py --sets set12,blur --ffdnet-methods default,pca,mad
    python bench/noise_estimation.py --sets cbsd68 --max-images 20
    python bench/noise_estimation.py --from-json bench/results/noise_estimation.json --figure \\
        docs/figures/noise_estimation.png                             # tables + plot, no run

Protocol (docs/results/noise_estimation.md):

* ``set12`` (gray) and ``cbsd68`` (colour), 8-bit ground truth ``x = png / 255``; ``y = x + n``
  with white Gaussian ``n`` of std ``level / 255`` for each ``--levels`` (8-bit units), float
  noise, not clipped; the seed of each (set, image, level) is fixed (crc32 of its name). Every
  estimator of ``--methods`` estimates each ``y``, and the clipped ``clip(y, 0, 1)`` too.
* FFDNet (``ffdnet-gray`` / ``ffdnet-color``, the network alone: ``net.prior(y, sigma)``) denoises
  each ``y`` with the true level and with the estimate of each ``--ffdnet-methods``; PSNR of the
  output clipped to [0, 1] against ``x``. The loss is PSNR(true level) - PSNR(estimate).
* ``blur``: Set3G (gray, 256x256) blurred by each of the 8 Levin kernels circularly
  (``scipy.ndimage.convolve(mode='wrap')`` on ``x`` in float), plus noise ``--blur-levels``
  (2.55 and 7.65); estimates only.

Results are appended to ``--out`` (JSON, one record per estimate / per FFDNet run) as they come,
so a long run that is stopped still leaves its first images; ``--from-json`` re-reads such a file
and prints the tables (mean absolute error and bias in 8-bit units, FFDNet PSNR loss) and draws
``--figure``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

SETS = {"set12": ("set12", "L"), "cbsd68": ("cbsd68", "RGB")}
LEVELS = (5.0, 15.0, 25.0, 50.0)
BLUR_LEVELS = (2.55, 7.65)
METHODS = ("default", "pca", "mad")


def seed_of(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def load_set(name: str, max_images: int | None):
    from PIL import Image

    from dynpnp_jax import paths

    root = paths.data_dir()
    folder, mode = SETS[name]
    files = sorted((Path(root) / folder).glob("*.png")) if root is not None else []
    if not files:
        sys.exit(f"{name}: no images in {root}/{folder}; set DYNPNP_DATA to shared/data")
    files = files[:max_images] if max_images else files
    for f in files:
        x = np.asarray(Image.open(f).convert(mode), np.float32) / 255.0
        yield f.stem, (x[..., None] if x.ndim == 2 else x)


def noisy(x: np.ndarray, level: float, *seed_parts) -> np.ndarray:
    rs = np.random.RandomState(seed_of(*seed_parts, level))
    return (x + rs.normal(0.0, level / 255.0, x.shape)).astype(np.float32)


def estimate(y: np.ndarray, method: str) -> tuple[float, float]:
    from dynpnp_jax.noise_estimation import estimate_noise_level

    t0 = time.perf_counter()
    s = float(estimate_noise_level(y[None], method=method)[0])
    return s * 255.0, time.perf_counter() - t0


class Writer:
    def __init__(self, path: Path | None, meta: dict):
        self.path, self.data = path, {"meta": meta, "records": []}

    def add(self, **rec):
        self.data["records"].append(rec)

    def flush(self):
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=0))
            os.replace(tmp, self.path)


def run_denoise_set(name, args, w: Writer):
    from tqdm.auto import tqdm

    net = fn = None
    if args.ffdnet_methods:
        import jax
        import jax.numpy as jnp

        from dynpnp_jax import load_network
        from dynpnp_jax.metrics import psnr

        net = load_network("ffdnet-gray" if SETS[name][1] == "L" else "ffdnet-color")
        fn = jax.jit(lambda y, s: jnp.clip(net.prior(y, s), 0.0, 1.0))

        def score(y, x, level):
            out = fn(jnp.asarray(y[None]), jnp.full((1,), level / 255.0, jnp.float32))
            return float(psnr(out, x[None])[0])
    images = list(load_set(name, args.max_images))
    for stem, x in tqdm(images, desc=name):
        for level in args.levels:
            y = noisy(x, level, name, stem)
            est = {}
            for clip in (False, True):
                yy = np.clip(y, 0.0, 1.0) if clip else y
                for m in args.methods:
                    e, dt = estimate(yy, m)
                    w.add(kind="estimate", set=name, image=stem, level=level, clip=clip, method=m,
                          estimate=e, seconds=dt, shape=list(x.shape))
                    if not clip:
                        est[m] = e
            if net is not None:
                p_true = score(y, x, level)
                w.add(kind="ffdnet", set=name, image=stem, level=level, method="true",
                      sigma=level, psnr=p_true)
                for m in args.ffdnet_methods:
                    e = est[m] if m in est else estimate(y, m)[0]
                    w.add(kind="ffdnet", set=name, image=stem, level=level, method=m, sigma=e,
                          psnr=score(y, x, e), loss=p_true - score(y, x, e))
        w.flush()


def run_blur(args, w: Writer):
    from scipy import ndimage
    from tqdm.auto import tqdm

    from dynpnp_jax import kernels
    from dynpnp_jax.tune import set3g_images

    imgs = set3g_images()
    jobs = [(stem, i) for stem in imgs for i in range(1, 9)]
    for stem, i in tqdm(jobs, desc="blur"):
        k = np.asarray(kernels.levin(i), np.float64)
        b = ndimage.convolve(imgs[stem].astype(np.float64) / 255.0, k, mode="wrap")[..., None]
        for level in args.blur_levels:
            y = noisy(b, level, "blur", stem, i)
            for m in args.methods:
                e, dt = estimate(y, m)
                w.add(kind="estimate", set="blur", image=f"{stem}-k{i}", level=level, clip=False,
                      method=m, estimate=e, seconds=dt, shape=list(y.shape))
        w.flush()


# ---------------------------------------------------------------- summary
def summarize(data: dict) -> str:
    recs = data["records"]
    est = [r for r in recs if r["kind"] == "estimate"]
    lines = []
    sets = [s for s in ("set12", "cbsd68", "blur") if any(r["set"] == s for r in est)]
    methods = [m for m in METHODS if any(r["method"] == m for r in est)]
    for clip in (False, True):
        rows = [r for r in est if r["clip"] == clip]
        if not rows:
            continue
        lines.append(f"\nEstimate error, 8-bit units: mean |error| (mean signed error); "
                     f"{'y CLIPPED to [0, 1]' if clip else 'float noise, not clipped'}\n")
        lines.append("| set | images | level | " + " | ".join(methods) + " |")
        lines.append("|---|---|---|" + "---|" * len(methods))
        for s in sets:
            levels = sorted({r["level"] for r in rows if r["set"] == s})
            for lv in levels:
                cells = []
                n = 0
                for m in methods:
                    e = np.array([r["estimate"] - lv for r in rows
                                  if r["set"] == s and r["level"] == lv and r["method"] == m])
                    n = max(n, e.size)
                    cells.append(f"{np.mean(np.abs(e)):.2f} ({np.mean(e):+.2f}), max "
                                 f"{np.max(np.abs(e)):.2f}" if e.size else "-")
                lines.append(f"| {s} | {n} | {lv:g} | " + " | ".join(cells) + " |")
    ff = [r for r in recs if r["kind"] == "ffdnet"]
    if ff:
        fm = [m for m in METHODS if any(r["method"] == m for r in ff)]
        lines.append("\nFFDNet alone: PSNR (dB) with the true level, and the loss with each "
                     "estimate (mean over images; max in brackets)\n")
        lines.append("| set | images | level | PSNR true level | " +
                     " | ".join(f"loss {m}" for m in fm) + " |")
        lines.append("|---|---|---|---|" + "---|" * len(fm))
        for s in ("set12", "cbsd68"):
            for lv in sorted({r["level"] for r in ff if r["set"] == s}):
                t = [r["psnr"] for r in ff if r["set"] == s and r["level"] == lv
                     and r["method"] == "true"]
                cells = []
                for m in fm:
                    loss = np.array([r["loss"] for r in ff if r["set"] == s and r["level"] == lv
                                     and r["method"] == m])
                    cells.append(f"{np.mean(loss):.3f} ({np.max(loss):.3f})" if loss.size else "-")
                lines.append(f"| {s} | {len(t)} | {lv:g} | {np.mean(t):.2f} | " +
                             " | ".join(cells) + " |")
    secs = {}
    for r in est:
        if not r["clip"]:
            secs.setdefault((r["method"], tuple(r["shape"])), []).append(r["seconds"])
    lines.append("\nSeconds per image (median), by method and image shape\n")
    lines.append("| method | shape | seconds |\n|---|---|---|")
    for (m, shp), v in sorted(secs.items()):
        lines.append(f"| {m} | {'x'.join(map(str, shp))} | {np.median(v):.3f} |")
    return "\n".join(lines)


def figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = [r for r in data["records"] if r["kind"] == "estimate" and not r["clip"]]
    sets = [s for s in ("set12", "cbsd68", "blur") if any(r["set"] == s for r in est)]
    methods = [m for m in METHODS if any(r["method"] == m for r in est)]
    colours = {"default": "tab:blue", "pca": "tab:orange", "mad": "tab:green"}
    labels = {"default": "default (gray: weak-texture PCA; colour: = PCA)",
              "pca": "PCA, all patches (Chen 2015)", "mad": "wavelet MAD (Donoho)"}
    titles = {"set12": "Set12 (gray)", "cbsd68": "CBSD68 (colour)",
              "blur": "Set3G blurred (8 Levin kernels)"}
    fig, axes = plt.subplots(2, len(sets), figsize=(4.6 * len(sets), 8), squeeze=False)
    for j, s in enumerate(sets):
        rows = [r for r in est if r["set"] == s]
        levels = sorted({r["level"] for r in rows})
        span = max(levels) - min(levels) or 1.0
        for k, m in enumerate(methods):
            off = (k - (len(methods) - 1) / 2) * 0.012 * span
            t = np.array([r["level"] for r in rows if r["method"] == m])
            e = np.array([r["estimate"] for r in rows if r["method"] == m])
            axes[0, j].scatter(t + off, e, s=8, alpha=0.5, color=colours[m], label=labels[m])
            axes[1, j].scatter(t + off, e - t, s=8, alpha=0.5, color=colours[m])
        lim = [0, max(levels) * 1.1]
        axes[0, j].plot(lim, lim, "k--", lw=0.8)
        axes[0, j].set_title(titles[s])
        axes[0, j].set_xlabel("true noise level (8-bit)")
        axes[0, j].set_ylabel("estimate (8-bit)")
        axes[1, j].axhline(0, color="k", lw=0.8)
        if s == "blur":
            axes[1, j].axhspan(-1, 1, color="0.9", zorder=0)
        axes[1, j].set_xlabel("true noise level (8-bit)")
        axes[1, j].set_ylabel("estimate - true (8-bit)")
        axes[1, j].set_xticks(levels)
        axes[0, j].set_xticks(levels)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Noise-level estimates vs the true level (float Gaussian noise, not clipped)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="set12,cbsd68,blur",
                    help="comma list of set12, cbsd68, blur (default: all)")
    ap.add_argument("--levels", default=",".join(f"{v:g}" for v in LEVELS),
                    help="noise levels (8-bit units) for set12/cbsd68")
    ap.add_argument("--blur-levels", default=",".join(f"{v:g}" for v in BLUR_LEVELS))
    ap.add_argument("--methods", default=",".join(METHODS), help="estimators to measure")
    ap.add_argument("--ffdnet-methods", default="default",
                    help="estimates FFDNet denoises with (besides the true level); '' for none")
    ap.add_argument("--max-images", type=int, default=None, help="first N images of each set")
    ap.add_argument("--out", type=Path, default=None, help="JSON file of all records")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="only summarize (and plot) earlier --out files (records merged)")
    ap.add_argument("--figure", type=Path, default=None, help="write the plot here")
    args = ap.parse_args(argv)

    if args.from_json is not None:
        files = [json.loads(f.read_text()) for f in args.from_json]
        data = {"meta": [f["meta"] for f in files],
                "records": [r for f in files for r in f["records"]]}
    else:
        def floats(s, opt):
            try:
                return [float(v) for v in s.split(",") if v.strip()]
            except ValueError:
                ap.error(f"{opt}: expected comma-separated numbers, got {s!r}")
        args.levels = floats(args.levels, "--levels")
        args.blur_levels = floats(args.blur_levels, "--blur-levels")
        args.methods = [m for m in args.methods.split(",") if m]
        args.ffdnet_methods = [m for m in args.ffdnet_methods.split(",") if m]
        for m in args.methods + args.ffdnet_methods:
            if m not in METHODS:
                ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        sets = [s for s in args.sets.split(",") if s]
        for s in sets:
            if s not in (*SETS, "blur"):
                ap.error(f"--sets: unknown set {s!r}; choose from set12, cbsd68, blur")
        cmd = "python bench/noise_estimation.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
        w = Writer(args.out, {"command": cmd.strip(), "cpus": os.cpu_count(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        for s in sets:
            if s == "blur":
                run_blur(args, w)
            else:
                run_denoise_set(s, args, w)
        w.flush()
        data = w.data
    print(summarize(data))
    if args.figure is not None:
        figure(data, args.figure)


if __name__ == "__main__":
    main()
