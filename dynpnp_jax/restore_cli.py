"""``python -m dynpnp_jax.restore``: restore a user's own noisy, blurry, low-resolution or damaged
pictures, one file or a whole folder, in one command (and :func:`restore_photo` in Python).

    python -m dynpnp_jax.restore noisy.png -o clean.png --task denoise --noise 15
    python -m dynpnp_jax.restore blurry.jpg -o sharp.png --task deblur --kernel blurry_kernel.png
    python -m dynpnp_jax.restore photos/ -o out/ --task deblur --kernel '{stem}_kernel.png'
    python -m dynpnp_jax.restore small.png -o big.png --task sr --scale 2
    python -m dynpnp_jax.restore damaged.png -o fixed.png --task inpaint --mask damaged_mask.png
    python -m dynpnp_jax.restore raw.png -o rgb.png --task demosaic --pattern RGGB

Tasks and what runs (the plug-and-play solver of :func:`dynpnp_jax.restore`; the prior is FFDNet,
``ffdnet-color`` for colour pictures and ``ffdnet-gray`` for gray ones, unless ``--prior``):

* ``denoise``: the prior alone at the noise level (``make_config('prior', sigma=noise)``).
* ``deblur``: DPIR's loop with the kernel (``make_config('dpir', noise_level=noise)``, 8
  iterations); a photograph's frame is not periodic, so the default is ``--boundary unknown``
  (the frame plus the kernel's reach is restored, then cropped). ``--calibrate``: the kernel is
  re-chosen inside the loop (``calibrated`` mode). ``--x8``: geometric self-ensemble.
* ``sr``: ``--scale S`` with ``--kernel`` (blur, then keep every S-th pixel:
  ``Downsample.from_kernel``) or, by default, the bicubic down-sampler ``bicubic:S``; DPIR's 24
  iterations. The low-resolution picture is padded by reflection before and cropped after, so
  the circular model does not wrap one edge onto the other.
* ``inpaint``: ``--mask FILE``: by default a white (non-zero) mask pixel marks a MISSING pixel
  (as IRCNN's masks and OpenCV's ``inpaint`` read them); ``--mask-missing black`` for the other
  convention; ``--mask zeros`` marks the pixels that are 0 in every channel of the input.
* ``demosaic``: the input is a raw Bayer mosaic saved as a one-channel image (each pixel the one
  colour sample of its site; ``--pattern`` RGGB (default), BGGR, GRBG or GBRG names the 2x2 tile,
  :mod:`dynpnp_jax.demosaic`); the output is RGB. The benchmark's loop (``dpir`` with
  ``demosaic.Bayer``, FFDNet-colour, 40 iterations, started from Malvar-He-Cutler); at noise 0
  the observed samples are put back. ``--x8`` is off by default here as for the other tasks
  (the benchmark runs it). ``--noise auto``: the mean of the estimates on the four Bayer
  sub-images (one colour each); fine texture reads as noise there, so a clean raw file wants
  ``--noise 0`` (docs/restore.md).

The noise level (``--noise``, in 8-bit units: 2.55 means 1 % of the full range, also for 16-bit
files) is estimated from each picture by default (``--noise auto``,
``dynpnp_jax.noise_estimation.estimate_noise_level``); for deblurring it is then raised for
kernel error (``--effective-noise auto``, ``dynpnp_jax.effective_noise``).

Files: PNG, JPEG, TIFF, BMP, 8 or 16 bits per channel, gray or colour (alpha is dropped). The
output keeps the input's size, channels and bit depth where its format can (JPEG input: a folder
output gets an 8-bit PNG, said per file). Outputs are written atomically (temporary file +
``os.replace``), never over an input, and over an existing file only with ``--overwrite``.
Everything is checked before the first picture is restored, so bad input leaves no output.
Exit status: 0 done, 2 bad input (the message names the file or argument and the fix),
1 a failure while restoring, 130 interrupted (finished outputs stay).
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import dynpnp_jax as dp

from . import demosaic, imageio, kernels
from .data.degradations import DEFAULTS
from .effective_noise import effective_noise_level
from .networks import Network
from .noise_estimation import estimate_noise_level
from .operators import Blur, Downsample, Mask
from . import saturation as sat
from .weights import get_spec, load_network

TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")
SATURATION = ("auto", sat.OFF)  # deblur: clipped pixels as lower bounds, or fitted (solver's saturation)
DEMOSAIC_ONLY = ("mhc", "bilinear")  # demosaic: an interpolation alone (demosaic.malvar/bilinear)
EFFECTIVE = ("auto", "off")  # deblur, --noise auto: sensor noise + kernel error, or sensor only
# solver iterations per task: DPIR's, as the benchmark runs them (one owner: degradations.DEFAULTS)
ITERS = {task: d["iters"] for task, d in DEFAULTS.items()}
#: option -> the tasks it applies to (the one rule: the command line and restore_photo ask it)
OPTION_TASKS = {"--kernel": ("deblur", "sr"), "--scale": ("sr",), "--mask": ("inpaint",),
                "--calibrate": ("deblur",), "--saturation": ("deblur",),
                "--pattern": ("demosaic",), "--demosaic-only": ("demosaic",)}


def check_task_options(task: str, **given) -> None:
    """A RestoreError for an option given (not None / False) to a task it does not apply to
    (:data:`OPTION_TASKS`); ``given``: option name without dashes, ``_`` for ``-``."""
    for name, val in given.items():
        flag = "--" + name.replace("_", "-")
        tasks = OPTION_TASKS[flag]
        if val is not None and val is not False and not (isinstance(val, str) and not val) \
                and task not in tasks:
            raise RestoreError(f"{flag} applies to --task {' or '.join(tasks)} only, not {task}; "
                               f"fix: drop {flag}")
AUTO_TILE_SIDE = 1024   # a working image with a side above this runs the prior on tiles
AUTO_TILE = 512
SR_PAD = 8              # low-resolution pixels of reflection padding (plus the kernel's reach)
MAX_NOISE = 100.0       # 8-bit units
NOISE_FLOOR = 1.0       # 8-bit units: the least noise level --noise auto hands deblur and sr
MAX_RETRIES = 3         # --noise auto: a diverged loop is run again at twice the level, this often

__all__ = ["restore_photo", "main", "RestoreError", "read_mask", "estimate_noise"]


class RestoreError(ValueError):
    """Bad input for the restore command or :func:`restore_photo` (names it and the fix)."""


# ------------------------------------------------------------------------------- inputs
def parse_noise(text) -> Optional[float]:
    """``'auto'`` -> None, else a noise level in 8-bit units (finite, 0 <= level <= 100)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "auto"):
        return None
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise RestoreError(f"--noise {text!r}: expected a number (the noise std in 8-bit units, "
                           "e.g. 5) or 'auto'; fix: --noise 5 or --noise auto") from None
    if not math.isfinite(v) or v < 0:
        raise RestoreError(f"--noise {text}: expected a finite noise level >= 0 in 8-bit units; "
                           "fix: e.g. --noise 2.55 (1 % of the range), or --noise auto")
    if v > MAX_NOISE:
        raise RestoreError(f"--noise {text}: above {MAX_NOISE:g} (8-bit units: 255 is the full "
                           "range); fix: give the std in 8-bit units, e.g. --noise 15")
    return v


