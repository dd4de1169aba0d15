"""``python -m dynpnp_jax.eval``: run a restoration experiment and write a report.

    python -m dynpnp_jax.eval --dataset set12                      # sigma 25, all methods
    python -m dynpnp_jax.eval --dataset bsd68 --sigma 15 25 50
    python -m dynpnp_jax.eval --dataset folder --data-dir my_images --sigma 25
    python -m dynpnp_jax.eval --dataset folder --data-dir my_pairs   # blur/ + sharp/: deblurring
    python -m dynpnp_jax.eval --dataset gopro --prior dmphn-1-2-4
    python -m dynpnp_jax.eval --task deblur --dataset set3c --kernel levin --noise 2.55 7.65
    python -m dynpnp_jax.eval --task sr --dataset set5 --scale 2 3 4
    python -m dynpnp_jax.eval --task inpaint --dataset set3g --mask random:0.5
    python -m dynpnp_jax.eval --task demosaic --dataset cbsd68 --method dpir mhc bilinear

A short pipeline: resolve the experiment (config + command line, every check before anything is
written: ``experiment.resolve``), build the problems (the protocol turns each dataset example
into one, per condition), run the methods (``restore``), write the report (``report``).

Writes to ``--out`` (default ``results/<dataset>-<timestamp>/``): ``results.json`` (means,
per-image values, mean PSNR per iteration, protocol, data, full config, package versions),
``results.csv``, ``results.md``, ``convergence.png``, ``examples.png`` and, with
``--save-images``, every restored image as an 8-bit PNG under ``images/<method>/``. Everything
is written into a hidden folder beside ``--out`` that is renamed on success, so a failed run
leaves nothing behind. ``--out`` may not be, contain or lie inside an input (``--data-dir``, the
dataset's folders, ``--weights``, ``--config``), nor be or contain the repository, the current
or home directory or the cache (refused before anything runs). The final rename never replaces
what was not there when the run started: if ``--out`` appeared or changed meanwhile (a second
run, a file put there), both are kept, the new results beside it as ``OUT-1/``, and the run
exits with status 1 saying where; ``--overwrite`` deletes the earlier contents once the new
results are in place and says so. A restored image with NaN/Inf (or a run that diverged, as
``restore`` reports) is never scored: the run records it under ``failures``, prints it and
exits with status 1. Bad arguments exit with status 2 before anything runs. Ctrl-C stops the
run when the running compiled call returns; a second Ctrl-C quits at once (status 130).

The JAX persistent compilation cache (``paths.cache_dir()/xla``) is on, so a second run skips
most compilation; ``--no-compile-cache`` or ``DYNPNP_NO_COMPILE_CACHE=1`` turn it off.

Each batch is spread over the process's local devices (padded to a multiple of their number;
the padding is never scored). In a JAX multi-process job (``--coordinator HOST:PORT
--num-processes N --process-id I``, a SLURM step, ``--distributed on`` on a Cloud TPU pod: see
:mod:`dynpnp_jax.distributed`) batch j is restored by process j mod N and process 0 gathers the
per-image results and writes the one report; the numbers do not depend on N.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import dynpnp_jax as dp  # the public API (restore, make_config, load_network), at call time

from . import data, distributed, report
from . import kernels as K
from .algorithms import needs_landscape
from .baselines import run_baseline
from .compile_cache import enable_compilation_cache as _enable
from .data import to_channels
from .distributed import local, note_temporary
from .download import UNKNOWN, sha256_file
from .experiment import (BASELINE_MODES, ITERS_WHY, MAX_ITERS, TASKS, Experiment, UsageError,
                         calibrates, method_kwargs, resolve, told_operator, with_iters)
from .operators import Blur
from .report import safe_name
from .sharding import pad_leaves, shard_batch, unshard
from .validation import to_landscape
from .weights import WeightsError, get_spec, locate_upstream

__all__ = ["main", "run", "build_parser", "method_kwargs", "with_iters", "enable_compilation_cache"]


def enable_compilation_cache():
    """Turns on JAX's persistent compilation cache under the package cache (see
    :mod:`dynpnp_jax.compile_cache`); None when ``$DYNPNP_NO_COMPILE_CACHE`` opts out."""
    return _enable()


# ------------------------------------------------------------------------------ output folder
class _Staging:
    """A hidden folder beside ``target``, renamed to ``target`` by :meth:`commit`; on any exit
    without commit it is removed, with the parent folders this created.

    The final move never replaces what was not there when the run started: ``target`` is
    recorded at :meth:`__enter__` (absent, or the folder's identity and its list of files), and
    if it appeared or changed during the run (a second run to the same ``--out``, a file put
    there meanwhile) :meth:`commit` keeps both: it moves the new results to a free name beside
    ``target`` and raises :class:`RunError` saying where they are. With ``--overwrite`` the
    earlier contents are moved aside and deleted once the new results are in place (``notes``
    says so, or where they were left if they could not be deleted)."""

    def __init__(self, target: Path, overwrite: bool):
        self.target, self.overwrite = target, overwrite
        self.tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
        self._created: list[Path] = []
        self._committed = False
        self._before = None
        self.notes: list[str] = []

    @staticmethod
    def _state(path: Path):
        """What is at ``path``: None (nothing), or (device, inode, sorted (file, size, mtime))."""
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        files = []
        if path.is_dir() and not path.is_symlink():
            for root, dirs, names in os.walk(path):
                for n in sorted(dirs + names):
                    q = Path(root) / n
                    try:
                        qs = q.lstat()
                    except OSError:
                        continue
                    files.append((str(q.relative_to(path)), qs.st_size, qs.st_mtime_ns))
        return st.st_dev, st.st_ino, st.st_mode, sorted(files)

    def __enter__(self) -> Path:
        self._before = self._state(self.target)
        missing, p = [], self.target.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                d.mkdir()
                self._created.append(d)
            self.tmp.mkdir()
            note_temporary(self.tmp)
            _TEMPORARIES.add(self.tmp)
        except OSError as err:
            self._cleanup()
            raise UsageError(f"--out {self.target}: cannot be created ({err}). Fix: pass a "
                             f"folder you can write to.") from err
        return self.tmp

    def _keep_both(self, why: str):
        """Moves the new results to a free name beside the target; raises RunError."""
        for n in range(1, 1000):
            alt = self.target.parent / f"{self.target.name}-{n}"
            try:
                alt.mkdir()  # claims the name (fails if it exists)
            except FileExistsError:
                continue
            try:
                self.tmp.rename(alt)  # replaces the empty folder just made
            except OSError:
                alt.rmdir()
                continue
            self._committed = True
            raise RunError(f"--out {self.target}: {why}; it was left as it is (nothing "
                           f"replaced). The results of this run are in {alt}/. Fix: give "
                           f"every run its own --out (two runs to one --out, or a file put "
                           f"there during the run).")
        raise RunError(f"--out {self.target}: {why}; the results of this run are left in "
                       f"{self.tmp}/.")

    def commit(self) -> None:
        now = self._state(self.target)
        if now != self._before:
            why = ("appeared during the run" if self._before is None else
                   "changed during the run" if now is not None else
                   "was removed during the run")
            self._keep_both(why)
        old = None
        if self._before is not None and self._before[3]:  # non-empty: --overwrite was given
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
            self.target.rename(old)
        elif self._before is not None:
            self.target.rmdir()
        try:
            self.target.mkdir()  # atomic: fails if anything took the name meanwhile
        except FileExistsError:
            kept = f" (its earlier contents are in {old}/)" if old is not None else ""
            self._keep_both(f"appeared while the results were being moved into place{kept}")
        try:
            self.tmp.rename(self.target)  # onto the empty folder just made
        except OSError:
            self._keep_both("was written to while the results were being moved into place")
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            if old.exists():
                self.notes.append(f"--overwrite: the earlier contents of {self.target} could "
                                  f"not all be deleted; what is left is in {old}/ (delete it "
                                  f"yourself)")
            else:
                self.notes.append(f"--overwrite: the earlier contents of {self.target} were "
                                  f"deleted after the new results were in place")

    def _cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        _TEMPORARIES.discard(self.tmp)
        if not self._committed:
            self._cleanup()


# ------------------------------------------------------------------------------ running
class RunError(RuntimeError):
    """A failure while running (data, weights): reported as ``error: ...``, exit status 1."""


def _load_examples(exp: Experiment) -> list[dict]:
    try:
        return data.load_dataset(exp.dataset, limit=exp.limit, source=exp.source)
    except (data.ImageReadError, FileNotFoundError, ValueError) as err:
        raise RunError(f"--dataset {exp.dataset} ({exp.source.root}): {err}") from err


def _load_networks(exp: Experiment) -> dict:
    nets: dict = {}
    for prior, noise in exp.networks.values():
        for name, path in ((prior, exp.weights), (noise, None)):
            if name is None or (name, path) in nets:
                continue
            try:
                net = dp.load_network(name, path=path)
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


def _weights_files(exp: Experiment) -> dict:
    """``--weights``: each file used, with its sha256 and the release's (results.json)."""
    if not exp.weights:
        return {}
    out = {}
    for prior in dict.fromkeys(p for p, _ in exp.networks.values()):
        spec = get_spec(prior)
        try:
            found, _ = locate_upstream(spec, exp.weights, download=False)
        except WeightsError:
            continue
        release = {f.relpath: f.sha256 for f in spec.files}
        for rel, path in found.items():
            out[str(path)] = {"sha256": sha256_file(path), "network": prior,
                              "release_sha256": None if release[rel] == UNKNOWN else release[rel]}
    return out


def _channels_rule(examples: list[dict], channels: int) -> tuple[list[dict], dict]:
    """Examples converted to the prior's channels (``sources.GRAY_RULE``), and a count."""
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
    """(outputs, curves, errors) of one batch, as host arrays; a non-finite batch is rerun
    image by image, so only the images that diverge fail (``restore`` raises
    FloatingPointError for them). The batch is spread over this process's devices, padded to a
    multiple of their number by repeating its last image (and that image's operator); the
    padding is cut off here, so it is never scored."""
    y = np.stack([to_landscape(problems[i].y, rot) for i in chunk]).astype(np.float32)
    has_clean = all(problems[i].clean is not None for i in chunk)
    clean = (np.stack([to_landscape(problems[i].clean, rot) for i in chunk]).astype(np.float32)
             if has_clean else None)
    extra = _stack_params([problems[i].params_extra for i in chunk])
    true_a = extra.pop("A_true", None)
    try:
        ys, pad = shard_batch(y)
        cs = shard_batch(clean)[0] if clean is not None else None
        extra, true_a = pad_leaves((extra, true_a), len(chunk), pad)
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
    del traj  # the rest of the trajectory is not reported
    return ([to_landscape(o, rot, inverse=True) for o in out],
            [p.tolist() for p in psnr] if psnr is not None else [None] * len(chunk),
            [None] * len(chunk))


def parse_given_kernel(spec: str) -> np.ndarray:
    """One kernel from a ``--kernel-given`` spec: any ``--kernel`` spec naming one kernel, or
    ``rotD:SPEC`` for that kernel rotated by D degrees (a wrong kernel, as from another lens)."""
    angle = None
    if spec.startswith("rot") and ":" in spec:
        head, spec = spec.split(":", 1)
        try:
            angle = float(head[3:])
        except ValueError:
            raise UsageError(f"--kernel-given: {head!r} is not rotD (D in degrees)") from None
    try:
        found = K.parse_kernel(spec)
    except (ValueError, OSError) as err:
        raise UsageError(f"--kernel-given {spec}: {err}") from None
    except MemoryError:
        raise UsageError(f"--kernel-given {spec}: the kernel it describes does not fit in "
                         f"memory; expected a kernel of at most a few hundred pixels a side. "
                         f"Fix: e.g. --kernel-given gauss:2.0.") from None
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
            if told_operator(kw.get("mode")):
                kw["kernel_given"] = spec


def _plan(problems: list, kw: dict, batch: int):
    """How one method runs on ``problems``: ``(problems, mode, cfg, batches)``, the problems
    with the operators the method is told, the solver config (None for a baseline) and the
    batches ``[(rotated, [image index, ...])]``: images of one shape (and operator structure),
    ``batch`` at a time, in a fixed order. The batches do not depend on the number of processes
    or devices, so neither do the numbers.

    The solver keeps no per-iteration images (``keep_images=False``) unless the method's
    settings ask for them: no plot of the report uses them, and they cost T times the batch's
    memory."""
    kw = dict(kw)
    given = kw.pop("kernel_given", None)
    if given is not None or calibrates(kw.get("mode")):
        k = parse_given_kernel(given) if given is not None else None
        problems = [p._replace(params_extra={
            **p.params_extra, "A_true": p.params_extra["A"],
            "A": Blur.from_kernel(k, 1, boundary=p.params_extra["A"].boundary) if k is not None
            else p.params_extra["A"]})
            for p in problems]
    if kw["mode"] in BASELINE_MODES:
        return problems, kw["mode"], None, [(False, [i]) for i in range(len(problems))]
    cfg = dp.make_config(**{"keep_images": False, **kw})
    groups = defaultdict(list)
    for i, p in enumerate(problems):
        rot = needs_landscape(p.y.shape, mode=cfg.mode, a_step=cfg.a_step, operator=cfg.operator)
        shape = p.y.shape[1::-1] + p.y.shape[2:] if rot else p.y.shape
        groups[(shape, rot, _params_key(p.params_extra))].append(i)
    batches = [(rot, idx[s:s + batch]) for (_, rot, _), idx in groups.items()
               for s in range(0, len(idx), batch)]
    return problems, kw["mode"], cfg, batches


def _run_batch(params: dict, problems: list, mode: str, cfg, rot: bool, chunk: list):
    """Outputs (float32 HWC, None where the solver diverged), per-iteration PSNR curves and
    errors of one batch."""
    if cfg is None:
        return [run_baseline(mode, problems[i]) for i in chunk], [None] * len(chunk), \
            [None] * len(chunk)
    return _restore_chunk(dp, params, problems, chunk, cfg, rot)


def _score(proto, prob, out, curve, error) -> tuple[dict, str | None]:
    """The per-image entry of results.json, and the failure message (None if scored)."""
    try:
        if error is not None:
            raise data.NonFiniteOutput(error)
        scores = proto.evaluate(out, prob.meta)
        status = "ok" if scores is not None else "no reference"
    except data.NonFiniteOutput as err:
        scores, status, error = None, "non-finite", str(err)
    return {"psnr": scores and scores["psnr"], "ssim": scores and scores["ssim"],
            "psnr_per_iter": curve, "status": status}, error


def _image_path(out_dir: Path, method: str, name: str, ckey: str) -> Path:
    return out_dir / "images" / method / f"{safe_name(name)}_{safe_name(ckey)}.png"


def _run_step(exp: Experiment, cluster, params: dict, problems: list, method: str, ckey: str,
              kw: dict, stream: str, desc: str, out_dir: Path | None, counts: list):
    """One method on one condition's problems, this process's share of the batches (batch
    ``j`` is process ``j mod N``'s). Each image is scored where it was restored; process 0
    gathers the entries and returns ``({image index: (entry, failure)}, output of image 0)``,
    the other processes None."""
    from tqdm.auto import tqdm

    problems, mode, cfg, batches = _plan(problems, kw, exp.batch)
    mine = [b for j, b in enumerate(batches) if cluster.owns(j)]
    records: dict[int, tuple] = {}

    def take(pid, items):
        for i, entry, error, png in items:
            if i in records:
                raise RunError(f"method {method!r}, image {problems[i].name!r}: restored twice "
                               f"(by process {pid} and another); every image must be restored "
                               f"exactly once")
            records[i] = (entry, error)
            counts[pid] += 1
            if png is not None:
                path = _image_path(out_dir, method, problems[i].name, ckey)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png)
        cluster.progress()

    first = None
    with tqdm(total=sum(len(c) for _, c in mine), desc=desc, leave=False,
              disable=not cluster.is_main) as bar:
        for rot, chunk in mine:
            cluster.check()  # another process failed: stop here
            outs, curves, errors = _run_batch(params, problems, mode, cfg, rot, chunk)
            items = []
            for i, out, curve, error in zip(chunk, outs, curves, errors):
                entry, error = _score(exp.protocol, problems[i], out, curve, error)
                png = None
                if exp.save_images and out is not None and entry["status"] != "non-finite":
                    if cluster.is_main:
                        report.save_png(_image_path(out_dir, method, problems[i].name, ckey),
                                        out)
                    else:
                        png = report.png_bytes(out)
                if i == 0:
                    first = out  # the examples figure shows image 0 (always process 0's)
                items.append((i, entry, error, png))
            del outs
            if cluster.is_main:
                take(0, items)
                cluster.collect(stream, take, block=False)
            else:
                cluster.send(stream, items)
            bar.update(len(chunk))
    if not cluster.is_main:
        cluster.close(stream)
        return None
    cluster.collect(stream, take, block=True)
    missing = [problems[i].name for i in range(len(problems)) if i not in records]
    if missing:
        raise RunError(f"method {method!r}: image(s) {missing} were restored by no process")
    return records, first


