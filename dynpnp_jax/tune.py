"""Tune the solver's numbers by gradient descent through the unrolled loop (optax).

Two tasks (``--task``):

``denoise`` (default): the ``gradient`` mode hyper-parameters ``delta_t``, ``mu_t``, ``alpha_t``
with DnCNN-S, under the ``standard`` noise protocol::

    python -m dynpnp_jax.tune --sigma 15 25 50 --iters 2 --steps 40

``dpir``: the per-iteration ``sigma_t`` (FFDNet's input noise level) and ``mu_t`` (DPIR's rho, the
x-step penalty) of the ``dpir`` deblurring loop with the FFDNet-gray prior, one schedule per noise
level and number of iterations, initialised from DPIR's hand-set ``dpir_schedule(T, noise)``::

    python -m dynpnp_jax.tune --task dpir --noise 2.55 7.65 --iters 8 4 --steps 200 --crop 96

``--family relax`` also tunes the solver's per-iteration ``relax_t`` (the prior step ``v_t = x_t +
relax_t (D(x_t) - x_t)``) and ``inertia_t`` (the x-step's prior term ``v_{t-1} + inertia_t
(v_{t-1} - v_{t-2})``), from DPIR's loop (1 and 0)::

    python -m dynpnp_jax.tune --task dpir --family relax --shake-kernels 40 \
        --write-config configs/dpir_tuned_relax.py --out results/tune_relax.json

The numbers are traced arrays of the jitted solver, so the restored image is differentiable with
respect to them; we minimise the loss (``dpir``: minus the mean PSNR of the output) with Adam on
their logarithms (so they stay positive). Training data is ``shared/data/tune`` -- 20 of DnCNN's
400 training images, disjoint from Set12, BSD68 and Set3G -- on random crops; ``dpir`` blurs them
with random ``kernels_12.mat`` kernels (circular ``Blur``, 8-bit truncation as in DPIR's protocol,
Gaussian noise). Test sets are never looked at while tuning. ``dpir`` then (unless ``--no-eval``)
scores DPIR's and the tuned schedules on Set3G with the Levin kernels under DPIR's protocol
(:func:`evaluate_set3g`), with and without the x8 self-ensemble, prints the table, and with
``--write-config configs/dpir_tuned.py`` writes the schedules as data.
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import algorithms, kernels, paths
from . import calibration as cal
from .data import load_dataset
from .data.protocols import get_protocol
from .operators import OPERATORS, Blur
from .paths import OutputFile as OutFile
from .solver import dpir_schedule, make_config, restore
from .weights import load_network
from .zoo import ffdnet as zf
from .zoo.ffdnet import FFDNet

#: DnCNN-S models exist for these noise levels (``dncnn-s15/25/50``).
DENOISE_SIGMAS = (15, 25, 50)
#: The most iterations the CLI tunes through (the backward pass keeps each one's activations).
MAX_TUNE_ITERS = 100


# ============================================================================ task denoise
def _tune_images(limit=None):
    root = paths.data_dir()
    if root is None or not (root / "tune").is_dir():
        raise SystemExit("tune: shared/data/tune not found; set DYNPNP_DATA to a folder with tune/")
    ex = load_dataset("folder", data_dir=root / "tune", limit=limit)
    proto = get_protocol("standard")
    return [proto.prepare(e["image"], e["name"])[0] for e in ex], proto


def tune(sigma: float, *, iters: int = 2, steps: int = 40, crop: int = 96, lr: float = 0.1,
         operator: str = "gain", seed: int = 0, init=None, verbose: bool = True) -> dict:
    """Returns the tuned ``make_config`` kwargs for ``sigma`` and the tune-set PSNRs."""
    net = load_network(f"dncnn-s{int(sigma)}")
    cleans, proto = _tune_images()
    rng = np.random.RandomState(seed)
    init = init or {"delta": 0.3, "mu": 0.3, "alpha": 1e-3}
    theta = {k: jnp.full((iters,), np.log(v), jnp.float32) for k, v in init.items()}
    base = make_config("gradient", iters=iters, operator=operator, keep_images=False)

    def loss_fn(th, y, clean):
        cfg = base.with_values(**{k: jnp.exp(v) for k, v in th.items()})
        out, _ = restore({"prior": net}, y, cfg)
        return jnp.mean((out - clean) ** 2)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    import optax
    from tqdm.auto import tqdm

    opt = optax.adam(lr)
    state = opt.init(theta)
    noisy = [proto.degrade(c, sigma, "") for c in cleans]
    for step in (bar := tqdm(range(steps), desc=f"tune sigma={sigma}", disable=not verbose)):
        ys, cs = [], []
        for i in rng.choice(len(cleans), size=8, replace=False):
            h, w = cleans[i].shape[:2]
            t, l = rng.randint(0, h - crop + 1), rng.randint(0, w - crop + 1)
            ys.append(noisy[i][t:t + crop, l:l + crop])
            cs.append(cleans[i][t:t + crop, l:l + crop])
        loss, g = grad_fn(theta, jnp.asarray(np.stack(ys)), jnp.asarray(np.stack(cs)))
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
        bar.set_postfix(psnr=f"{-10 * np.log10(float(loss)):.2f}")
    values = {k: [float(x) for x in np.exp(np.asarray(v))] for k, v in theta.items()}
    kwargs = {"mode": "gradient", "iters": iters, "operator": operator, **values}
    # score on the full tune images: network alone vs the tuned loop (standard protocol)

    def mean_psnr(cfg):
        ps = []
        for c, y in zip(cleans, noisy):
            out, _ = restore({"prior": net}, y[None], cfg)
            ps.append(proto.evaluate(np.asarray(out[0]), {"reference": np.uint8(np.round(c * 255))})["psnr"])
        return float(np.mean(ps))

    return {"sigma": sigma, "kwargs": kwargs, "tune_psnr_prior": mean_psnr(make_config("prior")),
            "tune_psnr_tuned": mean_psnr(make_config(**kwargs))}


# ============================================================================== task dpir
#: Noise levels (8-bit scale) of the DPIR deblurring protocol, the ones the reference numbers are
#: for; others in (0, 75] (FFDNet's training range) are accepted.
DPIR_NOISES = (2.55, 7.65)
#: DPIR's schedule with FFDNet-gray, 8 iterations, x8 ensemble, Set3G + Levin k1..k8 (the
#: protocol of :func:`evaluate_set3g`): mean PSNR (dB) as given in the issue.
DPIR_REFERENCE = {2.55: 33.66, 7.65: 30.10}
TUNE_SIZE = 180  # the tune images are 180x180
_DN = ("NHWC", "HWIO", "NHWC")


def _check_noise(noise: float) -> float:
    try:
        n = float(noise)
    except (TypeError, ValueError):
        n = float("nan")
    if not np.isfinite(n) or not 0 < n <= 75:
        raise ValueError(f"noise: expected an 8-bit noise level in (0, 75] (FFDNet's range; the "
                         f"DPIR protocol uses {' and '.join(map(str, DPIR_NOISES))}), got {noise!r}"
                         "; fix: pass e.g. --noise 2.55 7.65")
    return n


def _check_int(name: str, value, lo: int, hi: int | None = None, fix: str = "") -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if not ok or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name}: expected an integer {rng}, got {value!r}" + (f"; {fix}" if fix else ""))
    return int(value)


def _check_positive(name: str, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
            np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- a fast backward for FFDNet
@jax.custom_vjp
def _frozen_conv(x, w):
    """3x3 'SAME' convolution (NHWC, HWIO, stride 1) whose input-gradient is a plain forward
    convolution with the flipped, transposed kernel. Gradient w.r.t. ``w``: zero (frozen)."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN)