def load_kernel(spec: str, where: str = "--kernel") -> np.ndarray:
    """One kernel from a spec (``bicubic:2``, ``gauss:1.6``, ``levin:3``, ...) or a file (PNG,
    NPY, MAT; gray, normalised to sum 1) via :func:`dynpnp_jax.kernels.parse_kernel`."""
    try:
        found = kernels.parse_kernel(spec)
    except FileNotFoundError as err:
        raise RestoreError(f"{where} {spec}: {err}") from None
    except (ValueError, OSError) as err:
        raise RestoreError(f"{where} {spec}: {err}") from None
    if len(found) != 1:
        raise RestoreError(f"{where} {spec}: names {len(found)} kernels; expected one; fix: e.g. "
                           f"{found[0][0]}")
    return _checked_kernel(np.asarray(found[0][1], np.float32), f"{where} {spec}")


def _checked_kernel(k: np.ndarray, where: str) -> np.ndarray:
    """``k`` after the operators' own value checks (finite, mostly non-negative, sum 1)."""
    try:
        Blur.from_kernel(k, 1)
    except ValueError as err:
        raise RestoreError(f"{where}: {err}") from None
    return k


def read_mask(path, shape, *, missing: str = "white", image=None, where: str = "--mask"
              ) -> np.ndarray:
    """A mask file as ``(H, W)`` float32, 1 = observed, 0 = missing (the library's ``Mask``).

    ``missing='white'``: non-zero (white) mask pixels are the missing ones (IRCNN's masks,
    OpenCV's inpaint); ``'black'``: zero pixels are. ``path='zeros'``: the pixels that are 0 in
    every channel of ``image`` (a picture whose holes were set to black). The mask is
    thresholded at half its range; a mask with many grey pixels, of another size than the
    picture, or marking every pixel is an error."""
    h, w = shape
    if str(path) == "zeros":
        if image is None:
            raise RestoreError(f"{where} zeros needs the image")
        return (np.asarray(image)[0].max(axis=-1) > 0).astype(np.float32)
    try:
        m, info = imageio.read_image(path)
    except (FileNotFoundError, imageio.ImageReadError) as err:
        raise RestoreError(f"{where} {path}: {err}") from None
    if (info.height, info.width) != (h, w):
        raise RestoreError(f"{where} {path}: a {info.height}x{info.width} mask for a {h}x{w} "
                           "picture; expected the picture's size; fix: make the mask at the "
                           "picture's size (one mask pixel per picture pixel)")
    m = m[0].max(axis=-1)
    grey = float(np.mean((m > 0.1) & (m < 0.9)))
    if grey > 0.05:
        raise RestoreError(f"{where} {path}: {100 * grey:.0f} % of the mask's pixels are grey "
                           "(between 10 % and 90 %); expected a black-and-white mask; fix: "
                           "threshold it (white = missing by default, see --mask-missing)")
    marked = m >= 0.5
    observed = ~marked if missing == "white" else marked
    if not observed.any():
        raise RestoreError(f"{where} {path}: every pixel is marked missing (--mask-missing "
                           f"{missing}); fix: --mask-missing {'black' if missing == 'white' else 'white'} "
                           "if the mask marks the pixels to keep")
    return observed.astype(np.float32)


def estimate_noise(y: np.ndarray) -> float:
    """The noise std of ``y`` ((1, H, W, C) in [0, 1]) in 8-bit units, by
    ``dynpnp_jax.noise_estimation.estimate_noise_level``."""
    s = np.asarray(estimate_noise_level(np.asarray(y, np.float32)), np.float64).reshape(-1)
    if s.size != 1 or not np.isfinite(s[0]) or s[0] < 0:
        raise FloatingPointError(f"noise estimation returned {s.tolist()}; expected one finite "
                                 "std >= 0")
    return float(s[0]) * 255.0


def estimate_mosaic_noise(cfa: np.ndarray) -> float:
    """The noise std of a raw Bayer mosaic ``cfa`` ((1, H, W, 1) in [0, 1]) in 8-bit units: the
    mean of :func:`estimate_noise` on its four sub-images ``cfa[i::2, j::2]`` (H/2 x W/2, one
    colour each, so the mosaic's colour pattern is not taken for noise)."""
    cfa = np.asarray(cfa, np.float32)
    return float(np.mean([estimate_noise(cfa[:, i::2, j::2]) for i in (0, 1) for j in (0, 1)]))


