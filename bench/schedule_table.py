"""Per-kernel and mean PSNR tables of ``dpir`` against the tuned methods (``dpir-tuned*``) from
eval result folders.

    python bench/schedule_table.py results/set3g-levin-T8 results/set3g-levin-T4

Each folder is the ``--out`` of one ``python -m dynpnp_jax.eval --task deblur ... --method dpir
dpir-tuned [--iters T]`` run; T is read from the recorded config. Prints one markdown table per
noise level (rows: method and T; columns: the kernels' PSNR, then the mean PSNR and SSIM over
all images and kernels) and, for each ``dpir-tuned*`` method, the two checks of the
learned-schedules issue: tuned - DPIR at T = 8, and tuned at T = 4 - DPIR at T = 8.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(folder) -> dict:
    """``{(method, T, noise): {kernel: ([PSNR per image], [SSIM per image])}}`` of one folder."""
    res = json.loads((Path(folder) / "results.json").read_text())
    out = defaultdict(dict)
    for method, per in res["methods"].items():
        for key, summary in per.items():
            fields = res["condition_fields"][key]
            iters = res["config"][method][key]["iters"]
            psnrs = [v["psnr"] for v in summary["per_image"].values()]
            ssims = [v["ssim"] for v in summary["per_image"].values()]
            if any(p is None for p in psnrs):
                raise SystemExit(f"{folder}: {method} {key} has unscored images")
            out[(method, iters, float(fields["noise"]))][fields["kernel"]] = (psnrs, ssims)
    return out


def tables(folders) -> str:
    runs = {}
    for f in folders:
        runs.update(load(f))
    lines = []
    means = {}
    for noise in sorted({k[2] for k in runs}):
        rows = sorted((k for k in runs if k[2] == noise), key=lambda k: (-k[1], k[0]))
        kernels = list(runs[rows[0]])
        short = [k.split(":")[-1] for k in kernels]
        lines += [f"noise {noise:g}:", "",
                  "| method | T | " + " | ".join(f"k{s}" for s in short) + " | mean | mean SSIM |",
                  "|---|---|" + "---|" * (len(kernels) + 2)]
        for key in rows:
            per = runs[key]
            mean = float(np.mean([p for k in kernels for p in per[k][0]]))
            ssim = float(np.mean([v for k in kernels for v in per[k][1]]))
            means[key] = mean
            lines.append(f"| {key[0]} | {key[1]} | "
                         + " | ".join(f"{np.mean(per[k][0]):.2f}" for k in kernels)
                         + f" | **{mean:.2f}** | {ssim:.4f} |")
        lines.append("")
    tuned = sorted({k[0] for k in runs if k[0].startswith("dpir-tuned")})
    lines.append("| noise | method | tuned - DPIR, T=8 (target >= +0.15) | tuned T=4 - DPIR T=8 "
                 "(target >= 0) | DPIR T=4 - DPIR T=8 |")
    lines.append("|---|---|---|---|---|")
    for noise in sorted({k[2] for k in runs}):
        def m(method, t):
            return means.get((method, t, noise))

        def diff(a, b):
            return "n/a" if a is None or b is None else f"{a - b:+.3f}"
        for name in tuned:
            lines.append(f"| {noise:g} | {name} | {diff(m(name, 8), m('dpir', 8))} | "
                         f"{diff(m(name, 4), m('dpir', 8))} | "
                         f"{diff(m('dpir', 4), m('dpir', 8))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print(tables(sys.argv[1:]))
