"""``python -m dynpnp_jax.eval``: run a restoration experiment and write a report.

    python -m dynpnp_jax.eval --dataset set12                      # sigma 25, all methods
    python -m dynpnp_jax.eval --dataset bsd68 --sigma 15 25 50
    python -m dynpnp_jax.eval --dataset folder --data-dir my_pngs --sigma 25
    python -m dynpnp_jax.eval --dataset gopro --prior dmphn-1-2-4

Writes to ``--out`` (default ``results/<dataset>-<timestamp>/``): ``results.json`` (means,
per-image values, mean PSNR per iteration, protocol, full config, package versions),
``results.csv``, ``convergence.png``, ``examples.png`` and, with ``--save-images``, every
restored image as an 8-bit PNG under ``images/<method>/``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import importlib
import importlib.util
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

DYNAMIC = ("authors", "gradient", "hqs")


# ------------------------------------------------------------------------------ config
def load_experiment(dataset: str | None, config_file: str | None) -> dict:
    """The experiment dict of ``--config FILE`` or of the dataset's default config."""
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise SystemExit(f"--config: no such file {path}")
        spec = importlib.util.spec_from_file_location(f"_dynpnp_cfg_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    from .data import DATASETS

    if dataset not in DATASETS:
        raise SystemExit(f"--dataset: unknown dataset {dataset!r}; expected one of "
                         f"{', '.join(DATASETS)}")
    name = "deblur_gopro" if dataset == "gopro" else f"denoise_{dataset}"
    return importlib.import_module(f"dynpnp_jax.configs.{name}").get_config()


def method_kwargs(spec: dict, sigma) -> dict:
    """A method's make_config kwargs; a spec keyed by sigma picks that sigma's entry."""
    if "mode" in spec:
        return dict(spec)
    if sigma in spec:
        return dict(spec[sigma])
    nearest = min(spec, key=lambda s: abs(float(s) - float(sigma)))
    return dict(spec[nearest])


def with_iters(kw: dict, iters: int) -> dict:
    """``kw`` with T = ``iters``; per-iteration lists are cut or extended with their last value."""
    out = {**kw, "iters": iters}
    for key in ("delta", "mu", "alpha"):
        val = out.get(key)
        if isinstance(val, (list, tuple)):
            out[key] = (list(val) + [val[-1]] * iters)[:iters]
    return out


# ------------------------------------------------------------------------------ running
class _GoproProtocol:
    """GoPro: RGB frames, scored like ``standard`` (output clipped and rounded to 8 bits, PSNR
    and Gaussian SSIM at data_range 255, mean over RGB) on the full frame."""

    name = "gopro"
    description = ("blurred frame in, output clipped and rounded to 8 bits; PSNR and Gaussian "
                   "SSIM (11x11, sigma 1.5, mean over RGB) at data_range 255 on the full frame")

    def evaluate(self, out, ref_u8):
        from .data.protocols import Standard

        std = Standard()
        return std.metrics(std.finalize(out, {}), ref_u8)


def _needs_landscape(kw: dict) -> bool:
    return kw.get("mode") == "authors" or (kw.get("a_step") == "authors")


def _run_batches(params, problems, cfg_kwargs, batch_size, desc):
    """Restore ``problems`` (dicts with 'y' and optional 'clean'), grouped by shape."""
    import jax

    from . import make_config, restore
    from .sharding import shard_batch, unshard

    cfg = make_config(**cfg_kwargs)
    rotate = _needs_landscape(cfg_kwargs)
    groups = defaultdict(list)
    for i, p in enumerate(problems):
        y = p["y"]
        rot = rotate and y.shape[0] > y.shape[1]
        groups[(np.rot90(y).shape if rot else y.shape, rot)].append(i)
    outputs, curves = [None] * len(problems), [None] * len(problems)
    from tqdm.auto import tqdm

    with tqdm(total=len(problems), desc=desc, leave=False) as bar:
        for (shape, rot), idx in groups.items():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s:s + batch_size]
                prep = (lambda a: np.rot90(a)) if rot else (lambda a: a)
                y = np.stack([prep(problems[i]["y"]) for i in chunk]).astype(np.float32)
                has_clean = all(problems[i].get("clean") is not None for i in chunk)
                clean = (np.stack([prep(problems[i]["clean"]) for i in chunk]).astype(np.float32)
                         if has_clean else None)
                ys, pad = shard_batch(y)
                cs = shard_batch(clean)[0] if clean is not None else None
                out, traj = restore(params, ys, cfg, clean=cs)
                out = unshard(out, pad)
                psnr = unshard(jax.numpy.swapaxes(traj.psnr, 0, 1), pad) if traj.psnr is not None else None
                for j, i in enumerate(chunk):
                    o = out[j]
                    outputs[i] = np.rot90(o, k=-1) if rot else o
                    curves[i] = psnr[j].tolist() if psnr is not None else None
                bar.update(len(chunk))
    return outputs, curves


