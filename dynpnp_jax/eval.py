"""``python -m dynpnp_jax.eval``: run a restoration experiment and write a report.

    python -m dynpnp_jax.eval --dataset set12                      # sigma 25, all methods
    python -m dynpnp_jax.eval --dataset bsd68 --sigma 15 25 50
    python -m dynpnp_jax.eval --dataset folder --data-dir my_images --sigma 25
    python -m dynpnp_jax.eval --dataset folder --data-dir my_pairs   # blur/ + sharp/: deblurring
    python -m dynpnp_jax.eval --dataset gopro --prior dmphn-1-2-4
    python -m dynpnp_jax.eval --task deblur --dataset set3c --kernel levin --noise 2.55 7.65
    python -m dynpnp_jax.eval --task sr --dataset set5 --scale 2 3 4
    python -m dynpnp_jax.eval --task inpaint --dataset set3g --mask random:0.5

A short pipeline: resolve the experiment (config + command line, every check before anything is
written: ``experiment.resolve``), build the problems (the protocol turns each dataset example
into one, per condition), run the methods (``restore``), write the report (``report``).

Writes to ``--out`` (default ``results/<dataset>-<timestamp>/``): ``results.json`` (means,
per-image values, mean PSNR per iteration, protocol, data, full config, package versions),
``results.csv``, ``results.md``, ``convergence.png``, ``examples.png`` and, with
``--save-images``, every restored image as an 8-bit PNG under ``images/<method>/``. Everything
is written into a hidden folder beside ``--out`` that is renamed on success, so a failed run
leaves nothing behind. A restored image with NaN/Inf is never scored: the run reports it and
exits with status 1. Bad arguments exit with status 2 before anything runs.

The JAX persistent compilation cache (``paths.cache_dir()/xla``) is on, so a second run skips
most compilation; ``--no-compile-cache`` or ``DYNPNP_NO_COMPILE_CACHE=1`` turn it off.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .experiment import BASELINE_MODES, Experiment, UsageError, method_kwargs, resolve, with_iters

__all__ = ["main", "run", "build_parser", "method_kwargs", "with_iters", "enable_compilation_cache"]


def enable_compilation_cache():
    """Turns on JAX's persistent compilation cache under the package cache (see
    :mod:`dynpnp_jax.compile_cache`); None when ``$DYNPNP_NO_COMPILE_CACHE`` opts out."""
    from .compile_cache import enable_compilation_cache as _enable

    return _enable()


# ------------------------------------------------------------------------------ output folder
class _Staging:
    """A hidden folder beside ``target``, renamed to ``target`` by :meth:`commit`; on any exit
    without commit it is removed, with the parent folders this created."""

    def __init__(self, target: Path, overwrite: bool):
        self.target, self.overwrite = target, overwrite
        self.tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
        self._created: list[Path] = []
        self._committed = False

    def __enter__(self) -> Path:
        missing, p = [], self.target.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self._created.append(d)
            self.tmp.mkdir()
        except OSError as err:
            self._cleanup()
            raise UsageError(f"--out {self.target}: cannot be created ({err}). Fix: pass a "
                             f"folder you can write to.") from err
        return self.tmp

    def commit(self) -> None:
        old = None
        if self.target.exists():
            if any(self.target.iterdir()):
                old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
                self.target.rename(old)
            else:
                self.target.rmdir()
        self.tmp.rename(self.target)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        if not self._committed:
            self._cleanup()


# ------------------------------------------------------------------------------ running
class RunError(RuntimeError):
    """A failure while running (data, weights): reported as ``error: ...``, exit status 1."""


def _load_examples(exp: Experiment) -> list[dict]:
    from . import data

    try:
        return data.load_dataset(exp.dataset, limit=exp.limit, source=exp.source)
    except (data.ImageReadError, FileNotFoundError, ValueError) as err:
        raise RunError(f"--dataset {exp.dataset} ({exp.source.root}): {err}") from err


def _load_networks(exp: Experiment) -> dict:
    from . import WeightsError, load_network

    nets: dict = {}
    for prior, noise in exp.networks.values():
        for name, path in ((prior, exp.weights), (noise, None)):
            if name is None or (name, path) in nets:
                continue
            try:
                net = load_network(name, path=path)
            except (WeightsError, FileNotFoundError, ValueError) as err:
                arg = "--weights" if path else ("--prior" if name == prior else "--noise-net")
                raise RunError(f"{arg}: loading network {name!r} failed: {err}") from err
            if exp.tile and name == prior:
                try:
                    net = net.tiled(exp.tile)
                except ValueError as err:
                    raise UsageError(f"--tile {exp.tile}: {err}") from err
            nets[(name, path)] = net
    return nets


def _channels_rule(examples: list[dict], channels: int) -> tuple[list[dict], dict]:
    """Examples converted to the prior's channels (``sources.GRAY_RULE``), and a count."""
    from .data import to_channels

    counts = defaultdict(int)
    out = []
    for ex in examples:
        ex = dict(ex)
        for k in ("image", "blur", "sharp"):
            if k in ex and ex[k].size and ex[k].shape[-1] != channels:
                counts[f"{k} {ex[k].shape[-1]}->{channels} channel(s)"] += 1
                ex[k] = to_channels(ex[k], channels)
        out.append(ex)
    return out, dict(counts)


