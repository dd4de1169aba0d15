"""What an algorithm is: a small pure record the solver scans over.

An :class:`Algorithm` names its state (what ``lax.scan`` carries: the x-step's image ``x``, the
prior's image ``v`` and whatever else it needs, such as ADMM's scaled dual ``u``), ``init`` (the
state at t = 0), ``step`` (one iteration), the per-iteration numbers it reads with their
defaults (every number is a traced ``(iters,)`` array: new values never recompile and are
differentiable; their domains are checked by ``check``), and its :class:`Traits`. The solver
(:func:`dynpnp_jax.restore`) validates, resolves the operator and the boundary, builds a
:class:`Problem` and runs ``lax.scan`` over ``step``; it never compares an algorithm's name.

``step(p, state, op, y, hp) -> (state, info)``: ``p`` is the :class:`Problem` (the data-term
primitives and the denoiser), ``op`` the current operator (an A-step may change it between
iterations), ``y`` the observation (on an extended frame, completed by the current estimate),
``hp`` the iteration's numbers (:class:`Numbers`), ``info`` a dict of per-image diagnostics for
the trajectory (``x_residual`` when the x-step ran CG; ``{}`` otherwise).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import boundary as bd
from .. import saturation as sat
from .. import steps
from ..operators import _per_image, has

Array = jax.Array

NUMBERS = ("delta", "mu", "alpha", "sigma", "relax", "inertia")  # per-iteration, traced
STARTS = ("adjoint", "adjoint_zero_v", "y", "initial")


class Numbers(NamedTuple):
    """One iteration's numbers (scalars; traced) and its index ``t``."""

    delta: Array
    mu: Array
    alpha: Array
    sigma: Array
    relax: Array
    inertia: Array
    t: Array


@dataclasses.dataclass(frozen=True)
class Traits:
    """What an algorithm needs and offers (static facts the solver and the CLIs read).

    Attributes:
      x_kind: how its x-step treats the data term: ``'prox'`` (solves the normal equations:
        exact where the operator has a closed form, CG otherwise), ``'gradient'`` (gradient
        steps on the data term only), ``'choose'`` (the config's ``x_step`` decides: the paper's
        dynamic loop) or ``'none'`` (no data term: the network alone).
      takes_operator: ``'any'`` (``params['A']`` or ``cfg.operator``), ``'rowmix'`` (only the
        authors' row-mix) or ``'none'`` (the identity; a given A is an error).
      requires: operator capabilities it needs (e.g. ``('calibrate',)``); a given A without
        them is an error naming the fix.
      needs_operator: a given ``params['A']`` is required.
      choose_steps: ``x_step``, ``a_step`` and ``operator`` may be overridden in the config.
      schedule: numbers default to DPIR's sigma/rho schedule built from ``noise_level``.
      known_degradation: meant for a known forward model (deblurring, SR, inpainting); the
        eval CLI offers it for those tasks.
      start: ``'adjoint'`` (``x = v = A^T y``), ``'adjoint_zero_v'`` (``x = A^T y, v = 0``),
        ``'y'`` (``x = v = y``) or ``'initial'`` (the operator's natural start, ``op.initial``).
      fixed_iters: the only number of iterations it runs (``prior``: 1), or 0.
      calibrates: re-chooses the blur kernel before the loop (``prepare``).
    """

    x_kind: str = "prox"
    takes_operator: str = "any"
    requires: tuple = ()
    needs_operator: bool = False
    choose_steps: bool = True
    schedule: bool = True
    known_degradation: bool = True
    start: str = "initial"
    fixed_iters: int = 0
    calibrates: bool = False


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """A plug-and-play algorithm as data (see the module docstring).

    Attributes:
      name: the ``mode`` string that selects it.
      summary: one line for help texts.
      numbers: the per-iteration numbers it reads (a subset of :data:`NUMBERS`).
      defaults: default values of numbers the user did not give (scalars).
      x_step, a_step, operator: default step kinds and operator name.
      iters: default number of iterations.
      rho_scale: the schedule algorithms' default ``mu`` is DPIR's rho times this (1 for HQS,
        where DPIR set it; the other splittings' value is chosen on training images).
      init: ``init(p, op, y) -> state``.
      step: ``step(p, state, op, y, hp) -> (state, info)``.
      output: ``output(state) -> image`` (default: ``state.v``, the prior's image).
      check: ``check(cfg, values, bad)``: extra domain rules on concrete numbers.
      prepare: ``prepare(params, y, op, cfg, run) -> (op, info)`` run before the loop inside the
        compiled program (``calibrated``: the kernel search); ``run(params, y, cfg)`` runs a loop.
      resolve: ``resolve(params, cfg) -> cfg``: static settings derived from the data (before
        compiling).
      traits: :class:`Traits`.
    """

    name: str
    summary: str
    numbers: tuple
    init: Callable
    step: Callable
    traits: Traits = Traits()
    defaults: dict = dataclasses.field(default_factory=dict)
    x_step: str = "exact"
    a_step: str = "none"
    operator: str = "identity"
    iters: int = 8
    rho_scale: float = 1.0
    output: Optional[Callable] = None
    check: Optional[Callable] = None
    prepare: Optional[Callable] = None
    resolve: Optional[Callable] = None

    def result(self, state) -> Array:
        return state.v if self.output is None else self.output(state)