def _fingerprint(exp: Experiment) -> dict:
    """What every process of a job must agree on (the files by name and content, not path)."""
    files = []
    for item in exp.source.items:
        for f in (item.image, item.blur, item.sharp):
            if f is not None:
                files.append((item.name, f.name, sha256_file(f) if f.exists() else None))
    fields = {"dataset": exp.dataset, "files": files, "limit": exp.limit,
              "protocol": exp.protocol.name, "task": exp.task,
              "conditions": [exp.key(c) for c in exp.conditions], "networks": exp.networks,
              "methods": exp.methods, "weights": exp.weights, "batch": exp.batch,
              "tile": exp.tile, "save_images": exp.save_images}
    return {k: json.dumps(v, sort_keys=True, default=repr) for k, v in fields.items()}


def _check_same(hellos: list[dict]) -> None:
    ref = hellos[0]["experiment"]
    for pid, hello in enumerate(hellos[1:], start=1):
        diff = [k for k in ref if hello["experiment"].get(k) != ref[k]]
        if diff:
            raise RunError(f"process {pid} resolved a different experiment than process 0 "
                           f"(differs in: {', '.join(diff)}). Fix: start every process with "
                           f"the same arguments (only --process-id differs) and the same data "
                           f"files.")


def run(exp: Experiment, out_dir: Path | None, cluster=None) -> tuple[dict | None, int]:
    """Runs ``exp`` writing into ``out_dir``; returns (results, number of failed images).

    ``cluster`` (a :class:`dynpnp_jax.distributed.Cluster` from
    ``dynpnp_jax.distributed.initialize``; default: this process alone) splits the batches over
    the job's processes; every process calls ``run`` with the same experiment, process 0
    gathers the results and writes the report into its ``out_dir`` (the others' is unused and
    may be None) and returns them; the others return ``(None, number of failed images)``. A
    failure on any process stops them all (DistributedError names the process)."""
    cluster = cluster or local()
    cluster.begin("eval")
    try:
        return _run(exp, out_dir, cluster)
    except BaseException as err:
        cluster.fail(str(err) or type(err).__name__)
        raise