def _params_key(extra: dict):
    """Problems whose extra solver params have one structure (and leaf shapes) batch together."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(extra)
    return treedef, tuple(np.shape(leaf) for leaf in leaves)


def _stack_params(extras: list[dict]) -> dict:
    """Per-image extra params (each with a leading batch axis of 1) as one batch."""
    import jax

    if not extras[0]:
        return {}
    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]),
                                  *extras)


def _restore_chunk(dp, params, problems, chunk, cfg, rot):
    """(outputs, curves, errors) of one batch; a non-finite batch is rerun image by image, so
    only the images that diverge fail (``restore`` raises FloatingPointError for them)."""
    from .sharding import shard_batch, unshard
    from .validation import to_landscape

    y = np.stack([to_landscape(problems[i].y, rot) for i in chunk]).astype(np.float32)
    has_clean = all(problems[i].clean is not None for i in chunk)
    clean = (np.stack([to_landscape(problems[i].clean, rot) for i in chunk]).astype(np.float32)
             if has_clean else None)
    extra = _stack_params([problems[i].params_extra for i in chunk])
    true_a = extra.pop("A_true", None)
    try:
        ys, pad = shard_batch(y)
        cs = shard_batch(clean)[0] if clean is not None else None
        out, traj = dp.restore({**params, **extra}, ys, cfg, clean=cs, true_A=true_a)
    except FloatingPointError as err:
        if len(chunk) == 1:
            return [None], [None], [str(err)]
        outs, curves, errors = [], [], []
        for i in chunk:
            o, c, e = _restore_chunk(dp, params, problems, [i], cfg, rot)
            outs += o
            curves += c
            errors += e
        return outs, curves, errors
    out = unshard(out, pad)
    psnr = (unshard(np.swapaxes(np.asarray(traj.psnr), 0, 1), pad)
            if traj.psnr is not None else None)
    return ([to_landscape(o, rot, inverse=True) for o in out],
            [p.tolist() for p in psnr] if psnr is not None else [None] * len(chunk),
            [None] * len(chunk))


def parse_given_kernel(spec: str) -> np.ndarray:
    """One kernel from a ``--kernel-given`` spec: any ``--kernel`` spec naming one kernel, or
    ``rotD:SPEC`` for that kernel rotated by D degrees (a wrong kernel, as from another lens)."""
    from . import kernels as K

    angle = None
    if spec.startswith("rot") and ":" in spec:
        head, spec = spec.split(":", 1)
        try:
            angle = float(head[3:])
        except ValueError:
            raise UsageError(f"--kernel-given: {head!r} is not rotD (D in degrees)") from None
    try:
        found = K.parse_kernel(spec)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(f"--kernel-given {spec}: {err}") from err
    if len(found) != 1:
        raise UsageError(f"--kernel-given must name one kernel, {spec!r} names {len(found)} "
                         "(use e.g. levin:1)")
    k = np.asarray(found[0][1], np.float32)
    return K.rotate(k, angle) if angle is not None else k


def _set_kernel_given(exp, spec: str) -> None:
    """``--kernel-given``: the dpir and calibrated methods are told this kernel."""
    if exp.protocol.task != "deblur" or exp.protocol.name != "dpir":
        raise UsageError("--kernel-given applies to --task deblur with a known kernel (the dpir "
                         "protocol)")
    parse_given_kernel(spec)  # checked before anything runs
    for per in exp.methods.values():
        for kw in per.values():
            if kw.get("mode") in ("dpir", "calibrated"):
                kw["kernel_given"] = spec


def _run_method(params: dict, problems: list, kw: dict, batch: int, desc: str):
    """Outputs (float32 HWC, None where the solver diverged), per-iteration PSNR curves and
    errors of one method on ``problems``."""
    kw = dict(kw)
    given = kw.pop("kernel_given", None)
    if given is not None or kw.get("mode") == "calibrated":
        from .operators import Blur

        k = parse_given_kernel(given) if given is not None else None
        problems = [p._replace(params_extra={
            **p.params_extra, "A_true": p.params_extra["A"],
            "A": Blur.from_kernel(k, 1) if k is not None else p.params_extra["A"]})
            for p in problems]
    if kw["mode"] in BASELINE_MODES:
        from .baselines import run_baseline

        n = len(problems)
        return [run_baseline(kw["mode"], p) for p in problems], [None] * n, [None] * n
    import dynpnp_jax as dp
    from tqdm.auto import tqdm

    from .validation import needs_landscape

    cfg = dp.make_config(**kw)
    groups = defaultdict(list)
    for i, p in enumerate(problems):
        rot = needs_landscape(p.y.shape, mode=cfg.mode, a_step=cfg.a_step)
        shape = p.y.shape[1::-1] + p.y.shape[2:] if rot else p.y.shape
        groups[(shape, rot, _params_key(p.params_extra))].append(i)
    n = len(problems)
    outputs, curves, errors = [None] * n, [None] * n, [None] * n
    with tqdm(total=n, desc=desc, leave=False) as bar:
        for (_, rot, _), idx in groups.items():
            for s in range(0, len(idx), batch):
                chunk = idx[s:s + batch]
                outs, crvs, errs = _restore_chunk(dp, params, problems, chunk, cfg, rot)
                for j, i in enumerate(chunk):
                    outputs[i], curves[i], errors[i] = outs[j], crvs[j], errs[j]
                bar.update(len(chunk))
    return outputs, curves, errors


def run(exp: Experiment, out_dir: Path) -> tuple[dict, int]:
    """Runs ``exp`` writing into ``out_dir``; returns (results, number of failed images)."""
    from . import data, report

    t_all = time.time()
    examples = _load_examples(exp)
    solver_used = any(kw["mode"] not in BASELINE_MODES
                      for per in exp.methods.values() for kw in per.values())
    nets = _load_networks(exp) if solver_used else {}
    channels = {nets[(p, exp.weights)].channels for p, _ in exp.networks.values()} if nets else ()
    conversions = {}
    if len(channels) == 1:
        examples, conversions = _channels_rule(examples, channels.pop())
    proto = exp.protocol
    results = report.new_results(exp, n_images=len(examples), conversions=conversions)
    rows, failures, figure = [], [], {}
    for cond in exp.conditions:
        ckey = exp.key(cond)
        prior, noise = exp.networks[ckey]
        params = {"prior": nets[(prior, exp.weights)]} if nets else {}
        if noise and nets:
            params["noise"] = nets[(noise, None)]
        problems = []
        for ex in examples:
            try:
                problems.append(proto.problem(ex, cond))
            except ValueError as err:
                raise RunError(f"protocol {proto.name!r}, image {ex.get('name')!r}: {err}") from err
        for method, per_cond in exp.methods.items():
            kw = per_cond[ckey]
            t0 = time.time()
            try:
                outs, curves, errors = _run_method(params, problems, kw, exp.batch,
                                                   desc=f"{method} {proto.condition_label(cond)}")
            except ValueError as err:  # restore's input checks (sizes, channels)
                raise RunError(f"method {method!r} ({proto.condition_label(cond)}): {err}") from err
            elapsed = time.time() - t0
            per_image = {}
            for prob, out, curve, error in zip(problems, outs, curves, errors):
                try:
                    if error is not None:
                        raise data.NonFiniteOutput(error)
                    scores = proto.evaluate(out, prob.meta)
                    status = "ok" if scores is not None else "no reference"
                except data.NonFiniteOutput as err:
                    scores, status = None, "non-finite"
                    failures.append({"method": method, "condition": ckey, "image": prob.name,
                                     "error": str(err)})
                per_image[prob.name] = {"psnr": scores and scores["psnr"],
                                        "ssim": scores and scores["ssim"],
                                        "psnr_per_iter": curve, "status": status}
                rows.append([method, ckey, prob.name, per_image[prob.name]["psnr"],
                             per_image[prob.name]["ssim"], status])
                if exp.save_images and out is not None and status != "non-finite":
                    report.save_png(out_dir / "images" / method /
                                    f"{report.safe_name(prob.name)}_{report.safe_name(ckey)}.png",
                                    out)
            results["methods"].setdefault(method, {})[ckey] = report.summarize(per_image, elapsed)
            results["config"].setdefault(method, {})[ckey] = kw
            if cond == exp.conditions[0] and problems:
                figure[method] = outs[0]
        if cond == exp.conditions[0] and problems:
            figure["_input"], figure["_clean"] = problems[0].y, problems[0].clean
            figure["_meta"] = problems[0].meta
    results["failures"] = failures
    results["seconds_total"] = time.time() - t_all
    report.write_all(results, rows, figure, out_dir)
    return results, len(failures)


# ------------------------------------------------------------------------------ CLI
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0: no tiling), got {value}")
    return value


def _sigma(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number on the 8-bit scale (e.g. 25), got "
                                         f"{text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"sigma must be a finite number > 0 on the 8-bit scale "
                                         f"(e.g. 15 25 50), got {text}")
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dynpnp_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None,
                   help="set12, bsd68, gopro, set3g, set3c, set5, cbsd68 or folder (default: the "
                        "config's, else set12)")
    p.add_argument("--task", default=None, choices=("denoise", "deblur", "sr", "inpaint"),
                   help="denoise (default for clean images), deblur (recorded blur for "
                        "blur/sharp pairs, else a known kernel), sr, inpaint")
    p.add_argument("--sigma", type=_sigma, nargs="+", default=None,
                   help="noise levels on the 8-bit scale, > 0 (denoising protocols)")
    p.add_argument("--kernel-given", default=None, metavar="SPEC",
                   help="deblurring: the kernel the dpir and calibrated methods are TOLD (one "
                        "spec as --kernel, e.g. gauss:2.0, levin:1 rotated with rot10:levin:1, "
                        "or identity); default: the true one")
    p.add_argument("--kernel", nargs="+", default=None,
                   help="blur kernels (deblur, sr): levin, levin:3, kernels12:2, bicubic:2, "
                        "gauss:1.6, motion:15,45, identity or a file; each runs (default: "
                        "levin for deblur, bicubic:SCALE for sr)")
    p.add_argument("--noise", nargs="+", default=None,
                   help="noise levels on the 8-bit scale, e.g. 2.55 7.65 (known degradations; "
                        "for denoising the same as --sigma). A single name is taken as the "
                        "noise estimator's network (old meaning; use --noise-net)")
    p.add_argument("--scale", type=int, nargs="+", default=None, choices=(2, 3, 4),
                   help="super-resolution factors (--task sr)")
    p.add_argument("--mask", nargs="+", default=None,
                   help="inpainting masks: random:P (each pixel missing with probability P) or "
                        "an image file (white = observed)")
    p.add_argument("--method", nargs="+", default=None,
                   help="methods: prior static hqs authors gradient (default: all of the config)")
    p.add_argument("--prior", default=None, help="registry name of the prior ({sigma} allowed)")
    p.add_argument("--noise-net", default=None,
                   help="registry name of the noise estimator g ({sigma} allowed)")
    p.add_argument("--weights", default=None, help="the prior's upstream file or folder (your own)")
    p.add_argument("--protocol", default=None,
                   help="standard or authors (denoising), gopro (recorded blur), dpir (known "
                        "degradations)")
    p.add_argument("--config", default=None, help="a configs/*.py file with get_config()")
    p.add_argument("--data-dir", default=None, help="data root, or a folder of images")
    p.add_argument("--out", default=None, help="output folder (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--iters", type=_positive_int, default=None,
                   help="override T for iterative methods")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N images only")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="images per restore call (default: the config's, else 8)")
    p.add_argument("--tile", type=_nonneg_int, default=0,
                   help="run the prior on overlapping tiles of this size (bounds memory)")
    p.add_argument("--save-images", action="store_true", help="write restored PNGs")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (also: "
                        "DYNPNP_NO_COMPILE_CACHE=1)")
    return p


def main(argv=None) -> int:
    """The CLI. Exit status: 0 done, 1 a run failure (unreadable data, missing weights, a
    non-finite output), 2 a bad argument or config (nothing written)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        exp = resolve(args)
        if args.kernel_given is not None:
            _set_kernel_given(exp, args.kernel_given)
    except UsageError as err:
        parser.error(str(err))
    for note in exp.notes:
        print(f"note: {note}", file=sys.stderr)
    if exp.compile_cache:
        enable_compilation_cache()
    from . import report

    staging = _Staging(exp.out, exp.overwrite)
    try:
        with staging as tmp:
            results, n_failed = run(exp, tmp)
            staging.commit()
    except UsageError as err:
        parser.error(str(err))
    except RunError as err:
        raise SystemExit(f"error: {err}") from None
    print(report.markdown_table(results))
    print(f"\nwrote {exp.out}/ ({', '.join(report.FILES)})")
    if n_failed:
        for f in results["failures"]:
            label = results["condition_labels"].get(f["condition"], f["condition"])
            print(f"error: method {f['method']!r}, {label}, image {f['image']!r} not scored: "
                  f"{f['error']}", file=sys.stderr)
        raise SystemExit(f"error: {n_failed} restored image(s) were not finite and were not "
                         f"scored (see 'failures' in {exp.out}/results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