def check_mosaic(channels: int, where: str = "the picture", equal: bool = False) -> None:
    """A RestoreError unless the demosaic input has one channel (the raw mosaic)."""
    if channels == 1:
        return
    why = (" (its channels are equal: a mosaic saved as gray-in-RGB? save it as a one-channel "
           "image)" if equal else "")
    raise RestoreError(f"--task demosaic takes the raw Bayer mosaic as a one-channel image (each "
                       f"pixel the one colour sample of its site), but {where} has {channels} "
                       f"channels{why}; a colour picture is already demosaiced. Fix: give the "
                       "raw one-channel mosaic (8- or 16-bit PNG/TIFF), or use --task denoise "
                       "for a colour picture")


# -------------------------------------------------------------------- progress per iteration
_TICK = [None]


def _tick():
    fn = _TICK[0]
    if fn is not None:
        fn()


_TICKING_CLASS = []


def _ticking(net):
    """``net`` whose every prior call (one per iteration) advances the current progress bar
    (a ``jax.debug.callback``; the bar is module state, so a cached program stays valid)."""
    if not _TICKING_CLASS:
        import jax
        from flax import struct

        @struct.dataclass
        class TickingNetwork(Network):
            def apply(self, x, sigma=None):
                jax.debug.callback(_tick)
                return Network.apply(self, x, sigma)

        _TICKING_CLASS.append(TickingNetwork)
    fields = {f.name: getattr(net, f.name) for f in dataclasses.fields(net)}
    return _TICKING_CLASS[0](**fields)


# ------------------------------------------------------------------------------ the work
def _network(prior, channels: int, tile: Optional[int], side: int, where: str = "--prior"):
    if isinstance(prior, Network):
        net = prior
    else:
        name = prior or ("ffdnet-color" if channels == 3 else "ffdnet-gray")
        net = load_network(name)
    check_prior_channels(net.channels, net.name, channels, where)
    if tile is None:
        tile = AUTO_TILE if side > AUTO_TILE_SIDE else 0
    if tile:
        rf = net.receptive_field
        overlap = 2 * rf + 8
        tile = max(int(tile), overlap + 2)
        tile += (-tile) % max(net.multiple, 1)
        try:
            net = net.tiled(tile, overlap=overlap)
        except ValueError as err:
            raise RestoreError(f"--tile {tile}: {err}") from None
    return net


def check_prior_channels(net_channels: int, name: str, channels: int, where="--prior",
                         what: str = "the picture") -> None:
    kind = {1: "gray", 3: "colour"}
    if net_channels != channels:
        other = "ffdnet-color" if channels == 3 else "ffdnet-gray"
        raise RestoreError(
            f"{where} {name}: takes {kind.get(net_channels, net_channels)} ({net_channels}-channel) "
            f"images but {what} is {kind.get(channels, channels)} ({channels} channel(s)); colour "
            f"stays colour here. Fix: --prior {other} (or leave --prior out: the default fits), "
            "or convert the picture first")


def _validate_kernel_fits(k: np.ndarray, h: int, w: int, where: str):
    if k.shape[0] > h or k.shape[1] > w:
        raise RestoreError(f"{where}: a {k.shape[0]}x{k.shape[1]} kernel is larger than the "
                           f"{h}x{w} picture; expected a kernel no larger than the picture; fix: "
                           "check that the kernel belongs to this picture (or crop it to its "
                           "support)")


def _check_scale(scale, kernel_spec: Optional[str]) -> int:
    if scale is None:
        raise RestoreError("--task sr needs --scale S (an integer 2..8, the up-sampling factor); "
                           "fix: e.g. --scale 2")
    if isinstance(scale, bool) or int(scale) != scale or not 2 <= int(scale) <= 8:
        raise RestoreError(f"--scale {scale}: expected an integer from 2 to 8; fix: e.g. --scale 2")
    scale = int(scale)
    if kernel_spec and kernel_spec.strip().lower().startswith("bicubic:"):
        ks = kernel_spec.strip().split(":", 1)[1]
        if ks.strip() != str(scale):
            raise RestoreError(f"--scale {scale} does not fit --kernel {kernel_spec}: the bicubic "
                               f"kernel is made for x{ks}; fix: --kernel bicubic:{scale} (or "
                               f"leave --kernel out) or --scale {ks}")
    return scale


