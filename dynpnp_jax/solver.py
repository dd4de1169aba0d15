"""``restore(params, y, cfg)``: the dynamic plug-and-play loop, one ``jax.jit`` + ``lax.scan``.

Data contract: ``y`` is a float32 NHWC batch ``(B, H, W, C)`` with values in [0, 1] (noisy values
slightly outside are fine). ``params`` is ``{'prior': Network, 'noise': Network}``; ``noise``
(the estimator g of Eq. 9) defaults to the prior when the prior is a residual denoiser.

Structure (mode, step kinds, operator, number of iterations) is static; the numeric
hyper-parameters ``delta``, ``mu``, ``alpha`` are per-iteration float32 arrays traced by jit, so
calling again with other numbers does not recompile.

Modes (ALGORITHM.md):

* ``authors``  -- section 1, as the authors ran it: row-mix A, ``authors`` x- and A-steps,
  ``x0 = A^T y``, ``v0 = 0``; ``mu`` is their eta, ``alpha`` their rho.
* ``gradient`` -- section 2: x-step (``gradient`` by default, or ``exact``/``fft``/``cg``), prior,
  A-step ``gradient`` on the chosen operator (gain map by default); ``x0 = v0 = A^T y``.
* ``prior``    -- the network alone, ``prior(y)`` (one iteration).
* ``static``   -- "static stacking": ``v_{t+1} = prior(v_t)``, ``v_0 = y``.
* ``hqs``      -- classic HQS with the exact x-step and A = I: ``x = (y + mu v)/(1 + mu)``,
  ``v = prior(x)``, ``v_0 = y``.
* ``dpir``     -- plug-and-play for a known degradation (Zhang et al., DPIR, TPAMI 2021): the
  exact x-step ``x = (A^T A + rho_t I)^{-1} (A^T y + rho_t v)`` with the operator given in
  ``params['A']`` (:class:`~dynpnp_jax.operators.Blur`, ``Downsample``, ``Mask``, ...), then
  ``v = prior(x, sigma_t)``; ``sigma_t`` falls geometrically from 49/255 to the noise level and
  ``rho_t = 0.23 max(noise, 0.255/255)^2 / sigma_t^2`` (:func:`dpir_schedule`); ``x_0 = v_0`` is
  the operator's natural start (``y`` for a blur, bicubic up-sampling for SR, a filled-in ``y``
  for inpainting). Optional x8 self-ensemble (iteration t sees the (t mod 8)-th flip/rotation,
  DPIR's ``augment_img`` order, and is transformed back).

The operator A can always be given as data, ``params['A']`` (one per image, leading batch axis),
instead of being initialised from ``cfg.operator``; so ``restore(params, y, cfg)`` stays the one
entry point and an A-step can update a user's A.

``restore`` is transformable: ``jax.jit``, ``jax.grad`` and ``jax.vmap`` over the numbers of a
config (or over ``y``) work through it; value checks run only on concrete values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import boundary as bd
from . import steps
from .networks import Network
from .operators import OPERATORS, make_operator
from .validation import check_finite_output, check_images, is_concrete, needs_landscape

MODES = ("authors", "gradient", "prior", "static", "hqs", "dpir", "calibrated")
_DEFAULTS = {  # mode -> (x_step, a_step, operator)
    "authors": ("authors", "authors", "rowmix"),
    "gradient": ("gradient", "gradient", "gain"),
    "prior": ("none", "none", "identity"),
    "static": ("none", "none", "identity"),
    "hqs": ("exact", "none", "identity"),
    "dpir": ("exact", "none", "identity"),
    "calibrated": ("exact", "none", "identity"),
}
NUMBERS = ("delta", "mu", "alpha", "sigma", "relax", "inertia")  # per-iteration, traced


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
            new["relaxed"] = True  # _check_domain: only for the dpir / calibrated modes
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
    """Reject numbers outside each step's valid domain, with the reason (concrete values only),
    and relax / inertia in a mode whose loop has no such step."""
    if cfg.relaxed and cfg.mode not in ("dpir", "calibrated"):
        raise ValueError(f"relax / inertia are for modes 'dpir' and 'calibrated', got "
                         f"mode={cfg.mode!r}. Fix: drop them or use mode='dpir'")
    vals = {k: getattr(cfg, k) for k in NUMBERS + ("tol",)}
    if not is_concrete(vals):
        return
    v = {k: np.asarray(a, np.float64) for k, a in vals.items()}
    for k, a in v.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{k} must be finite, got {a.tolist()}")

    def bad(name, cond, why, fix):
        if np.any(cond):
            raise ValueError(f"{name}={np.round(v[name], 6).tolist()} is outside its domain: "
                             f"{why}. {fix}")

    gradient_x = cfg.mode in ("authors", "gradient") and cfg.x_step in ("gradient", "authors")
    if gradient_x:
        bad("delta", v["delta"] <= 0, "the x-step size must be > 0", "Use e.g. delta=0.01")
        bad("delta", v["delta"] * (1 + np.maximum(v["mu"], 0)) >= 2,
            "the gradient x-step diverges when delta * (1 + mu) >= 2 (its contraction factor "
            "1 - delta (1 + mu) leaves (-1, 1))", "Use a smaller delta")
    bad("mu", v["mu"] < 0, "the penalty mu (rho in DPIR) must be >= 0 (a negative penalty makes "
        "the x-step's system indefinite: hqs with mu=-1 divides by zero)", "Use mu >= 0")
    if cfg.mode == "dpir" or (cfg.mode == "gradient" and cfg.x_step in ("exact", "fft", "cg")):
        bad("mu", v["mu"] <= 0, "the exact x-step needs a penalty > 0 (A^T A alone is singular "
            "for down-sampling and masks)", "Use mu > 0 (dpir_schedule gives DPIR's values)")
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


def dpir_schedule(iters: int, noise_level: float, *, sigma_max: float = 49 / 255,
                  weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """DPIR's schedule (``utils_pnp.get_rho_sigma``): ``(sigma, rho)``, each ``(iters,)``.

    ``sigma_t`` interpolates from ``sigma_max`` to ``noise_level`` (both on the [0, 1] scale),
    geometrically for ``weight=1`` (DPIR's default) and linearly for ``weight=0``; the penalty is
    ``rho_t = 0.23 max(noise_level, 0.255/255)^2 / sigma_t^2``. A noise level below 0.255/255
    (e.g. 0) ends the schedule at 0.255/255 instead (a geometric sequence cannot reach 0).
    """
    if not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    noise_level = float(noise_level)
    if not np.isfinite(noise_level) or noise_level < 0:
        raise ValueError(f"noise_level must be a finite number >= 0 on the [0, 1] scale, got "
                         f"{noise_level}; for 8-bit noise levels divide by 255 (2.55/255)")
    if noise_level > 1:
        raise ValueError(f"noise_level={noise_level} is on the [0, 1] scale; divide 8-bit "
                         "noise levels by 255")
    floor = max(noise_level, 0.255 / 255)
    geo = np.logspace(np.log10(sigma_max), np.log10(floor), iters)
    lin = np.linspace(sigma_max, floor, iters)
    sigma = geo * weight + lin * (1 - weight)
    rho = 0.23 * floor ** 2 / sigma ** 2
    return sigma.astype(np.float64), rho.astype(np.float64)


def make_config(mode: str = "authors", iters: Optional[int] = None, *, delta=0.01, mu=None,
                alpha=1e-5, sigma=None, noise_level=None, x_step: Optional[str] = None,
                a_step: Optional[str] = None, operator: Optional[str] = None,
                kernel_size: int = 5, cg_iters: int = 3, a_input: str = "x",
                keep_images: bool = True, clip_output: bool = True, ensemble: bool = False,
                stop_tol: float = 0.0, calib_stages=None, calib_iters: int = 4,
                calib_crop: int = 4096, calib_grid: int = 5, calib_size: int = 0,
                calib_criterion: str = "likelihood", calib_margin: Optional[float] = None,
                boundary: str = "auto", boundary_iters: int = 16, relax=None,
                inertia=None) -> Config:
    """Build a validated :class:`Config`.

    Args:
      mode: one of ``authors``, ``gradient``, ``prior``, ``static``, ``hqs``, ``dpir``.
      iters: T, the number of iterations (default 2; ``prior`` mode: 1; ``dpir``: 8).
      delta: x-step size (Eq. 6), scalar or one per iteration.
      mu: penalty mu of Eq. (3) (the authors' eta; DPIR's rho), scalar or one per iteration;
        default 0.1, in ``dpir`` mode the DPIR schedule.
      alpha: A-step size (Eq. 10, the authors' rho), scalar or one per iteration.
      sigma: the noise level handed to a noise-conditioned prior (FFDNet) at each iteration, on
        the [0, 1] scale; scalar or one per iteration. Default: none (networks without a noise
        input ignore it); in ``dpir`` mode the DPIR schedule.
      noise_level: the noise level of ``y`` on the [0, 1] scale; ``dpir`` mode builds its
        schedule from it (:func:`dpir_schedule`).
      x_step, a_step, operator: override the mode's defaults (``gradient`` and ``dpir`` modes).
      kernel_size: kernel size for ``operator='conv'``.
      cg_iters: CG steps per iteration for ``x_step='cg'``.
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
        a discrepancy penalty; 9x the cost of ``dpir`` and measured worse, RESULTS.md).
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
        the completed ``y``; RESULTS.md: on a 27x27 kernel 0 / 16 / 64 steps give 25.1 / 30.0 /
        30.2 dB).
      relax, inertia: ``dpir`` / ``calibrated`` modes, scalars or one per iteration: the prior
        step becomes ``v_t = x_t + relax_t (D(x_t) - x_t)`` (a relaxation; the last one blends
        the denoiser's output with the x-step's) and the x-step's prior term
        ``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})`` (an extrapolation, inertial HQS). Default: not
        used (``relax=1``, ``inertia=0`` is DPIR's loop). Tuned values:
        ``configs/dpir_tuned_relax.py``
        (``python -m dynpnp_jax.tune --task dpir --family relax``).
      stop_tol: per-image stopping rule: an image whose relative change
        ``||x_t - x_{t-1}|| / ||x_{t-1}||`` falls below ``stop_tol`` is frozen for the remaining
        iterations (masked inside jit; ``Trajectory.active`` records it). 0 turns it off.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    dx, da, dop = _DEFAULTS[mode]
    if mode not in ("gradient", "dpir", "calibrated") and any(v is not None for v in (x_step, a_step, operator)):
        given = {k: v for k, v in dict(x_step=x_step, a_step=a_step, operator=operator).items()
                 if v is not None and v != dict(x_step=dx, a_step=da, operator=dop)[k]}
        if given:
            raise ValueError(f"mode={mode!r} fixes x_step={dx!r}, a_step={da!r}, operator={dop!r};"
                             f" got {given}. Use mode='gradient' to choose the steps")
    x_step, a_step, operator = x_step or dx, a_step or da, operator or dop
    if mode in ("gradient", "dpir", "calibrated"):
        for name, val, allowed in (("x_step", x_step, steps.X_STEPS), ("a_step", a_step, steps.A_STEPS),
                                   ("operator", operator, OPERATORS)):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {val!r}")
        if x_step == "fft" and operator != "conv":
            raise ValueError("x_step='fft' needs operator='conv'; use x_step='exact' otherwise")
        if a_step == "authors" and operator != "rowmix":
            raise ValueError("a_step='authors' needs operator='rowmix'")
    if iters is None:
        iters = {"prior": 1, "dpir": 8, "calibrated": 8}.get(mode, 2)
    if mode == "prior" and iters != 1:
        raise ValueError(f"mode='prior' runs the network once; got iters={iters}")
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if a_input not in ("x", "v"):
        raise ValueError(f"a_input must be 'x' or 'v', got {a_input!r}")
    if not isinstance(cg_iters, (int, np.integer)) or cg_iters < 1:
        raise ValueError(f"cg_iters must be a positive integer, got {cg_iters!r}")
    if mode in ("dpir", "calibrated") and (sigma is None or mu is None):
        if noise_level is None:
            raise ValueError(f"mode={mode!r} needs noise_level (the noise std of y on the [0, 1] "
                             "scale, e.g. 2.55/255) to build its schedule, or both sigma= and mu=")
        s_sched, rho_sched = dpir_schedule(int(iters), noise_level)
        sigma = s_sched if sigma is None else sigma
        mu = rho_sched if mu is None else mu
    elif noise_level is not None and sigma is None:
        sigma = noise_level
    if mu is None:
        mu = 0.1
    if mode == "calibrated" and noise_level is None:
        raise ValueError("mode='calibrated' needs noise_level (the noise std of y on the [0, 1] "
                         "scale): the discrepancy principle compares residuals with it")
    for name, val, lo in (("boundary_iters", boundary_iters, 0),
                          ("calib_iters", calib_iters, 1), ("calib_crop", calib_crop, 16),
                          ("calib_grid", calib_grid, 2), ("calib_size", calib_size, 0)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if calib_stages is not None:
        calib_stages = _check_stages(calib_stages)
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
    relaxed = relax is not None or inertia is not None
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
                 delta=delta, mu=mu, alpha=alpha, sigma=0.0 if sigma is None else sigma,
                 relax=1.0 if relax is None else relax, inertia=0.0 if inertia is None else inertia,
                 tol=stop_tol, noise=0.0 if noise_level is None else noise_level)
    return cfg.normalized()


def _check_stages(stages) -> tuple:
    from .calibration import PARAMS

    out = []
    for st in stages:
        if not (isinstance(st, (tuple, list)) and len(st) == 2 and st[0] in PARAMS):
            raise ValueError(f"calib_stages: each stage is (param, values) with param in {PARAMS} "
                             f"and values a list of numbers or 'refine', got {st!r}")
        vals = st[1]
        if vals != "refine":
            vals = tuple(float(v) for v in vals)
            if len(vals) < 1 or not all(np.isfinite(vals)):
                raise ValueError(f"calib_stages: stage {st[0]!r} needs finite values, got {st[1]!r}")
            if st[0] == "scale" and min(vals) <= 0:
                raise ValueError(f"calib_stages: scales must be > 0, got {vals}")
            if st[0] == "width" and min(vals) < 0:
                raise ValueError(f"calib_stages: widths must be >= 0, got {vals}")
        out.append((st[0], vals))
    return tuple(out)


class Trajectory(NamedTuple):
    """Per-iteration record (leading axis: iteration t = 1..T; then the batch).

    Attributes:
      x, v: the x-step and prior outputs, ``(T, B, H, W, C)`` (``None`` unless keep_images).
      a_loss: ``mean ||A x + g - y||^2`` per image after the A-step, ``(T, B)``.
      a_dev: ``||A - I||_F / sqrt(n)`` per image, ``(T, B)``.
      psnr: PSNR in dB of ``clip(v, 0, 1)`` against ``clean`` (float, no quantisation),
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


# ------------------------------------------------------------------------------ the loop
def _psnr(v, clean):
    from .metrics import psnr  # the one owner of PSNR

    return psnr(jnp.clip(v, 0.0, 1.0), clean)


def augment(x: jax.Array, mode: int) -> jax.Array:
    """DPIR's ``augment_img_tensor4`` on NHWC batches: the ``mode``-th (0..7) flip/rotation.

    0 identity, 1 flipud(rot90), 2 flipud, 3 rot270, 4 flipud(rot180), 5 rot90, 6 rot180,
    7 flipud(rot270); rotations turn H towards W (torch ``rot90(k, [2, 3])``), flips are on H."""
    def rot(a, k):
        return jnp.rot90(a, k, axes=(1, 2))

    def flip(a):
        return jnp.flip(a, axis=1)

    if mode == 0:
        return x
    if mode == 2:
        return flip(x)
    k = {1: 1, 3: 3, 4: 2, 5: 1, 6: 2, 7: 3}[mode]
    return flip(rot(x, k)) if mode in (1, 4, 7) else rot(x, k)


def augment_inverse(mode: int) -> int:
    """The mode that undoes :func:`augment`'s ``mode`` (3 and 5 undo each other)."""
    return {3: 5, 5: 3}.get(mode, mode)


def _initial(op, y):
    """The operator's natural starting image for ``y`` (``y`` itself when shapes agree)."""
    init = getattr(op, "initial", None)
    if callable(init):
        return init(y)
    return y if jax.eval_shape(op.adjoint, y).shape == y.shape else op.adjoint(y)


def _freeze(active, new, old):
    """Per image: ``new`` where ``active`` else ``old`` (leaves with a leading batch axis)."""
    def pick(n, o):
        if not hasattr(n, "ndim") or n.ndim == 0 or n.shape[0] != active.shape[0]:
            return n
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree_util.tree_map(pick, new, old)


def _dpir_schedule_jnp(iters: int, noise) -> tuple[jax.Array, jax.Array]:
    """:func:`dpir_schedule` (geometric) for a traced noise level."""
    floor = jnp.maximum(noise, 0.255 / 255)
    t = jnp.linspace(0.0, 1.0, iters)
    sigma = jnp.exp(jnp.log(49 / 255) * (1 - t) + jnp.log(floor) * t)
    return sigma, 0.23 * floor ** 2 / sigma ** 2


def _calibrate(prior: Network, y: jax.Array, op, cfg: Config):
    """``calibrated`` mode's search (:mod:`dynpnp_jax.calibration`): returns the Blur with the
    chosen kernels and the chosen family parameters."""
    from . import calibration as cal
    from .operators import Blur

    b, h, w, _ = y.shape
    size = cfg.calib_size
    k_given = jnp.broadcast_to(op.k, (b,) + op.k.shape[1:])
    c = min(cfg.calib_crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    y_c = y[:, top:top + c, left:left + c, :]
    sig, rho = _dpir_schedule_jnp(cfg.calib_iters, cfg.noise)
    coarse = Config(mode="dpir", iters=cfg.calib_iters, x_step="exact", a_step="none",
                    operator="identity", keep_images=False, clip_output=False,
                    has_sigma=True, delta=jnp.zeros_like(sig), mu=rho, alpha=jnp.zeros_like(sig),
                    sigma=sig, relax=jnp.ones_like(sig), inertia=jnp.zeros_like(sig),
                    tol=jnp.float32(0), noise=cfg.noise)
    margin = min(size // 2 + 4, c // 4)  # the crop is not periodic: score its interior only
    var_n = jnp.maximum(cfg.noise, 0.255 / 255) ** 2

    def kernels_for(theta):
        return jax.vmap(cal.warp_kernel, in_axes=(0, None, 0, 0, 0))(
            k_given, size, theta["scale"], theta["angle"], theta["width"])

    def score(theta):
        kern = kernels_for(theta)
        if cfg.calib_criterion == "likelihood":
            return cal.likelihood_score(y, kern, jnp.square(cfg.noise),
                                        frame=cfg.boundary == "unknown")
        opc = Blur(k=kern)
        out, _ = _restore({"prior": prior, "A": opc}, y_c, coarse, None)
        return cal.calibration_score(opc(out) - y_c, out, var_n, margin)

    theta = cal.search(score, b, cfg.calib_stages, cfg.calib_grid, cfg.calib_margin,
                       sequential=cfg.calib_criterion == "likelihood")
    return Blur(k=kernels_for({p: theta[p] for p in cal.PARAMS})), theta


def _restore(params: dict, y: jax.Array, cfg: Config, clean: Optional[jax.Array],
             true_a=None):
    prior: Network = params["prior"]
    noise: Network = params.get("noise") or prior
    b = y.shape[0]
    op = params.get("A")
    if op is None:
        op = make_operator(cfg.operator, y.shape, kernel_size=cfg.kernel_size)
    calib = None
    if cfg.mode == "calibrated":
        op, calib = _calibrate(prior, y, op, cfg)
    pads = obs = None
    if cfg.boundary == "unknown":  # restore the frame plus the kernel's reach (boundary.py)
        from .operators import Blur

        pads = bd.margins(op.k.shape, y.shape[1], y.shape[2])
        op = Blur(k=op.k)  # circular on the extended grid: no wrap reaches the frame
        y, obs = bd.extend(y, pads)

    def frame(a):
        return a if pads is None else bd.crop(a, pads)
    uses_g = cfg.a_step != "none"
    g = noise.noise(y, jnp.broadcast_to(cfg.sigma[0], (b,))) if uses_g else jnp.zeros_like(y)
    x_step = steps.X_STEPS.get(cfg.x_step)
    a_step = steps.A_STEPS[cfg.a_step]

    if cfg.mode == "authors":
        x0 = op.adjoint(y)
        v0 = jnp.zeros_like(x0)
    elif cfg.mode == "gradient":
        x0 = v0 = op.adjoint(y)
    elif cfg.mode in ("dpir", "calibrated"):
        x0 = v0 = _initial(op, y)
    else:  # prior / static / hqs start the prior from y
        x0, v0 = y, y

    def prior_fn(x, sigma_t, t):
        s = jnp.broadcast_to(sigma_t, (b,))
        if not cfg.ensemble:
            return steps.prior_step(prior, x, s)
        branches = [lambda xx, ss, k=k: augment(steps.prior_step(prior, augment(xx, k), ss),
                                                augment_inverse(k)) for k in range(8)]
        return jax.lax.switch(t % 8, branches, x, s)

    def step(x, v, vprev, op, hp):
        delta, mu, alpha, sigma, relax, inertia, t = hp
        # unknown boundary: y on the frame, the current estimate's blur on the margin
        y_t = y if obs is None else bd.complete(y, obs, op(v))
        v_in = v + inertia * (v - vprev) if cfg.relaxed else v  # extrapolated prior term
        if cfg.mode in ("prior", "static"):
            x_new = v
        else:
            x_new = x_step(op, x, y_t, v_in, delta, mu, cg_iters=cfg.cg_iters)
            if obs is not None and cfg.x_step == "exact":  # the exact masked x-step
                x_new = bd.masked_solve(op, y, obs, v_in, mu, x_new, cfg.boundary_iters)
        v_new = prior_fn(x_new, sigma, t)
        if cfg.relaxed:  # relaxed prior step
            v_new = x_new + relax * (v_new - x_new)
        a_in = x_new if cfg.a_input == "x" else v_new
        op_new = a_step(op, a_in, v_new, y_t, g, alpha)
        return x_new, v_new, op_new

    def norm(a):
        return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(1, a.ndim))))

    has_kernel = hasattr(op, "k") and not hasattr(op, "m")

    def body(carry, hp):
        x, v, vprev, op, active = carry
        if cfg.stop:  # skip the work once every image has stopped
            x_new, v_new, op_new = jax.lax.cond(jnp.any(active), lambda: step(x, v, vprev, op, hp),
                                                lambda: (x, v, op))
        else:
            x_new, v_new, op_new = step(x, v, vprev, op, hp)
        vprev_new = v if cfg.relaxed else vprev
        rel = norm(x_new - x) / jnp.maximum(norm(x), 1e-12)
        if cfg.stop:
            x_new, v_new, op_new, vprev_new = _freeze(active, (x_new, v_new, op_new, vprev_new),
                                                      (x, v, op, vprev))
            rel = jnp.where(active, rel, 0.0)
        a_in = x_new if cfg.a_input == "x" else v_new
        rec = dict(a_loss=steps.a_loss(op_new, a_in, y, g) if uses_g else jnp.zeros((b,)),
                   a_dev=jnp.broadcast_to(op_new.deviation(), (b,)), active=active,
                   rel_change=rel)
        if true_a is not None and has_kernel:
            from .calibration import kernel_distance

            rec["kernel_err"] = kernel_distance(jnp.broadcast_to(op_new.k, (b,) + op_new.k.shape[1:]),
                                                jnp.broadcast_to(true_a.k, (b,) + true_a.k.shape[1:]))
        if cfg.keep_images:
            rec.update(x=frame(x_new), v=frame(v_new))
        if clean is not None:
            rec["psnr"] = _psnr(frame(v_new), clean)
        if cfg.stop:
            active = active & (rel >= cfg.tol)
        return (x_new, v_new, vprev_new, op_new, active), rec

    hps = (cfg.delta, cfg.mu, cfg.alpha, cfg.sigma, cfg.relax, cfg.inertia, jnp.arange(cfg.iters))
    vprev0 = v0 if cfg.relaxed else jnp.zeros((), v0.dtype)  # only the relaxed loop needs it
    (x, v, _, op, _), rec = jax.lax.scan(body, (x0, v0, vprev0, op, jnp.ones((b,), bool)), hps)
    v = frame(v)
    out = jnp.clip(v, 0.0, 1.0) if cfg.clip_output else v
    traj = Trajectory(x=rec.get("x"), v=rec.get("v"), a_loss=rec["a_loss"], a_dev=rec["a_dev"],
                      psnr=rec.get("psnr"), active=rec["active"], rel_change=rec["rel_change"],
                      kernel=op.k if has_kernel else None, kernel_err=rec.get("kernel_err"),
                      calib=calib)
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
        b = getattr(op, "boundary", "circular") if type(op).__name__ == "Blur" else "circular"
    elif b == "unknown" and type(op).__name__ != "Blur":
        raise ValueError(f"boundary='unknown' extends the frame by the blur kernel's reach: it "
                         f"needs params['A'] = Blur.from_kernel(k, ...), got "
                         f"{type(op).__name__ if op is not None else 'no operator'}. Fix: pass "
                         "the Blur, or boundary='auto'")
    return cfg.replace(boundary=b)


