"""Plots for the evaluation report: convergence curves (Fig. 4 style) and example images."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_convergence(results: dict, path: Path) -> None:
    """Mean PSNR (float, clipped output vs clean) against iteration, one panel per sigma."""
    plt = _plt()
    sigmas = [str(s) for s in results["sigmas"]]
    fig, axes = plt.subplots(1, len(sigmas), figsize=(4.5 * len(sigmas), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sigmas):
        base = results["methods"].get("prior", {}).get(s, {}).get("psnr_per_iter_mean")
        for method, per in results["methods"].items():
            curve = per.get(s, {}).get("psnr_per_iter_mean")
            if not curve or method == "prior":
                continue
            style = "--" if method == "static" else "-"
            ax.plot(range(1, len(curve) + 1), curve, style, marker="o", label=method)
        if base:
            ax.axhline(base[0], color="gray", lw=1, ls=":", label="prior alone")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration t")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"{results['dataset']} sigma={s}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"protocol {results['protocol']}: dynamic (solid) vs static stacking (dashed)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(images: dict, path: Path, title: str = "") -> None:
    """Input / network alone / dynamic result (/ clean) for one image."""
    plt = _plt()
    panels = [("input", images.get("_input"))]
    for key in ("prior", "static", "authors", "gradient"):
        if key in images:
            panels.append((key, images[key]))
    if images.get("_clean") is not None:
        panels.append(("clean", images["_clean"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    clean = images.get("_clean")
    for ax, (name, img) in zip(axes[0], panels):
        img = np.clip(np.asarray(img), 0, 1)
        label = name
        if clean is not None and name != "clean" and img.shape == np.shape(clean):
            mse = np.mean((img - clean) ** 2)
            label += f"\n{-10 * np.log10(max(mse, 1e-12)):.2f} dB"
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