def restore_photo(x, task: str, *, noise="auto", kernel=None, scale: Optional[int] = None,
                  mask=None, mask_missing: str = "white", prior=None, iters: Optional[int] = None,
                  calibrate: bool = False, x8: bool = False, boundary: str = "unknown",
                  tile: Optional[int] = None, progress: bool = False,
                  noise_floor: float = NOISE_FLOOR, saturation: Optional[str] = None,
                  effective_noise: str = "auto", pattern: Optional[str] = None,
                  demosaic_only: Optional[str] = None):
    """Restore one picture (``(1, H, W, C)`` float32 in [0, 1], e.g. from
    :func:`dynpnp_jax.imageio.read_image`).

    Args:
      task: ``'denoise'``, ``'deblur'``, ``'sr'``, ``'inpaint'`` or ``'demosaic'`` (``x``: the
        raw Bayer mosaic, one channel; the result is RGB).
      noise: the noise std in 8-bit units, or ``'auto'`` (estimated from ``x``).
      kernel: deblur / sr: a ``(kh, kw)`` array, a kernel file or a spec (``'bicubic:2'``,
        ``'gauss:1.6'``); sr defaults to ``bicubic:scale``.
      scale: sr: the up-sampling factor (2..8).
      mask: inpaint: a mask file, ``'zeros'``, or an ``(H, W)`` array with 1 = observed.
      mask_missing: for a mask file: ``'white'`` (default: non-zero marks missing) or ``'black'``.
      prior: a network name or :class:`~dynpnp_jax.Network` (default ``ffdnet-color`` /
        ``ffdnet-gray`` by the channels).
      iters: solver iterations (default: deblur 8, sr 24, inpaint 8, demosaic 40).
      pattern: demosaic: the Bayer pattern, ``'RGGB'`` (default), ``'BGGR'``, ``'GRBG'`` or
        ``'GBRG'`` (:data:`dynpnp_jax.demosaic.PATTERNS`). Other tasks: ``None`` only.
      demosaic_only: demosaic: ``'mhc'`` (Malvar-He-Cutler) or ``'bilinear'``: that
        interpolation alone, no prior and no loop (``noise`` is not used).
      calibrate: deblur: re-choose the kernel inside the loop (``calibrated`` mode).
      x8: geometric self-ensemble of the prior (deblur, sr, inpaint, demosaic).
      boundary: deblur: ``'unknown'`` (a photograph) or ``'circular'``.
      tile: run the prior on tiles of this size (0: never; None: when a side exceeds 1024).
      progress: a progress bar over the iterations.
      saturation: deblur: ``'auto'`` (default: pixels of ``y`` at the clipping level -- lamps,
        highlights -- are lower bounds, not data:
        ``make_config(saturation='auto')``, the one-sided clipped model; a no-op on a picture
        with nothing clipped; ``report['clipped']``: the fraction of such values) or ``'off'``.
        Other tasks: ``None`` only.
      noise_floor: deblur / sr with ``noise='auto'``: the level handed to the solver is at least
        this (8-bit units; default 1, the least level IRCNN set by hand on its real pictures).
        A photograph's data misfit is more than its sensor noise (kernel error, JPEG, saturated
        lights), and the estimate of a compressed picture is often far below 1: DPIR's loop at
        such a level amplifies that misfit (measured: 26.blurred, estimate 0.36, diverged).
        If the loop still diverges (the solver's range check: the result far outside the data's
        range, e.g. ringing around saturated lights), an auto level is doubled and the picture
        restored again, at most 3 times; ``report['retries']`` lists the levels that diverged.
        A given level is never changed: the error says so.
      effective_noise: deblur with ``noise='auto'``: ``'auto'`` (default) hands the loop the
        effective level of :func:`dynpnp_jax.effective_noise.effective_noise_level` (the sensor
        estimate, floored, raised by what a pilot fit with the kernel says about kernel error;
        ``report['noise_sensor']`` and ``report['noise_effective']`` hold both, with the pilot's
        statistics in ``report['effective']``); ``'off'``: the floored sensor estimate.

    Returns:
      ``(restored, report)``: the restored picture (``(1, H', W', C)``: the input's size, or
      ``scale`` times it for sr; RGB for demosaic) and a dict (``noise`` in 8-bit units, ``noise_source``,
      ``seconds``, ``iters``, ``prior``, ``kernel`` (the kernel used, deblur/sr), ``tile``).
    """
    import jax.numpy as jnp

    t0 = time.perf_counter()
    if task not in TASKS:
        raise RestoreError(f"task {task!r}: expected one of {TASKS}")
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[-1] not in (1, 3):
        raise RestoreError(f"x: expected one picture (1, H, W, C) with C = 1 or 3, got shape "
                           f"{x.shape}; fix: imageio.read_image gives that shape")
    _, h, w, c = x.shape
    check_task_options(task, kernel=kernel, scale=scale, mask=mask, calibrate=calibrate,
                       saturation=saturation, pattern=pattern, demosaic_only=demosaic_only)
    if saturation is None:
        saturation = "auto" if task == "deblur" else sat.OFF
    if saturation not in SATURATION:
        raise RestoreError(f"--saturation {saturation!r}: expected one of {SATURATION}")
    if effective_noise not in EFFECTIVE:
        raise RestoreError(f"--effective-noise {effective_noise!r}: expected one of {EFFECTIVE}")
    if boundary not in ("unknown", "circular"):
        raise RestoreError(f"--boundary {boundary}: expected 'unknown' (a photograph) or "
                           "'circular' (a periodic, synthetic blur)")
    if demosaic_only is not None and demosaic_only not in DEMOSAIC_ONLY:
        raise RestoreError(f"--demosaic-only {demosaic_only}: expected one of {DEMOSAIC_ONLY}")
    if task == "demosaic":
        check_mosaic(c, f"x (shape {x.shape})")
        try:
            pattern = demosaic.check_pattern(pattern or "RGGB")
        except ValueError as err:
            raise RestoreError(f"--pattern: {err}") from None
        if min(h, w) < 3:
            raise RestoreError(f"a {h}x{w} mosaic: expected at least 3 pixels a side (the "
                               "interpolation's reflected border); fix: a larger picture")
    level = parse_noise(noise) if not isinstance(noise, (int, float)) else parse_noise(str(noise))
    report = {"task": task, "iters": 1 if task == "denoise" else (iters or ITERS[task])}
    y = x
    op = None
    if task in ("deblur", "sr"):
        if task == "sr":
            scale = _check_scale(scale, kernel if isinstance(kernel, str) else None)
            if kernel is None:
                kernel = f"bicubic:{scale}"
        elif kernel is None:
            raise RestoreError("--task deblur needs --kernel FILE|SPEC (the blur kernel: a PNG/"
                               "NPY/MAT file or e.g. gauss:1.6, motion:15,45); fix: add --kernel")
        k = load_kernel(kernel) if isinstance(kernel, (str, os.PathLike)) else \
            load_kernel_array(kernel)
        report["kernel"] = k
    if task == "deblur":
        _validate_kernel_fits(k, h, w, "--kernel")
    if task == "inpaint":
        if mask is None:
            raise RestoreError("--task inpaint needs --mask FILE (white = missing by default) or "
                               "--mask zeros; fix: add --mask")
        if isinstance(mask, (str, os.PathLike)):
            m = read_mask(mask, (h, w), missing=mask_missing, image=x)
        else:
            m = np.asarray(mask, np.float32)
            if m.shape != (h, w):
                raise RestoreError(f"mask: shape {m.shape} for a {h}x{w} picture; expected "
                                   f"({h}, {w}) with 1 = observed, 0 = missing")
        report["missing"] = float(1 - m.mean())
        op = Mask.from_mask(m[..., None], 1)
        y = x * m[None, :, :, None]
    if task == "demosaic":
        op = demosaic.Bayer.from_pattern(h, w, pattern, 1)
        y = (np.asarray(op.m) * x).astype(np.float32)  # the (1, H, W, 3) mosaic, m * x
        c = 3
        report["pattern"] = pattern
        if demosaic_only is not None:
            fn = {"mhc": demosaic.malvar, "bilinear": demosaic.bilinear}[demosaic_only]
            out = np.asarray(fn(x[0, ..., 0], pattern))[None]
            report.update(iters=0, noise=0.0, noise_source=f"not used (--demosaic-only "
                          f"{demosaic_only})", prior=demosaic_only, tile=0,
                          seconds=time.perf_counter() - t0)
            return out, report
    # noise level
    if level is None:
        if task == "demosaic":
            level = estimate_mosaic_noise(x)
        else:
            probe = np.asarray(op.initial(jnp.asarray(y))) if task == "inpaint" else y
            level = estimate_noise(probe)
        report["noise_estimate"] = level
        report["noise_source"] = "auto"
        if task in ("deblur", "sr") and level < noise_floor:
            level = float(noise_floor)
            report["noise_source"] = f"auto: estimate {report['noise_estimate']:.2f}, floor"
        if task == "deblur":
            report["noise_sensor"] = level
    else:
        report["noise_source"] = "given"
    report["noise"] = level
    # the working image and its operator
    pad = 0
    if task == "sr":
        lr_reach = -(-max(k.shape) // (2 * scale))
        pad = min(SR_PAD + lr_reach, h - 1, w - 1)
        y = taper_pad(y, pad)
        _validate_kernel_fits(k, y.shape[1] * scale, y.shape[2] * scale, "--kernel")
        op = Downsample.from_kernel(k, scale, 1)
    elif task == "deblur":
        op = Blur.from_kernel(k, 1, boundary=boundary)
        if sat.is_on(saturation):  # the values the loop takes as lower bounds, not as data
            report["clipped"] = float(sat.saturated_fraction(y)[0])
    side = max(y.shape[1:3]) * (scale if task == "sr" else 1)
    if task == "deblur" and boundary == "unknown":
        side += max(k.shape)
    net = _network(prior, c, tile, side)
    report.update(prior=net.name, tile=net.tile)
    if task == "deblur" and "noise_sensor" in report and effective_noise == "auto":
        # the loop's level: sensor noise plus kernel error (dynpnp_jax.effective_noise)
        try:
            eff = effective_noise_level(y, k, sensor=report["noise_sensor"], prior=net,
                                        boundary=boundary, saturation=saturation,
                                        iters=report["iters"])
        except ValueError as err:
            raise RestoreError(f"effective noise level: {err}") from None
        report["effective"] = eff.as_dict()
        level = eff.sigma
        report["noise"] = report["noise_effective"] = level
        src = report["noise_source"]
        if src == "auto":
            src = f"auto: estimate {report['noise_estimate']:.2f}"
        report["noise_source"] = (f"{src}, effective x{eff.ratio:.2f} for kernel error "
                                  f"(pilot R {eff.r:.2f})")
    bar = None
    if progress and task != "denoise":
        from tqdm.auto import tqdm

        bar = tqdm(total=report["iters"], desc="  iterations", unit="it", leave=False)
        net = _ticking(net)
        _TICK[0] = bar.update

    def run(sigma):
        if task == "denoise":
            cfg = dp.make_config("prior", sigma=sigma)
            params = {"prior": net}
        else:
            mode = "calibrated" if (task == "deblur" and calibrate) else "dpir"
            kw = {"boundary": boundary, "saturation": saturation} if task == "deblur" else {}
            cfg = dp.make_config(mode, report["iters"], noise_level=sigma, ensemble=bool(x8),
                                 keep_images=False, **kw)
            params = {"prior": net, "A": op}
        return dp.restore(params, jnp.asarray(y), cfg)

    try:
        while True:
            try:
                out, traj = run(level / 255.0)
                break
            except FloatingPointError as err:
                # auto level only: a diverged loop (the solver's own range check) is run again
                # at twice the level, said in the report and by the command, at most 3 times
                if report["noise_source"] == "given" or "diverged" not in str(err) or \
                        len(report.get("retries", [])) >= MAX_RETRIES or task == "denoise":
                    raise
                report.setdefault("retries", []).append(level)
                level = max(2 * level, NOISE_FLOOR)
                report["noise"] = level
                report["noise_source"] += f", diverged at {report['retries'][-1]:.2f}"
                if bar is not None:
                    bar.reset()
        out = np.asarray(out)
    finally:
        _TICK[0] = None
        if bar is not None:
            bar.close()
    if pad:
        s = pad * scale
        out = out[:, s:out.shape[1] - s, s:out.shape[2] - s]
    if task == "deblur" and calibrate and traj.kernel is not None:
        report["kernel"] = np.asarray(traj.kernel)[0]
    if task == "demosaic" and level == 0:
        # noiseless samples are the truth: put them back (DPIR's x[mask] = y[mask], as the
        # benchmark's degradations.Dpir.finalize)
        out = np.where(np.asarray(op.m) > 0.5, y, out)
    if not np.isfinite(out).all():
        raise FloatingPointError("the restored picture is not finite; nothing was written")
    report["seconds"] = time.perf_counter() - t0
    return out, report


def taper_pad(y: np.ndarray, pad: int) -> np.ndarray:
    """``y`` padded by reflection, the padding faded (raised cosine, frame edge -> outer edge)
    into a wide circular blur of itself: the padded picture wraps around smoothly, so the
    periodic SR model sees no jump at its seam (a plain reflection leaves one at the outer edge,
    and with a motion kernel 24 iterations rang from it into the frame: LR1_motion_x2). The
    frame itself is unchanged; it is cropped back after restoring."""
    from scipy import ndimage

    yp = np.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    if pad == 0:
        return yp
    smooth = ndimage.gaussian_filter(yp, sigma=(0, pad / 2, pad / 2, 0), mode="wrap")

    def ramp(n):
        t = np.ones(n + 2 * pad)
        fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(pad) + 0.5) / pad)  # 0 -> 1 inwards
        t[:pad], t[n + pad:] = fade, fade[::-1]
        return t

    wgt = np.outer(ramp(y.shape[1]), ramp(y.shape[2]))[None, :, :, None]
    return (smooth + wgt * (yp - smooth)).astype(np.float32)


