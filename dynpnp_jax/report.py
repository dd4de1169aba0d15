"""The evaluation report: results.json, results.csv, results.md (Markdown table), plots.

``eval`` fills one ``results`` dict (``new_results`` + ``summarize`` per method and condition)
and calls :func:`write_all`. Every number here comes from the protocol's ``evaluate`` or from
:mod:`dynpnp_jax.metrics` (the one owner of PSNR); nothing is scored twice.

``results.json`` keys: ``dataset``, ``task``, ``protocol`` (+ ``protocol_description``),
``condition_name`` ('sigma', 'blur', 'degradation'), ``conditions`` (keys), ``condition_labels``,
``condition_groups`` (e.g. the noise level shared by several kernels) and ``condition_fields``
(kernel, noise, scale, mask of each), ``group_means`` (a method's mean over a group),
``sigmas`` (denoising), ``prior`` (the name template), ``networks`` (per condition),
``methods[method][condition]`` (``psnr``/``ssim`` means over the scored images -- None when an
image failed --, ``n_scored``, ``n_images``, ``n_failed``, ``psnr_per_iter_mean``, ``seconds``,
``per_image``), ``config`` (the solver settings run), ``data`` (files, whether they are the
published set, the bit-depth and gray rules, conversions done), ``published`` (+ whether shown),
``failures``, ``notes``, ``versions``, ``command``, ``seconds_total``, ``processes`` (the
job's process count, each process's local device count and how many (image, method,
condition) restorations each did; one process: ``count`` 1).
"""
from __future__ import annotations

import csv
import json
import platform
import re
from pathlib import Path

import numpy as np

from . import metrics
from .compile_cache import compilation_cache_dir
from .data import sources

__all__ = ["FILES", "new_results", "summarize", "write_all", "markdown_table", "save_png",
           "png_bytes", "safe_name", "plot_convergence", "plot_examples", "versions", "groups", "group_means"]