def _frozen_conv_fwd(x, w):
    return _frozen_conv(x, w), w


def _frozen_conv_bwd(w, g):
    # The barrier keeps XLA from folding the transpose into the convolution's dimension labels
    # (``01oi``), which on CPU sends the convolution to a path ~3x slower inside lax.scan.
    w_t = jax.lax.optimization_barrier(jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2)))
    dx = jax.lax.conv_general_dilated(g, w_t, (1, 1), "SAME", dimension_numbers=_DN)
    return dx, jnp.zeros_like(w)


_frozen_conv.defvjp(_frozen_conv_fwd, _frozen_conv_bwd)


def _frozen_conv_general(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kw):
    """``lax.conv_general_dilated`` for ``nn.Conv``: the frozen fast-backward conv in the case
    FFDNet uses (stride 1, no dilation, odd kernel, 'SAME'), the plain one otherwise."""
    kh, kw_ = rhs.shape[:2]
    same = padding == "SAME" or tuple(map(tuple, padding)) == ((kh // 2, kh // 2), (kw_ // 2, kw_ // 2))
    simple = (same and kh % 2 == 1 and kw_ % 2 == 1 and feature_group_count == 1 and not kw
              and all(s == 1 for s in window_strides) and precision is None
              and all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ()))
              and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN))
    if not simple:
        return jax.lax.conv_general_dilated(
            lhs, jax.lax.stop_gradient(rhs), window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, precision=precision, **kw)
    return _frozen_conv(lhs, jax.lax.stop_gradient(rhs))


@functools.lru_cache(maxsize=None)
def _frozen_ffdnet_class(remat: bool = False):
    import flax.linen as nn

    class FrozenFFDNet(zf.FFDNet):
        """:class:`~dynpnp_jax.zoo.ffdnet.FFDNet` with frozen weights (no weight gradient) and a
        fast input-gradient (:func:`_frozen_conv`); same variables, same forward values."""

        @nn.compact
        def __call__(self, x, sigma):
            if x.ndim != 4 or x.shape[-1] != self.channels:
                raise ValueError(f"FrozenFFDNet: `x` must be (B, H, W, {self.channels}), got "
                                 f"shape {tuple(x.shape)}")
            zf._check_sigma_values(sigma)
            b, h, w, _ = x.shape
            hp, wp = h + h % 2, w + w % 2
            m = zf._half_res_map(sigma, b, h, w, hp, wp)
            xp = x if (hp, wp) == (h, w) else jnp.pad(
                x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
            z = jnp.concatenate([zf.pack(xp.astype(self.dtype)), m.astype(self.dtype)], axis=-1)
            for i in range(self.depth):
                last = i == self.depth - 1
                z = nn.Conv(4 * self.channels if last else self.features, (3, 3), padding="SAME",
                            use_bias=True, dtype=self.dtype, name=f"conv{i}",
                            conv_general_dilated=_frozen_conv_general)(z)
                if not last:
                    z = nn.relu(z)
            return zf.unpack(z)[:, :h, :w, :].astype(x.dtype)

    return nn.remat(FrozenFFDNet) if remat else FrozenFFDNet


def frozen_network(net, *, remat: bool = False):
    """``net`` prepared for differentiating the solver through it (weights frozen).

    For FFDNet the module is swapped for :class:`FrozenFFDNet` (same variables and outputs; its
    convolutions' input-gradient runs ~3x faster on CPU inside the solver's ``lax.scan``, where
    XLA otherwise picks a slow transposed-kernel path). ``remat=True`` also wraps the module in
    ``flax.linen.remat`` (each network call's activations are recomputed in the backward pass:
    memory of one call instead of ``iters`` calls). Other networks are returned as they are
    (``remat`` then raises)."""
    if not isinstance(net.module, FFDNet):
        if remat:
            raise ValueError(f"remat is only wired for FFDNet here, got {net.name!r}")
        return net
    cls = _frozen_ffdnet_class(bool(remat))
    m = net.module
    return net.replace(module=cls(channels=m.channels, features=m.features, depth=m.depth,
                                  dtype=m.dtype))


# ---------------------------------------------------------------- training data
def load_tune_images(root=None) -> list:
    """The 20 gray tune images (``data_dir()/tune``) as float32 ``(H, W)`` arrays, uint8 / 255."""
    from PIL import Image

    root = Path(root) if root is not None else paths.data_dir()
    folder = root / "tune" if root is not None else None
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"tune: the tune images were not found ({folder}); set "
                                "DYNPNP_DATA to a folder holding tune/ (shared/data)")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"tune: no PNG images in {folder}")
    return [np.asarray(Image.open(f).convert("L"), np.float32) / 255.0 for f in files]


def _dihedral(a: np.ndarray, m: int) -> np.ndarray:
    """The ``m``-th (0..7) flip/rotation of the first two axes."""
    a = np.rot90(a, m % 4, axes=(0, 1))
    return np.ascontiguousarray(a[::-1] if m >= 4 else a)