def _run(exp: Experiment, out_dir: Path | None, cluster) -> tuple[dict | None, int]:
    import jax

    t_all = time.time()
    main = cluster.is_main
    hellos = cluster.share("hello", {"experiment": _fingerprint(exp),
                                     "devices": jax.local_device_count()})
    if main:
        _check_same(hellos)
    # process 0 fills the caches (prepared dataset, converted weights) before the others read
    # them: on a shared file system they would otherwise write the same files at once
    if not main:
        cluster.receive("prepared")
    examples = _load_examples(exp)
    solver_used = any(kw["mode"] not in BASELINE_MODES
                      for per in exp.methods.values() for kw in per.values())
    nets = _load_networks(exp) if solver_used else {}
    if main:
        cluster.publish("prepared")
    channels = {nets[(p, exp.weights)].channels for p, _ in exp.networks.values()} if nets else ()
    conversions = {}
    if len(channels) == 1:
        examples, conversions = _channels_rule(examples, channels.pop())
    proto = exp.protocol
    results = (report.new_results(exp, n_images=len(examples), conversions=conversions,
                                  weights_files=_weights_files(exp) if nets else None)
               if main else None)
    rows, failures, figure = [], [], {}
    counts = [0] * cluster.num_processes
    for ci, cond in enumerate(exp.conditions):
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
        for mi, (method, per_cond) in enumerate(exp.methods.items()):
            kw = per_cond[ckey]
            t0 = time.time()
            label = f"{method} {proto.condition_label(cond)}"
            try:
                step = _run_step(exp, cluster, params, problems, method, ckey, kw,
                                 f"c{ci}-m{mi}", label, out_dir, counts)
            except ValueError as err:  # restore's input checks (sizes, channels)
                raise RunError(f"method {method!r} ({proto.condition_label(cond)}): {err}") from err
            if not main:
                continue
            records, first = step
            elapsed = time.time() - t0
            per_image = {}
            for i, prob in enumerate(problems):
                entry, error = records[i]
                if error is not None:
                    failures.append({"method": method, "condition": ckey, "image": prob.name,
                                     "error": error})
                per_image[prob.name] = entry
                rows.append([method, ckey, prob.name, entry["psnr"], entry["ssim"],
                             entry["status"]])
            results["methods"].setdefault(method, {})[ckey] = report.summarize(per_image, elapsed)
            results["config"].setdefault(method, {})[ckey] = kw
            if ci == 0 and problems:
                figure[method] = first
        if ci == 0 and problems and main:
            figure["_input"], figure["_clean"] = problems[0].y, problems[0].clean
            figure["_meta"] = problems[0].meta
    if not main:
        return None, cluster.receive("done")
    results["failures"] = failures
    results["processes"] = {"count": cluster.num_processes,
                            "local_devices": [h["devices"] for h in hellos],
                            "images_restored": counts}
    results["seconds_total"] = time.time() - t_all
    report.write_all(results, rows, figure, out_dir)
    cluster.publish("done", len(failures))
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