FILES = ("results.json", "results.csv", "results.md", "convergence.png", "examples.png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def versions() -> dict:
    """Python, package and device versions for the results file."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("dynpnp_jax", "jax", "jaxlib", "flax", "numpy", "tensorflow-datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    import jax

    out["devices"] = [str(d) for d in jax.devices()]
    return out


def new_results(exp, *, n_images: int, conversions: dict, weights_files: dict | None = None
                ) -> dict:
    """The results skeleton of experiment ``exp`` (an ``experiment.Experiment``).

    ``conversions`` (e.g. ``{'image 1->3 channel(s)': 12}``: gray images given to a colour
    prior) and ``weights_files`` (``--weights``: ``{file: {'sha256', 'release_sha256'}}``) are
    recorded; either one that changes what was published (converted images, weights other than
    the release) hides the published rows, with the reason in ``published_hidden_reason``."""
    proto = exp.protocol
    is_ref, why = exp.reference
    published = _jsonable(exp.published) if is_ref else {}
    hidden = None
    if published and conversions:
        hidden = ("the images were converted for the prior (" + ", ".join(
            f"{k}: {v}" for k, v in conversions.items()) + "), so this is not the published "
            "protocol; the published rows are not shown")
    elif published and weights_files and any(
            w["sha256"] != w.get("release_sha256") for w in weights_files.values()):
        hidden = ("--weights is not the released file (sha256 differs), so the published rows "
                  "(of the released network) are not shown")
    if hidden:
        published = {}
    res = {
        "dataset": exp.dataset, "task": proto.task, "protocol": proto.name,
        "protocol_description": proto.description, "condition_name": proto.condition_name,
        "conditions": [exp.key(c) for c in exp.conditions],
        "condition_labels": {exp.key(c): proto.condition_label(c) for c in exp.conditions},
        "prior": exp.networks[exp.key(exp.conditions[0])][0] if len(
            {p for p, _ in exp.networks.values()}) == 1 else None,
        "networks": {k: {"prior": p, "noise": n} for k, (p, n) in exp.networks.items()},
        "weights": exp.weights, "weights_files": weights_files or {},
        "config_file": exp.config_name,
        "methods": {}, "config": {},
        "data": {"root": str(exp.source.root), "n_files": len(exp.source.items),
                 "n_images": n_images, "limit": exp.limit, "published_set": is_ref,
                 "published_set_reason": why, "bit_depth_rule": sources.BIT_DEPTH_RULE,
                 "gray_rule": sources.GRAY_RULE, "conversions": conversions},
        "published": published, "published_shown": bool(published),
        "published_note": exp.published_note if published else "",
        "published_hidden_reason": hidden,
        "notes": list(exp.notes), "failures": [], "versions": versions(),
        "compile_cache": str(compilation_cache_dir()) if exp.compile_cache else None,
        "command": exp.command,
    }
    group = getattr(proto, "condition_group", None)
    fields = getattr(proto, "condition_fields", None)
    res["condition_groups"] = {exp.key(c): group(c) if group else None for c in exp.conditions}
    if fields:
        res["condition_fields"] = {exp.key(c): fields(c) for c in exp.conditions}
    if proto.condition_name == "sigma":
        res["sigmas"] = list(exp.conditions)
    if res["prior"] is None:
        res["prior"] = " / ".join(dict.fromkeys(p for p, _ in exp.networks.values()))
    return res


def summarize(per_image: dict, seconds: float) -> dict:
    """Means of one method and condition over its scored images (None if any failed)."""
    scored = [s for s in per_image.values() if s["status"] == "ok"]
    failed = [s for s in per_image.values() if s["status"] == "non-finite"]
    ok_mean = bool(scored) and not failed
    curves = [s["psnr_per_iter"] for s in scored if s["psnr_per_iter"] is not None]
    return {"psnr": float(np.mean([s["psnr"] for s in scored])) if ok_mean else None,
            "ssim": float(np.mean([s["ssim"] for s in scored])) if ok_mean else None,
            "n_scored": len(scored), "n_images": len(per_image), "n_failed": len(failed),
            "psnr_per_iter_mean": (np.mean(curves, axis=0).tolist()
                                   if curves and len(curves) == len(scored) else None),
            "seconds": seconds, "per_image": per_image}


# ------------------------------------------------------------------------------ writers
def groups(results: dict) -> dict[str, list[str]]:
    """Condition keys by group (e.g. every kernel at one noise level); {} without groups."""
    out: dict[str, list[str]] = {}
    for k in results["conditions"]:
        g = (results.get("condition_groups") or {}).get(k)
        if g is not None:
            out.setdefault(g, []).append(k)
    return out


def group_means(results: dict) -> dict:
    """{method: {group: {'psnr', 'ssim', 'n_conditions'}}}: the mean over a group's conditions
    (each over the same images); None when a condition of the group has no mean."""
    out = {}
    for method, per in results["methods"].items():
        for g, keys in groups(results).items():
            rows = [per.get(k) for k in keys]
            ok = all(r and r["psnr"] is not None for r in rows)
            out.setdefault(method, {})[g] = {
                "psnr": float(np.mean([r["psnr"] for r in rows])) if ok else None,
                "ssim": float(np.mean([r["ssim"] for r in rows])) if ok else None,
                "n_conditions": len(keys)}
    return out


def write_all(results: dict, rows: list, figure: dict, out_dir: Path) -> None:
    """Writes every file of ``FILES`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if groups(results):
        results["group_means"] = group_means(results)
    (out_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=1))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", results["condition_name"], "image", "psnr", "ssim", "status"])
        writer.writerows(rows)
    (out_dir / "results.md").write_text(markdown_table(results) + "\n")
    plot_convergence(results, out_dir / "convergence.png")
    first = results["conditions"][0]
    title = f"{results['dataset']}, {results['condition_labels'][first]}"
    if figure.get("_meta", {}).get("name"):
        title += f", image {figure['_meta']['name']}"
    plot_examples(figure, out_dir / "examples.png", title=title)


def _cell(r: dict | None) -> str:
    if not r:
        return "n/a"
    if r["n_failed"]:
        return f"FAILED ({r['n_failed']} of {r['n_images']} non-finite)"
    if r["psnr"] is None:
        return "not scored (no reference)"
    cell = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
    if r["n_scored"] < r["n_images"]:
        cell += f" (n={r['n_scored']} of {r['n_images']})"
    return cell


def _table(results: dict, keys: list[str], mean_of: str | None = None) -> list[str]:
    labels = results["condition_labels"]
    head = [f"{labels[k]} PSNR / SSIM" for k in keys] + ([f"mean ({mean_of})"] if mean_of else [])
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    means = results.get("group_means") or group_means(results) if mean_of else {}
    for method, per in results["methods"].items():
        cells = [_cell(per.get(k)) for k in keys]
        if mean_of:
            m = means.get(method, {}).get(mean_of) or {}
            cells.append("n/a" if m.get("psnr") is None else
                         f"**{m['psnr']:.2f} / {m['ssim']:.4f}**")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    pub = results.get("published") or {}
    if results.get("published_shown"):
        for row, per in pub.items():
            cells = [(f"{per[k][0]:.2f}" + (f" / {per[k][1]:.3f}" if per[k][1] is not None
                                             else "")) if k in per else "" for k in keys]
            lines.append(f"| {row} | " + " | ".join(cells + ([""] if mean_of else [])) + " |")
    return lines


def markdown_table(results: dict) -> str:
    """Method x condition table of mean PSNR / SSIM (one table per group, with the group's
    mean, where the protocol groups its conditions, e.g. every kernel at one noise level), with
    the published rows only where the data is the published set."""
    data = results["data"]
    lines = [f"{results['dataset']} ({data['n_images']} image(s)), protocol "
             f"`{results['protocol']}` ({results['task']}), prior `{results['prior']}`"]
    by_group = groups(results)
    if by_group:
        for g, keys in by_group.items():
            lines += ["", f"{g}:", ""] + _table(results, keys, mean_of=g if len(keys) > 1 else None)
    else:
        lines += [""] + _table(results, results["conditions"])
    if results.get("published_shown"):
        note = results.get("published_note") or "published rows: the full set"
        if data["n_images"] < data["n_files"]:
            note += f"; this run scored {data['n_images']} of its {data['n_files']} images"
        lines += ["", f"({data['published_set_reason']}; {note})"]
    elif results.get("published_hidden_reason"):
        lines += ["", f"({results['published_hidden_reason']})"]
    elif not data["published_set"]:
        lines += ["", f"({data['published_set_reason']}: no published rows)"]
    if data.get("conversions"):
        lines.append("images converted for the prior: " + ", ".join(
            f"{k} ({v} image(s), " + ("the gray channel repeated" if k.endswith("->3 channel(s)")
                                       else "colour to gray by BT.601 luma") + ")"
            for k, v in data["conversions"].items()) + "; not the protocol's own images")
    for note in results.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def safe_name(text: str) -> str:
    """``text`` usable as a file name (image names may hold '/', conditions ':')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "_"


def png_bytes(img: np.ndarray) -> bytes:
    """The bytes :func:`save_png` writes (for a process that sends the file to another)."""
    import io

    buf = io.BytesIO()
    _png_image(img).save(buf, format="PNG")
    return buf.getvalue()


def _png_image(img: np.ndarray):
    from PIL import Image

    u8 = np.uint8(np.round(np.clip(img, 0, 1) * 255))
    return Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)


def save_png(path: Path, img: np.ndarray) -> None:
    """An [0, 1] float image as an 8-bit PNG (clipped, rounded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _png_image(img).save(path, format="PNG")


# ------------------------------------------------------------------------------ plots
def plot_convergence(results: dict, path: Path) -> None:
    """Mean PSNR (float, clipped output vs clean) against iteration: one panel per condition,
    or per group of conditions (their mean curve) where the protocol groups them."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    by_group = groups(results)
    panels = (list(by_group.items()) if by_group else
              [(results["condition_labels"][k], [k]) for k in results["conditions"]])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)

    def mean_curve(per, keys):
        curves = [per.get(k, {}).get("psnr_per_iter_mean") for k in keys]
        if not curves or any(c is None for c in curves) or len({len(c) for c in curves}) != 1:
            return None
        return np.mean(curves, axis=0).tolist()

    for ax, (title, keys) in zip(axes[0], panels):
        base = mean_curve(results["methods"].get("prior", {}), keys)
        for method, per in results["methods"].items():
            curve = mean_curve(per, keys)
            if not curve or method == "prior":
                continue
            style = "--" if method == "static" else "-"
            ax.plot(range(1, len(curve) + 1), curve, style, marker="o", label=method)
        if base:
            ax.axhline(base[0], color="gray", lw=1, ls=":", label="prior alone")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration t")
        ax.set_ylabel("mean PSNR (dB)")
        ax.set_title(f"{results['dataset']} {title}" + (f" ({len(keys)} conditions)"
                                                         if len(keys) > 1 else ""), fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"protocol {results['protocol']}: mean PSNR per iteration", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(images: dict, path: Path, title: str = "") -> None:
    """Input / every method / clean for one image (PSNR of the clipped float images by
    ``metrics.psnr``, not the protocol's 8-bit score); a blur kernel in
    ``images['_meta']['kernel']`` gets its own panel."""
    plt = _plt()
    methods = [(k, v) for k, v in images.items() if not k.startswith("_") and v is not None]
    # the observation itself, unless the `input` method already shows it
    panels = ([] if "input" in images else [("input", images.get("_input"))]) + methods
    clean = images.get("_clean")
    if clean is not None:
        panels.append(("clean", clean))
    kernel = (images.get("_meta") or {}).get("kernel")
    n = len(panels) + (kernel is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels):
        img = np.clip(np.asarray(img, np.float32), 0, 1)
        label = name
        if clean is not None and name != "clean" and img.shape == np.shape(clean):
            value = float(np.asarray(metrics.psnr(img[None], np.asarray(clean, np.float32)[None]))[0])
            label += f"\n{value:.2f} dB"
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if kernel is not None:
        ax = axes[0][-1]
        ax.imshow(np.asarray(kernel), cmap="gray", interpolation="nearest")
        ax.set_title(f"kernel {np.shape(kernel)[0]}x{np.shape(kernel)[1]}", fontsize=9)
        ax.axis("off")
    fig.suptitle(title + " (PSNR of the float output)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
