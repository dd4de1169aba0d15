"""``restore(params, y, cfg)``: a plug-and-play loop, one ``jax.jit`` + ``lax.scan``.

Data contract: ``y`` is a float32 NHWC batch ``(B, H, W, C)`` with values in [0, 1] (noisy values
slightly outside are fine). ``params`` is ``{'prior': Network, 'noise': Network, 'A': operator}``;
``noise`` (the estimator g of the paper's A-loss) defaults to the prior when the prior is a
residual denoiser.

The loop is an algorithm of :mod:`dynpnp_jax.algorithms`, chosen by ``cfg.mode``: the paper's
(``authors``, ``gradient``), the network alone (``prior``, ``static``), HQS (``hqs``, ``dpir``,
``calibrated``) and the other plug-and-play families (``admm``, ``drs``, ``pgd``, ...). This module
validates, resolves the operator and the boundary, builds the algorithm's
:class:`~dynpnp_jax.algorithms.Problem`, scans its ``step`` (with the optional A-step, the
stopping rule and the per-iteration record) and checks the result; it never compares a mode's
name (docs/algorithm.md has the equations).

Structure (mode, step kinds, operator, number of iterations) is static; the numbers ``delta``,
``mu``, ``alpha``, ``sigma``, ``relax``, ``inertia`` are per-iteration float32 arrays traced by
jit, so calling again with other numbers does not recompile, and they are differentiable.

The operator A can always be given as data, ``params['A']`` (one per image, leading batch axis),
instead of being initialised from ``cfg.operator``; a user's operator needs only its forward
(:class:`~dynpnp_jax.operators.Operator`).

``restore`` is transformable: ``jax.jit``, ``jax.grad`` and ``jax.vmap`` over the numbers of a
config (or over ``y``) work through it; value checks run only on concrete values.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import algorithms
from . import boundary as bd
from . import calibration
from . import saturation as sat
from . import steps
from .algorithms import NUMBERS, Numbers, Problem
from .algorithms.base import augment, augment_inverse, dpir_schedule  # noqa: F401  (public here too)
from .metrics import psnr as _psnr_metric
from .networks import Network
from .operators import OPERATORS, Operator, RowMix, has, make_operator
from .algorithms import needs_landscape
from .validation import check_finite_output, check_images, is_concrete

MODES = tuple(algorithms.ALGORITHMS)  # the built-in ones (algorithms.register adds more)
ITERS_MAX = 1000  # published plug-and-play loops run 2-100 iterations
DIVERGED_MARGIN = 2.0  # a result (before clipping) this far beyond [0, 1] and y has diverged
GLOBAL_DEFAULTS = dict(delta=0.01, mu=0.1, alpha=1e-5)
BOOL_FIELDS = ("keep_images", "clip_output", "ensemble")

@struct.dataclass
class Config:
    """Solver configuration. Build it with :func:`make_config`.

    Static fields select the structure (a new value compiles a new program); ``delta``, ``mu``,
    ``alpha``, ``sigma`` are ``(iters,)`` arrays and ``tol`` a scalar, all traced: new numbers
    never recompile, and they are differentiable (tunable by gradient).
    """

    mode: str = struct.field(pytree_node=False, default="authors")
    iters: int = struct.field(pytree_node=False, default=2)
    x_step: str = struct.field(pytree_node=False, default="authors")
    a_step: str = struct.field(pytree_node=False, default="authors")
    operator: str = struct.field(pytree_node=False, default="rowmix")
    kernel_size: int = struct.field(pytree_node=False, default=5)
    cg_iters: int = struct.field(pytree_node=False, default=3)
    a_input: str = struct.field(pytree_node=False, default="x")
    keep_images: bool = struct.field(pytree_node=False, default=True)
    clip_output: bool = struct.field(pytree_node=False, default=True)
    ensemble: bool = struct.field(pytree_node=False, default=False)
    has_sigma: bool = struct.field(pytree_node=False, default=False)
    relaxed: bool = struct.field(pytree_node=False, default=False)
    stop: bool = struct.field(pytree_node=False, default=False)
    calib_stages: tuple = struct.field(pytree_node=False, default=())
    calib_iters: int = struct.field(pytree_node=False, default=4)
    calib_crop: int = struct.field(pytree_node=False, default=4096)
    calib_grid: int = struct.field(pytree_node=False, default=5)
    calib_size: int = struct.field(pytree_node=False, default=0)
    calib_criterion: str = struct.field(pytree_node=False, default="likelihood")
    calib_margin: Optional[float] = struct.field(pytree_node=False, default=None)
    boundary: str = struct.field(pytree_node=False, default="auto")
    boundary_iters: int = struct.field(pytree_node=False, default=16)
    saturation: str = struct.field(pytree_node=False, default=sat.OFF)
    clip_level: float = struct.field(pytree_node=False, default=1.0)
    delta: Any = 0.01
    mu: Any = 0.1
    alpha: Any = 1e-5
    sigma: Any = 0.0
    relax: Any = 1.0
    inertia: Any = 0.0
    tol: Any = 0.0
    noise: Any = 0.0

    def with_values(self, **kw) -> "Config":
        """A copy with new numbers (``delta``, ``mu``, ``alpha``, ``sigma``: scalars or one per
        iteration; ``tol``). Works on traced values (inside ``jit``/``grad``/``vmap``)."""
        bad = sorted(set(kw) - set(NUMBERS) - {"tol", "noise"})
        if bad:
            raise ValueError(f"with_values takes the numbers {NUMBERS + ('tol',)}, got {bad}; "
                             "build a new config with make_config to change the structure")
        new = {k: _per_iter(k, v, self.iters) for k, v in kw.items() if k in NUMBERS}
        for k in ("tol", "noise"):
            if k in kw:
                new[k] = _scalar(k, kw[k])
        if "sigma" in kw:
            new["has_sigma"] = True
        if "relax" in kw or "inertia" in kw:
            new["relaxed"] = True  # _check_domain: only for the algorithms that read them
        out = self.replace(**new)
        _check_domain(out)
        return out

    def normalized(self) -> "Config":
        """The numbers as ``(iters,)`` float32 arrays (and a scalar ``tol``), checked."""
        out = self.replace(**{k: _per_iter(k, getattr(self, k), self.iters) for k in NUMBERS},
                           tol=_scalar("tol", self.tol), noise=_scalar("noise", self.noise))
        _check_domain(out)
        return out

    def as_dict(self) -> dict:
        """The configuration as plain Python values (``make_config(**cfg.as_dict())`` rebuilds it)."""
        out = {}
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if f.name in NUMBERS + ("tol", "noise"):
                val = np.asarray(val).tolist() if is_concrete(val) else val
            out[f.name] = val
        out["stop_tol"] = out.pop("tol")
        out["noise_level"] = out.pop("noise")
        out.pop("stop")
        if not out.pop("has_sigma"):
            out["sigma"] = None
        if not out.pop("relaxed"):
            out["relax"] = out["inertia"] = None
        return out



def _per_iter(name: str, value, iters: int) -> jax.Array:
    if not is_concrete(value):  # traced (jit/grad/vmap): shape rules only
        arr = jnp.asarray(value, jnp.float32)
        if arr.ndim == 0:
            arr = jnp.broadcast_to(arr, (iters,))
        if arr.shape != (iters,):
            raise ValueError(f"{name} must be a scalar or have one value per iteration ({iters}), "
                             f"got shape {arr.shape}")
        return arr
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((iters,), float(arr))
    if arr.shape != (iters,):
        raise ValueError(f"{name} must be a scalar or have one value per iteration ({iters}), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return jnp.asarray(arr, dtype=jnp.float32)


def _scalar(name: str, value) -> jax.Array:
    arr = jnp.asarray(value, jnp.float32)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return arr


def _check_domain(cfg: "Config") -> None:
    """Reject numbers outside their domain, with the reason (concrete values only): the rules
    every loop shares here, the x-step kind's (:func:`dynpnp_jax.steps.check_x_step`) and the
    algorithm's own (``Algorithm.check``); relax / inertia only where the algorithm reads them."""
    alg = algorithms.get(cfg.mode)
    if cfg.relaxed and not {"relax", "inertia"} & set(alg.numbers):
        both = [n for n, a in algorithms.ALGORITHMS.items() if {"relax", "inertia"} <= set(a.numbers)]
        one = [n for n, a in algorithms.ALGORITHMS.items()
               if len({"relax", "inertia"} & set(a.numbers)) == 1]
        raise ValueError(f"relax / inertia are for modes {' and '.join(map(repr, both))} (relax "
                         f"alone: {', '.join(map(repr, one))}), got mode={cfg.mode!r}. Fix: drop "
                         "them or use mode='dpir'")
    vals = {k: getattr(cfg, k) for k in NUMBERS + ("tol", "noise")}
    if not is_concrete(vals):
        return
    v = {k: np.asarray(a, np.float64) for k, a in vals.items()}
    for k, a in v.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{k if k != 'noise' else 'noise_level'} must be finite, got "
                             f"{a.tolist()}")

    def bad(name, cond, why, fix):
        if np.any(cond):
            raise ValueError(f"{name}={np.round(v[name], 6).tolist()} is outside its domain: "
                             f"{why}. {fix}")

    for name in ("relax", "inertia"):
        if name not in alg.numbers and cfg.relaxed and np.any(v[name] != (name == "relax")):
            raise ValueError(f"{name} is not a number of mode {cfg.mode!r} (it reads "
                             f"{alg.numbers}). Fix: drop {name}")
    if alg.traits.takes_operator != "none":
        steps.check_x_step(cfg.x_step, v, bad)
    bad("mu", v["mu"] < 0, "the penalty mu (rho in DPIR) must be >= 0 (a negative penalty makes "
        "the x-step's system indefinite: hqs with mu=-1 divides by zero)", "Use mu >= 0")
    bad("alpha", v["alpha"] < 0, "the A-step size must be >= 0", "Use alpha >= 0 (0 keeps A)")
    bad("sigma", v["sigma"] < 0, "a noise level is >= 0", "Use sigma >= 0")
    bad("sigma", v["sigma"] > 1, "sigma is on the [0, 1] image scale", "Divide 8-bit noise "
        "levels by 255 (sigma=25/255)")
    bad("relax", (v["relax"] <= 0) | (v["relax"] > 2), "the relaxation of the prior step "
        "(v = x + relax (D(x) - x)) must be in (0, 2]", "Use relax=1 (DPIR's loop) or a tuned value")
    bad("inertia", np.abs(v["inertia"]) >= 1, "the extrapolation of the prior term "
        "(v + inertia (v - v_prev)) must be in (-1, 1)", "Use inertia=0 (DPIR's loop) or a tuned "
        "value")
    bad("tol", v["tol"] < 0, "the stopping threshold is a relative change >= 0", "Use e.g. 1e-3")
    bad("noise", (v["noise"] < 0) | (v["noise"] > 1), "noise_level is a standard deviation on "
        "the [0, 1] image scale", "Use e.g. noise_level=2.55/255")
    if alg.check is not None:
        alg.check(cfg, v, bad)