class Problem(NamedTuple):
    """The primitives an algorithm's step is written with (built by the solver per call).

    ``prox``, ``gradient``, ``denoise`` and ``start`` close over the config (x-step kind, CG
    steps, boundary treatment, ensemble) and the prior network; ``b`` is the batch size."""

    cfg: Any
    prior: Any
    obs: Optional[Array]
    b: int
    sat: Optional[Array] = None  # saturation on: 1 at the clipped values of y (saturation.py)

    # ---------------------------------------------------------------- data term
    def prox(self, op, y, z, mu, x0, delta=0.0) -> tuple[Array, dict]:
        """The configured x-step towards ``z``. With a solving kind (``exact``, ``fft``; the
        default of the prox algorithms) it is ``argmin_x ||A x - y||^2 / 2 + mu ||x - z||^2 / 2``
        per image: the operator's closed form, or CG for an operator without one (its relative
        residual returned in ``info['x_residual']``); ``cg`` runs ``cg_iters`` steps warm-started
        at ``x0``; ``gradient`` / ``authors`` take one step of size ``delta`` from ``x0`` (the
        paper's loops). With an unknown boundary the exact step solves the data term masked to
        the frame (``boundary.masked_solve``)."""
        cfg = self.cfg
        info = {}
        if cfg.x_step in ("exact", "fft") and not has(op, "closed_form"):
            x, info["x_residual"] = op.normal_solve_cg(
                op.adjoint(y) + _per_image(mu, z.ndim) * z, mu, x0)
        else:
            x = steps.X_STEPS[cfg.x_step](op, x0, y, z, delta, mu, cg_iters=cfg.cg_iters)
        if self.obs is not None and cfg.x_step == "exact":  # the exact masked x-step
            x = bd.masked_solve(op, y, self.obs, z, mu, x, cfg.boundary_iters)
            if self.sat is not None and sat.one_sided(cfg.saturation):
                # y = min(A x, level): the clipped values whose blur fell below the level are
                # data at the level (the active set of A x >= level), solved again from x
                low = self.sat * (op(x) < cfg.clip_level)
                x = bd.masked_solve(op, jnp.where(low > 0, cfg.clip_level, y), self.obs + low,
                                    z, mu, x, cfg.boundary_iters)
        return x, info

    def gradient(self, op, y, x) -> Array:
        """``A^T (A x - y)``, the gradient of the data term ``||A x - y||^2 / 2`` (masked to the
        frame with an unknown boundary; with ``saturation='clipped'`` the clipped values add the
        one-sided ``||min(A x - level, 0)||^2 / 2``)."""
        ax = op(x)
        r = ax - y
        if self.obs is None:
            return op.adjoint(r)
        r = self.obs * r
        if self.sat is not None and sat.one_sided(self.cfg.saturation):
            r = r + self.sat * jnp.minimum(ax - self.cfg.clip_level, 0.0)
        return op.adjoint(r)

    # ---------------------------------------------------------------- prior
    def denoise(self, x, sigma, t) -> Array:
        """The plugged network at noise level ``sigma`` (a scalar; networks without a noise
        input ignore it); with ``ensemble``, iteration ``t`` sees the ``(t mod 8)``-th
        flip/rotation of ``x`` and its output is transformed back. With ``saturation`` on, the
        estimate's highlights above :data:`saturation.KNEE` are compressed into [KNEE, 1] for the
        network (trained on [0, 1]) and expanded back (:func:`saturation.compress`; the
        identity while the estimate at the clipped pixels stays at or below 1)."""
        s = jnp.broadcast_to(sigma, (self.b,))
        if self.sat is not None:
            m = sat.peak(x, self.sat)
            return sat.expand(self._replace(sat=None).denoise(sat.compress(x, m), s, t), m)
        if not self.cfg.ensemble:
            return steps.prior_step(self.prior, x, s)
        branches = [lambda xx, ss, k=k: augment(steps.prior_step(self.prior, augment(xx, k), ss),
                                                augment_inverse(k)) for k in range(8)]
        return jax.lax.switch(t % 8, branches, x, s)

    # ---------------------------------------------------------------- start
    def start(self, op, y, kind: str) -> tuple[Array, Array]:
        """``(x0, v0)`` for a start ``kind`` (:data:`STARTS`)."""
        if kind == "adjoint":
            x0 = op.adjoint(y)
            return x0, x0
        if kind == "adjoint_zero_v":
            x0 = op.adjoint(y)
            return x0, jnp.zeros_like(x0)
        if kind == "y":
            return y, y
        x0 = op.initial(y)
        return x0, x0


