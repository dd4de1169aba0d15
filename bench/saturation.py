"""Saturated highlights: the plain deblurring loop against the saturation-aware ones.

    nice -n 10 python bench/saturation.py --clip-frac 0.03 0.1 --methods off auto --out /tmp/sat

Protocol (per Set3G / Set3C image, 256x256, per Levin kernel):

* the scene ``x_s = s * x`` is the image scaled by ``s``, chosen per image and kernel so that
  ``--clip-frac`` (7 %; several values: one condition each) of the blurred pixels exceed 1
  (the quantile of the blurred image; the fraction actually clipped, after noise, is recorded);
* ``y = clip(k * x_s + n, 0, 1)``, ``n`` white Gaussian of std 2.55/255, blurred with
  ``mode='wrap'`` and cut to the frame no wrapped pixel reaches (a 'valid' blur, the boundary
  unknown: ``frame_crop``), not quantised;
* the truth is ``clip(x_s, 0, 1)`` on the same frame (what a display shows of the sharp scene);
* the same frames without scaling (``s = 1``) check that nothing is lost where little or nothing
  clips;
* ``dpir``, FFDNet (gray / colour), 8 iterations, x8, ``boundary='unknown'``, noise level 2.55,
  with ``saturation='off'`` (the plain loop), ``'auto'`` (the library's choice, ``'clipped'``:
  the one-sided clipped model), ``'clipped'`` or ``'masked'`` (clipped values unobserved);
  ``unclipped``: the plain loop on the same frame before clipping (``k * x_s + n``, same noise),
  what the clipping costs it at most;
  ``--reuse`` takes the ``'off'`` records of an earlier run instead of rerunning them.

``--real NAME ...`` (or ``--real clipped``: every picture with at least 0.05 % clipped values)
instead restores pictures of ``../shared/data/ircnn_real/deblur`` (their estimated kernels,
FFDNet-colour, ``dpir`` x8, 8 iterations, ``boundary='unknown'``, noise level ``--real-noise``)
with ``saturation='off'`` and ``'auto'``, on a ``--real-crop`` square around the densest clipped
area plus the kernel's reach, records the re-blur residual on the unclipped values next to the
highlights for both and for IRCNN's output, and draws ``docs/figures/saturation_real.jpg``:
input | off | auto | IRCNN's output on the square.

    nice -n 10 python bench/saturation.py --real clipped --out /tmp/saturation_real

``--likelihood`` instead asks whether clipped values bias ``calibrated``'s default kernel score
(:func:`dynpnp_jax.calibration.likelihood_score`, ``frame=True``, which sees every value of
``y``): on each frame unscaled and at the 10 % target, the scale of the true kernel (0.80-1.25 in
steps of 0.05, :func:`~dynpnp_jax.calibration.warp_kernel`) that the score prefers, on the whole
frame and on the half-size window (of a 3 x 3 grid of positions) with the fewest clipped values.

    python bench/saturation.py --likelihood --kernels 1 4 --out /tmp/saturation_likelihood

``--curves SET/IMAGE/K ...`` draws the PSNR per iteration of ``off`` and ``auto`` at 8 and
``--iters`` iterations on those frames (the first ``--clip-frac`` target):

    python bench/saturation.py --curves set3c/butterfly/4 set3g/cameraman/4 set3c/leaves/4 \
        --clip-frac 0.1 --iters 16 --out /tmp/saturation_curves

Writes ``saturation.json`` and ``saturation.md`` (the table) to ``--out`` and the figure
``docs/figures/saturation.jpg`` (``--figure``): starfish, Levin k1 and k4, the first condition,
truth | y | one column per method.
Times are the median wall time per image after each program's first (compiling) call.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dynpnp_jax as dp  # noqa: E402
from dynpnp_jax import kernels, paths  # noqa: E402
from dynpnp_jax.data.degradations import frame_crop  # noqa: E402
from dynpnp_jax.metrics import psnr  # noqa: E402
from dynpnp_jax.operators import Blur  # noqa: E402
from dynpnp_jax.saturation import clipped, saturated_fraction  # noqa: E402

IMAGES = {"set3g": ("cameraman", "house", "lena256"), "set3c": ("butterfly", "leaves", "starfish")}
NOISE = 2.55 / 255
UNCLIPPED = "unclipped"  # --methods: the plain loop on the frame before clipping (no clipping)
FIG = ("set3c", "starfish")  # the figure's image (Levin k1 and k4, the first condition)


def load_image(data: Path, s: str, name: str) -> np.ndarray:
    """A test image of the data folder as float32 (H, W, C) on [0, 1]."""
    img = np.asarray(Image.open(data / s / f"{name}.png"), np.float32) / 255
    return img[..., None] if img.ndim == 2 else img


def blur_wrap(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``k * x`` per channel, periodic (x: H, W, C)."""
    return np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(x.shape[-1])], -1)