def _trim(k: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(k.sum(1) > 0), np.flatnonzero(k.sum(0) > 0)
    return k[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def same_kernel(a, b, tol: float = 1e-4) -> bool:
    """Whether two kernels are equal up to zero padding, normalisation and the 8 flips /
    rotations (max abs difference of the normalised, trimmed kernels below ``tol``)."""
    a = _trim(np.asarray(a, np.float64))
    b = _trim(np.asarray(b, np.float64))
    a = a / a.sum()
    return any(d.shape == a.shape and np.abs(a - d / d.sum()).max() < tol
               for d in (_dihedral(b, m) for m in range(8)))


SHAKE_SEED = 10_000  # camera_shake(SHAKE_SEED + i): the synthetic training kernels


def training_kernels(shake: int = 0) -> list:
    """The ``kernels_12.mat`` kernels (25x25; 8 Gaussian-like, 4 motion) that are NOT test
    kernels: two of its motion kernels are Levin et al.'s k8 and k7 (kernels_12 #9 and #10, equal
    to the last digit), so they are left out -- 10 kernels (8 Gaussian-like, 2 motion) -- and
    ``shake`` synthetic camera-shake kernels (:func:`~dynpnp_jax.kernels.camera_shake`, seeds
    ``SHAKE_SEED + i``; checked not to be Levin kernels) to train for motion blur."""
    shake = _check_int("shake", shake, 0, fix="pass the number of synthetic camera-shake kernels")
    levin = kernels.levin()
    out = [k for k in kernels.kernels12() if not any(same_kernel(k, t) for t in levin)]
    extra = [kernels.camera_shake(SHAKE_SEED + i) for i in range(shake)]
    if any(same_kernel(k, t) for k in extra for t in levin):  # cannot happen; never train on them
        raise RuntimeError("training_kernels: a synthetic kernel equals a Levin test kernel")
    return out + extra


def make_batch(rng: np.random.RandomState, cleans: list, kerns: list, *, crop: int, batch: int,
               noise: float, quantize: bool = True) -> tuple:
    """A random training batch ``(y, x, k)``: float32 ``(B, crop, crop, 1)`` degraded and clean
    crops and ``(B, 25, 25)`` kernels.

    Each sample: a random tune image, a random ``crop x crop`` window and one of its 8
    flips/rotations; a random kernel of ``kerns`` and one of its 8 flips/rotations; circular blur
    (``Blur``, i.e. ``scipy.ndimage.convolve(..., mode='wrap')``), then -- when ``quantize`` --
    truncation to 8 bits as the DPIR protocol's ``convolve`` on uint8 input does, then Gaussian
    noise of std ``noise`` (8-bit scale)."""
    xs, ks = [], []
    for _ in range(batch):
        img = cleans[rng.randint(len(cleans))]
        h, w = img.shape
        t, l = rng.randint(0, h - crop + 1), rng.randint(0, w - crop + 1)
        xs.append(_dihedral(img[t:t + crop, l:l + crop], rng.randint(8)))
        ks.append(_dihedral(kerns[rng.randint(len(kerns))], rng.randint(8)))
    x = np.stack(xs)[..., None].astype(np.float32)
    k = np.stack(ks).astype(np.float32)
    y = np.asarray(Blur.from_kernel(k)(jnp.asarray(x)), np.float64)
    if quantize:
        y = np.floor(y * 255 + 1e-6) / 255
    y = y + rng.normal(0, noise / 255, y.shape)
    return y.astype(np.float32), x, k


# ---------------------------------------------------------------- the objective
FAMILIES = ("base", "relax")  # what is tuned: sigma and mu; + the solver's relax and inertia
RELAXED = ("relax", "inertia")


#: the box ``tune_dpir`` projects relax and inertia onto after each Adam step: inside the solver's
#: domains (relax in (0, 2], |inertia| < 1), so every tuned schedule is one ``make_config`` takes
RELAX_BOX = (1e-2, 2.0)
INERTIA_BOX = (-0.99, 0.99)


def project_theta(theta) -> tuple:
    """``theta`` with ``relax`` / ``inertia`` (where present) clipped to :data:`RELAX_BOX` /
    :data:`INERTIA_BOX`, and how many of their entries were outside (projected Adam)."""
    out, hit = dict(theta), 0
    for key, (lo, hi) in (("relax", RELAX_BOX), ("inertia", INERTIA_BOX)):
        if key in theta:
            a = np.asarray(theta[key])
            hit += int(np.sum((a < lo) | (a > hi)))
            out[key] = jnp.clip(theta[key], lo, hi)
    return out, hit


def _check_family(family) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}; 'relax' also tunes "
                         "the solver's relax and inertia")
    return family


def dpir_theta(iters: int, noise: float, family: str = "base") -> dict:
    """DPIR's loop as the parameters: ``{'log_sigma': (T,), 'log_mu': (T,)}``, and for
    ``family='relax'`` also ``'relax'`` (ones) and ``'inertia'`` (zeros)."""
    _check_family(family)
    sigma, mu = dpir_schedule(int(iters), noise / 255)
    theta = {"log_sigma": jnp.asarray(np.log(sigma), jnp.float32),
             "log_mu": jnp.asarray(np.log(mu), jnp.float32)}
    if family == "relax":
        theta.update(relax=jnp.ones(int(iters), jnp.float32),
                     inertia=jnp.zeros(int(iters), jnp.float32))
    return theta


def theta_values(theta) -> dict:
    """``{'sigma': [...], 'mu': [...]}`` (and ``relax`` / ``inertia`` when tuned) as floats."""
    out = {"sigma": [float(v) for v in np.exp(np.asarray(theta["log_sigma"], np.float64))],
           "mu": [float(v) for v in np.exp(np.asarray(theta["log_mu"], np.float64))]}
    out.update({k: [float(v) for v in np.asarray(theta[k], np.float64)]
                for k in RELAXED if k in theta})
    return out