def make_config(mode: str = "authors", iters: Optional[int] = None, *, delta=None, mu=None,
                alpha=None, sigma=None, noise_level=None, x_step: Optional[str] = None,
                a_step: Optional[str] = None, operator: Optional[str] = None,
                kernel_size: int = 5, cg_iters: int = 3, a_input: str = "x",
                keep_images: bool = True, clip_output: bool = True, ensemble: bool = False,
                stop_tol: float = 0.0, calib_stages=None, calib_iters: int = 4,
                calib_crop: int = 4096, calib_grid: int = 5, calib_size: int = 0,
                calib_criterion: str = "likelihood", calib_margin: Optional[float] = None,
                boundary: str = "auto", boundary_iters: int = 16, relax=None,
                inertia=None, saturation: str = sat.OFF, clip_level=1.0) -> Config:
    """Build a validated :class:`Config`.

    Args:
      mode: the algorithm, a name of :data:`dynpnp_jax.algorithms.ALGORITHMS`: ``authors``,
        ``gradient``, ``prior``, ``static``, ``hqs``, ``dpir``, ``calibrated``, ``admm``, ``drs``,
        ``pgd``, ``fista``, ``red``.
      iters: T, the number of iterations (at most 1000; default: the algorithm's, 2 for the
        paper's loops, 1 for ``prior``, 8 for the known-degradation algorithms).
      delta: step size of a gradient step (the paper's x-step, Eq. 6; ``pgd``/``fista``/``red``:
        the data-term step, default 1), scalar or one per iteration; default 0.01.
      mu: penalty mu of Eq. (3) (the authors' eta; DPIR's rho; ADMM/DRS's penalty; RED's weight),
        scalar or one per iteration; default 0.1, for the schedule algorithms DPIR's rho.
      alpha: A-step size (Eq. 10, the authors' rho), scalar or one per iteration; default 1e-5.
      sigma: the noise level handed to a noise-conditioned prior (FFDNet) at each iteration, on
        the [0, 1] scale; scalar or one per iteration. Default: none (networks without a noise
        input ignore it); for the schedule algorithms (``dpir``, ``calibrated``, ``admm``,
        ``drs``, ``pgd``, ...) DPIR's schedule.
      noise_level: the noise level of ``y`` on the [0, 1] scale; the schedule algorithms build
        their schedule from it (:func:`dpir_schedule`).
      x_step, a_step, operator: override the algorithm's defaults where it lets them be chosen
        (``Traits.choose_steps``; the prox algorithms take a solving x-step: ``exact``, ``fft``,
        ``cg``).
      kernel_size: kernel size for ``operator='conv'``.
      cg_iters: CG steps per iteration for ``x_step='cg'`` (at most 1000; an operator without a
        closed-form solve runs its own CG to a tolerance for the exact x-step).
      a_input: which image the A-loss sees, ``'x'`` (Eq. 9) or ``'v'`` (the authors use v).
      keep_images: store x and v of every iteration in the trajectory.
      clip_output: clip the result to [0, 1].
      ensemble: x8 geometric self-ensemble of the prior (iteration t sees the (t mod 8)-th
        flip/rotation and is transformed back), as DPIR's ``x8``.
      calib_criterion, calib_margin, calib_stages, calib_grid, calib_size, calib_iters,
        calib_crop: ``calibrated`` mode (kernel self-calibration, :mod:`dynpnp_jax.calibration`).
        ``calib_criterion``: ``'likelihood'`` (default: each candidate kernel scored by the
        marginal likelihood of ``y`` with the image integrated out under a Gaussian power-law
        prior, :func:`~dynpnp_jax.calibration.likelihood_score`; no network runs) or
        ``'sparsity'`` (each candidate runs a cheap DPIR loop, ``calib_iters`` iterations on a
        ``calib_crop`` centre crop -- default the whole image -- scored by gradient sparsity plus
        a discrepancy penalty; 9x the cost of ``dpir`` and measured worse, docs/results/calibration.md).
        ``calib_margin``: the given kernel is kept unless the chosen one lowers the criterion by
        more than this (likelihood: nats per pixel; default
        :data:`~dynpnp_jax.calibration.LIKELIHOOD_MARGIN`, or ``LIKELIHOOD_MARGIN_FRAME`` with
        ``boundary='unknown'``, both set on training images; sparsity: 0).
        ``calib_stages``: ``((param, values or 'refine'), ...)``, default from the given kernel
        (:func:`~dynpnp_jax.calibration.default_stages`); ``calib_grid``: points of each stage;
        ``calib_size``: the support of the calibrated kernel (0: from the given kernel).
      boundary: how ``y`` was made at the frame's edges, for a ``Blur`` operator: ``'auto'``
        (default: the operator's ``boundary``), ``'circular'`` (a periodic blur; the FFT x-step
        as it is) or ``'unknown'`` (a photograph: the image is restored on the frame plus the
        kernel's reach, the unobserved margin of ``y`` filled with the current estimate's blur
        every iteration, then cropped; :mod:`dynpnp_jax.boundary`).
      boundary_iters: with ``boundary='unknown'`` and the exact x-step, the preconditioned CG
        steps that make the x-step exact for the masked data term (0: one circular solve with
        the completed ``y``; docs/results/unknown_boundaries.md: on a 27x27 kernel 0 / 16 / 64 steps give 25.1 / 30.0 /
        30.2 dB).
      relax, inertia: ``dpir`` / ``calibrated`` modes, scalars or one per iteration: the prior
        step becomes ``v_t = x_t + relax_t (D(x_t) - x_t)`` (a relaxation; the last one blends
        the denoiser's output with the x-step's) and the x-step's prior term
        ``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})`` (an extrapolation, inertial HQS). Default: not
        used (``relax=1``, ``inertia=0`` is DPIR's loop). Tuned values:
        ``configs/dpir_tuned_relax.py``
        (``python -m dynpnp_jax.tune --task dpir --family relax``).
      saturation: saturated highlights (:mod:`dynpnp_jax.saturation`; needs a blur, an operator
        with the ``kernel`` capability): ``'off'`` (default: every pixel of ``y`` is data),
        ``'auto'`` (the measured choice, :data:`dynpnp_jax.saturation.AUTO`: ``'clipped'``),
        ``'clipped'`` (the clipped model ``y = min(A x, clip_level)``: the values of ``y`` at or
        within 1/255 of ``clip_level``, per channel, only bound the blur from below, an active
        set re-derived in every x-step) or ``'masked'`` (those values unobserved). Exactly the
        plain loop when nothing in ``y`` reaches the level; the denoiser sees the estimate's
        highlights compressed into [0, 1]. docs/results/saturation.md measures them.
      clip_level: the sensor's ceiling on the [0, 1] scale, in (0, 1] (default 1.0: 255 in an
        8-bit image).
      stop_tol: per-image stopping rule: an image whose relative change
        ``||x_t - x_{t-1}|| / ||x_{t-1}||`` falls below ``stop_tol`` is frozen for the remaining
        iterations (masked inside jit; ``Trajectory.active`` records it). 0 turns it off.
    """

    alg = algorithms.get(mode)
    tr = alg.traits
    given = {k: v for k, v in dict(x_step=x_step, a_step=a_step, operator=operator).items()
             if v is not None}
    fixed = ("x_step",) if tr.x_kind in ("gradient", "none") else ()
    if not tr.choose_steps:
        fixed = ("x_step", "a_step", "operator")
    clash = {k: v for k, v in given.items() if k in fixed and v != getattr(alg, k)}
    if clash:
        raise ValueError(f"mode={mode!r} fixes x_step={alg.x_step!r}, a_step={alg.a_step!r}, "
                         f"operator={alg.operator!r}; got {clash}. Use mode='gradient' to choose "
                         "the steps")
    x_step, a_step, operator = (given.get(k, getattr(alg, k)) for k in ("x_step", "a_step",
                                                                         "operator"))
    if tr.choose_steps:
        for name, val, allowed in (("x_step", x_step, dict(steps.X_STEPS, none=None)),
                                   ("a_step", a_step, steps.A_STEPS),
                                   ("operator", operator, OPERATORS)):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {val!r}")
        if tr.x_kind == "prox" and x_step not in steps.SOLVE_X_STEPS:
            raise ValueError(f"mode={mode!r} solves the data term: x_step must be one of "
                             f"{steps.SOLVE_X_STEPS}, got {x_step!r}")
        if x_step == "fft" and operator != "conv":
            raise ValueError("x_step='fft' needs operator='conv'; use x_step='exact' otherwise")
        if a_step == "authors" and operator != "rowmix":
            raise ValueError("a_step='authors' needs operator='rowmix'")
    if iters is None:
        iters = alg.iters
    if tr.fixed_iters and iters != tr.fixed_iters:
        raise ValueError(f"mode={mode!r} runs {tr.fixed_iters} iteration(s) (mode='prior' runs "
                         f"the network once); got iters={iters}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if iters > ITERS_MAX:
        raise ValueError(f"iters={iters} is more than {ITERS_MAX}: published plug-and-play loops "
                         f"run 2-100 iterations, and one compiled call cannot be interrupted. Fix: "
                         f"iters <= {ITERS_MAX} (continue from the result with another call if "
                         "you must)")
    if a_input not in ("x", "v"):
        raise ValueError(f"a_input must be 'x' or 'v', got {a_input!r}")
    for name, val, lo, hi in (("cg_iters", cg_iters, 1, steps.CG_ITERS_MAX),
                              ("boundary_iters", boundary_iters, 0, steps.CG_ITERS_MAX),
                              ("kernel_size", kernel_size, 1, 4096),
                              ("calib_iters", calib_iters, 1, ITERS_MAX),
                              ("calib_crop", calib_crop, 16, None), ("calib_grid", calib_grid, 2, 1000),
                              ("calib_size", calib_size, 0, None)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo or (
                hi is not None and val > hi):
            raise ValueError(f"{name} must be an integer >= {lo}" + (f" and <= {hi}" if hi else "")
                             + f", got {val!r}")
    for name, val in zip(BOOL_FIELDS, (keep_images, clip_output, ensemble)):
        if not isinstance(val, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {val!r} ({type(val).__name__}); "
                             "a string such as 'no' or 'False' is not a boolean")
    if noise_level is not None:
        noise_level = _number_or_array("noise_level", noise_level)
    if tr.schedule and any(val is None and name in alg.numbers
                           for name, val in (("sigma", sigma), ("mu", mu))):
        if noise_level is None:
            raise ValueError(f"mode={mode!r} needs noise_level (the noise std of y on the [0, 1] "
                             "scale, e.g. 2.55/255) to build its schedule, or "
                             + " and ".join(f"{n}=" for n in ("sigma", "mu") if n in alg.numbers))
        s_sched, rho_sched = dpir_schedule(int(iters), noise_level)
        sigma = s_sched if sigma is None else sigma
        mu = rho_sched * alg.rho_scale if mu is None else mu
    elif noise_level is not None and sigma is None:
        sigma = noise_level
    if tr.calibrates and noise_level is None:
        raise ValueError(f"mode={mode!r} needs noise_level (the noise std of y on the [0, 1] "
                         "scale): the kernel search compares residuals with it")
    nums = dict(delta=delta, mu=mu, alpha=alpha)
    for k, v in nums.items():
        if v is None:
            nums[k] = alg.defaults.get(k, GLOBAL_DEFAULTS[k])
    if calib_stages is not None and not (isinstance(calib_stages, (tuple, list))
                                         and len(calib_stages) == 0):  # () is as_dict's default
        calib_stages = calibration.check_stages(calib_stages, "calib_stages")
    if calib_criterion not in ("likelihood", "sparsity"):
        raise ValueError(f"calib_criterion must be 'likelihood' or 'sparsity', got "
                         f"{calib_criterion!r}")
    if calib_margin is not None and (
            isinstance(calib_margin, bool) or not isinstance(calib_margin, (int, float, np.floating))
            or not np.isfinite(calib_margin) or calib_margin < 0):
        raise ValueError(f"calib_margin must be a finite number >= 0 (0: take any improvement), "
                         f"got {calib_margin!r}")
    if boundary not in ("auto", "circular", "unknown"):
        raise ValueError(f"boundary must be 'auto' (the operator's), 'circular' or 'unknown', got "
                         f"{boundary!r}. Fix: 'unknown' for a real photograph, 'circular' for a "
                         "periodic (synthetic) blur")
    saturation = sat.resolve(saturation)
    clip_level = sat.check_level(clip_level)
    if sat.is_on(saturation) and tr.x_kind == "none":
        raise ValueError(f"saturation={saturation!r} masks the data term of a blur, and "
                         f"mode={mode!r} has no data term (the network alone). Fix: "
                         "saturation='off', or a deblurring mode such as mode='dpir' with "
                         "params['A'] = Blur.from_kernel(k, ...)")
    relaxed = relax is not None or inertia is not None
    stop_tol = _number_or_array("stop_tol", stop_tol, scalar=True)
    if is_concrete(stop_tol) and float(np.asarray(stop_tol)) < 0:
        raise ValueError(f"stop_tol must be >= 0 (0 turns the stopping rule off), got {stop_tol}")
    cfg = Config(mode=mode, iters=int(iters), x_step=x_step, a_step=a_step, operator=operator,
                 kernel_size=int(kernel_size), cg_iters=int(cg_iters), a_input=a_input,
                 keep_images=bool(keep_images), clip_output=bool(clip_output),
                 ensemble=bool(ensemble), has_sigma=sigma is not None, relaxed=relaxed,
                 stop=not is_concrete(stop_tol) or float(np.asarray(stop_tol)) > 0,
                 calib_stages=calib_stages or (), calib_iters=int(calib_iters),
                 calib_crop=int(calib_crop), calib_grid=int(calib_grid),
                 calib_size=int(calib_size), calib_criterion=calib_criterion,
                 calib_margin=None if calib_margin is None else float(calib_margin),
                 boundary=boundary,
                 boundary_iters=int(boundary_iters),
                 saturation=saturation,
                 clip_level=clip_level,
                 delta=nums["delta"], mu=nums["mu"], alpha=nums["alpha"],
                 sigma=0.0 if sigma is None else sigma,
                 relax=1.0 if relax is None else relax, inertia=0.0 if inertia is None else inertia,
                 tol=stop_tol, noise=0.0 if noise_level is None else noise_level)
    return cfg.normalized()


def _number_or_array(name: str, value, scalar: bool = False):
    """A number (or, unless ``scalar``, an array of numbers) as given, or a clear error for
    strings, lists where a scalar is expected, and other non-numbers (concrete values)."""
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if scalar and arr.ndim != 0:
        raise ValueError(f"{name} must be a single number (one threshold for every iteration), "
                         f"got {value!r}. Fix: e.g. {name}=1e-3")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if name == "noise_level" and (np.any(arr < 0) or np.any(arr > 1)):
        raise ValueError(f"noise_level={value!r} is outside [0, 1]: it is the noise std of y on "
                         "the [0, 1] scale. Fix: divide 8-bit levels by 255 (2.55/255)")
    return value


class Trajectory(NamedTuple):
    """Per-iteration record (leading axis: iteration t = 1..T; then the batch).

    Attributes:
      x, v: the x-step and prior outputs, ``(T, B, H, W, C)`` (``None`` unless keep_images).
      a_loss: ``mean ||A x + g - y||^2`` per image after the A-step, ``(T, B)``.
      a_dev: ``||A - I||_F / sqrt(n)`` per image, ``(T, B)``.
      psnr: PSNR in dB of the clipped result of iteration t (``v``; RED: ``x``) against ``clean`` (float, no quantisation),
        ``(T, B)``; ``None`` when no clean image was given.
      active: whether each image was still iterating at iteration t, ``(T, B)`` bool (all true
        without a stopping rule); ``active.sum(0)`` is the number of iterations each image ran.
      rel_change: ``||x_t - x_{t-1}|| / ||x_{t-1}||`` per image, ``(T, B)``.
      kernel: the final blur kernel per image ``(B, kh, kw)`` when A is a blur (``Blur``,
        ``Downsample``): the calibrated or A-stepped kernel.
      kernel_err: relative RMS distance of the kernel to the true one per iteration, ``(T, B)``,
        when ``restore(..., true_A=...)`` is given.
      calib: ``calibrated`` mode, per image: the chosen family parameters ``scale``, ``angle``,
        ``width`` (the given kernel: 1, 0, 0), ``gain`` (how much the criterion improved on the
        given kernel; 0 when kept) and ``kept`` (True when the given kernel was kept because no
        candidate beat it by more than ``calib_margin``).
      x_residual: with an operator that has no closed-form solve, the relative residual of the
        CG x-step per iteration and image, ``(T, B)``.
      out_range: the result's ``(min, max)`` per image before clipping, ``(B, 2)``.
    """

    x: Optional[jax.Array]
    v: Optional[jax.Array]
    a_loss: jax.Array
    a_dev: jax.Array
    psnr: Optional[jax.Array]
    active: Optional[jax.Array] = None
    rel_change: Optional[jax.Array] = None
    kernel: Optional[jax.Array] = None
    kernel_err: Optional[jax.Array] = None
    calib: Optional[dict] = None
    x_residual: Optional[jax.Array] = None
    out_range: Optional[jax.Array] = None



# ------------------------------------------------------------------------------ the loop
def _psnr(v, clean):
    return _psnr_metric(jnp.clip(v, 0.0, 1.0), clean)


def _initial(op, y):
    """The operator's natural starting image for ``y`` (:meth:`Operator.initial`)."""
    return op.initial(y)


def _freeze(active, new, old):
    """Per image: ``new`` where ``active`` else ``old`` (leaves with a leading batch axis)."""
    def pick(n, o):
        if not hasattr(n, "ndim") or n.ndim == 0 or n.shape[0] != active.shape[0]:
            return n
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree_util.tree_map(pick, new, old)


def _norm(a):
    return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(1, a.ndim))))