def _iters(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_ITERS:
        raise argparse.ArgumentTypeError(f"expected {ITERS_WHY}; got {value}. Fix: e.g. "
                                         f"--iters 8")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0: no tiling), got {value}")
    return value


def _process_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected this process's number (an integer 0 to "
                                         f"N-1), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected this process's number, 0 to N-1, got "
                                         f"{value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number > 0), got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
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
    p.add_argument("--task", default=None, choices=TASKS,
                   help="denoise (default for clean images), deblur (recorded blur for "
                        "blur/sharp pairs, else a known kernel), sr, inpaint, demosaic (RGGB "
                        "Bayer mosaic; colour sets: cbsd68, set3c, set5)")
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
                   help="noise levels on the 8-bit scale, e.g. 2.55 7.65 (known degradations: "
                        "default 2.55 for deblur, 0 for sr, inpaint and demosaic; for "
                        "denoising the same as --sigma). A single name is taken as the "
                        "noise estimator's network (old meaning; use --noise-net)")
    p.add_argument("--boundary", nargs="+", default=None, choices=("circular", "unknown"),
                   help="deblurring: how y is made at the frame's edges; each runs. circular "
                        "(default): DPIR's periodic blur; unknown: the frame of a larger "
                        "blurred scene, as a photograph (the kernel's reach cut off every side), "
                        "restored with Blur(boundary='unknown')")
    p.add_argument("--scale", type=int, nargs="+", default=None, choices=(2, 3, 4),
                   help="super-resolution factors (--task sr)")
    p.add_argument("--mask", nargs="+", default=None,
                   help="inpainting masks: random:P (each pixel missing with probability P) or "
                        "an image file (white = observed)")
    p.add_argument("--method", nargs="+", default=None,
                   help="methods of the config (default: all that apply to the task). "
                        "Denoising: prior static hqs authors gradient; known degradations "
                        "(configs/dpir.py): dpir and the baselines "
                        + ", ".join(f"{m} ({'/'.join(t)})" for m, t in BASELINE_MODES.items()))
    p.add_argument("--prior", default=None, help="registry name of the prior ({sigma} allowed)")
    p.add_argument("--noise-level", type=_sigma, default=None,
                   help="denoising with a noise-conditioned prior (FFDNet): the noise level "
                        "(8-bit scale) the network is given (default: the true --sigma, as "
                        "the FFDNet paper evaluates)")
    p.add_argument("--noise-net", default=None,
                   help="registry name of the noise estimator g ({sigma} allowed)")
    p.add_argument("--weights", default=None, help="the prior's upstream file or folder (your own)")
    p.add_argument("--protocol", default=None,
                   help="standard or authors (denoising), gopro (recorded blur), dpir (known "
                        "degradations), imresize (SR by MATLAB imresize; the default for --task "
                        "sr on Set5)")
    p.add_argument("--config", default=None, help="a configs/*.py file with get_config()")
    p.add_argument("--data-dir", default=None, help="data root, or a folder of images")
    p.add_argument("--out", default=None, help="output folder (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--iters", type=_iters, default=None,
                   help=f"override T for iterative methods (1 to {MAX_ITERS})")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N images only")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help="images per restore call (default: the config's, else 8)")
    p.add_argument("--tile", type=_nonneg_int, default=0,
                   help="run the prior on overlapping tiles of this size (bounds memory)")
    p.add_argument("--save-images", action="store_true", help="write restored PNGs")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (also: "
                        "DYNPNP_NO_COMPILE_CACHE=1)")
    g = p.add_argument_group(
        "many processes (hosts)",
        "Join a JAX multi-process job (jax.distributed.initialize): the batches are split over "
        "the processes and their local devices, process 0 writes the one report. Joined when "
        "these flags (or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID) are "
        "given, or inside a SLURM step / Open MPI launch / GKE TPU slice of several tasks.")
    g.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                   help="auto (default): join when the flags or the environment describe a "
                        "multi-process job; on: also let JAX detect it (a Cloud TPU VM pod "
                        "slice); off: always run alone")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address and a free port, the same on every process")
    g.add_argument("--num-processes", type=_positive_int, default=None, metavar="N",
                   help="the number of processes of the job")
    g.add_argument("--process-id", type=_process_id, default=None, metavar="I",
                   help="this process's number, 0 to N-1 (0 writes the report)")
    g.add_argument("--distributed-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="how long a process waits for the others to connect, or for a "
                        "process to finish a batch, before the job fails (default 1800)")
    return p