def make_case(img: np.ndarray, k: np.ndarray, scale: float, seed: int, clip: bool = True):
    """(y, truth): the frame of ``clip(k * (scale img) + n, 0, 1)`` (``clip=False``: of
    ``k * (scale img) + n``, the same noise) and of ``clip(scale img, 0, 1)``."""
    xs = img * scale
    b = blur_wrap(xs, k)
    n = np.random.RandomState(seed).normal(0, NOISE, b.shape)
    y = np.clip(b + n, 0, 1) if clip else b + n
    return (frame_crop(y, k.shape).astype(np.float32),
            frame_crop(np.clip(xs, 0, 1), k.shape).astype(np.float32))


def scale_for(img: np.ndarray, k: np.ndarray, frac: float) -> float:
    """The scale at which ``frac`` of the blurred frame's values exceed 1."""
    b = frame_crop(blur_wrap(img, k), k.shape)
    return float(1.0 / np.quantile(b, 1.0 - frac))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=int, nargs="+", default=list(range(1, 9)),
                    help="Levin kernels 1-8")
    ap.add_argument("--sets", nargs="+", default=["set3g", "set3c"], choices=sorted(IMAGES))
    ap.add_argument("--methods", nargs="+", default=["off", "auto", "masked"])
    ap.add_argument("--clip-frac", type=float, nargs="+", default=[0.07],
                    help="target fractions of blurred values over 1 (one condition each)")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--out", default="/tmp/saturation")
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "saturation.jpg"))
    ap.add_argument("--reuse", default=None,
                    help="an earlier saturation.json: take its 'off' records (same protocol) "
                         "instead of rerunning the plain loop, except the figure's frames")
    ap.add_argument("--real", nargs="+", default=None, help="ircnn_real/deblur picture names")
    ap.add_argument("--real-noise", type=float, default=2.55, help="8-bit noise level")
    ap.add_argument("--real-crop", type=int, default=192,
                    help="--real: the shown square (px) around the densest clipped area; the "
                         "restored region adds the kernel's size on every side (0: whole picture)")
    ap.add_argument("--curves", nargs="+", default=None, metavar="SET/IMAGE/K",
                    help="PSNR per iteration of off and auto at 8 and --iters iterations on these "
                         "frames (e.g. set3c/butterfly/4) at the first --clip-frac target; draws "
                         "docs/figures/saturation_curves.png")
    ap.add_argument("--likelihood", action="store_true",
                    help="the kernel scale calibrated's likelihood score prefers on clipped frames")
    args = ap.parse_args(argv)
    if args.real_crop < 0:
        ap.error(f"--real-crop {args.real_crop}: expected 0 (the whole picture) or a side in px")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.real:
        return real(args, out)
    if args.likelihood:
        return likelihood(args, out)
    if args.curves:
        return curves(args, out)
    data = paths.data_dir()
    nets = {"set3g": dp.load_network("ffdnet-gray"), "set3c": dp.load_network("ffdnet-color")}
    jobs = [(s, name, ki) for ki in args.kernels for s in args.sets for name in IMAGES[s]]
    conds = [(f"saturated {f:g}", f) for f in args.clip_frac] + [("unscaled", None)]
    recs, first, fig_cases = [], set(), {}
    reuse = {}  # the plain loop's records of an earlier run (saturation settings do not touch it)
    for r in json.loads(Path(args.reuse).read_text()) if args.reuse else []:
        if r["method"] == "off":
            reuse[(r["set"], r["image"], r["kernel"], r["condition"])] = r
    for s, name, ki in tqdm(jobs, desc="saturation bench"):
        img = load_image(data, s, name)
        k = np.asarray(kernels.levin(ki), np.float64)
        for cond, target in conds:
            scale = 1.0 if target is None else scale_for(img, k, target)
            y, truth = make_case(img, k, scale, seed=ki)
            frac = float(saturated_fraction(y[None])[0])
            plain = None  # (image, PSNR) of the plain loop
            fig = (s, name) == FIG and cond == conds[0][0] and ki in (1, 4)  # the figure's frames
            for method in args.methods:
                old = reuse.get((s, name, ki, cond)) if method == "off" else None
                if old is not None and not fig:
                    recs.append(dict(old, reused=True))
                    plain = (None, old["psnr"])
                    continue
                # 'unclipped': the plain loop on the same frame never clipped (what the clipping
                # costs it, at most)
                y_in = make_case(img, k, scale, seed=ki, clip=False)[0] if method == UNCLIPPED \
                    else y
                cfg = dp.make_config("dpir", iters=args.iters, noise_level=NOISE, ensemble=True,
                                     boundary="unknown", keep_images=False,
                                     saturation="off" if method == UNCLIPPED else method)
                params = {"prior": nets[s], "A": Blur.from_kernel(k.astype(np.float32), 1,
                                                                  boundary="unknown")}
                t0 = time.perf_counter()
                key = (s, ki, method, frac > 0)
                if frac == 0 and method != "off" and plain is not None:
                    res, p = plain  # nothing clipped: the plain loop's program (tested), not rerun
                    compiled = True  # no time to count
                else:
                    res, _ = dp.restore(params, y_in[None], cfg)
                    res = np.asarray(res)
                    p = float(psnr(res, truth[None])[0])
                    compiled = key not in first
                    first.add(key)
                plain = (res, p) if method == "off" else plain
                dt = time.perf_counter() - t0
                recs.append(dict(set=s, image=name, kernel=ki, condition=cond, scale=scale,
                                 clipped_frac=frac, method=method, psnr=p, seconds=dt,
                                 compile=compiled))
                if fig and res is not None:
                    fig_cases.setdefault(ki, dict(truth=truth, y=y))[method] = res[0]
                tqdm.write(f"{s}/{name} k{ki} {cond} (s={scale:.3f}, {100 * frac:.1f}% clipped) "
                           f"{method}: {p:.2f} dB, {dt:.1f} s")
            (out / "saturation.json").write_text(json.dumps(recs, indent=1))
    table = summarize(recs, args)
    (out / "saturation.md").write_text(table)
    print(table)
    if fig_cases and args.figure:
        figure(fig_cases, args.figure, args.methods)
    return dict(records=recs, table=table)