def _restore(params: dict, y: jax.Array, cfg: Config, clean: Optional[jax.Array],
             true_a=None):
    alg = algorithms.get(cfg.mode)
    prior: Network = params["prior"]
    noise: Network = params.get("noise") or prior
    b = y.shape[0]
    op = params.get("A")
    if op is None:
        op = make_operator(cfg.operator, y.shape, kernel_size=cfg.kernel_size)
    prepared = None
    if alg.prepare is not None:
        op, prepared = alg.prepare(params, y, op, cfg, _restore)
    pads = obs = fmask = None
    # saturated highlights (saturation.py): the unsaturated pixels of y, per channel
    seen = sat.observed(y, cfg.clip_level) if sat.is_on(cfg.saturation) else None
    if cfg.boundary == "unknown":  # restore the frame plus the kernel's reach (boundary.py)
        pads = bd.margins(op.k.shape, y.shape[1], y.shape[2])
        op = op.replace(boundary="circular")  # circular on the extended grid: no wrap reaches the frame
        y, obs = bd.extend(y, pads)
        fmask = obs
        if seen is not None:
            seen = bd.extend(seen, pads)[0]
            obs = fmask * seen
    elif seen is not None:
        obs = seen

    def frame(a):
        return a if pads is None else bd.crop(a, pads)

    p = Problem(cfg=cfg, prior=prior, obs=obs, b=b,
                sat=None if seen is None else (1 - seen) * (1 if fmask is None else fmask))
    uses_g = cfg.a_step != "none"
    g = noise.noise(y, jnp.broadcast_to(cfg.sigma[0], (b,))) if uses_g else jnp.zeros_like(y)
    a_step = steps.A_STEPS[cfg.a_step]
    has_kernel = has(op, "kernel")

    def one(state, op, hp):
        # unknown boundary / saturation: y where observed, the current estimate's blur elsewhere
        y_t = y if obs is None else bd.complete(y, obs, op(alg.result(state)))
        new, info = alg.step(p, state, op, y_t, hp)
        a_in = new.x if cfg.a_input == "x" else new.v
        return new, a_step(op, a_in, new.v, y_t, g, hp.alpha), info

    def body(carry, hp):
        state, op, active = carry
        if cfg.stop:  # skip the work once every image has stopped
            shapes = jax.eval_shape(one, state, op, hp)[2]
            new, op_new, info = jax.lax.cond(
                jnp.any(active), lambda: one(state, op, hp),
                lambda: (state, op, jax.tree_util.tree_map(
                    lambda s: jnp.zeros(s.shape, s.dtype), shapes)))
        else:
            new, op_new, info = one(state, op, hp)
        rel = _norm(new.x - state.x) / jnp.maximum(_norm(state.x), 1e-12)
        if cfg.stop:
            new, op_new = _freeze(active, (new, op_new), (state, op))
            rel = jnp.where(active, rel, 0.0)
        a_in = new.x if cfg.a_input == "x" else new.v
        out = frame(alg.result(new))
        rec = dict(a_loss=steps.a_loss(op_new, a_in, y, g) if uses_g else jnp.zeros((b,)),
                   a_dev=jnp.broadcast_to(op_new.deviation(), (b,)), active=active,
                   rel_change=rel, **info)
        if true_a is not None and has_kernel:
            rec["kernel_err"] = calibration.kernel_distance(
                jnp.broadcast_to(op_new.k, (b,) + op_new.k.shape[1:]),
                jnp.broadcast_to(true_a.k, (b,) + true_a.k.shape[1:]))
        if cfg.keep_images:
            rec.update(x=frame(new.x), v=frame(new.v))
        if clean is not None:
            rec["psnr"] = _psnr(out, clean)
        if cfg.stop:
            active = active & (rel >= cfg.tol)
        return (new, op_new, active), rec

    hps = Numbers(cfg.delta, cfg.mu, cfg.alpha, cfg.sigma, cfg.relax, cfg.inertia,
                  jnp.arange(cfg.iters))
    state0 = alg.init(p, op, y)
    (state, op, _), rec = jax.lax.scan(body, (state0, op, jnp.ones((b,), bool)), hps)
    raw = frame(alg.result(state))
    out = jnp.clip(raw, 0.0, 1.0) if cfg.clip_output else raw
    axes = tuple(range(1, raw.ndim))
    traj = Trajectory(x=rec.get("x"), v=rec.get("v"), a_loss=rec["a_loss"], a_dev=rec["a_dev"],
                      psnr=rec.get("psnr"), active=rec["active"], rel_change=rec["rel_change"],
                      kernel=op.k if has_kernel else None, kernel_err=rec.get("kernel_err"),
                      calib=prepared, x_residual=rec.get("x_residual"),
                      out_range=jnp.stack([jnp.min(raw, axis=axes), jnp.max(raw, axis=axes)], -1))
    return out, traj