def load_kernel_array(k) -> np.ndarray:
    """A ``(kh, kw)`` kernel array, normalised to sum 1 and checked."""
    k = np.asarray(k, np.float64)
    if k.ndim != 2:
        raise RestoreError(f"kernel: expected a (kh, kw) array, got shape {k.shape}")
    if not np.isfinite(k).all() or k.sum() <= 0:
        raise RestoreError("kernel: expected finite values with a positive sum (a blur kernel); "
                           "fix: check the kernel's sign and values")
    return _checked_kernel((k / k.sum()).astype(np.float32), "kernel")


# ---------------------------------------------------------------------------------- CLI
@dataclasses.dataclass
class Job:
    src: Path
    dst: Path
    kernel: Optional[str] = None
    mask: Optional[str] = None
    note: str = ""


def _per_file(pattern: Optional[str], src: Path) -> Optional[str]:
    """``{stem}``/``{name}`` patterns, relative to the input's folder; else the value itself."""
    if pattern is None or ("{stem}" not in pattern and "{name}" not in pattern):
        return pattern
    value = pattern.replace("{stem}", src.stem).replace("{name}", src.name)
    p = Path(value)
    return str(p if p.is_absolute() else src.parent / p)


def _pattern_glob(pattern: Optional[str]) -> Optional[str]:
    if pattern is None or ("{stem}" not in pattern and "{name}" not in pattern):
        return None
    return Path(pattern.replace("{stem}", "*").replace("{name}", "*")).name