def dpir_loss_fn(net, iters: int, noise: float, *, loss: str = "psnr", ensemble: bool = False):
    """``f(theta, y, x, k) -> scalar``: the loss of the ``dpir`` loop with the schedule
    ``exp(theta)`` (and ``theta``'s ``relax`` / ``inertia`` when it has them) on a batch
    (``loss='psnr'``: minus the mean per-image PSNR in dB of the clipped output; ``'mse'``: the
    mean squared error). Goes through the public ``restore``."""
    if loss not in ("psnr", "mse"):
        raise ValueError(f"loss: expected 'psnr' or 'mse', got {loss!r}")
    base = make_config("dpir", iters=int(iters), noise_level=noise / 255, keep_images=False,
                       ensemble=ensemble)

    def f(theta, y, x, k):
        cfg = base.with_values(sigma=jnp.exp(theta["log_sigma"]), mu=jnp.exp(theta["log_mu"]),
                               **{k: theta[k] for k in RELAXED if k in theta})
        out, _ = restore({"prior": net, "A": Blur.from_kernel(k)}, y, cfg)
        mse = jnp.mean((out - x) ** 2, axis=(1, 2, 3))
        if loss == "mse":
            return jnp.mean(mse)
        return jnp.mean(10.0 * jnp.log10(jnp.maximum(mse, 1e-12)))
    return f


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tune_dpir(noise: float, iters: int, *, steps: int = 200, crop: int = 128, batch: int = 3,
              lr: float = 0.03, seed: int = 0, loss: str = "psnr", quantize: bool = True,
              remat: bool = False, val_size: int = 16, val_every: int = 0,
              average_from: float = 0.5, net=None, cleans=None, verbose: bool = True,
              ensemble: bool = False, shake: int = 0, family: str = "base") -> dict:
    """Tune DPIR's per-iteration ``sigma_t`` and ``mu_t`` (rho) for one noise level (8-bit) and
    ``iters`` by Adam on their logarithms, from :func:`~dynpnp_jax.dpir_schedule`;
    ``family='relax'`` also the solver's ``relax_t`` and ``inertia_t`` (from 1 and 0), projected
    after each step onto :data:`RELAX_BOX` / :data:`INERTIA_BOX` (inside the solver's domains;
    ``projected`` in the result counts the clipped entries).
    ``ensemble``: train (and validate) the loop as it is evaluated, with the x8 self-ensemble
    (iteration t sees the (t mod 8)-th flip/rotation: no extra network calls).

    Training data: random crops of the tune images blurred with random ``kernels_12.mat``
    kernels and ``shake`` synthetic camera-shake ones (:func:`training_kernels`, :func:`make_batch`,
    seed ``seed``). Adam's learning rate decays (cosine) from ``lr``
    to ``lr / 10``; the result is the mean of the iterates from step ``average_from * steps`` on
    (Polyak averaging: the gradients of single small batches are noisy). Validation: ``val_size`` fixed crops made the
    same way with seed ``seed + 1``, scored (mean PSNR, float, no quantisation of the output)
    before and after, and every ``val_every`` steps. Returns the tuned values, DPIR's, the
    validation PSNRs, the loss history, seconds and the process's peak RSS."""
    import optax
    from tqdm.auto import tqdm

    noise = _check_noise(noise)
    iters = _check_int("iters", iters, 1)
    _check_family(family)
    steps = _check_int("steps", steps, 1, fix="pass a positive number of optimisation steps")
    crop = _check_int("crop", crop, 32, TUNE_SIZE, fix=f"crops of the {TUNE_SIZE}x{TUNE_SIZE} "
                      "tune images must hold the 25x25 kernels and FFDNet's receptive field")
    batch = _check_int("batch", batch, 1)
    shake = _check_int("shake", shake, 0, fix="pass the number of synthetic camera-shake kernels")
    _check_positive("lr", lr, "a positive learning rate")
    if not 0 <= average_from < 1:
        raise ValueError(f"average_from: expected a fraction in [0, 1), got {average_from!r}")
    t0 = time.time()
    net = frozen_network(net if net is not None else load_network("ffdnet-gray"), remat=remat)
    cleans = cleans if cleans is not None else load_tune_images()
    kerns = training_kernels(shake)
    f = dpir_loss_fn(net, iters, noise, loss=loss, ensemble=ensemble)
    grad_fn = jax.jit(jax.value_and_grad(f))
    val_fn = jax.jit(dpir_loss_fn(net, iters, noise, loss="psnr", ensemble=ensemble))
    vrng = np.random.RandomState(seed + 1)
    val = [make_batch(vrng, cleans, kerns, crop=crop, batch=min(val_size, 8), noise=noise,
                      quantize=quantize) for _ in range(max(1, -(-val_size // 8)))]

    def val_psnr(th):
        value = -float(np.mean([float(val_fn(th, *b)) for b in val]))
        if not np.isfinite(value):
            raise FloatingPointError(f"tune_dpir: non-finite validation PSNR ({value}); lower --lr")
        return value

    theta0 = dpir_theta(iters, noise, family)
    theta = theta0
    sched = optax.cosine_decay_schedule(lr, steps, alpha=0.1)
    opt = optax.adam(sched)
    state = opt.init(theta)
    rng = np.random.RandomState(seed)
    history, val_hist, projected = [], [(0, val_psnr(theta0))], 0
    first_avg, avg = int(average_from * steps), None
    bar = tqdm(range(steps), desc=f"dpir noise={noise:g} T={iters}", disable=not verbose)
    for step in bar:
        y, x, k = make_batch(rng, cleans, kerns, crop=crop, batch=batch, noise=noise,
                             quantize=quantize)
        value, g = grad_fn(theta, y, x, k)
        if not all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(g)):
            raise FloatingPointError(f"tune: non-finite gradient at step {step}; lower --lr")
        updates, state = opt.update(g, state)
        theta, hit = project_theta(optax.apply_updates(theta, updates))
        projected += hit
        history.append(float(value))
        if step >= first_avg:
            n = step - first_avg + 1
            avg = theta if avg is None else jax.tree_util.tree_map(
                lambda a, t: a + (t - a) / n, avg, theta)
        if val_every and (step + 1) % val_every == 0 and step + 1 < steps:
            val_hist.append((step + 1, val_psnr(theta)))
        bar.set_postfix(loss=f"{np.mean(history[-20:]):.3f}")
    val_last = val_psnr(theta)
    theta = avg
    val_hist.append((steps, val_psnr(theta)))
    return {"noise": noise, "iters": iters, **theta_values(theta),
            "dpir": theta_values(theta0), "val_psnr_dpir": val_hist[0][1],
            "val_psnr_tuned": val_hist[-1][1], "val_psnr_last_iterate": val_last,
            "val_history": val_hist, "loss_history": history,
            "seconds": time.time() - t0, "peak_rss_mib": _peak_rss_mib(),
            "projected": projected,
            "settings": dict(steps=steps, crop=crop, batch=batch, lr=lr, seed=seed, loss=loss,
                             quantize=quantize, remat=remat, average_from=average_from,
                             ensemble=bool(ensemble), shake=shake, family=family)}


# ---------------------------------------------------------------- the A-step's sizes
def tune_kernel_step(noise: float = 2.55, iters: int = 8, *, steps: int = 40, crop: int = 96,
                     batch: int = 2, lr: float = 0.1, alpha0: float = 1e-5, scale: float = 1.25,
                     seed: int = 0, val_size: int = 8, net=None, cleans=None,
                     verbose: bool = True) -> dict:
    """Tune the paper's A-step sizes (``a_step='kernel'``: ``alpha_t``, one per iteration) by
    Adam on ``log alpha_t`` through the unrolled ``dpir`` loop (DPIR's sigma and rho fixed), on
    training crops blurred with ``kernels_12.mat`` kernels while the solver is told the kernel
    stretched by ``scale`` (a wrong kernel: where an A-step could pay). From ``alpha0``;
    validation on ``val_size`` fixed crops before and after, and with ``alpha = 0`` (no A-step).
    Returns the tuned ``alpha``, the validation PSNRs and the loss history."""
    import optax
    from tqdm.auto import tqdm

    noise = _check_noise(noise)
    iters = _check_int("iters", iters, 1)
    steps = _check_int("steps", steps, 1, fix="pass a positive number of optimisation steps")
    crop = _check_int("crop", crop, 32, TUNE_SIZE)
    batch = _check_int("batch", batch, 1)
    val_size = _check_int("val_size", val_size, 1)
    _check_positive("lr", lr, "a positive learning rate")
    _check_positive("alpha0", alpha0, "a positive starting step size")
    _check_positive("scale", scale, "a positive kernel stretch")
    t0 = time.time()
    net = frozen_network(net if net is not None else load_network("ffdnet-gray"))
    cleans = cleans if cleans is not None else load_tune_images()
    kerns = training_kernels()
    base = make_config("dpir", iters=iters, noise_level=noise / 255, a_step="kernel",
                       keep_images=False)

    def loss(theta, y, x, k):
        size = k.shape[-1]
        given = jax.vmap(lambda kk: cal.warp_kernel(kk, size, scale))(k)
        cfg = base.with_values(alpha=jnp.exp(theta["log_alpha"]))
        out, _ = restore({"prior": net, "A": Blur(k=given)}, y, cfg)
        mse = jnp.mean((out - x) ** 2, axis=(1, 2, 3))
        return jnp.mean(10.0 * jnp.log10(jnp.maximum(mse, 1e-12)))

    grad_fn = jax.jit(jax.value_and_grad(loss))
    val_fn = jax.jit(loss)
    vrng = np.random.RandomState(seed + 1)
    val = [make_batch(vrng, cleans, kerns, crop=crop, batch=min(val_size, 4), noise=noise)
           for _ in range(max(1, -(-val_size // 4)))]

    def val_psnr(th):
        return -float(np.mean([float(val_fn(th, *b)) for b in val]))

    theta = {"log_alpha": jnp.full((iters,), np.log(alpha0), jnp.float32)}
    zero = {"log_alpha": jnp.full((iters,), -80.0, jnp.float32)}  # exp(-80): no A-step
    val0, val_none = val_psnr(theta), val_psnr(zero)
    opt = optax.adam(lr)
    state = opt.init(theta)
    rng = np.random.RandomState(seed)
    history = []
    for step in tqdm(range(steps), desc=f"kernel-step noise={noise:g} T={iters}",
                     disable=not verbose):
        y, x, k = make_batch(rng, cleans, kerns, crop=crop, batch=batch, noise=noise)
        value, g = grad_fn(theta, y, x, k)
        if not bool(jnp.all(jnp.isfinite(g["log_alpha"]))):
            raise FloatingPointError(f"tune_kernel_step: non-finite gradient at step {step}")
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
        history.append(float(value))
    alpha = [float(a) for a in np.exp(np.asarray(theta["log_alpha"], np.float64))]
    return {"noise": noise, "iters": iters, "alpha0": alpha0, "alpha": alpha, "scale": scale,
            "val_psnr_start": val0, "val_psnr_tuned": val_psnr(theta),
            "val_psnr_no_a_step": val_none, "loss_history": history,
            "seconds": time.time() - t0, "peak_rss_mib": _peak_rss_mib(),
            "settings": dict(steps=steps, crop=crop, batch=batch, lr=lr, seed=seed)}


# ---------------------------------------------------------------- Set3G evaluation
def set3g_images(root=None) -> dict:
    """Set3G ground truths as uint8 ``(H, W)`` arrays, modcropped to a multiple of 8 (DPIR)."""
    from PIL import Image

    root = Path(root) if root is not None else paths.data_dir()
    folder = root / "set3g" if root is not None else None
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"set3g not found ({folder}); set DYNPNP_DATA to shared/data")
    out = {}
    for f in sorted(folder.glob("*.png")):
        img = np.asarray(Image.open(f).convert("L"), np.uint8)
        h, w = img.shape
        out[f.stem] = img[:h - h % 8, :w - w % 8]
    return out


def degrade_dpir(gt_uint8: np.ndarray, k: np.ndarray, noise: float) -> np.ndarray:
    """DPIR's deblurring degradation (``main_dpir_deblur.py``): ``convolve`` on the uint8 image
    (``mode='wrap'``; the result stays uint8, i.e. truncated), ``/ 255``, then
    ``np.random.seed(0); + np.random.normal(0, noise / 255, shape)``. float64 ``(H, W)``."""
    from scipy import ndimage

    blurred = ndimage.convolve(np.asarray(gt_uint8, np.uint8)[..., None],
                               np.asarray(k, np.float64)[..., None], mode="wrap")
    y = np.float32(blurred / 255.0)  # DPIR's uint2single
    np.random.seed(0)
    y = y + np.random.normal(0, noise / 255, y.shape)
    return y[..., 0]


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images, no border (DPIR's ``calculate_psnr``, border 0)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))


def evaluate_set3g(cfg_kwargs: dict, ensemble: bool = False, *, net=None, kernel_ids=None,
                   images=None, verbose: bool = False) -> dict:
    """Mean PSNR of ``make_config(**cfg_kwargs, ensemble=ensemble)`` (``dpir`` mode by default, or
    another known-degradation algorithm: ``admm``, ``drs``, ...) on Set3G
    with the Levin kernels, DPIR's protocol (:func:`degrade_dpir`; the exact x-step with the true
    kernel; output clipped, rounded to uint8; PSNR on uint8 without border).

    ``cfg_kwargs`` must hold ``noise_level`` (the [0, 1] noise std of the degradation). Only for
    reporting, after tuning. Returns ``{'mean', 'per_kernel', 'psnr': {(image, k): dB}}``."""
    kw = dict(cfg_kwargs)
    if kw.get("noise_level") is None:
        raise ValueError("evaluate_set3g: cfg_kwargs must give noise_level (the noise std of the "
                         "degradation on the [0, 1] scale, e.g. 2.55/255)")
    kw.setdefault("mode", "dpir")
    if not algorithms.get(kw["mode"]).traits.known_degradation:
        raise ValueError(f"evaluate_set3g evaluates an algorithm for a known blur "
                         f"({', '.join(algorithms.names(known_degradation=True))}), got "
                         f"mode={kw['mode']!r}. Fix: mode='dpir'")
    kw["ensemble"] = bool(ensemble)
    kw["keep_images"] = False
    cfg = make_config(**kw)
    noise = float(kw["noise_level"]) * 255
    net = net if net is not None else load_network("ffdnet-gray")
    imgs = images if images is not None else set3g_images()
    ids = list(kernel_ids) if kernel_ids is not None else list(range(1, 9))
    ks = [kernels.levin(i) for i in ids]
    size = max(max(k.shape) for k in ks)
    size += 1 - size % 2  # odd: zero padding then keeps every kernel's centre (kh // 2, kw // 2)
    kpad = np.stack([np.pad(k, [((size - s) // 2, size - s - (size - s) // 2) for s in k.shape])
                     for k in ks])
    out = {}
    for name, gt in imgs.items():
        y = np.stack([degrade_dpir(gt, k, noise) for k in ks])[..., None].astype(np.float32)
        res, _ = restore({"prior": net, "A": Blur.from_kernel(kpad)}, y, cfg)
        res = np.uint8(np.round(np.clip(np.asarray(res[..., 0], np.float64), 0, 1) * 255))
        for i, kid in enumerate(ids):
            out[(name, kid)] = psnr_uint8(res[i], gt)
        if verbose:
            print(f"  {name}: " + " ".join(f"{out[(name, kid)]:.2f}" for kid in ids))
    per_kernel = {kid: float(np.mean([out[(n, kid)] for n in imgs])) for kid in ids}
    return {"mean": float(np.mean(list(out.values()))), "per_kernel": per_kernel, "psnr": out}


def dpir_kwargs(noise: float, iters: int, values: dict | None = None) -> dict:
    """``make_config`` kwargs of the ``dpir`` loop: DPIR's schedule, or ``values``'s (``sigma``,
    ``mu``, and ``relax`` / ``inertia`` where it has them)."""
    kw = {"mode": "dpir", "iters": int(iters), "noise_level": noise / 255}
    if values is not None:
        kw.update(sigma=list(values["sigma"]), mu=list(values["mu"]))
        kw.update({k: list(values[k]) for k in RELAXED if k in values})
    return kw


# ---------------------------------------------------------------- config file
def render_config(results: list, command: str, evals: dict | None = None) -> str:
    """The text of ``configs/dpir_tuned.py`` for the tuning ``results``."""
    ens = any(r.get("settings", {}).get("ensemble") for r in results)
    relaxed = any(k in r for r in results for k in RELAXED)
    if relaxed:
        lines = ['"""DPIR deblurring schedules (per-iteration ``sigma``, ``mu`` = rho, ``relax``, '
                 '``inertia``) tuned by',
                 "gradient through the unrolled ``dpir`` loop with the FFDNet-gray prior"
                 + (", with the x8 self-ensemble," if ens else ","),
                 "on ``shared/data/tune`` (DnCNN training images)"]
    else:
        lines = ['"""DPIR deblurring schedules (per-iteration ``sigma`` and ``mu`` = rho) tuned by '
                 'gradient through the',
                 "unrolled ``dpir`` loop with the FFDNet-gray prior"
                 + (", with the x8 self-ensemble," if ens else ",") + " on ``shared/data/tune`` "
                 "(DnCNN training images)"]
    lines += ["blurred with ``tune.training_kernels()``: the ``kernels_12.mat`` kernels except #9 "
              "and #10, which are",
              "Levin's k8 and k7 -- never Set3G or a Levin kernel. One schedule per noise level "
              "(8-bit) and number",
              "of iterations T, initialised from ``dpir_schedule(T, noise)``."]
    shake = max(r.get("settings", {}).get("shake", 0) for r in results)
    if shake:
        lines.append(f"Plus {shake} synthetic camera-shake kernels (``kernels.camera_shake``, "
                     "``tune.training_kernels(shake)``).")
    if relaxed:
        lines.append("``relax``: the prior step ``v_t = x_t + relax_t (D(x_t) - x_t)``; ``inertia``: "
                     "the x-step's prior term")
        lines.append("``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})``; initialised at DPIR's loop "
                     "(1 and 0).")
    lines += ["", "Produced by:",
             "", f"    {command}", ""]
    lines.append("Training: " + ", ".join(
        f"noise {r['noise']:g} T={r['iters']}: {r['seconds'] / 60:.1f} min, peak RSS "
        f"{r['peak_rss_mib']:.0f} MiB, tune-val PSNR {r['val_psnr_dpir']:.2f} -> "
        f"{r['val_psnr_tuned']:.2f}" for r in results) + ".")
    if evals:
        lines += ["", "Set3G, Levin k1..k8, DPIR protocol (``dynpnp_jax.tune.evaluate_set3g``), "
                  "mean PSNR (dB) over 3 images x 8 kernels:", ""]
        lines += ["    " + l for l in format_table(evals).splitlines()]
    lines += ['"""', "from __future__ import annotations", "",
              "# (noise on the 8-bit scale, iterations) -> per-iteration values on the [0, 1] scale",
              "TUNED = {"]
    for r in results:
        lines.append(f"    ({r['noise']:g}, {r['iters']}): {{")
        for key in ("sigma", "mu") + tuple(k for k in RELAXED if k in r):
            vals = ", ".join(f"{v:.6g}" for v in r[key])
            lines.append(f'        "{key}": [{vals}],')
        lines.append("    },")
    lines += ["}", "", "",
              "def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:",
              '    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: '
              '2.55 or 7.65)',
              '    and ``iters``: ``make_config(**get_config(7.65, 4))``."""',
              "    from dynpnp_jax.tune import schedule_kwargs",
              "",
              "    return schedule_kwargs(TUNED, noise, iters, ensemble)",
              ""]
    return "\n".join(lines)


def schedule_kwargs(tuned: dict, noise: float, iters: int, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the schedule ``tuned[(noise, iters)]`` (a config's
    ``TUNED``: per-iteration ``sigma`` and ``mu``); ``KeyError`` naming what there is."""
    key = (float(noise), int(iters))
    if key not in tuned:
        raise KeyError(f"no tuned schedule for noise={noise}, iters={iters}; have {sorted(tuned)}")
    vals = tuned[key]
    return {**dpir_kwargs(noise, iters, vals), "ensemble": bool(ensemble)}


def format_table(evals: dict) -> str:
    """Markdown table of ``{(noise, iters, ensemble): {'dpir': dB, 'tuned': dB}}``."""
    rows = ["| noise | T | x8 ensemble | DPIR schedule | tuned | gain | reference (DPIR, T=8, x8) |",
            "|---|---|---|---|---|---|---|"]
    for (noise, iters, ens), v in sorted(evals.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2])):
        ref = DPIR_REFERENCE.get(noise) if (iters == 8 and ens) else None
        rows.append(f"| {noise:g} | {iters} | {'yes' if ens else 'no'} | {v['dpir']:.2f} | "
                    f"{v['tuned']:.2f} | {v['tuned'] - v['dpir']:+.2f} | "
                    f"{'' if ref is None else f'{ref:.2f}'} |")
    return "\n".join(rows)


def run_dpir(noises, iters_list, *, steps: int, crop: int, batch: int, lr: float, seed: int,
             loss: str, quantize: bool, remat: bool, evaluate: bool, val_every: int = 0,
             verbose: bool = True, checkpoint=None, previous: dict | None = None,
             ensemble: bool = False, shake: int = 0, family: str = "base") -> dict:
    """Tune every (noise, iters), then (optionally) evaluate DPIR's and the tuned schedules.

    ``checkpoint(results, evals)`` is called after each tuned schedule and each evaluation (to
    save them). ``previous`` (``{'results': [...], 'evals': {...}}`` of an interrupted run with the
    same settings) supplies what is already done: each (noise, iters) run has its own seeded
    generator, so resuming gives the same numbers as one uninterrupted run."""
    noises = [_check_noise(n) for n in noises]
    iters_list = [_check_int("iters", t, 1) for t in iters_list]
    done = {(r["noise"], r["iters"]): r for r in (previous or {}).get("results", [])}
    evals = dict((previous or {}).get("evals", {}))
    net = load_network("ffdnet-gray")
    cleans = None
    results = []
    for noise in noises:
        for iters in iters_list:
            if (noise, iters) in done:
                results.append(done[(noise, iters)])
                if verbose:
                    print(f"noise={noise:g} T={iters}: reusing the finished run", flush=True)
                continue
            cleans = cleans if cleans is not None else load_tune_images()
            r = tune_dpir(noise, iters, steps=steps, crop=crop, batch=batch, lr=lr, seed=seed,
                          loss=loss, quantize=quantize, remat=remat, val_every=val_every,
                          net=net, cleans=cleans, verbose=verbose, ensemble=ensemble,
                          shake=shake, family=family)
            results.append(r)
            if checkpoint is not None:
                checkpoint(results, evals)
            if verbose:
                print(json.dumps({k: r[k] for k in ("noise", "iters", "sigma", "mu") + RELAXED
                                  + ("val_psnr_dpir", "val_psnr_tuned", "seconds", "peak_rss_mib")
                                  if k in r}), flush=True)
    if evaluate:  # only after tuning, for reporting
        for r in results:
            for ens in (False, True):
                key = (r["noise"], r["iters"], ens)
                if key in evals and evals[key].get("sigma") == r["sigma"]:
                    continue
                t0 = time.time()
                d = evaluate_set3g(dpir_kwargs(r["noise"], r["iters"]), ens, net=net)
                t = evaluate_set3g(dpir_kwargs(r["noise"], r["iters"], r), ens, net=net)
                evals[key] = {"dpir": d["mean"], "tuned": t["mean"], "sigma": r["sigma"],
                              "dpir_per_kernel": d["per_kernel"],
                              "tuned_per_kernel": t["per_kernel"],
                              "dpir_psnr": {f"{n}/k{i}": v for (n, i), v in d["psnr"].items()},
                              "tuned_psnr": {f"{n}/k{i}": v for (n, i), v in t["psnr"].items()},
                              "seconds": time.time() - t0}
                if checkpoint is not None:
                    checkpoint(results, evals)
                if verbose:
                    print(f"Set3G noise={key[0]:g} T={key[1]} ensemble={ens}: DPIR "
                          f"{d['mean']:.3f} tuned {t['mean']:.3f} dB", flush=True)
    evals = {k: v for k, v in evals.items() if (k[0], k[1]) in {(r["noise"], r["iters"])
                                                               for r in results}}
    return {"results": results, "evals": evals}


def _print_dpir_table(out: dict) -> None:
    print("\n| noise | T | tune-val PSNR, DPIR schedule | tuned | minutes | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in out["results"]:
        print(f"| {r['noise']:g} | {r['iters']} | {r['val_psnr_dpir']:.3f} | "
              f"{r['val_psnr_tuned']:.3f} | {r['seconds'] / 60:.1f} | {r['peak_rss_mib']:.0f} |")
    if out["evals"]:
        print("\nSet3G + Levin k1..k8, DPIR protocol, mean PSNR (dB):\n")
        print(format_table(out["evals"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynpnp_jax.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("denoise", "dpir", "kernel-step"), default="denoise",
                   help="denoise: gradient mode with DnCNN-S (default); dpir: DPIR's schedule with "
                        "FFDNet-gray; kernel-step: the paper's A-step sizes (a_step='kernel') in "
                        "the dpir loop told a kernel stretched 1.25x")
    p.add_argument("--sigma", type=float, nargs="+", default=[15, 25, 50],
                   help="denoise: noise levels (8-bit), each one of 15, 25, 50")
    p.add_argument("--noise", type=float, nargs="+", default=list(DPIR_NOISES),
                   help="dpir: noise levels (8-bit), default 2.55 7.65")
    p.add_argument("--iters", type=int, nargs="+", default=None,
                   help="iterations T (denoise: one value, default 2; dpir: default 8 4)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps (denoise 40, dpir 200)")
    p.add_argument("--crop", type=int, default=None,
                   help="crop size, 32..180 (denoise 96, dpir 128)")
    p.add_argument("--batch", type=int, default=3, help="dpir: crops per step (default 3)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate on the "
                   "logarithms (dpir: cosine-decayed to a tenth; default 0.03 for dpir and "
                   "kernel-step, 0.1 for denoise)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, kernels, noise "
                   "(0 to 2**32 - 1)")
    p.add_argument("--loss", choices=("psnr", "mse"), default="psnr",
                   help="dpir: minus the mean PSNR (default) or the MSE")
    p.add_argument("--no-quantize", action="store_true",
                   help="dpir: no 8-bit truncation of the blurred training crops")
    p.add_argument("--ensemble", action="store_true",
                   help="dpir: tune with the x8 self-ensemble, as the schedules are evaluated "
                        "(no extra network calls; write to configs/dpir_tuned_x8.py)")
    p.add_argument("--shake-kernels", type=int, default=0, metavar="N",
                   help="dpir: add N synthetic camera-shake kernels (kernels.camera_shake) to the "
                        "training kernels (default 0)")
    p.add_argument("--family", choices=FAMILIES, default="base",
                   help="dpir: what is tuned: base = sigma_t and rho_t (default); relax = also the "
                        "solver's relax_t and inertia_t (write to configs/dpir_tuned_relax.py)")
    p.add_argument("--remat", action="store_true",
                   help="dpir: recompute each FFDNet call in the backward pass (less memory)")
    p.add_argument("--val-every", type=int, default=0,
                   help="dpir: score the fixed validation crops every N steps (0: start and end)")
    p.add_argument("--no-eval", action="store_true", help="dpir: skip the Set3G evaluation")
    p.add_argument("--write-config", default=None, metavar="PATH",
                   help="dpir: write the tuned schedules as data to PATH (configs/dpir_tuned.py)")
    p.add_argument("--operator", default=None, choices=sorted(OPERATORS),
                   help="denoise: the gradient mode's operator (default gain)")
    p.add_argument("--out", default=None, help="write the results as JSON here (a new file in "
                   "an existing folder; written as the run goes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--resume", default=None, metavar="JSON",
                   help="dpir: reuse the finished runs (and evaluations) of an --out file written "
                        "with the same settings; tune/evaluate only what is missing")
    args = p.parse_args(argv)

    def fail(msg):
        p.error(msg)  # exits with status 2 and the usage line

    if args.task != "dpir":  # options of the dpir task only: never silently ignored
        given = [flag for flag, on in (("--family", args.family != "base"),
                                       ("--ensemble", args.ensemble),
                                       ("--shake-kernels", args.shake_kernels != 0),
                                       ("--write-config", args.write_config is not None),
                                       ("--resume", args.resume is not None)) if on]
        if given:
            fail(f"{', '.join(given)}: only for --task dpir (got --task {args.task}); add "
                 "--task dpir")
    if args.task != "denoise" and args.operator is not None:
        fail(f"--operator {args.operator}: only for --task denoise (the {args.task} task's "
             f"operator is the blur); leave --operator out")
    args.operator = args.operator or "gain"
    if args.lr is None:
        args.lr = 0.1 if args.task == "denoise" else 0.03
    if not (np.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a positive number, got {args.lr}; pass e.g. --lr 0.03")
    if not 0 <= args.seed < 2 ** 32:
        fail(f"--seed must be in [0, 2**32 - 1] (numpy's seeds), got {args.seed}; pass e.g. "
             f"--seed 0")
    if args.iters is not None and any(t > MAX_TUNE_ITERS for t in args.iters):
        fail(f"--iters must be at most {MAX_TUNE_ITERS} when tuning (the gradient through the "
             f"unrolled loop keeps every iteration's activations: memory grows with T), got "
             f"{max(args.iters)}; pass e.g. --iters 8")
    outs = []  # checked now, before any tuning: a missing folder must not fail after hours
    for arg, path, exists_ok in (("--out", args.out, args.overwrite),
                                 ("--write-config", args.write_config, True)):
        if path is None:
            continue
        same_as_resume = (args.resume is not None and Path(path).expanduser().resolve()
                          == Path(args.resume).expanduser().resolve())
        try:
            outs.append(OutFile(path, arg, overwrite=exists_ok or same_as_resume))
        except ValueError as err:
            fail(str(err))
    args.out_file = outs[0] if outs and outs[0].arg == "--out" else None
    args.config_file = outs[-1] if outs and outs[-1].arg == "--write-config" else None
    steps = args.steps if args.steps is not None else (200 if args.task == "dpir" else 40)
    args.crop = args.crop if args.crop is not None else (128 if args.task == "dpir" else 96)
    if steps < 1:
        fail(f"--steps must be a positive integer, got {steps}")
    if not 32 <= args.crop <= TUNE_SIZE:
        fail(f"--crop must be in [32, {TUNE_SIZE}] (the tune images are {TUNE_SIZE}x{TUNE_SIZE}; "
             f"crops must hold the 25x25 kernels), got {args.crop}")
    iters = args.iters if args.iters is not None else ([8, 4] if args.task == "dpir" else [2])
    if any(t < 1 for t in iters):
        fail(f"--iters must be positive integers, got {iters}")
    if args.task == "denoise":
        if len(iters) != 1:
            fail(f"--task denoise takes one --iters value, got {iters}")
        bad = [s for s in args.sigma if s not in DENOISE_SIGMAS]
        if bad:
            fail(f"--sigma: DnCNN-S exists for {DENOISE_SIGMAS} only, got {bad}")
        return _main_denoise(args, steps, iters[0])
    for n in args.noise:
        try:
            _check_noise(n)
        except ValueError as err:
            fail(f"--noise: {err}")
    if args.batch < 1:
        fail(f"--batch must be a positive integer, got {args.batch}")
    if args.val_every < 0:
        fail(f"--val-every must be >= 0, got {args.val_every}")
    if args.shake_kernels < 0:
        fail(f"--shake-kernels must be >= 0, got {args.shake_kernels}")
    if args.task == "kernel-step":
        return _main_kernel_step(args, steps, iters if args.iters is not None else [8])
    given = list(argv if argv is not None else sys.argv[1:])
    if "--resume" in given:  # resuming gives the same numbers: record the plain command
        i = given.index("--resume")
        del given[i:i + 2]
    command = "python -m dynpnp_jax.tune " + " ".join(shlex.quote(a) for a in given)
    settings = dict(steps=steps, crop=args.crop, batch=args.batch, lr=args.lr, seed=args.seed,
                    loss=args.loss, quantize=not args.no_quantize, remat=args.remat,
                    average_from=0.5, ensemble=args.ensemble, shake=args.shake_kernels,
                    family=args.family)
    previous = None
    if args.resume:
        try:
            previous = _load_previous(args.resume, settings)
        except (OSError, ValueError) as err:
            fail(f"--resume: {err}")

    def save(results, evals=None):
        evals = {k: v for k, v in (evals or {}).items()
                 if (k[0], k[1]) in {(r["noise"], r["iters"]) for r in results}}
        if args.config_file:
            args.config_file.write(render_config(results, command, evals))
        if args.out_file:
            args.out_file.write(json.dumps(
                {"command": command, "results": results,
                 "evals": [{"noise": k[0], "iters": k[1], "ensemble": k[2], **v}
                           for k, v in (evals or {}).items()]}, indent=1))

    out = run_dpir(args.noise, iters, steps=steps, crop=args.crop, batch=args.batch, lr=args.lr,
                   seed=args.seed, loss=args.loss, quantize=not args.no_quantize,
                   remat=args.remat, evaluate=not args.no_eval, val_every=args.val_every,
                   checkpoint=save, previous=previous, ensemble=args.ensemble,
                   shake=args.shake_kernels, family=args.family)
    _print_dpir_table(out)
    save(out["results"], out["evals"])
    if args.write_config:
        print(f"\nwrote {args.config_file.written}")
    return _finish(args)


def _finish(args) -> int:
    """0, or 1 (said on stderr) when an output file went elsewhere than asked."""
    moved = [f for f in (getattr(args, "out_file", None), getattr(args, "config_file", None))
             if f is not None and f.written != f.path]
    for f in moved:
        print(f"error: {f.arg} {f.path}: appeared or changed during the run; it was left as it "
              f"is, and this run's file is {f.written}", file=sys.stderr)
    return 1 if moved else 0


SETTING_DEFAULTS = {"ensemble": False, "shake": 0, "family": "base"}  # settings added later: older --out files ran without


def _load_previous(path, settings: dict) -> dict:
    """The runs and evaluations of an earlier ``--out`` JSON whose settings equal ``settings``."""
    expected = ("expected the JSON object an --out of `python -m dynpnp_jax.tune --task dpir` "
                "writes ({'command': ..., 'results': [...], 'evals': [...]}); fix: pass such a "
                "file, or leave --resume out")
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err}); {expected}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a {type(data).__name__}; {expected}")
    results, evals_in = data.get("results", []), data.get("evals", [])
    if not isinstance(results, list) or not isinstance(evals_in, list):
        raise ValueError(f"{path}: 'results' and 'evals' must be lists; {expected}")
    try:
        for r in results:
            got = {k: r.get("settings", {}).get(k, SETTING_DEFAULTS.get(k)) for k in settings}
            if got != settings:
                diff = {k: (got[k], v) for k, v in settings.items() if got[k] != v}
                raise ValueError(f"{path}: run noise={r['noise']:g} T={r['iters']} was made with "
                                 f"other settings (theirs, now): {diff}")
            for k in ("noise", "iters", "sigma", "mu"):
                r[k]  # noqa: B018 (every run needs these)
        evals = {(e["noise"], e["iters"], e["ensemble"]): {
            k: v for k, v in e.items() if k not in ("noise", "iters", "ensemble")}
            for e in evals_in}
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: a run or evaluation lacks {err} or is not an object; "
                         f"{expected}") from None
    return {"results": results, "evals": evals}


def _main_kernel_step(args, steps: int, iters: list) -> int:
    results = []
    for n in args.noise:
        for t in iters:
            r = tune_kernel_step(n, t, steps=steps, crop=args.crop, batch=args.batch,
                                 lr=args.lr, seed=args.seed)
            results.append(r)
            print(f"noise {n:g} T={t}: val PSNR {r['val_psnr_start']:.3f} (alpha0 "
                  f"{r['alpha0']:g}) -> {r['val_psnr_tuned']:.3f} (tuned); no A-step "
                  f"{r['val_psnr_no_a_step']:.3f}; alpha = "
                  + ", ".join(f"{a:.3g}" for a in r["alpha"]), flush=True)
    if args.out_file:
        args.out_file.write(json.dumps({"command": "python -m dynpnp_jax.tune " + " ".join(
            shlex.quote(a) for a in sys.argv[1:]), "results": results}, indent=1))
    return _finish(args)


def _main_denoise(args, steps: int, iters: int) -> int:
    results = {}
    for s in args.sigma:
        t0 = time.time()
        r = tune(s, iters=iters, steps=steps, crop=args.crop, operator=args.operator,
                 lr=args.lr, seed=args.seed)
        r["seconds"] = time.time() - t0
        results[int(s)] = r
        print(json.dumps(r))
    print("\nGRADIENT_DENOISE = {")
    for s, r in results.items():
        print(f"    {s}: {json.dumps(r['kwargs'])},")
    print("}")
    if args.out_file:
        args.out_file.write(json.dumps(results, indent=1))
    return _finish(args)


if __name__ == "__main__":
    raise SystemExit(main())