def curves(args, out: Path) -> dict:
    """PSNR per iteration (``restore(..., clean=truth)``) of the plain and the saturation-aware
    loop, at 8 iterations and at ``--iters``, on the frames of ``--curves``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = paths.data_dir()
    frac = args.clip_frac[0]
    lengths = sorted({8, args.iters})
    recs = []
    fig, axes = plt.subplots(1, len(args.curves), figsize=(3.3 * len(args.curves), 3.0),
                             squeeze=False)
    for ax, spec in zip(axes[0], args.curves):
        s, name, ki = (spec.split("/") + ["", "", ""])[:3]
        if s not in IMAGES or name not in IMAGES[s] or not ki.isdigit():
            raise SystemExit(f"--curves {spec}: expected SET/IMAGE/K (K a Levin kernel, 1-8) "
                             f"with SET/IMAGE among "
                             f"{[f'{a}/{b}' for a in IMAGES for b in IMAGES[a]]}")
        img = load_image(data, s, name)
        k = np.asarray(kernels.levin(int(ki)), np.float64)
        y, truth = make_case(img, k, scale_for(img, k, frac), int(ki))
        net = dp.load_network("ffdnet-color" if s == "set3c" else "ffdnet-gray")
        for n in lengths:
            for method in ("off", "auto"):
                cfg = dp.make_config("dpir", iters=n, noise_level=NOISE, ensemble=True,
                                     boundary="unknown", saturation=method, keep_images=False)
                _, traj = dp.restore({"prior": net, "A": Blur.from_kernel(
                    k.astype(np.float32), 1, boundary="unknown")}, y[None], cfg,
                    clean=truth[None])
                p = [float(v) for v in np.asarray(traj.psnr)[:, 0]]
                recs.append(dict(frame=spec, iters=n, method=method, psnr=p))
                tqdm.write(f"{spec} {n} iterations {method}: " + " ".join(f"{v:.2f}" for v in p))
                ax.plot(range(1, n + 1), p, "-" if method == "auto" else "--",
                        color="C1" if method == "auto" else "C0", alpha=1.0 if n > 8 else 0.5,
                        label=f"{method}, {n} iterations")
        ax.set_title(f"{name}, Levin k{ki}, {100 * frac:g} % target", fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("PSNR (dB)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(args.figure).with_name("saturation_curves.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    (out / "saturation_curves.json").write_text(json.dumps(recs, indent=1))
    return dict(records=recs)


LIKELIHOOD_SCALES = np.round(np.arange(0.80, 1.2501, 0.05), 2)


def _preferred_scale(y: np.ndarray, k: np.ndarray) -> float:
    """The scale of ``k`` with the lowest ``likelihood_score`` of the frame ``y`` (H, W, C)."""
    import jax.numpy as jnp

    from dynpnp_jax import calibration as cal
    size = 2 * int(np.ceil(max(k.shape) * LIKELIHOOD_SCALES.max() / 2)) + 3
    kk = jnp.stack([cal.warp_kernel(jnp.asarray(k, jnp.float32), size, jnp.float32(s),
                                    jnp.float32(0), jnp.float32(0)) for s in LIKELIHOOD_SCALES])
    yy = jnp.broadcast_to(jnp.asarray(y)[None], (len(LIKELIHOOD_SCALES),) + y.shape)
    score = np.asarray(cal.likelihood_score(yy, kk, NOISE ** 2, frame=True))
    return float(LIKELIHOOD_SCALES[int(np.argmin(score))])


def _fewest_clipped(y: np.ndarray, frac: float = 0.5):
    """The ``frac``-size window (of a 3 x 3 grid of positions) with the fewest clipped pixels (in
    any channel), and the fraction of its values that are clipped."""
    sat = clipped(y).any(-1)
    h, w = y.shape[:2]
    c = int(min(h, w) * frac)
    cands = [(float(sat[i:i + c, j:j + c].mean()), i, j)
             for i in np.linspace(0, h - c, 3).astype(int)
             for j in np.linspace(0, w - c, 3).astype(int)]
    _, i, j = min(cands)
    win = y[i:i + c, j:j + c]
    return win, float(saturated_fraction(win[None])[0])  # per value, as for the frame


def likelihood(args, out: Path) -> dict:
    data = paths.data_dir()
    rows, recs = [], []
    for s in args.sets:
        for name in IMAGES[s]:
            img = load_image(data, s, name)
            for ki in args.kernels:
                k = np.asarray(kernels.levin(ki), np.float64)
                y0, _ = make_case(img, k, 1.0, ki)
                y1, _ = make_case(img, k, scale_for(img, k, 0.1), ki)
                w1, n1 = _fewest_clipped(y1)
                rec = dict(image=name, kernel=ki, clipped=float(saturated_fraction(y1[None])[0]),
                           unscaled=_preferred_scale(y0, k), saturated=_preferred_scale(y1, k),
                           window=_preferred_scale(w1, k), window_clipped=n1)
                recs.append(rec)
                rows.append(f"| {name} | k{ki} | {100 * rec['clipped']:.1f} | {rec['unscaled']:.2f}"
                            f" | {rec['saturated']:.2f} | {rec['window']:.2f} "
                            f"({100 * n1:.1f} %) |")
                tqdm.write(rows[-1])
    hits = {c: sum(r[c] == 1.0 for r in recs) for c in ("unscaled", "saturated", "window")}
    table = ("| image | kernel | clipped % (10 % target) | unscaled frame | saturated frame | "
             "saturated, half-size window with the fewest clipped values (its clipped %) |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
             + f"scale 1.00 (the true kernel) chosen: unscaled {hits['unscaled']}/{len(recs)}, "
             f"saturated {hits['saturated']}/{len(recs)}, window {hits['window']}/{len(recs)}\n")
    (out / "saturation_likelihood.json").write_text(json.dumps(recs, indent=1))
    (out / "saturation_likelihood.md").write_text(table)
    print(table)
    return dict(records=recs, table=table)


def _crop_box(y: np.ndarray, size: int):
    """The ``size`` square (clamped) centred on the densest clipped area of ``y`` (H, W, C)."""
    sat = clipped(y).any(-1).astype(np.float64)
    dens = ndimage.uniform_filter(sat, size // 2)
    i, j = np.unravel_index(np.argmax(dens), dens.shape)
    h, w = sat.shape
    i0 = int(np.clip(i - size // 2, 0, max(h - size, 0)))
    j0 = int(np.clip(j - size // 2, 0, max(w - size, 0)))
    return slice(i0, i0 + size), slice(j0, j0 + size)


REAL_MIN_CLIPPED = 0.0005  # --real clipped: the pictures with at least 0.05 % clipped values


def _real_picture(folder: Path, name: str) -> np.ndarray:
    src = [f for f in folder.glob(f"{name}.*") if f.suffix.lower() in (".png", ".jpg")]
    if len(src) != 1:
        raise SystemExit(f"--real {name}: expected one {name}.png or .jpg in {folder}, "
                         f"found {[f.name for f in src]}")
    return np.asarray(Image.open(src[0]).convert("RGB"), np.float32) / 255


def real_names(folder: Path, names) -> list:
    """``names``, or for ``['clipped']`` every picture of the set with at least
    :data:`REAL_MIN_CLIPPED` of its values at the ceiling."""
    if list(names) != ["clipped"]:
        return list(names)
    every = sorted(p.stem[:-len("_kernel")] for p in folder.glob("*_kernel.png"))
    return [n for n in every
            if saturated_fraction(_real_picture(folder, n)[None])[0] >= REAL_MIN_CLIPPED]


def near_clipped_residual(y: np.ndarray, x: np.ndarray, k: np.ndarray) -> tuple:
    """``(rms, count)`` of ``y - k * x`` (8-bit units) over the unclipped values of ``y``'s valid
    frame that lie within the kernel's reach of a clipped pixel: the data a restoration must
    explain next to a highlight, and what fitting clipped values as data spoils."""
    from bench.real_photographs import conv_valid

    kh, kw = k.shape
    frame = (slice(kh // 2, y.shape[0] - (kh - 1 - kh // 2)),
             slice(kw // 2, y.shape[1] - (kw - 1 - kw // 2)))
    at_level = clipped(y)
    reach = ndimage.maximum_filter(at_level.any(-1), size=(kh, kw))[frame]
    sel = reach[..., None] & ~at_level[frame]
    r = (y[frame] - conv_valid(x, k)) * 255
    n = int(sel.sum())
    return (float(np.sqrt(np.mean(r[sel] ** 2))) if n else float("nan")), n


def real(args, out: Path) -> dict:
    """Each picture: the loop with ``saturation='off'`` and ``'auto'`` on the ``--real-crop``
    square around its densest clipped area extended by the kernel's size on every side (a crop
    of a 'valid' blur is one too; ``--real-crop 0``: the whole picture), the residual next to the
    highlights (:func:`near_clipped_residual`) of both and of IRCNN's output on the same region,
    and the figure ``docs/figures/saturation_real.jpg`` (two pictures a row)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from dynpnp_jax.restore_cli import load_kernel

    folder = paths.data_dir() / "ircnn_real" / "deblur"
    net = dp.load_network("ffdnet-color")
    tiles, recs = [], []
    for name in tqdm(real_names(folder, args.real), desc="real pictures"):
        y_full = _real_picture(folder, name)
        k = load_kernel(str(folder / f"{name}_kernel.png"))
        ircnn = sorted(folder.glob(f"{name}_ircnn_*.png"))
        h, w = y_full.shape[:2]
        size = args.real_crop or max(h, w)
        bi, bj = _crop_box(y_full, size)
        m = max(k.shape)  # the restored region: the shown square and the kernel's reach
        ri = slice(max(bi.start - m, 0), min(bi.stop + m, h))
        rj = slice(max(bj.start - m, 0), min(bj.stop + m, w))
        y = y_full[ri, rj]
        show = (slice(bi.start - ri.start, bi.stop - ri.start),
                slice(bj.start - rj.start, bj.stop - rj.start))
        res = {}
        rec = dict(image=name, clipped_frac=float(saturated_fraction(y_full[None])[0]),
                   region=[ri.start, ri.stop, rj.start, rj.stop], kernel=list(k.shape))
        for method in ("off", "auto"):
            # not clipped to [0, 1]: the residual needs the highlights' estimated values (the
            # figure shows them clipped)
            cfg = dp.make_config("dpir", iters=8, noise_level=args.real_noise / 255,
                                 ensemble=True, boundary="unknown", saturation=method,
                                 keep_images=False, clip_output=False)
            t0 = time.perf_counter()
            r, _ = dp.restore({"prior": net, "A": Blur.from_kernel(k, 1, boundary="unknown")},
                              y[None], cfg)
            res[method] = np.asarray(r)[0]
            rec[f"seconds_{method}"] = time.perf_counter() - t0
            rec[f"peak_{method}"] = float(res[method].max())
        if ircnn:
            full = np.asarray(Image.open(ircnn[0]).convert("RGB"), np.float32) / 255
            res["IRCNN"] = full[ri, rj] if full.shape == y_full.shape else None
        for method, x in res.items():
            if x is not None:  # as estimated, and as shown (clipped to [0, 1], like IRCNN's)
                rec[f"residual_{method}"], rec["residual_count"] = near_clipped_residual(y, x, k)
                rec[f"residual_{method}_shown"] = near_clipped_residual(y, np.clip(x, 0, 1), k)[0]
        recs.append(rec)
        tqdm.write(f"{name} ({100 * rec['clipped_frac']:.2f} % clipped, region "
                   f"{y.shape[0]}x{y.shape[1]}): residual next to the highlights "
                   + ", ".join(f"{mt} {rec.get(f'residual_{mt}', np.nan):.2f}" for mt in res)
                   + f"; {rec['seconds_off']:.0f} / {rec['seconds_auto']:.0f} s")
        cols = [("input", y), ("off", res["off"]), ("auto", res["auto"])]
        if res.get("IRCNN") is not None:
            cols.append(("IRCNN", res["IRCNN"]))
        tiles.append((name, rec, [(t, im[show]) for t, im in cols]))
        (out / "saturation_real.json").write_text(json.dumps(recs, indent=1))
    per_row = 2 if len(tiles) > 4 else 1
    nrow = -(-len(tiles) // per_row)
    fig, axes = plt.subplots(nrow, 4 * per_row, figsize=(2.2 * 4 * per_row, 2.45 * nrow),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for n, (name, rec, cols) in enumerate(tiles):
        for c, (title, im) in enumerate(cols):
            ax = axes[n // per_row, 4 * (n % per_row) + c]
            ax.imshow(np.clip(im, 0, 1))
            if title == "input":
                title = f"{name[:24]}\n{100 * rec['clipped_frac']:.2f} % clipped"
            elif title == "IRCNN":
                title = f"IRCNN: residual {rec.get('residual_IRCNN_shown', np.nan):.2f}\n(8-bit)"
            else:
                title = (f"{title}: residual {rec.get(f'residual_{title}', np.nan):.2f}\n"
                         f"(clipped to [0, 1]: {rec.get(f'residual_{title}_shown', np.nan):.2f})")
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    path = Path(args.figure).with_name("saturation_real.jpg")
    fig.savefig(path, dpi=90, bbox_inches="tight", pil_kwargs={"quality": 82})  # JPEG
    plt.close(fig)
    lines = ["| picture | clipped % | kernel | region | values | residual, as estimated: off | "
             "auto | as shown (clipped to [0, 1]): off | auto | IRCNN | s off / auto |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['image']} | {100 * r['clipped_frac']:.2f} | {r['kernel'][0]} | "
                     f"{r['region'][1] - r['region'][0]}x{r['region'][3] - r['region'][2]} | "
                     f"{r.get('residual_count', 0)} | " + " | ".join(
                         f"{r.get(key, np.nan):.2f}" for key in
                         ("residual_off", "residual_auto", "residual_off_shown",
                          "residual_auto_shown", "residual_IRCNN_shown"))
                     + f" | {r['seconds_off']:.0f} / {r['seconds_auto']:.0f} |")
    table = "\n".join(lines) + "\n"
    (out / "saturation_real.md").write_text(table)
    print(table)
    return dict(records=recs, table=table)


def summarize(recs, args) -> str:
    conds = list(dict.fromkeys(r["condition"] for r in recs))
    others = [m for m in args.methods if m != "off"]
    lines = [f"Levin kernels {args.kernels}, sets {args.sets}; PSNR (dB) on the frame, mean over "
             "the frames; time: median s per image (compiled calls excluded)", "",
             "| frames | clipped % (min-max) | " + " | ".join(args.methods) + " | "
             + " | ".join(f"{m} - off" for m in others) + " |",
             "|---|---|" + "---|" * (len(args.methods) + len(others))]
    for cond in conds:
        for s in args.sets + ["all"]:
            rs = [r for r in recs if r["condition"] == cond and (s == "all" or r["set"] == s)]
            if not rs:
                continue
            fr = [r["clipped_frac"] for r in rs if r["method"] == args.methods[0]]
            mean = {m: np.mean([r["psnr"] for r in rs if r["method"] == m]) for m in args.methods}
            lines.append(f"| {cond} {s} | {100 * min(fr):.1f}-{100 * max(fr):.1f} | "
                         + " | ".join(f"{mean[m]:.2f}" for m in args.methods) + " | "
                         + " | ".join(f"{mean[m] - mean['off']:+.2f}" for m in others) + " |")
    images = list(dict.fromkeys(r["image"] for r in recs))
    lines += ["", "Per image, mean over the kernels: " + " / ".join(args.methods), "",
              "| frames | " + " | ".join(images) + " |", "|---|" + "---|" * len(images)]
    for cond in conds:
        cells = []
        for im in images:
            rs = [r for r in recs if r["condition"] == cond and r["image"] == im]
            cells.append(" / ".join(f"{np.mean([r['psnr'] for r in rs if r['method'] == m]):.2f}"
                                    for m in args.methods))
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    lines += ["", "| method | " + " | ".join(f"median s / image ({c})" for c in conds) + " |",
              "|---|" + "---|" * len(conds)]
    for m in args.methods:
        t = [np.median([r["seconds"] for r in recs if r["method"] == m and not r["compile"]
                        and r["condition"] == c] or [np.nan]) for c in conds]
        lines.append(f"| {m} | " + " | ".join(f"{x:.2f}" for x in t) + " |")
    return "\n".join(lines) + "\n"


def figure(cases, path, methods):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["truth", "y"] + list(methods)
    fig, axes = plt.subplots(len(cases), len(cols), figsize=(2.6 * len(cols), 2.8 * len(cases)),
                             squeeze=False)
    for row, (ki, c) in zip(axes, sorted(cases.items())):
        for ax, col in zip(row, cols):
            img = np.clip(c[col], 0, 1)
            ax.imshow(img if img.shape[-1] == 3 else img[..., 0], cmap="gray", vmin=0, vmax=1)
            title = col if col in ("truth", "y") else f"saturation='{col}'"
            if col not in ("truth", "y"):
                title += f"\n{float(psnr(img[None], c['truth'][None])[0]):.2f} dB"
            ax.set_title(f"{title}" + (f" (Levin k{ki})" if col == "truth" else ""), fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, pil_kwargs={"quality": 85})  # JPEG: photographs
    plt.close(fig)


if __name__ == "__main__":
    main()