_restore_jit = jax.jit(_restore)


def compile_count() -> int:
    """How many programs ``restore`` has compiled in this process (JAX's own jit cache size)."""
    return int(_restore_jit._cache_size())


trace_count = compile_count  # the former name


def _resolve_boundary(params: dict, cfg: Config) -> Config:
    """``boundary='auto'`` -> the operator's (``Blur.boundary``; other operators: circular)."""
    op = params.get("A")
    b = cfg.boundary
    if b == "auto":
        b = getattr(op, "boundary", "circular") if has(op, "unknown_boundary") else "circular"
    elif b == "unknown" and not has(op, "unknown_boundary"):
        raise ValueError(f"boundary='unknown' extends the frame by the blur kernel's reach: it "
                         f"needs params['A'] = Blur.from_kernel(k, ...), got "
                         f"{type(op).__name__ if op is not None else 'no operator'}. Fix: pass "
                         "the Blur, or boundary='auto'")
    return cfg.replace(boundary=b)


def _resolve_saturation(params: dict, y, cfg: Config) -> Config:
    """Check ``saturation`` against the operator and ``y``; on a concrete ``y`` with nothing at
    the clipping level it becomes ``'off'`` (the same program as the plain loop)."""
    if not sat.is_on(cfg.saturation):
        return cfg
    op = params.get("A")
    op_name = type(op).__name__ if op is not None else f"operator={cfg.operator!r}"
    if not has(op if op is not None else OPERATORS.get(cfg.operator), "kernel"):
        raise ValueError(f"saturation={cfg.saturation!r} treats clipped pixels of a blurred y as "
                         f"lower bounds (or unobserved); it needs a blur (an operator with the 'kernel' capability: "
                         f"Blur, Downsample, Convolution), got {op_name} (denoising, masks and "
                         "the identity have nothing to unblur). Fix: saturation='off', or "
                         "params['A'] = Blur.from_kernel(k, ...)")
    if is_concrete(y):
        sat.check_observed(y, cfg.clip_level)
        if not np.any(sat.saturated_fraction(y, cfg.clip_level)):
            return cfg.replace(saturation=sat.OFF)
    return cfg