def _resolve_calibration(params: dict, cfg: Config) -> Config:
    """``calibrated`` mode: default stages and kernel support from the given kernel (static)."""
    if cfg.mode != "calibrated":
        return cfg
    from .calibration import (LIKELIHOOD_MARGIN, LIKELIHOOD_MARGIN_FRAME, default_stages, is_delta,
                              support_size)

    if cfg.calib_margin is None:  # the criterion's default, set on training images
        cfg = cfg.replace(calib_margin=0.0 if cfg.calib_criterion != "likelihood" else
                          LIKELIHOOD_MARGIN_FRAME if cfg.boundary == "unknown" else
                          LIKELIHOOD_MARGIN)

    k = params["A"].k
    stages = cfg.calib_stages
    if not stages:
        if not is_concrete(k):
            raise ValueError("calibrated mode: with a traced kernel, give calib_stages explicitly")
        stages = default_stages(is_delta(k), cfg.calib_grid, cfg.calib_criterion)
    size = cfg.calib_size
    kmax = max(k.shape[1:])
    if size and size < kmax:
        raise ValueError(f"calib_size={size} is smaller than the given kernel ({k.shape[1]}x"
                         f"{k.shape[2]}): the calibrated kernel's support must hold it. Fix: "
                         f"calib_size >= {kmax + 1 - kmax % 2} (or 0: from the given kernel and "
                         f"the scales searched)")
    if not size:
        size = support_size(k.shape[1:], stages)
    return cfg.replace(calib_stages=stages, calib_size=int(size))