def _stop(cluster, parser, status: int, message: str):
    """Ends the run: status 2 a usage error, 1 a run failure. In a multi-process job the others
    are told first, and this process exits at once (waiting for JAX's orderly shutdown could
    wait on a process that is mid-batch)."""
    cluster.fail(message)
    if not cluster.distributed:
        if status == 2:
            parser.error(message)
        raise SystemExit(f"error: {message}")
    if status == 2:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    cluster.acknowledge()
    cluster.linger(min(cluster.timeout_s, 60.0))  # process 0: until the others have said why
    os._exit(status)


def _after_fork_child() -> None:
    """The forked child of a supervised job: its own Ctrl-C watcher (threads do not survive a
    fork)."""
    _INTERRUPTS["count"] = 0
    _watch_interrupts()


def main(argv=None) -> int:
    """The CLI. Exit status: 0 done, 1 a run failure (unreadable data, missing weights, a
    non-finite output, another process of the job failed), 2 a bad argument or config (nothing
    written), 130 interrupted (Ctrl-C). Called without ``argv`` (a console script, ``python -m``)
    it also keeps Ctrl-C working during long compiled calls (:func:`_watch_interrupts`)."""
    if argv is None:
        return _cli()
    return _main(argv)


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:  # checked before anything connects or runs
        timeout = args.distributed_timeout or distributed.DEFAULT_TIMEOUT_S
        how = distributed.settings(args.coordinator, args.num_processes, args.process_id,
                                   mode=args.distributed, timeout_s=timeout)
    except ValueError as err:
        parser.error(str(err))
    if how.join:  # an XLA abort (a dead peer, no coordinator) ends in one line, not a C++ trace
        status = distributed.supervise(how, in_child=_after_fork_child,
                                       in_parent=lambda: _INTERRUPTS.update(mode="ignore"))
        if status is not None:
            raise SystemExit(status)
    try:
        cluster = distributed.initialize(config=how)
    except distributed.DistributedError as err:
        raise SystemExit(f"error: {err}") from None
    try:
        exp = resolve(args, check_output=cluster.is_main)
        if args.kernel_given is not None:
            _set_kernel_given(exp, args.kernel_given)
    except UsageError as err:
        _stop(cluster, parser, 2, str(err))
    if cluster.is_main:
        for note in exp.notes:
            print(f"note: {note}", file=sys.stderr)
    if exp.compile_cache:
        enable_compilation_cache()

    try:
        if cluster.is_main:
            staging = _Staging(exp.out, exp.overwrite)
            with staging as tmp:
                results, n_failed = run(exp, tmp, cluster)
                staging.commit()
            for note in staging.notes:
                print(f"note: {note}", file=sys.stderr)
        else:
            results, n_failed = run(exp, None, cluster)
    except UsageError as err:
        _stop(cluster, parser, 2, str(err))
    except (RunError, distributed.DistributedError) as err:
        _stop(cluster, parser, 1, str(err))
    if not cluster.is_main:
        print(f"process {cluster.process_id} of {cluster.num_processes}: done, its results are "
              f"in process 0's report", file=sys.stderr)
        if n_failed:
            raise SystemExit(f"error: {n_failed} restored image(s) were not finite and were "
                             f"not scored (see process 0's report)")
        return 0
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


