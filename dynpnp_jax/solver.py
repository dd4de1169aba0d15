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
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import steps
from .networks import Network
from .operators import OPERATORS, make_operator

MODES = ("authors", "gradient", "prior", "static", "hqs")
_DEFAULTS = {  # mode -> (x_step, a_step, operator)
    "authors": ("authors", "authors", "rowmix"),
    "gradient": ("gradient", "gradient", "gain"),
    "prior": ("none", "none", "identity"),
    "static": ("none", "none", "identity"),
    "hqs": ("exact", "none", "identity"),
}


@struct.dataclass
class Config:
    """Solver configuration. Build it with :func:`make_config`.

    Static fields select the structure; ``delta``, ``mu``, ``alpha`` are ``(iters,)`` arrays.
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
    delta: Any = 0.01
    mu: Any = 0.1
    alpha: Any = 1e-5

    def with_values(self, **kw) -> "Config":
        """A copy with new numbers (``delta``, ``mu``, ``alpha``: scalars or per-iteration)."""
        return make_config(**{**self.as_dict(), **kw})

    def as_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            out[f.name] = np.asarray(val).tolist() if f.name in ("delta", "mu", "alpha") else val
        return out


def _per_iter(name: str, value, iters: int) -> jax.Array:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((iters,), float(arr))
    if arr.shape != (iters,):
        raise ValueError(f"{name} must be a scalar or have one value per iteration ({iters}), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return jnp.asarray(arr, dtype=jnp.float32)


def make_config(mode: str = "authors", iters: Optional[int] = None, *, delta=0.01, mu=0.1, alpha=1e-5,
                x_step: Optional[str] = None, a_step: Optional[str] = None,
                operator: Optional[str] = None, kernel_size: int = 5, cg_iters: int = 3,
                a_input: str = "x", keep_images: bool = True, clip_output: bool = True) -> Config:
    """Build a validated :class:`Config`.

    Args:
      mode: one of ``authors``, ``gradient``, ``prior``, ``static``, ``hqs``.
      iters: T, the number of iterations (default 2; ``prior`` mode: 1).
      delta: x-step size (Eq. 6), scalar or one per iteration.
      mu: penalty mu of Eq. (3) (the authors' eta), scalar or one per iteration.
      alpha: A-step size (Eq. 10, the authors' rho), scalar or one per iteration.
      x_step, a_step, operator: override the mode's defaults (``gradient`` mode only).
      kernel_size: kernel size for ``operator='conv'``.
      cg_iters: CG steps per iteration for ``x_step='cg'``.
      a_input: which image the A-loss sees, ``'x'`` (Eq. 9) or ``'v'`` (the authors use v).
      keep_images: store x and v of every iteration in the trajectory.
      clip_output: clip the result to [0, 1].
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    dx, da, dop = _DEFAULTS[mode]
    if mode != "gradient" and any(v is not None for v in (x_step, a_step, operator)):
        given = {k: v for k, v in dict(x_step=x_step, a_step=a_step, operator=operator).items()
                 if v is not None and v != dict(x_step=dx, a_step=da, operator=dop)[k]}
        if given:
            raise ValueError(f"mode={mode!r} fixes x_step={dx!r}, a_step={da!r}, operator={dop!r};"
                             f" got {given}. Use mode='gradient' to choose the steps")
    x_step, a_step, operator = x_step or dx, a_step or da, operator or dop
    if mode == "gradient":
        for name, val, allowed in (("x_step", x_step, steps.X_STEPS), ("a_step", a_step, steps.A_STEPS),
                                   ("operator", operator, OPERATORS)):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {val!r}")
        if x_step == "fft" and operator != "conv":
            raise ValueError("x_step='fft' needs operator='conv'; use x_step='exact' otherwise")
        if a_step == "authors" and operator != "rowmix":
            raise ValueError("a_step='authors' needs operator='rowmix'")
    if iters is None:
        iters = 1 if mode == "prior" else 2
    if mode == "prior":
        if iters != 1:
            raise ValueError(f"mode='prior' runs the network once; got iters={iters}")
        iters = 1
    if not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if a_input not in ("x", "v"):
        raise ValueError(f"a_input must be 'x' or 'v', got {a_input!r}")
    return Config(mode=mode, iters=int(iters), x_step=x_step, a_step=a_step, operator=operator,
                  kernel_size=int(kernel_size), cg_iters=int(cg_iters), a_input=a_input,
                  keep_images=bool(keep_images), clip_output=bool(clip_output),
                  delta=_per_iter("delta", delta, iters), mu=_per_iter("mu", mu, iters),
                  alpha=_per_iter("alpha", alpha, iters))


class Trajectory(NamedTuple):
    """Per-iteration record (leading axis: iteration t = 1..T; then the batch).

    Attributes:
      x, v: the x-step and prior outputs, ``(T, B, H, W, C)`` (``None`` unless keep_images).
      a_loss: ``mean ||A x + g - y||^2`` per image after the A-step, ``(T, B)``.
      a_dev: ``||A - I||_F / sqrt(n)`` per image, ``(T, B)``.
      psnr: PSNR in dB of ``clip(v, 0, 1)`` against ``clean`` (float, no quantisation),
        ``(T, B)``; ``None`` when no clean image was given.
    """

    x: Optional[jax.Array]
    v: Optional[jax.Array]
    a_loss: jax.Array
    a_dev: jax.Array
    psnr: Optional[jax.Array]


# ------------------------------------------------------------------------------ the loop
_TRACES = [0]


def trace_count() -> int:
    """How many times the solver has been traced (compiled) in this process."""
    return _TRACES[0]


def _psnr(v, clean):
    mse = jnp.mean((jnp.clip(v, 0.0, 1.0) - clean) ** 2, axis=(1, 2, 3))
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-20))


