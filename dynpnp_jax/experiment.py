"""An evaluation experiment, resolved and validated before anything is written.

:func:`resolve` turns the CLI arguments (an ``argparse.Namespace`` of ``eval.build_parser``) and
an experiment config (``configs/*.py``: ``get_config() -> dict``) into an :class:`Experiment`:
the dataset's files, the protocol, the conditions (noise levels, ...), the network of every
condition, the methods with their solver settings, the output folder. Every check that can fail
runs here; a failure raises :class:`UsageError` naming the argument (or config key), what was
expected, what came and the fix, and the CLI turns it into a non-zero exit with no output.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Any

from . import algorithms, data
from . import kernels as K
from .baselines import BASELINES
from .data.degradations import DEFAULTS, SR_SETS, Degradation, check_mask_spec
from .data.degradations import TASKS as DPIR_TASKS  # known degradations, made by the dpir protocol
from .paths import check_output_place
from .solver import make_config
from .weights import available, get_spec

__all__ = ["Experiment", "UsageError", "resolve", "load_config", "check_config", "method_kwargs",
           "with_iters", "tuned_schedule", "CONFIG_KEYS", "BASELINE_MODES", "SCHEDULE_TASKS",
           "TASKS"]

# Config keys: required ones first.
CONFIG_KEYS = {
    "methods": "required: {method name: make_config keyword arguments (with 'mode'), or "
               "{sigma: keyword arguments}}",
    "prior": "required: the prior's registry name, '{sigma}' allowed (e.g. 'dncnn-s{sigma}')",
    "task": "optional: 'denoise', 'deblur', 'sr', 'inpaint' or 'demosaic' (must match the "
            "protocol)",
    "dataset": "optional: the default --dataset",
    "protocol": "optional: the default --protocol",
    "sigmas": "optional: the default --sigma list (denoising)",
    "noise": "optional: registry name of the noise estimator g, '{sigma}' allowed",
    "tasks": "optional: the tasks a config serves when it does not fix one (e.g. the dpir "
             "config: ['deblur', 'sr', 'inpaint'])",
    "published": "optional: published rows {row: {sigma: (psnr, ssim)}} (or keyed by prior name "
                 "first, with published_by_prior=True)",
    "published_by_prior": "optional: True when 'published' is keyed by prior name",
    "published_by_dataset": "optional: True when 'published' is keyed by dataset name first "
                            "(before the prior name, with published_by_prior)",
    "published_note": "optional: what the published rows were measured on",
    "batch": "optional: images per restore call (positive int)",
    "noise_level": "optional: denoising with a noise-conditioned prior (FFDNet): the noise level "
                   "(8-bit scale) the network is given; default: the true sigma",
}
REQUIRED_KEYS = ("methods", "prior")
#: The most iterations the CLI runs (the paper's loops use 2-8, DPIR's 8-40): each one is a
#: network call per image, and one restore call is a compiled loop that cannot stop midway.
MAX_ITERS = 1000  # the solver's own bound (solver.ITERS_MAX)
ITERS_WHY = (f"at most {MAX_ITERS}: each iteration calls the network once per image (10^6 "
             f"iterations of DnCNN on one 256x256 image take hours on a CPU) and a restore call "
             f"is one compiled loop that cannot stop midway; published plug-and-play loops run "
             f"2 to 100 iterations")
# Methods that do not call the solver (dynpnp_jax.baselines): mode -> the tasks they apply to.
BASELINE_MODES = {mode: tasks for mode, (tasks, _, _) in BASELINES.items()}
TASKS = ("denoise", *DPIR_TASKS)


def traits(mode) -> "algorithms.Traits | None":
    """The traits of the algorithm ``mode`` (``None`` for a baseline or an unknown name: the
    config check names those)."""
    return algorithms.ALGORITHMS[mode].traits if mode in algorithms.ALGORITHMS else None


def told_operator(mode) -> bool:
    """Whether method ``mode`` is handed the known operator (a known-degradation algorithm)."""
    t = traits(mode)
    return t is not None and t.known_degradation


def calibrates(mode) -> bool:
    t = traits(mode)
    return t is not None and t.calibrates


def default_config_name(dataset: str, task: str, paired: bool) -> str | None:
    """The config module (in ``dynpnp_jax.configs``) a dataset and task run by default."""
    if paired:
        return {"gopro": "deblur_gopro", "folder": "deblur_folder"}.get(dataset) if (
            task == "deblur") else None
    if task in DPIR_TASKS:
        return "dpir"
    return {"set12": "denoise_set12", "bsd68": "denoise_bsd68", "folder": "denoise_folder",
            "set3g": "denoise_folder", "set3c": "denoise_color", "set5": "denoise_color",
            "cbsd68": "denoise_cbsd68"}.get(dataset)


class UsageError(ValueError):
    """A bad argument or config: the message names it, what was expected, what came, the fix."""


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, validated. ``methods`` maps a method to its ``make_config``
    keyword arguments per condition key; ``networks`` a condition key to (prior, noise) names."""

    dataset: str
    source: Any                      # data.sources.Source
    reference: tuple[bool, str]      # is it the published set, and why (sources.reference_status)
    config_name: str
    protocol: Any                    # data.protocols.Protocol
    conditions: list
    networks: dict[str, tuple[str, str | None]]
    methods: dict[str, dict[str, dict]]
    weights: str | None
    published: dict
    published_note: str
    batch: int
    limit: int | None
    tile: int
    out: Path
    overwrite: bool
    save_images: bool
    compile_cache: bool
    notes: list[str]
    command: str

    @property
    def task(self) -> str:
        return self.protocol.task

    def key(self, condition) -> str:
        return self.protocol.condition_key(condition)