# ------------------------------------------------------------------------------ Ctrl-C
_TEMPORARIES: set = set()  # staging folders to delete when Ctrl-C ends the process at once
_INTERRUPTS = {"mode": "interrupt", "count": 0}


def _watch_interrupts() -> bool:
    """Ctrl-C that works while XLA runs a long compiled loop, where Python's own handler waits
    until the call returns. Python's handler stays (the first Ctrl-C raises KeyboardInterrupt
    as soon as the main thread is back in Python: the run stops and its staging folder is
    removed); a watcher thread woken through ``signal.set_wakeup_fd`` says so at once, and on a
    second Ctrl-C deletes the staging folders and ends the process (status 130). Returns False
    where that is not possible (not the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r)
        os.close(w)
        return False

    def watch():
        while True:
            try:
                got = os.read(r, 64)
            except OSError:
                return
            if not got:
                return
            if signal.SIGINT not in got or _INTERRUPTS["mode"] == "ignore":
                continue
            _INTERRUPTS["count"] += 1
            if _INTERRUPTS["count"] == 1:
                print("\ninterrupted (Ctrl-C): stopping as soon as the running compiled call "
                      "returns (XLA cannot cut it short); press Ctrl-C again to quit at once",
                      file=sys.stderr, flush=True)
                continue
            for tmp in list(_TEMPORARIES):
                shutil.rmtree(tmp, ignore_errors=True)
            print("interrupted again: quit at once; nothing written", file=sys.stderr,
                  flush=True)
            os._exit(130)

    threading.Thread(target=watch, name="dynpnp-interrupt", daemon=True).start()
    return True


def _cli() -> int:
    """``python -m dynpnp_jax.eval``: :func:`main` with Ctrl-C kept working."""
    import signal

    _watch_interrupts()
    try:
        return _main(None)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C): stopped; nothing written", file=sys.stderr)
        return 130
    finally:  # a late Ctrl-C must not hit the interpreter while it shuts down
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(_cli())