def _restore(params: dict, y: jax.Array, cfg: Config, clean: Optional[jax.Array]):
    _TRACES[0] += 1
    prior: Network = params["prior"]
    noise: Network = params.get("noise") or prior
    b = y.shape[0]
    op = make_operator(cfg.operator, y.shape, kernel_size=cfg.kernel_size)
    uses_g = cfg.a_step != "none"
    g = noise.noise(y) if uses_g else jnp.zeros_like(y)
    x_step = steps.X_STEPS.get(cfg.x_step)
    a_step = steps.A_STEPS[cfg.a_step]

    if cfg.mode == "authors":
        x0, v0 = op.adjoint(y), jnp.zeros_like(y)
    elif cfg.mode == "gradient":
        x0 = op.adjoint(y)
        v0 = x0
    else:  # prior / static / hqs start the prior from y
        x0, v0 = y, y

    def body(carry, hp):
        x, v, op = carry
        delta, mu, alpha = hp
        if cfg.mode in ("prior", "static"):
            x = v
        else:
            x = x_step(op, x, y, v, delta, mu, cg_iters=cfg.cg_iters)
        v = steps.prior_step(prior, x)
        a_in = x if cfg.a_input == "x" else v
        op = a_step(op, a_in, v, y, g, alpha)
        rec = dict(a_loss=steps.a_loss(op, a_in, y, g) if uses_g else jnp.zeros((b,)),
                   a_dev=jnp.broadcast_to(op.deviation(), (b,)))
        if cfg.keep_images:
            rec.update(x=x, v=v)
        if clean is not None:
            rec["psnr"] = _psnr(v, clean)
        return (x, v, op), rec

    (x, v, op), rec = jax.lax.scan(body, (x0, v0, op), (cfg.delta, cfg.mu, cfg.alpha))
    out = jnp.clip(v, 0.0, 1.0) if cfg.clip_output else v
    traj = Trajectory(x=rec.get("x"), v=rec.get("v"), a_loss=rec["a_loss"], a_dev=rec["a_dev"],
                      psnr=rec.get("psnr"))
    return out, traj


_restore_jit = jax.jit(_restore)