# ------------------------------------------------------------------------------ config
def load_config(path: str | os.PathLike) -> dict:
    """``get_config()`` of a config file, checked by :func:`check_config`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config: no such file {path}; expected a Python file with "
                         f"get_config(). Fix: pass e.g. configs/denoise_set12.py.")
    _configs_package()  # what `from dynpnp_jax.configs.common import ...` in the file gets
    try:
        spec = importlib.util.spec_from_file_location(f"_dynpnp_cfg_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as err:  # a user file: report whatever it raises
        raise UsageError(f"--config {path}: importing it failed: {type(err).__name__}: {err}. "
                         f"Fix: the file must be valid Python defining get_config().") from err
    if not callable(getattr(module, "get_config", None)):
        raise UsageError(f"--config {path}: defines no get_config(). Fix: add "
                         f"`def get_config() -> dict` returning the experiment.")
    try:
        cfg = module.get_config()
    except Exception as err:  # a user file: report whatever it raises, in one line
        import traceback

        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        where = f" (line {frames[-1].lineno})" if frames else ""
        raise UsageError(f"--config {path}: get_config() raised {type(err).__name__}: {err}"
                         f"{where}. Expected it to return the experiment dict. Fix: correct "
                         f"get_config() in that file.") from None
    return check_config(cfg, f"--config {path}")


def check_config(cfg, where: str) -> dict:
    """Checks the keys and types of an experiment config; returns it."""
    keys_help = (" and ".join(f"{k!r} ({CONFIG_KEYS[k].split(': ', 1)[1]})" for k in REQUIRED_KEYS)
                 + "; optional: " + ", ".join(k for k in CONFIG_KEYS if k not in REQUIRED_KEYS))
    if not isinstance(cfg, dict):
        raise UsageError(f"{where}: get_config() must return a dict, got "
                         f"{type(cfg).__name__}. A config contains {keys_help}. Fix: return "
                         f"a dict (see configs/denoise_set12.py).")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise UsageError(f"{where}: get_config() lacks {missing}; got keys {sorted(cfg)}. A "
                         f"config must contain {keys_help}. Fix: add the missing keys (see "
                         f"configs/denoise_set12.py).")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {unknown}; expected only {list(CONFIG_KEYS)}. "
                         f"Fix: remove or rename them (a typo?).")
    methods = cfg["methods"]
    if not isinstance(methods, dict) or not methods:
        raise UsageError(f"{where}: 'methods' must be a non-empty dict {{name: make_config "
                         f"keyword arguments}}, got {methods!r}. Fix: e.g. {{'prior': "
                         f"{{'mode': 'prior'}}}}.")
    for name, spec in methods.items():
        ok = isinstance(spec, dict) and ("mode" in spec or (spec and all(
            isinstance(v, dict) and "mode" in v for v in spec.values())))
        if not ok:
            raise UsageError(f"{where}: method {name!r} must be a dict with 'mode' (e.g. "
                             f"{{'mode': 'authors', 'iters': 2}}) or {{sigma: such a dict}}, "
                             f"got {spec!r}. Fix: add the 'mode'.")
    if not isinstance(cfg["prior"], str) or not cfg["prior"]:
        raise UsageError(f"{where}: 'prior' must be a registry name (str), got {cfg['prior']!r}. "
                         f"Fix: e.g. 'dncnn-s{{sigma}}'.")
    batch = cfg.get("batch", 8)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"{where}: 'batch' must be a positive int, got {batch!r}. Fix: e.g. 8.")
    return cfg


def _configs_package():
    """``dynpnp_jax.configs``: in a source checkout, the ``configs/`` beside the running package
    (an editable install made from another checkout would map the name to that one's)."""
    import sys

    root = Path(__file__).resolve().parent.parent
    here = root / "configs"
    mod = sys.modules.get("dynpnp_jax.configs")
    is_checkout = (root / "pyproject.toml").is_file() and (here / "common.py").is_file()
    if is_checkout and (mod is None or Path(mod.__file__).resolve().parent != here):
        for name in [n for n in sys.modules if n.startswith("dynpnp_jax.configs")]:
            del sys.modules[name]
        spec = importlib.util.spec_from_file_location(
            "dynpnp_jax.configs", here / "__init__.py", submodule_search_locations=[str(here)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["dynpnp_jax.configs"] = mod
        spec.loader.exec_module(mod)
    return importlib.import_module("dynpnp_jax.configs")


def _default_config(dataset: str, task: str, paired: bool) -> tuple[dict, str]:
    name = default_config_name(dataset, task, paired)
    if name is None:
        kind = "blur/sharp pairs" if paired else "clean images"
        raise UsageError(f"--dataset {dataset} --task {task}: no default experiment for {kind} "
                         f"and this task. Fix: pass --config FILE"
                         f"{', or --task deblur (recorded blur)' if paired else ''}.")
    _configs_package()
    module = importlib.import_module(f"dynpnp_jax.configs.{name}")
    return check_config(module.get_config(), f"configs/{name}.py"), f"configs/{name}.py"


# ------------------------------------------------------------------------------ methods
def method_kwargs(spec: dict, condition) -> tuple[dict, str | None]:
    """A method's ``make_config`` kwargs for ``condition``: a spec keyed by sigma picks that
    sigma's entry, else the nearest one (and says so). Returns ``(kwargs, note or None)``."""
    if "mode" in spec:
        return dict(spec), None
    if condition in spec:
        return dict(spec[condition]), None
    try:
        nearest = min(spec, key=lambda s: abs(float(s) - float(condition)))
    except (TypeError, ValueError) as err:
        raise UsageError(f"a method keyed by sigma ({sorted(spec)}) cannot run condition "
                         f"{condition!r}. Fix: give that method one setting with 'mode'.") from err
    return dict(spec[nearest]), f"no setting for {condition}; using the one of {nearest}"


# Tasks a method with a tuned schedule ('schedule' in its spec) applies to: the schedules of
# configs/dpir_tuned.py are tuned for deblurring.
SCHEDULE_TASKS = ("deblur",)


def tuned_schedule(kw: dict, condition, where: str) -> dict:
    """``kw`` (a ``dpir``-mode method's kwargs, with ``iters`` and ``noise_level`` already set)
    with its ``'schedule'`` -- the name of a config module in ``configs/`` holding tuned schedules
    (``TUNED`` and ``get_config(noise, iters)``, e.g. ``dpir_tuned``) -- replaced by that module's
    per-iteration ``sigma`` and ``mu`` (and ``relax`` / ``inertia`` where it has them) for the
    condition's noise level and T."""
    kw = dict(kw)
    name = kw.pop("schedule")
    if kw.get("mode") != algorithms.DPIR.name:  # the schedules were tuned for DPIR's loop
        raise UsageError(f"{where}: 'schedule' is for mode 'dpir', got mode {kw.get('mode')!r}. "
                         f"Fix: remove 'schedule' or use mode 'dpir'.")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise UsageError(f"{where}: 'schedule' must name a module in configs/ (e.g. "
                         f"'dpir_tuned'), got {name!r}.")
    _configs_package()
    try:
        module = importlib.import_module(f"dynpnp_jax.configs.{name}")
    except ImportError as err:
        raise UsageError(f"{where}: schedule {name!r}: no module configs/{name}.py ({err}). Fix: "
                         f"e.g. 'schedule': 'dpir_tuned'.") from err
    noise = float(getattr(condition, "noise", kw.get("noise_level", 0) * 255))
    iters = int(kw.get("iters", 8))
    tuned = getattr(module, "TUNED", {})
    key = next((k for k in tuned if math.isclose(float(k[0]), noise, abs_tol=1e-6)
                and int(k[1]) == iters), None)
    if key is None:
        have = ", ".join(f"noise {n:g} T={t}" for n, t in sorted(tuned)) or "none"
        raise UsageError(f"{where}: configs/{name}.py has no schedule for noise {noise:g}, "
                         f"T={iters}; it has {have}. Fix: pick those --noise / --iters, or tune "
                         f"one (python -m dynpnp_jax.tune --task dpir --noise {noise:g} --iters "
                         f"{iters}; see the command in configs/{name}.py).")
    vals = module.get_config(key[0], key[1])
    kw.update(sigma=list(vals["sigma"]), mu=list(vals["mu"]))
    kw.update({k: list(vals[k]) for k in ("relax", "inertia") if k in vals})
    return kw


def with_iters(kw: dict, iters: int) -> dict:
    """``kw`` with T = ``iters``; per-iteration lists are cut or extended with their last value."""
    out = {**kw, "iters": iters}
    for key in ("delta", "mu", "alpha", "relax", "inertia"):
        val = out.get(key)
        if isinstance(val, (list, tuple)):
            out[key] = (list(val) + [val[-1]] * iters)[:iters]
    return out


# ------------------------------------------------------------------------------ networks
class _Fields(dict):
    def __missing__(self, key):
        raise KeyError(key)


def _network_name(template: str, fields: dict, arg: str) -> str:
    try:
        return template.format_map(_Fields(fields))
    except (KeyError, IndexError, ValueError) as err:
        raise UsageError(f"{arg} {template!r}: the fields a network name may hold here are "
                         f"{', '.join('{' + f + '}' for f in fields) or 'none'}, got {err}. "
                         f"Fix: e.g. --prior dncnn-s{{sigma}} (denoising), ffdnet-{{color}}.")


def _check_network(template: str, conditions, key, arg: str, cond_arg: str, fields) -> dict:
    names = available()
    out = {}
    for c in conditions:
        name = _network_name(template, fields(c), arg)
        if name in names:
            out[key(c)] = name
            continue
        if "{sigma}" in template:
            pat = re.compile("^" + re.escape(template).replace(r"\{sigma\}", r"(\d+(?:\.\d+)?)")
                             + "$")
            have = sorted((m.group(1) for m in map(pat.match, names) if m), key=float)
            raise UsageError(
                f"{cond_arg} {key(c)}: {arg} {template!r} has no network for sigma {key(c)} "
                f"({name!r} is not in the registry); it exists for sigma "
                f"{', '.join(have) or '(none)'}. Fix: use one of those sigmas, or a blind prior "
                f"(e.g. {arg} dncnn-b-gray) for other noise levels.")
        raise UsageError(f"{arg}: unknown network {name!r}; registered: {', '.join(names)}. Fix: "
                         f"use one of those (python -m dynpnp_jax.weights_table lists them).")
    return out


# ------------------------------------------------------------------------------ output
def default_out(dataset: str) -> Path:
    return Path(f"results/{dataset}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


def check_out(out: Path, overwrite: bool, inputs=()) -> None:
    """The output folder must be new, or empty, or ``--overwrite`` given; its parent creatable.
    It must not be, nor contain, the current directory, the home directory, the repository, the
    cache or an input (``inputs``: ``(path, what)``, e.g. the data folder), nor lie inside an
    input folder (:func:`dynpnp_jax.paths.check_output_place`)."""
    try:
        check_output_place(out, "--out", inputs)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out}: exists and is a file; expected a folder to create. "
                             f"Fix: pass another --out.")
        if any(out.iterdir()) and not overwrite:
            raise UsageError(f"--out {out}: exists and is not empty; expected a new or empty "
                             f"folder. Fix: pass another --out, or --overwrite to replace it.")
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"--out {out}: cannot be created, {anc} is a file. Fix: pass a folder "
                         f"path whose parents are folders.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot be created, {anc} is not writable. Fix: pass a "
                         f"folder you can write to.")


def input_places(args, source) -> list[tuple[Path, str]]:
    """What a run reads, as ``(path, what)``: no output may replace or sit inside these."""
    places = []
    if args.data_dir is not None:
        places.append((Path(args.data_dir).expanduser(), "--data-dir"))
    places.append((source.root, f"the folder of --dataset {source.name}"))
    folders = {f.parent for it in source.items for f in (it.image, it.blur, it.sharp)
               if f is not None}
    places += [(f, "a folder of the dataset's images") for f in sorted(folders)]
    if getattr(args, "weights", None):
        places.append((Path(args.weights).expanduser(), "--weights"))
    if getattr(args, "config", None):
        places.append((Path(args.config).expanduser(), "--config"))
    return places


# ------------------------------------------------------------------------------ resolve
def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _split_noise(args, notes: list) -> tuple[list | None, str | None]:
    """``--noise``: noise levels (numbers, 8-bit scale) or, as before, the estimator's name."""
    values = args.noise or []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(f):
            raise UsageError(f"--noise {v}: expected a finite noise level >= 0 on the 8-bit "
                             f"scale (e.g. --noise 2.55 7.65), got {v}. Fix: pass a number "
                             f"such as 2.55.")
    nums = [_number(v) for v in values]
    if values and all(n is not None for n in nums):
        bad = [v for v, n in zip(values, nums) if n < 0 or n > 255]
        if bad:
            raise UsageError(f"--noise: noise levels are >= 0 on the 8-bit scale (e.g. 2.55 "
                             f"7.65), got {bad}. Fix: pass levels as on 0..255 images.")
        small = [v for v, n in zip(values, nums) if 0 < n < 1]
        if small:
            notes.append(f"--noise {' '.join(small)}: noise levels are on the 8-bit scale "
                         f"({small[0]} means {small[0]}/255 on [0, 1] images); for DPIR's "
                         f"2.55/255 pass 2.55")
        return [int(n) if n.is_integer() else n for n in nums], args.noise_net
    if len(values) == 1 and args.noise_net is None:
        notes.append("--noise NAME names the noise estimator g; prefer --noise-net NAME "
                     "(--noise takes noise levels)")
        return None, values[0]
    if values:
        raise UsageError(f"--noise: expected noise levels (numbers on the 8-bit scale, e.g. "
                         f"--noise 2.55 7.65), got {values}. Fix: numbers only; the noise "
                         f"estimator's network goes to --noise-net NAME.")
    return None, args.noise_net


def _task(args, cfg: dict | None, config_name, source) -> str:
    task = args.task or (cfg or {}).get("task") or ("deblur" if source.paired else "denoise")
    if args.task and cfg is not None and cfg.get("task") not in (None, args.task) and (
            args.task not in cfg.get("tasks", ())):
        raise UsageError(f"--task {args.task}: {config_name} is a {cfg['task']!r} experiment. "
                         f"Fix: leave --task out, or use a config for {args.task}.")
    if source.paired and task != "deblur":
        raise UsageError(f"--task {task}: dataset {source.name!r} ({source.root}) holds "
                         f"blur/sharp pairs, i.e. recorded blur. Fix: --task deblur, or a "
                         f"dataset of clean images for {task}.")
    return task


def _protocol(args, cfg: dict, config_name: str, task: str, dataset: str, source):
    default = "gopro" if source.paired else (
        "imresize" if task == "sr" and dataset in SR_SETS else
        "dpir" if task in DPIR_TASKS else "standard")
    name = args.protocol or cfg.get("protocol") or default
    if name not in data.PROTOCOLS:
        raise UsageError(f"--protocol: unknown protocol {name!r}; expected one of "
                         f"{', '.join(data.PROTOCOLS)}. Fix: 'standard' for published-table "
                         f"numbers, 'authors' for the paper's notebooks, 'gopro' for blur/sharp "
                         f"pairs, 'dpir' for known degradations (--task deblur/sr/inpaint), "
                         f"'imresize' for super-resolution as the SR literature scores it "
                         f"(--task sr).")
    protocol = data.get_protocol(name)
    if protocol.paired != source.paired:
        fits = data.protocols.protocols_for(source.paired)
        kind = "blur/sharp pairs" if source.paired else "clean images"
        raise UsageError(f"--protocol {name}: takes "
                         f"{'blur/sharp pairs' if protocol.paired else 'clean images'}, but "
                         f"dataset {dataset!r} ({source.root}) holds {kind}. Fix: use "
                         f"--protocol {' or '.join(fits)}"
                         f"{'' if args.config is None else ', or a config for that task'}.")
    if name == "imresize":
        if task != "sr":
            raise UsageError(f"--protocol imresize: is the super-resolution protocol (MATLAB "
                             f"imresize down-sampling), got task {task!r}. Fix: --task sr, or "
                             f"drop --protocol (task {task} picks its own).")
        return protocol
    if name == "dpir":
        if task not in DPIR_TASKS:
            raise UsageError(f"--protocol dpir: makes known degradations ({', '.join(DPIR_TASKS)})"
                             f", got task {task!r}. Fix: --task {', '.join(DPIR_TASKS)}.")
        return dataclasses.replace(protocol, task=task)
    if protocol.task != task:
        raise UsageError(f"--task {task} / --protocol {name}: protocol {name!r} is for "
                         f"{protocol.task!r}. Fix: drop --protocol (task {task} picks its own) "
                         f"or use --task {protocol.task}.")
    if cfg.get("task", protocol.task) != protocol.task:
        raise UsageError(f"{config_name}: task {cfg['task']!r} does not match protocol "
                         f"{name!r} ({protocol.task}). Fix: use a config for that task.")
    return protocol


def _refuse(args, names: tuple[str, ...], why: str) -> None:
    for name in names:
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value:
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            raise UsageError(f"{name} {shown}: {why}. Fix: leave {name} out.")


def _dpir_conditions(args, protocol, noise_levels):
    """Degradations (kernels x noise levels, x scales, or masks x noise levels) of the dpir
    protocol, and the protocol with its kernel table."""
    task = protocol.task
    defaults = DEFAULTS[task]
    noises = noise_levels if noise_levels is not None else defaults["noise"]
    _refuse(args, ("--sigma",), f"the dpir protocol's noise level is --noise (8-bit scale, e.g. "
            f"2.55)")
    if task != "sr":
        _refuse(args, ("--scale",), f"--scale is for --task sr, not {task}")
    if task != "inpaint":
        _refuse(args, ("--mask",), f"--mask is for --task inpaint, not {task}")
    if task in ("inpaint", "demosaic"):
        _refuse(args, ("--kernel",), {"inpaint": "inpainting", "demosaic": "demosaicing"}[task]
                + " has no blur kernel")
    if task != "deblur":
        _refuse(args, ("--boundary",), f"--boundary is for --task deblur, not {task}")
    table, conds = {}, []

    def kernels_of(spec: str) -> list:
        try:
            return K.parse_kernel(spec)
        except (ValueError, FileNotFoundError, OSError) as err:
            raise UsageError(f"--kernel {spec}: {err}") from None
        except MemoryError:
            raise UsageError(f"--kernel {spec}: the kernel it describes does not fit in memory; "
                             f"expected a kernel of at most a few hundred pixels a side. Fix: "
                             f"e.g. --kernel motion:15,45 or gauss:1.6.") from None

    if task == "deblur":
        pairs = [kv for spec in (args.kernel or defaults["kernels"]) for kv in kernels_of(spec)]
        table = {name: k for name, k in pairs}
        bounds = list(dict.fromkeys(getattr(args, "boundary", None) or ["circular"]))
        conds = [Degradation(task, n, kernel=name, boundary=bd) for bd in bounds
                 for n in noises for name, _ in pairs]
    elif task == "sr" and protocol.name == "imresize":
        _refuse(args, ("--kernel",), "the imresize protocol's kernel is MATLAB imresize's "
                "antialiased cubic (for another kernel: --protocol dpir)")
        conds = [Degradation(task, n, kernel="imresize", scale=s) for s in
                 (args.scale or defaults["scales"]) for n in noises]
        return protocol, conds
    elif task == "sr":
        for s in args.scale or defaults["scales"]:
            specs = [k.format(scale=s) for k in (args.kernel or defaults["kernels"])]
            pairs = [kv for spec in specs for kv in kernels_of(spec)]
            table.update({name: k for name, k in pairs})
            conds += [Degradation(task, n, kernel=name, scale=s) for n in noises
                      for name, _ in pairs]
    elif task == "demosaic":
        conds = [Degradation(task, n, pattern=p) for n in noises for p in defaults["patterns"]]
    else:
        masks = args.mask or defaults["masks"]
        for m in masks:
            try:
                check_mask_spec(m)
            except ValueError as err:
                raise UsageError(str(err)) from err
        conds = [Degradation(task, n, mask=m) for n in noises for m in masks]
    return dataclasses.replace(protocol, kernel_table=table), conds


def _conditions(args, cfg, protocol, noise_levels, notes) -> tuple[Any, list, str]:
    if protocol.name in ("dpir", "imresize"):
        protocol, requested = _dpir_conditions(args, protocol, noise_levels)
        cond_arg = {"inpaint": "--mask/--noise", "demosaic": "--noise"}.get(
            protocol.task, "--kernel/--noise")
    elif protocol.condition_name == "sigma":
        _refuse(args, ("--kernel", "--scale", "--mask", "--boundary"),
                f"protocol {protocol.name!r} denoises (known degradations: --task deblur, sr or "
                f"inpaint)")
        requested = args.sigma
        if noise_levels is not None:
            if args.sigma:
                raise UsageError(f"--noise {' '.join(map(str, noise_levels))} / --sigma: both "
                                 f"give the noise level for denoising. Fix: give one of them.")
            requested = noise_levels
            notes.append("--noise: the noise levels of a denoising run are its sigmas")
        requested = requested or cfg.get("sigmas")
        cond_arg = "--sigma"
    else:
        why = f"protocol {protocol.name!r} restores recorded blur, with no known degradation"
        _refuse(args, ("--sigma", "--kernel", "--scale", "--mask", "--boundary"), why)
        if noise_levels is not None:
            raise UsageError(f"--noise {' '.join(map(str, noise_levels))}: {why}. Fix: leave "
                             f"--noise out.")
        requested, cond_arg = None, protocol.condition_name
    try:
        conditions, dup_notes = protocol.conditions(requested)
    except ValueError as err:
        raise UsageError(f"{cond_arg}: {err}") from err
    notes += [f"{cond_arg}: {n}" for n in dup_notes]
    return protocol, conditions, cond_arg


def _methods(args, cfg, config_name, protocol, conditions, notes) -> dict:
    applicable = {m for m, spec in cfg["methods"].items()
                  if (spec.get("mode") not in BASELINE_MODES
                      or protocol.task in BASELINE_MODES[spec["mode"]])
                  and (not calibrates(spec.get("mode")) or protocol.task == "deblur")
                  and ("schedule" not in spec or protocol.task in SCHEDULE_TASKS)
                  and ("boundary" not in spec or protocol.task == "deblur")}
    if args.method:
        wanted = args.method
        unknown = [m for m in wanted if m not in cfg["methods"]]
        if unknown:
            raise UsageError(f"--method: unknown method(s) {unknown}; {config_name} has "
                             f"{list(cfg['methods'])}. Fix: pick from those.")
        odd = [m for m in wanted if m not in applicable]
        if odd:
            spec = cfg["methods"][odd[0]]
            tasks = (SCHEDULE_TASKS if "schedule" in spec else
                     BASELINE_MODES.get(spec.get("mode"), ("deblur",)))
            raise UsageError(f"--method {' '.join(odd)}: does not apply to task "
                             f"{protocol.task!r} (it is for {', '.join(tasks)}). Fix: "
                             f"pick from {[m for m in cfg['methods'] if m in applicable]}.")
    else:  # calibrated (an extra dpir-sized run) runs by default only with --kernel-given; a
        # tuned schedule (one more full dpir run) and a 'when_named' method only when named
        wanted = [m for m in cfg["methods"] if m in applicable
                  and "schedule" not in cfg["methods"][m]
                  and not cfg["methods"][m].get("when_named")
                  and (not calibrates(cfg["methods"][m].get("mode"))
                       or getattr(args, "kernel_given", None) is not None)]
    unique = list(dict.fromkeys(wanted))
    if len(unique) < len(wanted):
        notes.append(f"--method: {sorted({m for m in wanted if wanted.count(m) > 1})} given more "
                     f"than once; each runs once")
    methods: dict[str, dict[str, dict]] = {}
    for m in unique:
        methods[m] = {}
        for c in conditions:
            kw, note = method_kwargs(cfg["methods"][m], c)
            kw.pop("when_named", None)
            if note:
                notes.append(f"method {m!r}: {note}")
            if told_operator(kw.get("mode")) and hasattr(protocol, "solver_defaults"):
                kw = {**protocol.solver_defaults(c), **kw}
            if args.iters is not None and traits(kw.get("mode")) is not None and not traits(
                    kw["mode"]).fixed_iters:
                kw = with_iters(kw, args.iters)
            if "schedule" in kw:
                kw = tuned_schedule(kw, c, f"{config_name}: method {m!r}")
            iters = kw.get("iters")
            if isinstance(iters, int) and not isinstance(iters, bool) and iters > MAX_ITERS:
                raise UsageError(f"{config_name}: method {m!r}: iters={iters}; expected "
                                 f"{ITERS_WHY}. Fix: lower 'iters' (or pass --iters).")
            if kw.get("mode") not in BASELINE_MODES:
                try:
                    make_config(**kw)
                except (TypeError, ValueError) as err:
                    raise UsageError(f"{config_name}: method {m!r} ({protocol.condition_label(c)}"
                                     f"): invalid solver settings {_short(kw)}: {err}. Fix: "
                                     f"correct the config (or --iters).") from err
            methods[m][protocol.condition_key(c)] = kw
    return methods


def _give_noise_level(args, cfg, config_name, protocol, conditions, priors, methods, notes):
    """Denoising with a noise-conditioned prior (FFDNet): every solver method that sets no
    ``sigma`` / ``noise_level`` of its own gives the network the true noise level ``sigma / 255``
    (as the FFDNet paper evaluates), or ``--noise-level`` / the config's ``noise_level``."""
    given = getattr(args, "noise_level", None)
    where = "--noise-level"
    if given is None and cfg.get("noise_level") is not None:
        given, where = cfg["noise_level"], f"{config_name}: 'noise_level'"
    if given is not None:
        g = _number(given)
        if g is None or g <= 0 or g > 255:
            raise UsageError(f"{where} {given!r}: expected the noise level the prior is given, "
                             f"> 0 on the 8-bit scale (e.g. 25). Fix: pass e.g. --noise-level 25.")
        given = g
    if protocol.condition_name != "sigma":
        if given is not None:
            raise UsageError(f"{where} {given:g}: is for denoising with a noise-conditioned prior "
                             f"(task denoise), got task {protocol.task!r}, whose methods take the "
                             f"noise level from the degradation (--noise). Fix: leave it out.")
        return
    conditioned = {k: get_spec(n).noise_input for k, n in priors.items()}
    if not any(conditioned.values()):
        if given is not None:
            raise UsageError(f"{where} {given:g}: prior {sorted(set(priors.values()))} takes no "
                             f"noise level as input. Fix: leave it out, or use a noise-conditioned "
                             f"prior (--prior ffdnet-gray / ffdnet-color).")
        return
    for c in conditions:
        key = protocol.condition_key(c)
        if not conditioned[key]:
            continue
        level = float(given if given is not None else c)
        for m, per in methods.items():
            kw = per[key]
            t = traits(kw.get("mode"))
            if t is None or "sigma" not in algorithms.ALGORITHMS[kw["mode"]].numbers:
                continue
            if kw.get("sigma") is None and kw.get("noise_level") is None:
                # a schedule algorithm builds its sigma_t from noise_level; the others take it
                per[key] = {**kw, ("noise_level" if t.schedule else "sigma"): level / 255.0}
    nets = ", ".join(sorted({n for k, n in priors.items() if conditioned[k]}))
    notes.append(f"prior {nets} takes the noise level as input: given "
                 + (f"{given:g}/255 (--noise-level or the config)" if given is not None else
                    "the true sigma/255, as the FFDNet paper evaluates")
                 + " by every method that sets none")


def _short(kw: dict) -> str:
    """``kw`` for a message: long per-iteration lists shortened."""
    def one(v):
        if isinstance(v, (list, tuple)) and len(v) > 6:
            return f"[{v[0]!r}, {v[1]!r}, ..., {v[-1]!r}] ({len(v)} values)"
        return repr(v)

    return "{" + ", ".join(f"{k!r}: {one(v)}" for k, v in kw.items()) + "}"


def resolve(args, *, check_output: bool = True) -> Experiment:
    """The validated experiment of CLI ``args``; raises :class:`UsageError`. Reads the config
    and lists the dataset's files; writes nothing (a public test set missing locally may be
    downloaded into the cache). ``check_output=False`` skips the ``--out`` checks (the
    processes of a multi-process job other than 0 write no report)."""
    notes: list[str] = []
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such folder. Fix: pass the folder "
                         f"that holds the images (or the data root).")
    if args.weights is not None and not Path(args.weights).expanduser().exists():
        raise UsageError(f"--weights {args.weights}: no such file or folder. Fix: pass the "
                         f"prior's upstream weight file (or the folder holding it).")
    cfg, config_name = None, None
    if args.config:
        cfg, config_name = load_config(args.config), str(args.config)
    dataset = args.dataset or (cfg or {}).get("dataset") or "set12"
    if dataset not in data.DATASETS:
        raise UsageError(f"--dataset: unknown dataset {dataset!r}; expected one of "
                         f"{', '.join(data.DATASETS)}. Fix: pick one, or --dataset folder "
                         f"--data-dir DIR for your own images.")
    try:
        source = data.resolve_source(dataset, args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"--dataset {dataset} / --data-dir {args.data_dir}: {err}") from err
    noise_levels, noise_net = _split_noise(args, notes)
    task = _task(args, cfg, config_name, source)
    if cfg is None:
        cfg, config_name = _default_config(dataset, task, source.paired)
    protocol = _protocol(args, cfg, config_name, task, dataset, source)
    protocol, conditions, cond_arg = _conditions(args, cfg, protocol, noise_levels, notes)
    key = protocol.condition_key

    # networks (registry names per condition): {sigma} for denoising, {color} from the data
    channels = getattr(data.BUILDERS[dataset], "CHANNELS", None)
    if channels is None and "{color}" in (args.prior or cfg["prior"]):
        channels = data.sources.file_channels(source)  # from the files' headers
    color = "gray" if channels == 1 else "color"
    try:  # e.g. gray images for demosaicing: refused before anything runs
        protocol.check_data(channels, f"--dataset {dataset}")
    except ValueError as err:
        raise UsageError(str(err)) from err

    def fields(c):
        out = {"color": color}
        if protocol.condition_name == "sigma":
            out["sigma"] = key(c)
        return out

    prior_t = args.prior or cfg["prior"]
    noise_t = noise_net or cfg.get("noise")
    priors = _check_network(prior_t, conditions, key, "--prior", cond_arg, fields)
    noises = (_check_network(noise_t, conditions, key, "--noise-net", cond_arg, fields)
              if noise_t else {key(c): None for c in conditions})
    networks = {key(c): (priors[key(c)], noises[key(c)]) for c in conditions}
    methods = _methods(args, cfg, config_name, protocol, conditions, notes)
    _give_noise_level(args, cfg, config_name, protocol, conditions, priors, methods, notes)

    # published rows: only for the published data
    published = cfg.get("published") or {}
    if cfg.get("published_by_dataset"):
        published = published.get(dataset, {})
    if cfg.get("published_by_prior"):
        published = published.get(prior_t, {})
    reference = data.reference_status(source)

    out = Path(args.out).expanduser() if args.out else default_out(dataset)
    if check_output:
        check_out(out, args.overwrite, input_places(args, source))
    return Experiment(
        dataset=dataset, source=source, reference=reference, config_name=config_name,
        protocol=protocol, conditions=conditions, networks=networks, methods=methods,
        weights=args.weights, published=published,
        published_note=cfg.get("published_note", ""),
        batch=args.batch or cfg.get("batch", 8), limit=args.limit, tile=args.tile, out=out,
        overwrite=args.overwrite, save_images=args.save_images,
        compile_cache=not args.no_compile_cache, notes=notes,
        command="python -m dynpnp_jax.eval " + " ".join(getattr(args, "argv", None) or []))
