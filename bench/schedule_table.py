"""Per-kernel and mean PSNR tables of ``dpir`` against the tuned methods (``dpir-tuned*``) from
eval result folders.

    python bench/schedule_table.py results/set3g-levin-T8 results/set3g-levin-T4
    python bench/schedule_table.py --figure docs/figures/schedules_2.55.png --noise 2.55

Each folder is the ``--out`` of one ``python -m dynpnp_jax.eval --task deblur ... --method dpir
dpir-tuned [--iters T]`` run; T is read from the recorded config. Prints one markdown table per
noise level (rows: method and T; columns: the kernels' PSNR, then the mean PSNR and SSIM over
all images and kernels) and, for each ``dpir-tuned*`` method, the two checks of the
learned-schedules issue: tuned - DPIR at T = 8, and tuned at T = 4 - DPIR at T = 8.

``--figure PNG`` plots instead the shipped schedules (``configs/dpir_tuned.py``,
``configs/dpir_tuned_relax.py``) beside DPIR's for ``--noise``.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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


def schedule_figure(path, noise: float = 2.55) -> None:
    """Plot the shipped schedules (``configs/dpir_tuned.py``, ``configs/dpir_tuned_relax.py``)
    beside DPIR's for ``noise``: sigma_t, rho_t, relax_t and inertia_t against the iteration, T = 8
    (solid) and T = 4 (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from configs import dpir_tuned, dpir_tuned_relax
    from dynpnp_jax.solver import dpir_schedule

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    colours = {"DPIR": "k", "dpir-tuned": "tab:blue", "dpir-tuned-relax": "tab:red"}
    for iters, style in ((8, "-"), (4, "--")):
        sig, rho = dpir_schedule(iters, noise / 255)
        rows = {"DPIR": {"sigma": sig, "mu": rho, "relax": np.ones(iters), "inertia": np.zeros(iters)},
                "dpir-tuned": {**dpir_tuned.TUNED[(noise, iters)], "relax": np.ones(iters),
                               "inertia": np.zeros(iters)},
                "dpir-tuned-relax": dpir_tuned_relax.TUNED[(noise, iters)]}
        t = np.arange(1, iters + 1)
        for name, vals in rows.items():
            for ax, key in zip(axes, ("sigma", "mu", "relax", "inertia")):
                scale = 255.0 if key == "sigma" else 1.0
                ax.plot(t, np.asarray(vals[key]) * scale, style, marker="o", ms=3,
                        color=colours[name], label=f"{name}, T={iters}")
    for ax, title in zip(axes, ("sigma_t (8-bit)", "rho_t", "relax_t", "inertia_t")):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if title.startswith(("sigma", "rho")):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Deblurring schedules, noise {noise:g}: DPIR and the tuned schedules")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", help="eval --out folders")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="plot the shipped schedules beside DPIR's for --noise to PNG instead")
    p.add_argument("--noise", type=float, default=2.55, choices=(2.55, 7.65))
    a = p.parse_args(argv)
    if a.figure:
        schedule_figure(a.figure, a.noise)
        print(f"wrote {a.figure}")
        return 0
    if not a.folders:
        p.error("give eval --out folders (or --figure PNG)")
    print(tables(a.folders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