# ------------------------------------------------------------------------------ validation
def _is_operator(op) -> bool:
    return all(callable(getattr(op, m, None)) for m in ("__call__", "adjoint", "normal_solve"))


LINEARITY_RTOL = 1e-3


def _check_linear(op, y_shape) -> None:
    """A user's operator given by its forward alone must be linear: checked on a random pair
    (concrete values; the adjoint, the A-loss gradient and CG all assume it)."""
    if type(op).adjoint is not Operator.adjoint or not is_concrete(op):
        return
    shape = op.input_shape(tuple(y_shape))
    rng = np.random.RandomState(0)
    x1, x2 = (jnp.asarray(rng.uniform(0, 1, shape), jnp.float32) for _ in range(2))
    a, c = 0.7, -1.3
    lhs = np.asarray(op(a * x1 + c * x2), np.float64)
    rhs = a * np.asarray(op(x1), np.float64) + c * np.asarray(op(x2), np.float64)
    err = np.linalg.norm(lhs - rhs) / max(np.linalg.norm(rhs), 1e-12)
    if not np.isfinite(err) or err > LINEARITY_RTOL:
        raise ValueError(f"params['A'] ({type(op).__name__}) is not linear: A(a x1 + c x2) differs "
                         f"from a A(x1) + c A(x2) by {err:.3g} (relative) on a random pair. Its "
                         "adjoint, the A-loss gradient and the CG x-step assume a linear forward. "
                         "Fix: remove offsets, clipping or other non-linear parts from __call__")