def collect_inputs(inputs: Sequence[str], exclude: Sequence[str], patterns: Sequence[str]
                   ) -> list[Path]:
    """The input files: files as given, folders' images (sorted), without ``exclude`` globs and
    without the files a ``{stem}`` pattern (kernels, masks) would name."""
    skip = list(exclude) + [g for g in (_pattern_glob(p) for p in patterns) if g]
    out = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = [f for f in sorted(p.iterdir(), key=lambda f: f.name)
                     if f.is_file() and f.suffix.lower() in imageio.IMAGE_SUFFIXES
                     and not any(fnmatch.fnmatch(f.name, g) for g in skip)]
            if not found:
                raise RestoreError(f"input folder {str(p)!r} holds no picture (PNG, JPEG, TIFF, "
                                   "BMP) after the exclusions; fix: check the folder or --exclude")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise RestoreError(f"input {str(p)!r} not found; fix: check the path")
    return out


def plan_outputs(srcs: list[Path], out: str, ext: Optional[str]) -> list[tuple[Path, Path, str]]:
    """(input, output, note) per input: ``-o FILE`` for one input, ``-o DIR`` otherwise."""
    o = Path(out).expanduser()
    is_file = (len(srcs) == 1 and not o.is_dir() and o.suffix.lower() in imageio.FORMATS
               and not out.endswith(os.sep))
    if ext is not None and not ext.startswith("."):
        ext = "." + ext
    if ext is not None and ext.lower() not in imageio.FORMATS:
        raise RestoreError(f"--ext {ext}: expected one of {', '.join(sorted(imageio.FORMATS))}")
    if len(srcs) > 1 and o.suffix.lower() in imageio.FORMATS and not o.is_dir():
        raise RestoreError(f"-o {out}: names one picture but {len(srcs)} inputs were given; fix: "
                           "-o a folder (created if missing)")
    plans = []
    for s in srcs:
        in_fmt = imageio.FORMATS.get(s.suffix.lower())
        if is_file:
            dst = o
        else:
            suffix = ext or (".png" if in_fmt == "JPEG" else s.suffix.lower())
            dst = o / (s.stem + suffix)
        out_fmt = imageio.output_format(dst)
        note = ""
        if out_fmt == "JPEG":
            note = "JPEG output: 8-bit, quality 95 (lossy)"
        elif in_fmt == "JPEG":
            note = f"JPEG input: writing an 8-bit {out_fmt} (lossless; --ext .jpg for JPEG)"
        plans.append((s, dst, note))
    return plans


