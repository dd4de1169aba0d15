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
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["Experiment", "UsageError", "resolve", "load_config", "check_config", "method_kwargs",
           "with_iters", "CONFIG_KEYS", "BASELINE_MODES"]

# Config keys: required ones first.
CONFIG_KEYS = {
    "methods": "required: {method name: make_config keyword arguments (with 'mode'), or "
               "{sigma: keyword arguments}}",
    "prior": "required: the prior's registry name, '{sigma}' allowed (e.g. 'dncnn-s{sigma}')",
    "task": "optional: 'denoise' or 'deblur' (must match the protocol)",
    "dataset": "optional: the default --dataset",
    "protocol": "optional: the default --protocol",
    "sigmas": "optional: the default --sigma list (denoising)",
    "noise": "optional: registry name of the noise estimator g, '{sigma}' allowed",
    "published": "optional: published rows {row: {sigma: (psnr, ssim)}} (or keyed by prior name "
                 "first, with published_by_prior=True)",
    "published_by_prior": "optional: True when 'published' is keyed by prior name",
    "published_note": "optional: what the published rows were measured on",
    "batch": "optional: images per restore call (positive int)",
}
REQUIRED_KEYS = ("methods", "prior")
# Methods that do not call the solver: mode -> what they output.
BASELINE_MODES = {"input": "the degraded input itself"}
# (dataset, paired) -> default config module in dynpnp_jax.configs
DEFAULT_CONFIGS = {("set12", False): "denoise_set12", ("bsd68", False): "denoise_bsd68",
                   ("gopro", True): "deblur_gopro", ("folder", False): "denoise_folder",
                   ("folder", True): "deblur_folder"}


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
    return check_config(module.get_config(), f"--config {path}")


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


def _default_config(dataset: str, paired: bool) -> tuple[dict, str]:
    name = DEFAULT_CONFIGS.get((dataset, paired))
    if name is None:
        kind = "blur/sharp pairs" if paired else "clean images"
        raise UsageError(f"--dataset {dataset}: no default experiment for {kind}. Fix: pass "
                         f"--config FILE.")
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


def with_iters(kw: dict, iters: int) -> dict:
    """``kw`` with T = ``iters``; per-iteration lists are cut or extended with their last value."""
    out = {**kw, "iters": iters}
    for key in ("delta", "mu", "alpha"):
        val = out.get(key)
        if isinstance(val, (list, tuple)):
            out[key] = (list(val) + [val[-1]] * iters)[:iters]
    return out


# ------------------------------------------------------------------------------ networks
def _network_name(template: str, condition, arg: str) -> str:
    try:
        return template.format(sigma=condition)
    except (KeyError, IndexError, ValueError) as err:
        raise UsageError(f"{arg} {template!r}: only the field {{sigma}} may appear in a network "
                         f"name, got {template!r} ({err}). Fix: e.g. --prior dncnn-s{{sigma}}.")


def _check_network(template: str, conditions, key, arg: str, cond_arg: str) -> dict:
    from . import available

    names = available()
    out = {}
    for c in conditions:
        name = _network_name(template, key(c), arg)
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


def check_out(out: Path, overwrite: bool) -> None:
    """The output folder must be new, or empty, or ``--overwrite`` given; its parent creatable."""
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