def validate(params: dict, y, cfg: Config, clean=None):
    """The checks :func:`restore` runs before compiling; returns ``(y, clean)`` as float32.

    Shape, dtype and structure rules always run; value rules (NaN, range) only on concrete
    values, so ``restore`` stays usable under ``jax.jit``, ``grad`` and ``vmap``."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a dynpnp_jax.Config (see make_config), got {type(cfg).__name__}")
    if not isinstance(params, dict) or not isinstance(params.get("prior"), Network):
        raise TypeError("params must be a dict with a 'prior' Network (from load_network) and "
                        "optionally a 'noise' Network and an operator 'A', e.g. "
                        "{'prior': load_network('dncnn-s25')}")
    unknown = sorted(set(params) - {"prior", "noise", "A"})
    if unknown:
        raise ValueError(f"params has unknown key(s) {unknown}; expected 'prior', 'noise', 'A'")
    prior: Network = params["prior"]
    y = check_images("y", y, unit_range=getattr(params.get("A"), "observes_images", True))
    op = params.get("A")
    alg = algorithms.get(cfg.mode)
    tr = alg.traits
    if op is not None:
        if not _is_operator(op):
            raise TypeError(f"params['A'] must be an operator (dynpnp_jax.operators: Blur, "
                            f"Downsample, Mask, ..., or a subclass of Operator defining __call__), "
                            f"got {type(op).__name__}")
        if any(leaf is op for leaf in jax.tree_util.tree_leaves(op)):
            raise TypeError(f"params['A'] ({type(op).__name__}) is not a pytree, so it cannot ride "
                            "in the compiled loop. Fix: decorate the class with "
                            "@flax.struct.dataclass (parameters as fields, static settings as "
                            "struct.field(pytree_node=False))")
        missing = [c for c in tr.requires if not has(op, c)]
        if missing:
            raise ValueError(f"mode={cfg.mode!r} needs an operator with {missing} (a Blur: "
                             f"Blur.from_kernel(k_given, batch)), got {type(op).__name__}")
        if tr.takes_operator == "none" or (tr.takes_operator == "rowmix"
                                           and not isinstance(op, RowMix)):
            raise ValueError(f"mode={cfg.mode!r} does not take an operator A; use mode='dpir' "
                             "(known degradation) or 'gradient' with params['A']")
        try:
            x_shape = jax.eval_shape(op.adjoint, jax.ShapeDtypeStruct(y.shape, jnp.float32)).shape
        except (ValueError, TypeError) as err:
            raise ValueError(f"params['A'] does not fit y of shape {tuple(y.shape)}: {err}") from err
        op.check_values()
        _check_linear(op, y.shape)
    else:
        if tr.needs_operator:
            raise ValueError(f"mode={cfg.mode!r} needs the given kernel: params['A'] = "
                             "Blur.from_kernel(k_given, batch) (a 1x1 delta if none is known)")
        x_shape = tuple(y.shape)
    if clean is not None:
        clean = check_images("clean", clean, ref_shape=x_shape)
    check_images("x", jax.ShapeDtypeStruct(x_shape, jnp.float32), channels=prior.channels,
                 allow_any_channels=prior.channels == 1)
    prior.check_input(x_shape, "y")
    noise = params.get("noise")
    if cfg.a_step != "none":
        if noise is None and prior.kind != "residual" and not prior.noise_input:
            raise ValueError(f"mode={cfg.mode!r} updates A with a noise estimate g(y), and prior "
                             f"{prior.name!r} is not a denoiser: pass params['noise'] (e.g. "
                             "load_network('dncnn-b-color'))")
        if noise is not None:
            if not isinstance(noise, Network):
                raise TypeError("params['noise'] must be a Network (from load_network)")
            noise.check_input(y.shape, "y")
    uses_sigma = prior.noise_input or (cfg.a_step != "none" and (noise or prior).noise_input)
    if uses_sigma and not cfg.has_sigma:
        raise ValueError(f"network {(prior if prior.noise_input else noise).name!r} takes the noise "
                         "level as an input: give make_config(..., sigma=noise_std) on the [0, 1] "
                         "scale (e.g. 25/255), or noise_level=..., or use mode='dpir'")
    h, w = x_shape[1:3]
    if needs_landscape(x_shape, mode=cfg.mode, a_step=cfg.a_step, operator=cfg.operator):
        raise ValueError(f"mode={cfg.mode!r} with the row-mix A needs width >= height, got "
                         f"y of {h}x{w}; rotate portrait images by 90 degrees "
                         "(np.rot90(y, axes=(1, 2))) as the authors protocol does")
    if cfg.operator == "conv" and op is None and cfg.kernel_size > min(h, w):
        raise ValueError(f"kernel_size={cfg.kernel_size} does not fit y of {h}x{w}")
    check_size = getattr(prior.module, "check_size", None)
    if callable(check_size):
        check_size(h, w)
    return y, clean



def restore(params: dict, y, cfg: Config, *, clean=None, true_A=None):
    """Restore ``y`` with the (dynamic) plug-and-play loop.

    Args:
      params: ``{'prior': Network, 'noise': Network (optional), 'A': operator (optional)}``;
        networks from :func:`dynpnp_jax.load_network`, operators from
        :mod:`dynpnp_jax.operators` (e.g. ``Blur.from_kernel(k, batch)``).
      y: degraded images, float32 NHWC ``(B, H, W, C)`` in [0, 1].
      cfg: a :class:`Config` from :func:`make_config`.
      clean: optional clean images (the shape of the restored images); adds PSNR per iteration
        to the trajectory.
      true_A: optional true blur operator (evaluation only): adds the kernel's distance to it
        per iteration (``Trajectory.kernel_err``).

    Returns:
      ``(restored, trajectory)``: the restored images (clipped to [0, 1]) and a
      :class:`Trajectory`.

    Raises:
      ValueError / TypeError: bad input, with what was expected and the fix.
      FloatingPointError: the result is not finite (only checked on concrete values; under an
        outer ``jit``, check the output yourself).

    Works under ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (e.g. over ``cfg.with_values(...)``).
    """
    y, clean = validate(params, y, cfg, clean)
    cfg = _resolve_saturation(params, y, _resolve_boundary(params, cfg.normalized()))
    alg = algorithms.get(cfg.mode)
    if alg.resolve is not None:
        cfg = alg.resolve(params, y.shape, cfg)
    out, traj = _restore_jit(params, y, cfg, clean, true_A)
    check_finite_output("restore", out)
    check_converged(traj, params.get("A"), y,
                    highlights=sat.is_on(cfg.saturation))
    return out, traj


SATURATED_MAX = 16.0  # with saturation on: a highlight's estimated true value, up to 4 stops over


def check_converged(traj: "Trajectory", op=None, y=None, highlights: bool = False) -> None:
    """Raise ``FloatingPointError`` when a concrete run diverged although its result may look
    finite: a non-finite operator deviation or A-loss (the A-step blew up), or a result before
    clipping more than :data:`DIVERGED_MARGIN` beyond both [0, 1] and the range of ``y`` (with
    ``highlights``, saturation on, the upper bound is at least :data:`SATURATED_MAX`: unobserved
    highlights are estimated above 1). Warn
    when the CG x-step of an operator without a closed-form solve stopped above its
    tolerance."""
    if not is_concrete((traj.a_dev, traj.a_loss, traj.out_range)):
        return
    for name, arr in (("operator deviation (a_dev)", traj.a_dev), ("A-loss", traj.a_loss)):
        a = np.asarray(arr)
        bad = ~np.isfinite(a)
        if bad.any():
            t, i = np.argwhere(bad)[0]
            raise FloatingPointError(
                f"the loop diverged: the {name} of image {int(i)} is not finite from iteration "
                f"{int(t) + 1}. The A-step is unstable: use a smaller alpha (e.g. 1e-5), or "
                "alpha=0 to keep A; a diverged run is never scored")
    rng = np.asarray(traj.out_range)
    lo, hi = 0.0, 1.0
    if y is not None and is_concrete(y):
        lo, hi = min(lo, float(np.min(y))), max(hi, float(np.max(y)))
    lo, hi = lo - DIVERGED_MARGIN, hi + DIVERGED_MARGIN
    if highlights:
        hi = max(hi, SATURATED_MAX)
    far = (rng[:, 0] < lo) | (rng[:, 1] > hi)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise FloatingPointError(
            f"the loop diverged: the result of image {i} spans [{rng[i, 0]:.3g}, {rng[i, 1]:.3g}] "
            f"before clipping, far outside the data (allowed [{lo:.3g}, {hi:.3g}]: [0, 1] and the "
            f"range of y, widened by {DIVERGED_MARGIN:g}). Check the step sizes (delta, alpha), "
            "the number of iterations and the operator; a diverged run is never scored")
    if traj.x_residual is not None and op is not None and is_concrete(traj.x_residual):
        res = float(np.max(np.asarray(traj.x_residual)))
        tol = float(getattr(op, "cg_tol", 0.0))
        if res > 10 * tol:
            warnings.warn(
                f"the CG x-step of {type(op).__name__} stopped at relative residual {res:.3g}, "
                f"above its tolerance cg_tol={tol:g} (Trajectory.x_residual has every "
                f"iteration's): raise the operator's cg_maxiter (now {op.cg_maxiter}) or give it "
                "a closed-form normal_solve", RuntimeWarning, stacklevel=3)