# ------------------------------------------------------------------------------ validation
def _is_operator(op) -> bool:
    return all(callable(getattr(op, m, None)) for m in ("__call__", "adjoint", "normal_solve"))


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
    y = check_images("y", y)
    op = params.get("A")
    if op is not None:
        if not _is_operator(op):
            raise TypeError(f"params['A'] must be an operator (dynpnp_jax.operators: Blur, "
                            f"Downsample, Mask, ...), got {type(op).__name__}")
        if cfg.mode == "calibrated" and type(op).__name__ != "Blur":
            raise ValueError(f"mode='calibrated' refines a blur kernel: params['A'] must be a "
                             f"Blur (Blur.from_kernel(k_given, batch)), got {type(op).__name__}")
        if cfg.mode in ("authors", "prior", "static", "hqs") and not (
                cfg.mode == "authors" and type(op).__name__ == "RowMix"):
            raise ValueError(f"mode={cfg.mode!r} does not take an operator A; use mode='dpir' "
                             "(known degradation) or 'gradient' with params['A']")
        try:
            x_shape = jax.eval_shape(op.adjoint, jax.ShapeDtypeStruct(y.shape, jnp.float32)).shape
        except (ValueError, TypeError) as err:
            raise ValueError(f"params['A'] does not fit y of shape {tuple(y.shape)}: {err}") from err
    else:
        if cfg.mode == "calibrated":
            raise ValueError("mode='calibrated' needs the given kernel: params['A'] = "
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
    if needs_landscape(x_shape, mode=cfg.mode, a_step=cfg.a_step):
        raise ValueError(f"mode={cfg.mode!r} with the row-mix A needs width >= height, got "
                         f"y of {h}x{w}; rotate portrait images by 90 degrees "
                         "(np.rot90(y, axes=(1, 2))) as the authors protocol does")
    if cfg.operator == "conv" and op is None and cfg.kernel_size > min(h, w):
        raise ValueError(f"kernel_size={cfg.kernel_size} does not fit y of {h}x{w}")
    check_size = getattr(prior.module, "check_size", None)
    if callable(check_size):
        check_size(h, w)
    if cfg.ensemble and prior.tile:
        pass  # tiles are square-agnostic: nothing to check
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
    cfg = _resolve_calibration(params, _resolve_boundary(params, cfg.normalized()))
    if cfg.mode == "calibrated":
        crop = min(cfg.calib_crop, y.shape[1], y.shape[2])
        if cfg.calib_size > crop:
            raise ValueError(f"calibrated mode: the calibrated kernel's support ({cfg.calib_size}"
                             f" px) does not fit the {crop} px crop of the search; use a larger "
                             f"calib_crop (>= {cfg.calib_size}, at most the image) or a smaller "
                             "calib_size")
    out, traj = _restore_jit(params, y, cfg, clean, true_A)
    check_finite_output("restore", out)
    return out, traj