def _versions() -> dict:
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


def run(args) -> dict:
    from . import data, load_network

    exp = load_experiment(args.dataset, args.config)
    dataset = args.dataset or exp["dataset"]
    task = exp.get("task", "denoise")
    if task == "deblur" and args.protocol not in (None, "gopro"):
        raise SystemExit("--protocol: deblurring uses the 'gopro' protocol")
    protocol_name = args.protocol or exp.get("protocol", "standard")
    sigmas = args.sigma or exp.get("sigmas", [25])
    methods = args.method or list(exp["methods"])
    unknown = [m for m in methods if m not in exp["methods"]]
    if unknown:
        raise SystemExit(f"--method: unknown method(s) {unknown}; this config has "
                         f"{list(exp['methods'])}")
    prior_name = args.prior or exp["prior"]
    noise_name = args.noise or exp.get("noise")
    if args.iters is not None:
        for m in methods:
            if m != "prior":
                spec = exp["methods"][m]
                per_sigma = spec if "mode" not in spec else {None: spec}
                exp["methods"][m] = {s: with_iters(kw, args.iters) for s, kw in per_sigma.items()}
                if None in exp["methods"][m]:
                    exp["methods"][m] = exp["methods"][m][None]

    examples = data.load_dataset(dataset, data_dir=args.data_dir, limit=args.limit)
    protocol = _GoproProtocol() if task == "deblur" else data.get_protocol(protocol_name)
    out_dir = Path(args.out or f"results/{dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    out_dir.mkdir(parents=True, exist_ok=True)

    results = {"dataset": dataset, "task": task, "protocol": protocol.name,
               "protocol_description": protocol.description, "prior": prior_name,
               "noise": noise_name, "sigmas": sigmas, "methods": {}, "config": {},
               "versions": _versions(), "published": _jsonable(exp.get("published", {})),
               "command": "python -m dynpnp_jax.eval " + " ".join(getattr(args, "argv", None) or [])}
    rows, example_images = [], {}
    t_all = time.time()
    for sigma in sigmas:
        pname = prior_name.format(sigma=sigma)
        prior = load_network(pname, path=args.weights)
        if args.tile:
            prior = prior.tiled(args.tile)
        params = {"prior": prior}
        if noise_name:
            params["noise"] = load_network(noise_name.format(sigma=sigma))
        problems, metas = [], []
        for ex in examples:
            if task == "deblur":
                problems.append({"y": ex["blur"].astype(np.float32) / 255.0,
                                 "clean": (ex["sharp"].astype(np.float32) / 255.0
                                           if ex.get("has_sharp") else None)})
                metas.append({"name": ex["name"], "reference": ex["sharp"] if ex.get("has_sharp") else None})
            else:
                clean, meta = protocol.prepare(ex["image"], ex["name"])
                problems.append({"y": protocol.degrade(clean, sigma, ex["name"]), "clean": clean})
                metas.append(meta)
        for method in methods:
            kw = method_kwargs(exp["methods"][method], sigma)
            results["config"].setdefault(method, {})[str(sigma)] = kw
            t0 = time.time()
            outs, curves = _run_batches(params, problems, kw, args.batch or exp.get("batch", 8),
                                        desc=f"{method} sigma={sigma}")
            elapsed = time.time() - t0
            per_image = {}
            for out, meta, curve in zip(outs, metas, curves):
                if task == "deblur":
                    scores = (protocol.evaluate(out, meta["reference"])
                              if meta["reference"] is not None else {"psnr": None, "ssim": None})
                else:
                    scores = protocol.evaluate(out, meta)
                scores["psnr_per_iter"] = curve
                per_image[meta["name"]] = scores
                rows.append([method, sigma, meta["name"], scores["psnr"], scores["ssim"]])
                if args.save_images:
                    _save_png(out_dir / "images" / method / f"{meta['name']}_s{sigma}.png", out)
            scored = [s for s in per_image.values() if s["psnr"] is not None]
            curve_mean = (np.mean([s["psnr_per_iter"] for s in scored
                                   if s["psnr_per_iter"] is not None], axis=0).tolist()
                          if scored and scored[0]["psnr_per_iter"] is not None else None)
            results["methods"].setdefault(method, {})[str(sigma)] = {
                "psnr": float(np.mean([s["psnr"] for s in scored])) if scored else None,
                "ssim": float(np.mean([s["ssim"] for s in scored])) if scored else None,
                "n_scored": len(scored), "n_images": len(per_image),
                "psnr_per_iter_mean": curve_mean, "seconds": elapsed, "per_image": per_image}
            if sigma == sigmas[0]:
                example_images[method] = outs[0]
        if sigma == sigmas[0]:
            example_images["_input"] = problems[0]["y"]
            example_images["_clean"] = problems[0].get("clean")
    results["seconds_total"] = time.time() - t_all
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "sigma", "image", "psnr", "ssim"])
        writer.writerows(rows)
    from .report import plot_convergence, plot_examples

    plot_convergence(results, out_dir / "convergence.png")
    plot_examples(example_images, out_dir / "examples.png", title=f"{dataset}, sigma={sigmas[0]}")
    print(markdown_table(results))
    print(f"\nwrote {out_dir}/ (results.json, results.csv, convergence.png, examples.png)")
    return results


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    u8 = np.uint8(np.round(np.clip(img, 0, 1) * 255))
    Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).save(path)