# ------------------------------------------------------------------------------ validation
def _check_image(name: str, arr, ref_shape=None) -> np.ndarray | jax.Array:
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        arr = np.asarray(arr)
    if arr.ndim != 4:
        hint = " (add a batch axis: y[None])" if arr.ndim == 3 else ""
        raise ValueError(f"{name} must be a batch of NHWC images of rank 4 (B, H, W, C), got "
                         f"shape {tuple(arr.shape)}{hint}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(f"{name} must be float32 with values in [0, 1], got dtype {arr.dtype}; "
                         "convert 8-bit images with y.astype(np.float32) / 255")
    if ref_shape is not None and tuple(arr.shape) != tuple(ref_shape):
        raise ValueError(f"{name} must have the shape of y {tuple(ref_shape)}, got "
                         f"{tuple(arr.shape)}")
    if isinstance(arr, jax.core.Tracer):
        return arr
    finite = bool(jnp.all(jnp.isfinite(arr)))
    if not finite:
        raise ValueError(f"{name} contains NaN or Inf; clean the input (e.g. np.nan_to_num) first")
    hi, lo = float(jnp.max(arr)), float(jnp.min(arr))
    if hi > 2.0 or lo < -1.0:
        raise ValueError(f"{name} must hold values in [0, 1] (noise may push them slightly "
                         f"outside), got range [{lo:.3g}, {hi:.3g}]; divide 8-bit images by 255")
    return arr.astype(jnp.float32) if arr.dtype != jnp.float32 else arr


def validate(params: dict, y, cfg: Config, clean=None):
    """The checks :func:`restore` runs before compiling; returns ``(y, clean)`` as float32."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a dynpnp_jax.Config (see make_config), got {type(cfg).__name__}")
    if not isinstance(params, dict) or not isinstance(params.get("prior"), Network):
        raise TypeError("params must be a dict with a 'prior' Network (from load_network) and "
                        "optionally a 'noise' Network, e.g. {'prior': load_network('dncnn-s25')}")
    y = _check_image("y", y)
    if clean is not None:
        clean = _check_image("clean", clean, y.shape)
    prior: Network = params["prior"]
    prior.check_input(y.shape, "y")
    noise = params.get("noise")
    if cfg.a_step != "none":
        if noise is None and prior.kind != "residual":
            raise ValueError(f"mode={cfg.mode!r} updates A with a noise estimate g(y), and prior "
                             f"{prior.name!r} is not a denoiser: pass params['noise'] (e.g. "
                             "load_network('dncnn-b-color'))")
        if noise is not None:
            if not isinstance(noise, Network):
                raise TypeError("params['noise'] must be a Network (from load_network)")
            noise.check_input(y.shape, "y")
    h, w = y.shape[1:3]
    if cfg.operator == "rowmix" and cfg.a_step == "authors" and w < h:
        raise ValueError(f"mode={cfg.mode!r} with the row-mix A needs width >= height, got "
                         f"y of {h}x{w}; rotate portrait images by 90 degrees "
                         "(np.rot90(y, axes=(1, 2))) as the authors protocol does")
    if cfg.operator == "conv" and cfg.kernel_size > min(h, w):
        raise ValueError(f"kernel_size={cfg.kernel_size} does not fit y of {h}x{w}")
    check_size = getattr(prior.module, "check_size", None)
    if callable(check_size):
        check_size(h, w)
    return y, clean


def restore(params: dict, y, cfg: Config, *, clean=None):
    """Restore ``y`` with the dynamic plug-and-play loop.

    Args:
      params: ``{'prior': Network, 'noise': Network (optional)}`` from
        :func:`dynpnp_jax.load_network`.
      y: degraded images, float32 NHWC ``(B, H, W, C)`` in [0, 1].
      cfg: a :class:`Config` from :func:`make_config`.
      clean: optional clean images of y's shape; adds PSNR per iteration to the trajectory.

    Returns:
      ``(restored, trajectory)``: the restored images (clipped to [0, 1]) and a
      :class:`Trajectory`.
    """
    y, clean = validate(params, y, cfg, clean)
    cfg = make_config(**cfg.as_dict())  # numbers -> (T,) float32 arrays: no recompilation
    return _restore_jit(params, y, cfg, clean)
