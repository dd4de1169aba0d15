"""Plug-and-play algorithms beside DPIR's HQS on non-blind deblurring, at equal network calls.

Two steps, both through the library (``restore`` via ``tune.evaluate_set3g``):

1. ``--select``: each algorithm's one free setting, chosen on TRAINING data (never on the test
   set): the first ``--tune-images`` images of ``shared/data/tune`` (centre 128x128 crops) blurred
   by the first ``--kernels`` training kernels of ``tune.training_kernels()`` (none of them a
   Levin kernel), noise
   2.55 and 7.65, DPIR's degradation, 8 iterations, no x8. The setting: the multiplier of DPIR's
   rho schedule (``admm``, ``drs``, ``red``: ``Algorithm.rho_scale``) or the gradient step
   ``delta`` (``pgd``, ``fista``); DPIR's sigma schedule throughout.
2. the table: Set3G with Levin kernels 1-8 (DPIR's protocol: circular blur of the uint8 image,
   seeded noise, PSNR on uint8 without border), FFDNet-gray, x8, 8 iterations = 8 network
   calls for every algorithm, each at its selected setting, beside ``dpir``.

    python bench/algorithms_table.py --select --out bench/results/algorithms-select.json
    python bench/algorithms_table.py --table --select-file bench/results/algorithms-select.json \
        --out bench/results/algorithms-set3g.json

Prints a markdown table (docs/results/algorithms.md holds the measured one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dynpnp_jax import algorithms, dpir_schedule, load_network, make_config, restore, tune
from dynpnp_jax.operators import Blur

NOISES = (2.55, 7.65)
GRIDS = {
    "dpir": ("rho_scale", (1.0,)),
    "admm": ("rho_scale", (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)),
    "drs": ("rho_scale", (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)),
    "red": ("rho_scale", (1.0, 2.0, 4.0, 6.0, 8.0)),
    "pgd": ("delta", (1.0, 1.5, 1.9)),
    "fista": ("delta", (1.0, 1.5, 1.9)),
}


def cfg_kwargs(mode: str, noise: float, setting: str, value: float, iters: int = 8) -> dict:
    kw = {"mode": mode, "iters": iters, "noise_level": noise / 255}
    if setting == "rho_scale":
        sigma, rho = dpir_schedule(iters, noise / 255)
        if "mu" in algorithms.get(mode).numbers:
            kw.update(sigma=list(sigma), mu=list(rho * value))
    else:
        kw["delta"] = value
    return kw


def training_set(n_images: int, n_kernels: int, crop: int = 128):
    ims = tune.load_tune_images()[:n_images]
    out = []
    for im in ims:
        h, w = im.shape
        t, l = (h - crop) // 2, (w - crop) // 2
        out.append(np.uint8(np.round(im[t:t + crop, l:l + crop] * 255)))
    return out, tune.training_kernels()[:n_kernels]


def train_score(net, mode, noise, setting, value, ims, kerns) -> float:
    cfg = make_config(**cfg_kwargs(mode, noise, setting, value), keep_images=False)
    scores = []
    for k in kerns:
        y = np.stack([tune.degrade_dpir(gt, k, noise) for gt in ims])[..., None].astype(np.float32)
        out, _ = restore({"prior": net, "A": Blur.from_kernel(k, len(ims))}, y, cfg)
        res = np.uint8(np.round(np.clip(np.asarray(out[..., 0], np.float64), 0, 1) * 255))
        scores += [tune.psnr_uint8(r, gt) for r, gt in zip(res, ims)]
    return float(np.mean(scores))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--select", action="store_true", help="choose each algorithm's setting on "
                   "the training images")
    p.add_argument("--table", action="store_true", help="the Set3G table at the chosen settings")
    p.add_argument("--select-file", type=Path, help="JSON written by --select")
    p.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    p.add_argument("--tune-images", type=int, default=2)
    p.add_argument("--kernels", type=int, default=5, help="the first N training kernels")
    p.add_argument("--out", type=Path, help="the JSON to write (--select / --table)")
    p.add_argument("--figure", type=Path, help="with --select-file holding a table: a bar chart "
                   "of it (e.g. docs/figures/algorithms_set3g.png)")
    args = p.parse_args(argv)
    if args.figure is not None:
        return figure(json.loads(args.select_file.read_text()), args.figure)
    if args.out is None:
        p.error("--out is required with --select / --table")
    net = load_network("ffdnet-gray")
    result = {"command": "python bench/algorithms_table.py " + " ".join(argv or sys.argv[1:])}
    if args.select:
        ims, kerns = training_set(args.tune_images, args.kernels)
        chosen = {}
        for mode in tqdm(args.methods, desc="algorithms"):
            setting, grid = GRIDS[mode]
            scores = {n: {v: train_score(net, mode, n, setting, v, ims, kerns) for v in grid}
                      for n in NOISES}
            mean = {v: float(np.mean([scores[n][v] for n in NOISES])) for v in grid}
            best = max(grid, key=lambda v: mean[v])
            chosen[mode] = {"setting": setting, "value": best, "train_psnr": scores,
                            "train_mean": mean}
            tqdm.write(f"{mode}: {setting}={best}  " + "  ".join(
                f"{v:g}: {mean[v]:.2f}" for v in grid))
        result["select"] = chosen
    if args.table:
        chosen = result.get("select") or json.loads(args.select_file.read_text())["select"]
        table = {}
        for mode in tqdm(args.methods, desc="algorithms"):
            c = chosen[mode]
            table[mode] = {}
            for n in NOISES:
                t0 = time.time()
                r = tune.evaluate_set3g(cfg_kwargs(mode, n, c["setting"], c["value"]), True,
                                        net=net)
                table[mode][str(n)] = {"mean": r["mean"], "per_kernel": r["per_kernel"],
                                       "seconds": time.time() - t0}
                tqdm.write(f"{mode} noise {n}: {r['mean']:.2f} dB ({time.time() - t0:.0f} s)")
        result["table"] = table
        print("| algorithm | setting (chosen on training images) | 2.55 | 7.65 | vs dpir |")
        print("|---|---|---|---|---|")
        base = table.get("dpir")
        for mode, row in table.items():
            c = chosen[mode]
            d = " / ".join(f"{row[str(n)]['mean'] - base[str(n)]['mean']:+.2f}" for n in NOISES) \
                if base else "-"
            print(f"| `{mode}` | {c['setting']} = {c['value']:g} | "
                  f"{row['2.55']['mean']:.2f} | {row['7.65']['mean']:.2f} | {d} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    return 0


def figure(result: dict, path: Path) -> int:
    """Bar chart of the Set3G table: mean PSNR per algorithm at each noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["table"]
    modes = list(table)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.38
    for j, n in enumerate(NOISES):
        vals = [table[m][str(n)]["mean"] for m in modes]
        bars = ax.bar(np.arange(len(modes)) + (j - 0.5) * width, vals, width,
                      label=f"noise {n}")
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.15, f"{v:.2f}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(modes)), modes)
    ax.set_ylim(20, max(table[m]["2.55"]["mean"] for m in modes) + 2)
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_title("Set3G, Levin k1-k8, FFDNet-gray, x8, 8 network calls", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
