"""Kernel error as extra noise: the loop's level at the true sensor noise, at the effective level
(``dynpnp_jax.effective_noise``) and at the best level of a grid (the oracle).

    nice -n 10 python bench/effective_noise.py --split tune --out /tmp/effn_tune
    nice -n 10 python bench/effective_noise.py --split test --out /tmp/effn_test
    python bench/effective_noise.py --quick --out /tmp/effn_quick      # one image, k1, 2.55

Protocol (per image, Levin kernel, sensor noise, kernel error):

* ``y``: the image blurred by the TRUE Levin kernel with ``mode='wrap'``, white Gaussian noise of
  std ``--noise`` added (float, not clipped or quantised), cut to the frame no wrapped pixel
  reaches (a 'valid' blur, the boundary unknown: ``frame_crop``); truth: the image on that frame.
* restored with a PERTURBED kernel (normalised to sum 1):
  ``exact``; ``scale:s`` (the kernel resampled at ``s`` times its size, cubic spline
  ``scipy.ndimage.zoom``, negative values cut, centred, odd size); ``noise:e`` (white noise of
  std ``e * max(k)`` added on the kernel's support dilated by one pixel, negative values cut;
  seed = kernel index). The relative error ``||k' - k|| / ||k||`` is recorded.
* ``dpir``, FFDNet (gray / colour), 8 iterations, no x8, ``boundary='unknown'`` (as the restore
  command runs), at the levels ``ratio * sigma`` for ``ratio`` in ``--grid`` (``sigma`` the true
  sensor level); PSNR on the frame. The oracle is the grid's best; ``true sigma`` is ratio 1.
* the effective level: ``--rule-run`` (default) calls ``effective_noise_level(y, k', prior=net)``
  (the sensor level estimated from ``y``; the pilot runs the loop at it and at twice it) and
  restores at the level it returns; ``--no-rule-run`` records the grid only, and the rule is
  then applied offline (``--from-json``) to the grid's own outputs: ``D`` from the runs at ratio
  1 and 2 (the TRUE sensor level, not the estimate) and the PSNR at ``level_ratio(D) * sigma``
  interpolated linearly in log(level) between grid points.
* the data-residual statistic the module does not use (``pilot_residual``: ``q``, the fit's
  residual over that of pure noise) is recorded for every case.

``--references A.json``: for the cases of a recorded run (the tune split), two references for
``R`` that were measured and not used (docs/results/effective_noise.md): the bootstrap ``R_ref``
(the pilot rerun on ``y_ref = k' * x(sigma) + n``, a problem whose kernel is exact by
construction, with the same content) and an analytic ``R_model`` (Wiener filters at ``sigma``
and ``2 sigma`` on a power-law image spectrum ``c / |D(w)|^2`` fitted to ``y``); prints how often
``R``, ``R / R_ref`` and ``R / R_model`` rank a wrong kernel (oracle gain > 0.5 dB) above an
exact one at the same noise level. Given a ``--real`` run's records instead, the rank
correlations of ``R`` and ``R_model`` with the kernel's size and with IRCNN's levels.

``--from-json A.json [B.json] --fit``: chooses ``R0``, ``BETA``, ``GAMMA`` on the records of A
(the tune split; over a grid of constants, max ratio fixed: the largest mean gain over the true
sigma, less twice the mean loss on the exact kernels) and prints the tables for every file with
the chosen (or the module's) constants.

Splits: ``tune`` (../shared/data/tune, 180x180 gray training images: the rule's constants are
chosen on it), ``test`` (Set3G and Set3C, 256x256: reporting only).
Writes ``effective_noise.json`` (every record) and ``effective_noise.md`` (tables) to ``--out``.
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
from dynpnp_jax import calibration as cal  # noqa: E402
from dynpnp_jax import kernels, paths  # noqa: E402
from dynpnp_jax.data.degradations import frame_crop  # noqa: E402
from dynpnp_jax import effective_noise as en  # noqa: E402
from dynpnp_jax.effective_noise import effective_noise_level, level_ratio  # noqa: E402
from dynpnp_jax.metrics import psnr  # noqa: E402
from dynpnp_jax.operators import Blur  # noqa: E402

SPLITS = {
    "tune": [("tune", f"train400_{i:03d}") for i in (1, 41, 121, 201)],
    "test": [("set3g", n) for n in ("cameraman", "house", "lena256")]
    + [("set3c", n) for n in ("butterfly", "leaves", "starfish")],
}
ERRORS = ("exact", "scale:1.1", "noise:0.2")
GRID = (1.0, 1.5, 2.0, 3.0, 4.0)
NOISE_SEED_REF = 7  # the bootstrap reference's noise


def blur_wrap(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.convolve(x[..., c], k, mode="wrap") for c in range(x.shape[-1])], -1)


def perturb(k: np.ndarray, spec: str, seed: int = 0) -> np.ndarray:
    """The kernel error of the protocol (see the module docstring)."""
    if spec == "exact":
        return k.copy()
    kind, amt = spec.split(":")
    amt = float(amt)
    if kind == "scale":
        z = np.maximum(ndimage.zoom(k, amt, order=3), 0)
        n = max(k.shape[0], z.shape[0], k.shape[1], z.shape[1])
        n += 1 - n % 2
        out = np.zeros((n, n))
        oy, ox = (n - z.shape[0]) // 2, (n - z.shape[1]) // 2
        out[oy:oy + z.shape[0], ox:ox + z.shape[1]] = z
        return out / out.sum()
    if kind == "noise":
        sup = ndimage.binary_dilation(k > 0.01 * k.max(), iterations=1)
        kk = np.maximum(k + amt * k.max() * np.random.RandomState(seed).randn(*k.shape) * sup, 0)
        return kk / kk.sum()
    raise ValueError(f"unknown kernel error {spec!r}")


def make_case(data: Path, s: str, name: str, ki: int, sg: float, err: str):
    """``(y, truth, k, k')`` of the protocol: the image blurred by the true Levin kernel ``k``
    (wrap), noise of std ``sg`` (8-bit units, seeded by kernel and level), cut to the valid frame;
    the truth on that frame; the perturbed kernel ``k'``."""
    img = np.asarray(Image.open(data / s / f"{name}.png"), np.float32) / 255
    img = img[..., None] if img.ndim == 2 else img
    k = np.asarray(kernels.levin(ki), np.float64)
    b = blur_wrap(img, k)
    seed = ki * 1000 + int(round(sg * 100))
    y = frame_crop(b + np.random.RandomState(seed).normal(0, sg / 255, b.shape),
                   k.shape).astype(np.float32)
    return y, frame_crop(img, k.shape), k, perturb(k, err, seed=ki)


def rel_error(kp: np.ndarray, k: np.ndarray) -> float:
    n = max(kp.shape[0], k.shape[0])

    def pad(a):
        p = (n - a.shape[0]) // 2
        return np.pad(a, p)
    return float(np.linalg.norm(pad(kp) - pad(k)) / np.linalg.norm(k))


def interp_psnr(grid_levels, grid_psnr, level):
    lv = np.log(np.asarray(grid_levels))
    return float(np.interp(np.log(level), lv, np.asarray(grid_psnr)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=sorted(SPLITS), default="tune")
    ap.add_argument("--images", nargs="+", default=None, help="only these images of the split")
    ap.add_argument("--kernels", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--noise", type=float, nargs="+", default=[2.55, 7.65])
    ap.add_argument("--errors", nargs="+", default=list(ERRORS))
    ap.add_argument("--grid", type=float, nargs="+", default=list(GRID))
    ap.add_argument("--rule-run", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--quick", action="store_true", help="one image, Levin k1, noise 2.55")
    ap.add_argument("--out", default="/tmp/effective_noise")
    ap.add_argument("--from-json", nargs="+", default=None,
                    help="summarise recorded runs (A.json+B.json: read as one set)")
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75],
                    help="with --fit: the GAMMA values searched")
    ap.add_argument("--fit", action="store_true",
                    help="with --from-json: choose R0, BETA, GAMMA on the first file's records")
    ap.add_argument("--real", action="store_true", help="the effective level of IRCNN's 32 real "
                    "deblurring pictures (the pilot only), beside IRCNN's hand-set level")
    ap.add_argument("--real-figure", default=None, metavar="NAME",
                    help="restore a 256x256 centre crop of this real picture at --levels and "
                         "draw docs/figures/effective_noise_real.jpg beside IRCNN's output")
    ap.add_argument("--levels", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--references", default=None, metavar="JSON",
                    help="the bootstrap and analytic references for R on a recorded run's cases")
    args = ap.parse_args(argv)
    if args.references:
        return references(args.references, Path(args.out))
    if args.real_figure:
        return real_figure(args.real_figure, args.levels)
    if args.real:
        return real(Path(args.out))
    if args.from_json:
        return from_json(args.from_json, args.fit, args.gammas)
    images = [im for im in SPLITS[args.split] if args.images is None or im[1] in args.images]
    if args.quick:
        images, args.kernels, args.noise = images[:1], args.kernels[:1], args.noise[:1]
        args.errors = ["exact", "scale:1.1"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = paths.data_dir()
    nets = {}
    recs = []
    jobs = [(s, n, ki, sg, e) for (s, n) in images for ki in args.kernels for sg in args.noise
            for e in args.errors]
    for s, name, ki, sg, err in tqdm(jobs, desc=f"effective noise ({args.split})"):
        y, truth, k, kp = make_case(data, s, name, ki, sg, err)
        c = y.shape[-1]
        if c not in nets:
            nets[c] = dp.load_network("ffdnet-color" if c == 3 else "ffdnet-gray")
        A = Blur.from_kernel(kp.astype(np.float32), 1, boundary="unknown")

        def run(level):
            cfg = dp.make_config("dpir", iters=8, noise_level=level / 255, boundary="unknown",
                                 keep_images=False)
            try:
                r, _ = dp.restore({"prior": nets[c], "A": A}, y[None], cfg)
            except FloatingPointError:
                return float("nan")
            outs[level] = np.asarray(r)[0]
            return float(psnr(np.asarray(r), truth[None])[0])

        outs = {}
        r_y, r_n = en.pilot_residual(y, kp, sg / 255)
        levels = [g * sg for g in args.grid]
        ps = [run(lv) for lv in levels]
        best = int(np.nanargmax(ps))
        rec = dict(split=args.split, set=s, image=name, kernel=ki, noise=sg, error=err,
                   rel_error=rel_error(kp, k), grid=levels, grid_psnr=ps,
                   oracle_level=levels[best], oracle_psnr=ps[best], true_psnr=ps[0],
                   q=r_y / r_n)
        if len(outs) == len(levels):  # features of the outputs (for trying other rules)
            o1, o2 = outs[levels[0]], outs[levels[min(2, len(levels) - 1)]]
            rec["diff_1_2"] = float(np.sqrt(np.mean((o1 - o2) ** 2)) * 255)
            rec["spectral_ratio"] = en.spectral_ratio(o1, o2, kp)
        if args.rule_run:
            t0 = time.perf_counter()
            eff = effective_noise_level(y, kp, prior=nets[c])
            rec["rule"] = eff.as_dict()
            rec["rule_seconds"] = time.perf_counter() - t0
            rec["rule_psnr"] = run(eff.sigma)
        recs.append(rec)
        tqdm.write(f"{name} k{ki} {sg} {err} (rel {rec['rel_error']:.2f}): true {ps[0]:.2f} "
                   f"oracle {ps[best]:.2f} @ {levels[best]:.2f}, q {rec['q']:.3f}, "
                   f"D {rec.get('diff_1_2', np.nan) / sg:.2f}"
                   + (f", rule {rec['rule']['sigma']:.2f} -> {rec['rule_psnr']:.2f}"
                      if args.rule_run else ""))
        (out / "effective_noise.json").write_text(json.dumps(recs, indent=1))
    if not args.rule_run:  # the rule applied offline to the grid (as --from-json)
        for r in recs:
            lv, r["rule_psnr_offline"] = offline_rule(r)
            r["rule"] = dict(sigma=lv, r=r["spectral_ratio"])
    table = summarize(recs, key="rule_psnr" if args.rule_run else "rule_psnr_offline")
    (out / "effective_noise.md").write_text(table)
    print(table)
    return recs


def reblur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``k * x`` at the size of ``x`` (reflected edges, then a 'valid' blur)."""
    from bench.real_photographs import conv_valid
    kh, kw = k.shape
    return conv_valid(np.pad(x, ((kh - 1 - kh // 2, kh // 2), (kw - 1 - kw // 2, kw // 2),
                                 (0, 0)), mode="reflect"), k)


def model_ratio(y: np.ndarray, k: np.ndarray, s: float) -> float:
    """The analytic reference: ``R`` of Wiener restorations at ``s`` and ``2 s`` ([0, 1] scale)
    of an image with the power spectrum ``c / |D(w)|^2`` (``c`` fitted to ``y``'s spectrum where
    the kernel passes more than half the power; a Hann window against the frame's edges)."""
    h, w = y.shape[:2]
    win = np.outer(np.hanning(h), np.hanning(w))[..., None]
    y2 = np.mean(np.abs(np.fft.fft2((y - y.mean((0, 1))) * win, axes=(0, 1))) ** 2, -1)
    y2 /= np.mean(win ** 2) * h * w
    kp = np.zeros((h, w))
    kp[:k.shape[0], :k.shape[1]] = k
    k2 = np.abs(np.fft.fft2(np.roll(kp, (-(k.shape[0] // 2), -(k.shape[1] // 2)), (0, 1)))) ** 2
    d = np.asarray(cal._freq_weight(h, w), np.float64)  # |D_x|^2 + |D_y|^2, 0 at DC
    sel = (k2 > 0.5) & (d > 0)
    c = np.median(np.maximum(y2[sel] - s ** 2, 1e-12) * d[sel] / k2[sel])
    p = c / np.where(d > 0, d, np.inf)

    def wiener(sig):
        return np.sqrt(k2) / (k2 + sig ** 2 / np.maximum(p, 1e-30))
    e = (wiener(s) - wiener(2 * s)) ** 2 * (k2 * p + s ** 2) * (d > 0)
    return float(np.sqrt(e.sum() / (k2 * e).sum()))


def references_real(recs):
    """``R_model`` of the real pictures' pilot crops (a ``--real`` run's records): its rank
    correlation with the kernel's size, and that of ``R / R_model`` with IRCNN's level."""
    from scipy.stats import spearmanr

    from dynpnp_jax.restore_cli import load_kernel
    folder = paths.data_dir() / "ircnn_real" / "deblur"
    rows = []
    for r in recs:
        src = [p for p in folder.glob(r["image"] + ".*") if p.suffix.lower() in (".png", ".jpg")]
        y = np.asarray(Image.open(src[0]).convert("RGB"), np.float64) / 255
        k = np.asarray(load_kernel(str(folder / f"{r['image']}_kernel.png")), np.float64)
        k /= k.sum()
        yc = en._centre_crop(y, max(en.CROP, max(k.shape) + 16))
        rm = model_ratio(yc, k, r["sensor"] / 255)
        print(f"{r['image']}: kernel {k.shape[0]}, R {r['r']:.2f}, R_model {rm:.2f}, IRCNN "
              f"{r['ircnn_isigma']}")
        if np.isfinite(r["r"]):
            rows.append((r["r"], rm, k.shape[0], r["ircnn_isigma"]))
    r_, rm, ks, ir = (np.array(c, np.float64) for c in zip(*rows))
    print(f"{len(rows)} pictures with a finite R; rank correlations: R with the kernel's size "
          f"{spearmanr(r_, ks)[0]:.2f}, R_model with it {spearmanr(rm, ks)[0]:.2f}; with IRCNN's "
          f"level: R {spearmanr(r_, ir)[0]:.2f}, R / R_model {spearmanr(r_ / rm, ir)[0]:.2f}")
    return rows


def references(path: str, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    recs = json.loads(Path(path).read_text())
    if recs and "ircnn_isigma" in recs[0]:
        return references_real(recs)
    data = paths.data_dir()
    nets, res = {}, []
    for r in tqdm(recs, desc="references for R"):
        y, _, _, kp = make_case(data, r["set"], r["image"], r["kernel"], r["noise"], r["error"])
        c = y.shape[-1]
        if c not in nets:
            nets[c] = dp.load_network("ffdnet-color" if c == 3 else "ffdnet-gray")
        A = Blur.from_kernel(kp.astype(np.float32), 1, boundary="unknown")

        def run(yy, level):
            cfg = dp.make_config("dpir", iters=8, noise_level=level / 255, boundary="unknown",
                                 keep_images=False)
            o, _ = dp.restore({"prior": nets[c], "A": A}, yy[None], cfg)
            return np.asarray(o, np.float64)[0]
        sg = r["noise"]
        x1, x2 = run(y, sg), run(y, 2 * sg)
        yr = (reblur(x1, kp) + np.random.RandomState(NOISE_SEED_REF).normal(0, sg / 255, x1.shape)
              ).astype(np.float32)
        rec = dict(r, R=en.spectral_ratio(x1, x2, kp),
                   R_ref=en.spectral_ratio(run(yr, sg), run(yr, 2 * sg), kp),
                   R_model=model_ratio(np.asarray(y, np.float64), kp, sg / 255))
        res.append(rec)
        tqdm.write(f"{r['image']} k{r['kernel']} {sg} {r['error']}: R {rec['R']:.2f}, R_ref "
                   f"{rec['R_ref']:.2f}, R_model {rec['R_model']:.2f}, oracle gain "
                   f"{r['oracle_psnr'] - r['true_psnr']:.2f}")
        (out / "effective_noise_references.json").write_text(json.dumps(res, indent=1))
    for name, f in (("R", lambda d: d["R"]), ("R / R_ref", lambda d: d["R"] / d["R_ref"]),
                    ("R / R_model", lambda d: d["R"] / d["R_model"])):
        right = total = 0
        for sg in sorted({d["noise"] for d in res}):
            ex = [f(d) for d in res if d["noise"] == sg and d["error"] == "exact"]
            wr = [f(d) for d in res if d["noise"] == sg and d["error"] != "exact"
                  and d["oracle_psnr"] - d["true_psnr"] > 0.5]
            right += sum(b > a for a in ex for b in wr)
            total += len(ex) * len(wr)
        ex = [f(d) for d in res if d["error"] == "exact"]
        wr = [f(d) for d in res if d["error"] != "exact"]
        print(f"{name}: wrong (gain > 0.5 dB) above exact in {right}/{total} pairs; exact "
              f"{min(ex):.2f}-{max(ex):.2f}, wrong {min(wr):.2f}-{max(wr):.2f}")
    return res


def real(out: Path):
    """The pilot on every picture of ../shared/data/ircnn_real/deblur (full size, its kernel,
    FFDNet-colour, the restore command's defaults: floor 1/255, boundary 'unknown', saturation
    'auto'); IRCNN's levels parsed from its output's name ``..._ircnn_Isigma_A_Msigma_B.png``."""
    import re

    from dynpnp_jax.noise_estimation import estimate_noise_level
    from dynpnp_jax.restore_cli import NOISE_FLOOR, load_kernel

    out.mkdir(parents=True, exist_ok=True)
    folder = paths.data_dir() / "ircnn_real" / "deblur"
    net = dp.load_network("ffdnet-color")
    recs = []
    names = sorted(p.stem[:-len("_kernel")] for p in folder.glob("*_kernel.png"))
    for name in tqdm(names, desc="real pictures"):
        src = [p for p in folder.glob(name + ".*") if p.suffix.lower() in (".png", ".jpg")][0]
        y = np.asarray(Image.open(src).convert("RGB"), np.float32) / 255
        k = load_kernel(str(folder / f"{name}_kernel.png"))
        ir = sorted(folder.glob(f"{name}_ircnn_*.png"))
        m = re.search(r"Isigma_(\d+)_Msigma_(\d+)", ir[0].name) if ir else None
        est = float(estimate_noise_level(y[None])[0]) * 255
        t0 = time.perf_counter()
        eff = effective_noise_level(y, k, sensor=est, floor=NOISE_FLOOR, prior=net,
                                    saturation="auto")
        rec = dict(image=name, size=list(y.shape), kernel=list(k.shape), estimate=est,
                   ircnn_isigma=int(m.group(1)) if m else None,
                   ircnn_msigma=int(m.group(2)) if m else None,
                   seconds=time.perf_counter() - t0, **eff.as_dict())
        recs.append(rec)
        tqdm.write(f"{name}: estimate {est:.2f}, R {eff.r:.2f}, D {eff.d:.2f}, effective "
                   f"{eff.sigma:.2f}, IRCNN {rec['ircnn_isigma']} ({rec['seconds']:.0f} s)")
        (out / "effective_noise_real.json").write_text(json.dumps(recs, indent=1))
    return recs


def real_figure(name: str, levels, side: int = 256):
    """Crops: input | the loop at each level | IRCNN's output (the restore command's loop:
    dpir, 8 iterations, boundary 'unknown', saturation 'auto', FFDNet-colour)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dynpnp_jax.restore_cli import load_kernel

    folder = paths.data_dir() / "ircnn_real" / "deblur"
    src = [p for p in folder.glob(name + ".*") if p.suffix.lower() in (".png", ".jpg")][0]
    y = np.asarray(Image.open(src).convert("RGB"), np.float32) / 255
    k = load_kernel(str(folder / f"{name}_kernel.png"))
    h, w = y.shape[:2]
    i, j = (h - side) // 2, (w - side) // 2
    yc = y[i:i + side, j:j + side]
    net = dp.load_network("ffdnet-color")
    op = Blur.from_kernel(k, 1, boundary="unknown")
    cols = [("input (crop)", yc)]
    for lv in levels:
        cfg = dp.make_config("dpir", 8, noise_level=lv / 255, boundary="unknown",
                             saturation="auto", keep_images=False)
        out, _ = dp.restore({"prior": net, "A": op}, yc[None], cfg)
        cols.append((f"level {lv:.2f}/255", np.asarray(out)[0]))
    ir = sorted(folder.glob(f"{name}_ircnn_*.png"))
    if ir:
        im = np.asarray(Image.open(ir[0]).convert("RGB"), np.float32) / 255
        cols.append(("IRCNN (" + ir[0].stem.split("_ircnn_")[1] + ")", im[i:i + side, j:j + side]))
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 2.9))
    for ax, (t, im) in zip(axes, cols):
        ax.imshow(np.clip(im, 0, 1))
        ax.set_title(t, fontsize=8)
        ax.axis("off")
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    path = ROOT / "docs" / "figures" / "effective_noise_real.jpg"
    fig.savefig(path, dpi=100, pil_kwargs={"quality": 80})
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def offline_rule(r, r0=None, beta=None, gamma=None):
    """(level, PSNR) of the rule applied to a record's grid (see the module docstring)."""
    level = level_ratio(r["spectral_ratio"], r["noise"], r0=r0, beta=beta,
                        gamma=gamma) * r["noise"]
    return level, interp_psnr(r["grid"], r["grid_psnr"], level)


def from_json(files, fit, gammas=(0.0, 0.25, 0.5, 0.75)):
    """``files``: each a JSON of records, or several joined by ``+`` (read as one set)."""
    sets = [sum((json.loads(Path(p).read_text()) for p in f.split("+")), []) for f in files]
    r0, beta, gamma = en.R0, en.BETA, en.GAMMA
    if fit:
        tune = sets[0]
        best = None
        for g in gammas:
            for b in (0.5, 1.0, 1.5, 2.0, 3.0):
                for c in np.arange(3.0, 8.01, 0.1):
                    ps = [offline_rule(r, c, b, g)[1] - r["true_psnr"] for r in tune]
                    loss = [max(0.0, -p) for p, r in zip(ps, tune) if r["error"] == "exact"]
                    m = np.mean(ps) - 2 * np.mean(loss or [0.0])
                    if best is None or m > best[0] + 1e-9:
                        best = (m, round(float(c), 2), b, g)
        _, r0, beta, gamma = best
        print(f"chosen on {files[0]} ({len(tune)} cases): R0 = {r0:.2f}, BETA = {beta}, "
              f"GAMMA = {gamma}")
    out = []
    for f, recs in zip(files, sets):
        if recs and "ircnn_isigma" in recs[0]:
            t = real_table(recs, r0, beta, gamma)
            print(f"## {f} (R0 = {r0:.2f}, BETA = {beta}, GAMMA = {gamma})\n\n{t}")
            out.append(t)
            continue
        for r in recs:
            lv, p = offline_rule(r, r0, beta, gamma)
            r["rule"] = dict(sigma=lv, r=r["spectral_ratio"])
            r["rule_psnr_offline"] = p
        t = summarize(recs, key="rule_psnr_offline")
        print(f"## {f} (R0 = {r0:.2f}, BETA = {beta}, GAMMA = {gamma}, rule applied offline to "
              f"the grid)\n\n{t}")
        out.append(t)
    return out


def real_table(recs, r0=None, beta=None, gamma=None) -> str:
    lines = ["| picture | size (WxH) | kernel | sensor estimate | sensor level (floor 1) | "
             "pilot R | pilot D | effective level | IRCNN's level (Isigma / Msigma) | pilot s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lv = level_ratio(r["r"], r["sensor"], r0=r0, beta=beta, gamma=gamma) * r["sensor"]
        lines.append(f"| {r['image']} | {r['size'][1]}x{r['size'][0]} | {r['kernel'][0]} | "
                     f"{r['estimate']:.2f} | {r['sensor']:.2f} | {r['r']:.2f} | {r['d']:.2f} | "
                     f"{lv:.2f} | {r['ircnn_isigma']} / {r['ircnn_msigma']} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def summarize(recs, key="rule_psnr") -> str:
    lines = ["| noise | kernel error | rel. error (mean) | true sigma | effective (rule) | "
             "oracle | rule - true | oracle - rule | worst rule - true | q (mean) | "
             "rule level / oracle level (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = sorted({(r["noise"], r["error"]) for r in recs},
                    key=lambda g: (g[0], ERRORS.index(g[1]) if g[1] in ERRORS else 99))
    for sg, err in groups + [("all", "all")]:
        rs = [r for r in recs if (sg == "all" or (r["noise"] == sg and r["error"] == err))]
        t = np.mean([r["true_psnr"] for r in rs])
        o = np.mean([r["oracle_psnr"] for r in rs])
        u = np.mean([r[key] for r in rs])
        rel = np.mean([r["rel_error"] for r in rs])
        lv = np.mean([r["rule"]["sigma"] / r["oracle_level"] for r in rs])
        worst = min(r[key] - r["true_psnr"] for r in rs)
        q = np.mean([r.get("q", r.get("rule", {}).get("q", np.nan)) for r in rs])
        lines.append(f"| {sg} | {err} | {rel:.2f} | {t:.2f} | {u:.2f} | {o:.2f} | {u - t:+.2f} | "
                     f"{o - u:.2f} | {worst:+.2f} | {q:.3f} | {lv:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