def _probe_writable(folder: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dynpnp-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise RestoreError(f"-o: cannot write in folder {str(folder)!r} ({err.strerror}; "
                           "read-only?); fix: choose a writable output folder") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dynpnp_jax.restore",
        description="Restore your own pictures: denoise, deblur (known kernel), super-resolve, "
                    "inpaint, demosaic (a raw Bayer mosaic -> RGB). PNG/JPEG/TIFF/BMP, 8 or 16 bits, gray or colour; outputs keep the "
                    "input's size, channels and bit depth.",
        epilog="Examples: python -m dynpnp_jax.restore blurry.png -o sharp.png --task deblur "
               "--kernel blurry_kernel.png  |  python -m dynpnp_jax.restore photos/ -o out/ "
               "--task deblur --kernel '{stem}_kernel.png' --exclude '*_ircnn*'. "
               "Documentation: docs/restore.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="picture file(s) or folder(s)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input; the suffix picks the format) or folder")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--noise", default="auto",
                   help="noise std in 8-bit units (e.g. 5), or 'auto' (default: estimated)")
    p.add_argument("--kernel", help="deblur/sr: a kernel file (PNG/NPY/MAT; gray, normalised to "
                   "sum 1) or spec (gauss:1.6, motion:15,45, levin:3, bicubic:2); '{stem}' is "
                   "replaced per input (e.g. '{stem}_kernel.png', beside the input)")
    p.add_argument("--scale", type=int, help="sr: up-sampling factor 2..8")
    p.add_argument("--mask", help="inpaint: mask file ('{stem}' per input) or 'zeros'")
    p.add_argument("--pattern", type=str.upper, choices=demosaic.PATTERNS, default=None,
                   help="demosaic: the Bayer pattern of the raw mosaic, the 2x2 tile row by row "
                        "(default RGGB)")
    p.add_argument("--demosaic-only", choices=DEMOSAIC_ONLY,
                   help="demosaic: the interpolation alone, no prior (mhc: Malvar-He-Cutler, the "
                        "loop's start; bilinear)")
    p.add_argument("--mask-missing", choices=("white", "black"), default="white",
                   help="which mask pixels are MISSING (default white, i.e. non-zero)")
    p.add_argument("--noise-floor", type=float, default=NOISE_FLOOR,
                   help=f"deblur/sr with --noise auto: the least noise level used (8-bit units, "
                        f"default {NOISE_FLOOR:g}; real pictures misfit their model by more than "
                        "their sensor noise)")
    p.add_argument("--effective-noise", choices=EFFECTIVE, default="auto",
                   help="deblur with --noise auto: 'auto' (default) raises the sensor estimate "
                        "by the kernel error a pilot fit finds (dynpnp_jax.effective_noise); "
                        "'off': the sensor estimate (with the floor) only")
    p.add_argument("--boundary", choices=("unknown", "circular"), default="unknown",
                   help="deblur: 'unknown' for a photograph (default), 'circular' for a "
                        "periodic synthetic blur")
    p.add_argument("--saturation", choices=SATURATION, default=None,
                   help="deblur: 'auto' (default) treats pixels at the clipping level (lamps, "
                        "highlights) as lower bounds (the true blurred value is at least the "
                        "ceiling); 'off' fits them as data")
    p.add_argument("--calibrate", action="store_true",
                   help="deblur: re-choose the kernel inside the loop (calibrated mode)")
    p.add_argument("--iters", type=int, help="iterations (default: deblur 8, sr 24, inpaint 8, "
                   "demosaic 40)")
    p.add_argument("--x8", action="store_true", help="x8 geometric self-ensemble of the prior")
    p.add_argument("--prior", help="network name (default ffdnet-color / ffdnet-gray by the "
                   "picture's channels)")
    p.add_argument("--tile", type=int, help="run the prior on tiles of this size (0: never; "
                   f"default: {AUTO_TILE} when a side exceeds {AUTO_TILE_SIDE})")
    p.add_argument("--bits", type=int, choices=(8, 16),
                   help="output bit depth (default: the input's, where the format holds it)")
    p.add_argument("--ext", help="folder output: the files' suffix (default: the input's; "
                   "JPEG input -> .png)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="folder input: skip files matching GLOB (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--log", metavar="FILE.jsonl",
                   help="append one JSON record per finished picture (input, output, noise, "
                        "seconds, prior, tile, kernel size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _preflight(args) -> list[Job]:
    """Every check that can fail before any output is written."""
    level = parse_noise(args.noise)
    f = args.noise_floor
    if not math.isfinite(f) or not 0 <= f <= MAX_NOISE:
        raise RestoreError(f"--noise-floor {f}: expected a finite level from 0 to {MAX_NOISE:g} "
                           "in 8-bit units; fix: e.g. --noise-floor 1 (0 turns it off)")
    if args.iters is not None and args.iters < 1:
        raise RestoreError(f"--iters {args.iters}: expected a positive integer; fix: e.g. --iters 8")
    if args.tile is not None and args.tile < 0:
        raise RestoreError(f"--tile {args.tile}: expected 0 (never) or a tile size in pixels")
    check_task_options(args.task, kernel=args.kernel, scale=args.scale, mask=args.mask,
                       calibrate=args.calibrate, saturation=args.saturation,
                       pattern=args.pattern, demosaic_only=args.demosaic_only)
    if args.task == "sr":
        _check_scale(args.scale, args.kernel)
    if args.task == "deblur" and not args.kernel:
        raise RestoreError("--task deblur needs --kernel FILE|SPEC (e.g. blurry_kernel.png, or "
                           "'{stem}_kernel.png' per input); fix: add --kernel")
    if args.task == "inpaint" and not args.mask:
        raise RestoreError("--task inpaint needs --mask FILE (white = missing by default) or "
                           "--mask zeros; fix: add --mask")
    srcs = collect_inputs(args.inputs, args.exclude, [args.kernel or "", args.mask or ""])
    plans = plan_outputs(srcs, args.output, args.ext)
    resolved_inputs = {s.resolve() for s in srcs}
    seen = {}
    jobs = []
    kernels_seen = {}
    nets = {}
    for src, dst, note in plans:
        if dst.resolve() in resolved_inputs:
            raise RestoreError(f"-o {args.output}: the output {str(dst)!r} is an input file; "
                               "restore never overwrites its input. Fix: -o another file or "
                               "folder")
        if dst.resolve() in seen:
            raise RestoreError(f"inputs {str(seen[dst.resolve()])!r} and {str(src)!r} would both "
                               f"write {str(dst)!r}; fix: --ext, or restore them separately")
        seen[dst.resolve()] = src
        if dst.exists() and not args.overwrite:
            raise RestoreError(f"output {str(dst)!r} exists; fix: --overwrite to replace it, or "
                               "-o another path")
        if dst.is_dir():
            raise RestoreError(f"output {str(dst)!r} is a folder")
        try:
            x, info = imageio.read_image(src)
        except (FileNotFoundError, imageio.ImageReadError) as err:
            raise RestoreError(str(err)) from None
        h, w = info.height, info.width
        channels = info.channels
        if args.task == "demosaic":
            check_mosaic(channels, str(src), equal=channels == 3 and bool(
                np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])))
            if min(h, w) < 3:
                raise RestoreError(f"{src}: a {h}x{w} mosaic; expected at least 3 pixels a side")
            channels = 3  # the restored picture: RGB
        net_name = args.prior or ("ffdnet-color" if channels == 3 else "ffdnet-gray")
        if net_name not in nets:
            try:
                nets[net_name] = get_spec(net_name).channels
            except (KeyError, ValueError) as err:
                raise RestoreError(f"--prior {net_name}: {err}") from None
        check_prior_channels(nets[net_name], net_name, channels,
                             what=(f"the RGB result of mosaic {src}" if args.task == "demosaic"
                                   else f"{src}"))
        job = Job(src, dst, _per_file(args.kernel, src), _per_file(args.mask, src), note)
        if job.kernel:
            if job.kernel not in kernels_seen:
                kernels_seen[job.kernel] = load_kernel(job.kernel)
            k = kernels_seen[job.kernel]
            if args.task == "deblur":
                _validate_kernel_fits(k, h, w, f"--kernel {job.kernel} (for {src})")
            else:
                _validate_kernel_fits(k, h * args.scale, w * args.scale,
                                      f"--kernel {job.kernel} (for {src} x{args.scale})")
        if job.mask:
            read_mask(job.mask, (h, w), missing=args.mask_missing, image=x,
                      where=f"--mask (for {src})")
        jobs.append(job)
    for folder in sorted({j.dst.parent for j in jobs}):
        if not folder.exists():
            try:
                folder.mkdir(parents=True)
            except OSError as err:
                raise RestoreError(f"-o {args.output}: cannot create folder {str(folder)!r} "
                                   f"({err.strerror}); fix: choose a writable place") from None
        _probe_writable(folder)
    del level
    return jobs