def markdown_table(results: dict) -> str:
    """Method x sigma table of mean PSNR/SSIM, with the published rows where they exist."""
    sigmas = [str(s) for s in results["sigmas"]]
    if results["task"] == "deblur":
        head = "| method | PSNR / SSIM (frames with a sharp ground truth) |"
    else:
        head = "| method | " + " | ".join(f"sigma={s} PSNR / SSIM" for s in sigmas) + " |"
    lines = [f"{results['dataset']}, protocol `{results['protocol']}`, prior "
             f"`{results['prior']}`", "", head, "|---|" + "---|" * len(sigmas)]
    for method, per in results["methods"].items():
        cells = []
        for s in sigmas:
            r = per.get(s)
            cells.append("n/a" if not r or r["psnr"] is None else
                         f"{r['psnr']:.2f} / {r['ssim']:.4f}" + (f" (n={r['n_scored']})"
                                                                  if results["task"] == "deblur" else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    pub = results.get("published") or {}
    if results["task"] == "deblur":
        pub = pub.get(results["prior"], {})
        for row, (p, q) in pub.items():
            lines.append(f"| {row} | {p:.2f} / {q:.4f} (1111 frames) |")
    else:
        for row, per in pub.items():
            cells = [f"{per[s][0]:.2f} / {per[s][1]:.3f}" if s in per else "" for s in sigmas]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dynpnp_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="set12, bsd68, gopro or folder (default set12)")
    p.add_argument("--sigma", type=float, nargs="+", default=None, help="noise levels (8-bit scale)")
    p.add_argument("--method", nargs="+", default=None,
                   help="methods: prior static hqs authors gradient (default: all of the config)")
    p.add_argument("--prior", default=None, help="registry name of the prior ({sigma} allowed)")
    p.add_argument("--noise", default=None, help="registry name of the noise estimator g")
    p.add_argument("--weights", default=None, help="the prior's upstream file or folder (your own)")
    p.add_argument("--protocol", default=None, help="standard or authors (denoising)")
    p.add_argument("--config", default=None, help="a configs/*.py file with get_config()")
    p.add_argument("--data-dir", default=None, help="data root or folder of PNGs")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--iters", type=int, default=None, help="override T for iterative methods")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--batch", type=int, default=None,
                   help="images per restore call (default: the config's, else 8)")
    p.add_argument("--tile", type=int, default=0,
                   help="run the prior on overlapping tiles of this size (bounds memory)")
    p.add_argument("--save-images", action="store_true", help="write restored PNGs")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.dataset is None and args.config is None:
        args.dataset = "set12"
    if args.sigma is not None:
        args.sigma = [int(s) if float(s).is_integer() else s for s in args.sigma]
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