def augment(x: Array, mode: int) -> Array:
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


def dpir_schedule(iters: int, noise_level: float, *, sigma_max: float = 49 / 255,
                  weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """DPIR's schedule (``utils_pnp.get_rho_sigma``): ``(sigma, rho)``, each ``(iters,)``.

    ``sigma_t`` interpolates from ``sigma_max`` to ``noise_level`` (both on the [0, 1] scale),
    geometrically for ``weight=1`` (DPIR's default) and linearly for ``weight=0``; the penalty is
    ``rho_t = 0.23 max(noise_level, 0.255/255)^2 / sigma_t^2``. A noise level below 0.255/255
    (e.g. 0) ends the schedule at 0.255/255 instead (a geometric sequence cannot reach 0).
    """
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    noise_level = _finite_number("noise_level", noise_level)
    if noise_level < 0:
        raise ValueError(f"noise_level must be a finite number >= 0 on the [0, 1] scale, got "
                         f"{noise_level}; for 8-bit noise levels divide by 255 (2.55/255)")
    if noise_level > 1:
        raise ValueError(f"noise_level={noise_level} is on the [0, 1] scale; divide 8-bit "
                         "noise levels by 255")
    sigma_max = _finite_number("sigma_max", sigma_max)
    if not 0 < sigma_max <= 1:
        raise ValueError(f"sigma_max must be in (0, 1] (the first denoiser level on the [0, 1] "
                         f"scale), got {sigma_max}; DPIR uses 49/255")
    weight = _finite_number("weight", weight)
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1] (1: geometric, 0: linear interpolation), "
                         f"got {weight}")
    floor = max(noise_level, 0.255 / 255)
    geo = np.logspace(np.log10(sigma_max), np.log10(floor), iters)
    lin = np.linspace(sigma_max, floor, iters)
    sigma = geo * weight + lin * (1 - weight)
    rho = 0.23 * floor ** 2 / sigma ** 2
    return sigma.astype(np.float64), rho.astype(np.float64)


def dpir_schedule_traced(iters: int, noise) -> tuple[Array, Array]:
    """:func:`dpir_schedule` (geometric, sigma_max 49/255) for a traced noise level."""
    floor = jnp.maximum(noise, 0.255 / 255)
    t = jnp.linspace(0.0, 1.0, iters)
    sigma = jnp.exp(jnp.log(49 / 255) * (1 - t) + jnp.log(floor) * t)
    return sigma, 0.23 * floor ** 2 / sigma ** 2


def _finite_number(name: str, value) -> float:
    if isinstance(value, (bool, str)) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out