def _log(path, job: Job, rep: dict, written) -> None:
    import json

    rec = {"input": str(job.src), "output": str(job.dst), "task": rep["task"],
           "noise": round(float(rep["noise"]), 4), "noise_source": rep["noise_source"],
           "noise_estimate": (round(float(rep["noise_estimate"]), 4)
                              if "noise_estimate" in rep else None),
           "noise_sensor": (round(float(rep["noise_sensor"]), 4)
                            if "noise_sensor" in rep else None),
           "noise_effective": (round(float(rep["noise_effective"]), 4)
                               if "noise_effective" in rep else None),
           "diverged_at": rep.get("retries", []),
           "seconds": round(float(rep["seconds"]), 3), "iters": rep["iters"],
           "prior": rep["prior"], "tile": rep["tile"], "kernel_file": job.kernel,
           "mask_file": job.mask, "missing": rep.get("missing"), "clipped": rep.get("clipped"),
           "kernel_shape": list(np.shape(rep["kernel"])) if "kernel" in rep else None,
           "size": [written.height, written.width, written.channels], "bits": written.bits}
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        jobs = _preflight(args)
    except RestoreError as err:
        print(f"restore: error: {err}", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm

    done, failed = [], []
    bar = tqdm(jobs, desc="pictures", unit="file", disable=args.no_progress or len(jobs) < 2)
    try:
        for job in bar:
            bar.set_postfix_str(job.src.name)
            x, info = imageio.read_image(job.src)
            try:
                out, rep = restore_photo(
                    x, args.task, noise=args.noise, kernel=job.kernel, scale=args.scale,
                    mask=job.mask, mask_missing=args.mask_missing, prior=args.prior,
                    iters=args.iters, calibrate=args.calibrate, x8=args.x8,
                    boundary=args.boundary, tile=args.tile, noise_floor=args.noise_floor,
                    saturation=args.saturation, effective_noise=args.effective_noise,
                    pattern=args.pattern, demosaic_only=args.demosaic_only,
                    progress=not args.no_progress and info.height * info.width > 256 * 256)
            except RestoreError as err:
                print(f"restore: error: {job.src}: {err}", file=sys.stderr)
                return 2
            except (FloatingPointError, ValueError, MemoryError) as err:
                hint = ""
                if "diverged" in str(err):
                    hint = (" (fix: a higher --noise, e.g. twice the level, or --noise auto, "
                            "which doubles the level of a diverged loop)")
                tqdm.write(f"restore: failed on {job.src}: {type(err).__name__}: {err}{hint}; "
                           "nothing written for it, going on with the others", file=sys.stderr)
                failed.append(job.src)
                continue
            written = imageio.write_image(job.dst, out, info, bits=args.bits)
            done.append(job.dst)
            msg = (f"{job.src} -> {job.dst}: noise {rep['noise']:.2f}/255 ({rep['noise_source']}), "
                   f"{rep['seconds']:.1f} s, {written.width}x{written.height}x{written.channels} "
                   f"{written.bits}-bit {written.format}")
            if rep.get("tile"):
                msg += f", prior on {rep['tile']} px tiles"
            if rep.get("clipped"):
                msg += f", {100 * rep['clipped']:.2f} % of values clipped (taken as lower bounds)"
            if job.note:
                msg += f"; {job.note}"
            tqdm.write(msg)
            if args.log:
                _log(args.log, job, rep, written)
    except KeyboardInterrupt:
        bar.close()
        print(f"restore: interrupted after {len(done)} of {len(jobs)} picture(s); the finished "
              "outputs are kept" + (": " + ", ".join(map(str, done)) if done else "")
              + "; no partial file was written", file=sys.stderr)
        return 130
    bar.close()
    if failed:
        print(f"restore: {len(failed)} of {len(jobs)} picture(s) failed (see above): "
              + ", ".join(map(str, failed)) + f"; {len(done)} written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