# ------------------------------------------------------------------------------ resolve
def resolve(args) -> Experiment:
    """The validated experiment of CLI ``args``; raises :class:`UsageError`. Reads the config
    and lists the dataset's files; writes nothing (a public test set missing locally may be
    downloaded into the cache)."""
    from . import data, make_config

    notes: list[str] = []
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such folder. Fix: pass the folder "
                         f"that holds the images (or the data root).")
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
    if cfg is None:
        cfg, config_name = _default_config(dataset, source.paired)

    # protocol: the config's (or the task's default), --protocol overrides
    proto_name = args.protocol or cfg.get("protocol") or ("gopro" if source.paired
                                                           else "standard")
    if proto_name not in data.PROTOCOLS:
        raise UsageError(f"--protocol: unknown protocol {proto_name!r}; expected one of "
                         f"{', '.join(data.PROTOCOLS)}. Fix: 'standard' for published-table "
                         f"numbers, 'authors' for the paper's notebooks, 'gopro' for blur/sharp "
                         f"pairs.")
    protocol = data.get_protocol(proto_name)
    if protocol.paired != source.paired:
        fits = data.protocols.protocols_for(source.paired)
        kind = "blur/sharp pairs" if source.paired else "clean images"
        raise UsageError(f"--protocol {proto_name}: takes "
                         f"{'blur/sharp pairs' if protocol.paired else 'clean images'}, but "
                         f"dataset {dataset!r} ({source.root}) holds {kind}. Fix: use "
                         f"--protocol {' or '.join(fits)}"
                         f"{'' if args.config is None else ', or a config for that task'}.")
    if cfg.get("task", protocol.task) != protocol.task:
        raise UsageError(f"{config_name}: task {cfg['task']!r} does not match protocol "
                         f"{proto_name!r} ({protocol.task}). Fix: use a config for that task.")

    # conditions
    if protocol.condition_name == "sigma":
        requested = args.sigma or cfg.get("sigmas")
    else:
        if args.sigma:
            raise UsageError(f"--sigma: protocol {proto_name!r} ({protocol.task}) has no noise "
                             f"level to choose, got --sigma {' '.join(map(str, args.sigma))}. "
                             f"Fix: leave --sigma out.")
        requested = None
    try:
        conditions, dup_notes = protocol.conditions(requested)
    except ValueError as err:
        raise UsageError(f"--sigma: {err}") from err
    cond_arg = "--sigma" if protocol.condition_name == "sigma" else protocol.condition_name
    notes += [f"{cond_arg}: {n}" for n in dup_notes]
    key = protocol.condition_key

    # networks (registry names per condition)
    prior_t = args.prior or cfg["prior"]
    noise_t = args.noise or cfg.get("noise")
    priors = _check_network(prior_t, conditions, key, "--prior", cond_arg)
    noises = (_check_network(noise_t, conditions, key, "--noise", cond_arg) if noise_t
              else {key(c): None for c in conditions})
    networks = {key(c): (priors[key(c)], noises[key(c)]) for c in conditions}

    # methods
    wanted = args.method or list(cfg["methods"])
    unknown = [m for m in wanted if m not in cfg["methods"]]
    if unknown:
        raise UsageError(f"--method: unknown method(s) {unknown}; {config_name} has "
                         f"{list(cfg['methods'])}. Fix: pick from those.")
    wanted_unique = list(dict.fromkeys(wanted))
    if len(wanted_unique) < len(wanted):
        notes.append(f"--method: {sorted({m for m in wanted if wanted.count(m) > 1})} given more "
                     f"than once; each runs once")
    methods: dict[str, dict[str, dict]] = {}
    for m in wanted_unique:
        methods[m] = {}
        for c in conditions:
            kw, note = method_kwargs(cfg["methods"][m], c)
            if note:
                notes.append(f"method {m!r}: {note}")
            if args.iters is not None and kw.get("mode") not in ("prior", *BASELINE_MODES):
                kw = with_iters(kw, args.iters)
            if kw.get("mode") not in BASELINE_MODES:
                try:
                    make_config(**kw)
                except (TypeError, ValueError) as err:
                    raise UsageError(f"{config_name}: method {m!r} ({protocol.condition_label(c)}"
                                     f"): invalid solver settings {kw}: {err}. Fix: correct the "
                                     f"config (or --iters).") from err
            methods[m][key(c)] = kw

    # published rows: only for the published data
    published = cfg.get("published") or {}
    if cfg.get("published_by_prior"):
        published = published.get(prior_t, {})
    reference = data.reference_status(source)

    out = Path(args.out).expanduser() if args.out else default_out(dataset)
    check_out(out, args.overwrite)
    return Experiment(
        dataset=dataset, source=source, reference=reference, config_name=config_name,
        protocol=protocol, conditions=conditions, networks=networks, methods=methods,
        weights=args.weights, published=published,
        published_note=cfg.get("published_note", ""),
        batch=args.batch or cfg.get("batch", 8), limit=args.limit, tile=args.tile, out=out,
        overwrite=args.overwrite, save_images=args.save_images,
        compile_cache=not args.no_compile_cache, notes=notes,
        command="python -m dynpnp_jax.eval " + " ".join(getattr(args, "argv", None) or []))
