"""Evaluation protocols (docs/algorithm.md, evaluation protocols): each one owns its task -- how a dataset
example becomes a restoration problem, and how a restored output becomes the numbers a table
reports -- so the evaluation CLI never branches on the task.

The interface every protocol has (plain numpy; only the metrics call into JAX)::

    proto.condition_name                      # the axis a run iterates over: 'sigma', 'blur', ..
    conds = proto.conditions(requested)       # validated, de-duplicated conditions (or defaults)
    prob = proto.problem(example, cond)       # Problem(name, y, clean, meta, params_extra)
    scores = proto.evaluate(restored, prob.meta)   # {'psnr', 'ssim'}, or None without reference

``example`` is one dict of ``data.load_dataset`` (``image`` + ``name`` for clean sets, ``blur``
+ ``sharp`` + ``has_sharp`` + ``name`` for paired ones). ``Problem.y`` is the float32 (H, W, C)
observation the solver sees, ``clean`` the float32 image of the restored size the solver's
per-iteration PSNR compares against (None without ground truth), ``meta`` what ``evaluate``
needs, and
``params_extra`` extra solver parameters merged into ``restore``'s ``params`` (e.g. ``{'A':
Blur(k)}`` for a known degradation); a condition may be any hashable value (a noise level, a
(kernel, noise) tuple), with ``condition_key``/``condition_label`` naming it in files and tables.
``evaluate`` refuses a non-finite output (``NonFiniteOutput``): such an output is never scored.

The denoising protocols also expose their four steps, for notebooks and tuning::

    clean, meta = proto.prepare(clean_uint8, name)    # float32 (H, W, C) in [0, 1] + metadata
    noisy = proto.degrade(clean, sigma, name)         # float32, what the solver sees
    out = proto.finalize(restored, meta)              # what the metric sees
    proto.metrics(out, meta["reference"])             # {'psnr': float, 'ssim': float}

``sigma`` is on the 8-bit scale (15, 25, 50); the noise standard deviation on [0, 1] images is
``sigma / 255``.

``standard`` (DnCNN / KAIR, what published tables use):
  * prepare: ``x = float32(clean / 255)``; the reference is the clean uint8 image.
  * degrade: ``np.random.seed(0); y = x + np.random.normal(0, sigma/255, x.shape)`` for every
    image (a fresh ``RandomState(0)``, so the global NumPy state is left alone), no clipping,
    float32. The image name does not enter: every image gets the same noise field.
  * finalize: ``uint8(round(clip(out, 0, 1) * 255))`` (KAIR ``single2uint``).
  * metrics: PSNR and Gaussian SSIM (``metrics.ssim``) of the uint8 images, ``data_range=255``.

``authors`` (section 1: the paper's notebooks, WillDreamer/SND), with their noise seeded:
  * prepare: centre crop both sides to multiples of 32 (their ``crop_image(img, d=32)``:
    ``new = size - size % 32``, bbox from ``(size - new) // 2``); portrait images are turned
    landscape by the library's one rule (``validation.to_landscape``: 90 degrees
    counter-clockwise, PIL ``ROTATE_90``); gray
    images become 3 identical channels (they read them with ``convert('RGB')``). The reference
    is the cropped/rotated clean image as float32 (1 channel for gray images).
  * degrade: ``clip(x + N(0, sigma/255), 0, 1)``, float32, drawn independently for each of the
    3 channels (as theirs). Theirs was unseeded; here ``RandomState(seed)`` with ``seed`` a
    SHA-256 of (image name, sigma) only, so runs repeat and do not depend on order, batching
    or device count.
  * finalize, gray inputs: as their ``np_to_pil(v).convert('L')``: the 3-channel output is
    clipped and *truncated* to uint8 (``uint8(clip(v * 255, 0, 255))``), converted to 8-bit
    luminance by PIL (ITU-R BT.601 luma, ``sources.to_gray``), and read back as float32 / 255,
    shape (H, W, 1). A 1-channel output is treated as 3 identical channels (its luminance is
    itself, so this is plain truncation). RGB inputs: ``clip(out, 0, 1)`` float32, no
    quantisation (their ``torch.clamp``).
  * metrics: PSNR on the float images (``data_range=1``), SSIM with the 7x7 uniform window and
    sample covariance (``metrics.ssim_uniform``) at ``data_range=2``: they called
    ``compare_ssim(..., multichannel=True)`` on float32 images without ``data_range``, and old
    scikit-image then took the float dtype range (-1, 1). This inflates SSIM against
    ``data_range=1``; it is kept because the point of this protocol is their numbers.

``dpir`` (known degradations: blur, super-resolution, inpainting, demosaicing + noise, as DPIR's
scripts make them): see :mod:`dynpnp_jax.data.degradations`.

``gopro`` (motion deblurring, the paper's Table 2): one condition (the recorded blur);
``y = blur / 255`` as float32, the reference the sharp frame where there is one. Scored as
``standard`` scores: output clipped and rounded to 8 bits, PSNR and Gaussian SSIM (mean over
RGB) at ``data_range=255`` on the full frame. Frames without a sharp twin are restored and not
scored (``evaluate`` returns None). DMPHN's released outputs were truncated, not rounded.

The authors' landscape rule (their row-mix A needs W >= H: portrait images are rotated by 90
degrees counter-clockwise) has one owner, ``dynpnp_jax.validation.needs_landscape`` /
``to_landscape``; the ``authors`` protocol and the evaluation CLI both call it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Hashable, NamedTuple, Sequence

import numpy as np

from .. import metrics as M
from ..algorithms import needs_landscape
from ..validation import to_landscape
from .sources import to_gray

__all__ = ["Protocol", "Problem", "NonFiniteOutput", "Standard", "Authors", "Gopro",
           "PROTOCOLS", "get_protocol", "crop_to_multiple", "authors_seed",
           "AUTHORS_SSIM_DATA_RANGE"]

AUTHORS_SSIM_DATA_RANGE = 2.0  # old skimage dtype_range[float] = (-1, 1)


class NonFiniteOutput(ValueError):
    """A restored image holds NaN or Inf: it is never scored."""


class Problem(NamedTuple):
    """One restoration problem built by :meth:`Protocol.problem`.

    Attributes:
      name: the example's name.
      y: float32 (H, W, C) observation, what ``restore`` sees (one image, no batch axis).
      clean: float32 (H, W, C) ground truth of the restored image's shape (y's, except for
        super-resolution) for the solver's per-iteration PSNR, or None where there is none.
      meta: what :meth:`Protocol.evaluate` needs (the metric's reference, conversions).
      params_extra: extra entries of ``restore``'s ``params`` for this problem (e.g. ``{'A':
        Blur(k)}``); problems of one condition share one dict, so they can be batched.
    """

    name: str
    y: np.ndarray
    clean: np.ndarray | None
    meta: dict
    params_extra: dict = {}


# ------------------------------------------------------------------------------ checks
def _check_uint8(arg: str, img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"`{arg}` must be a uint8 image (0..255), got dtype {img.dtype}. Fix: "
                         f"pass the image as loaded (load_dataset gives uint8), or "
                         f"`np.uint8(np.round(x * 255))` for a [0, 1] float image.")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"`{arg}` must be (H, W), (H, W, 1) or (H, W, 3), got shape "
                         f"{img.shape}. Fix: pass one image (not a batch), gray or RGB.")
    return img


def _check_float(arg: str, img, channels: tuple[int, ...] = (1, 3)) -> np.ndarray:
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"`{arg}` must be a float image in [0, 1], got dtype {img.dtype}. Fix: "
                         f"use the float32 image that prepare() returned.")
    if img.ndim != 3 or img.shape[-1] not in channels:
        raise ValueError(f"`{arg}` must be one (H, W, C) image with C in {channels}, got shape "
                         f"{img.shape}. Fix: drop the batch axis (`out[0]`) / add the channel "
                         f"axis (`out[..., None]`).")
    return img


def _check_finite(arg: str, img: np.ndarray) -> np.ndarray:
    finite = np.isfinite(img)
    if not finite.all():
        bad = int(img.size - np.count_nonzero(finite))
        raise NonFiniteOutput(f"`{arg}` holds {bad} NaN/Inf value(s) of {img.size}; a "
                              f"non-finite output is never scored. Fix: find why the solver "
                              f"diverged (step sizes, input range) and rerun.")
    return img


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        s = math.nan
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"`sigma` must be a finite number >= 0 on the 8-bit scale (e.g. 25), "
                         f"got {sigma!r}. Fix: pass the noise level as on 0..255 images.")
    return s


def _scores(psnr, ssim) -> dict:
    return {"psnr": float(np.asarray(psnr)[0]), "ssim": float(np.asarray(ssim)[0])}


def _dedupe(values: Sequence) -> tuple[list, list]:
    """``values`` without repeats (first occurrence kept) and the repeated ones."""
    out, dups = [], []
    for v in values:
        (dups if v in out else out).append(v)
    return out, dups


def _example_key(example: dict, key: str, proto: str, task: str):
    if not isinstance(example, dict) or key not in example:
        keys = sorted(example) if isinstance(example, dict) else type(example).__name__
        other = ("a paired protocol ('gopro')" if key == "image"
                 else "a clean-image protocol ('standard' or 'authors')")
        raise ValueError(f"protocol {proto!r} ({task}) needs examples with {key!r}, got {keys}. "
                         f"Fix: load a dataset of that kind, or use {other} for this one.")
    return example[key]


# ------------------------------------------------------------------------------ base
@dataclasses.dataclass(frozen=True)
class Protocol:
    """An evaluation protocol; see the module docstring for the interface."""

    name: str = ""
    description: str = ""
    task: str = ""              # what the solver is asked to do: 'denoise', 'deblur', ...
    condition_name: str = ""    # the axis a run iterates over (CSV column, table header)
    paired: bool = False        # examples are blur/sharp pairs (else clean images)

    # -- conditions
    def default_conditions(self) -> list:
        return []

    def conditions(self, requested: Sequence | None = None) -> tuple[list, list[str]]:
        """Validated conditions (``requested``, else the defaults), de-duplicated in order.

        Returns ``(conditions, notes)``; ``notes`` says what was dropped. Raises ValueError
        (naming the condition, what is allowed and the fix) for a bad one.
        """
        values = list(requested) if requested else self.default_conditions()
        values = [self.check_condition(v) for v in values]
        values, dups = _dedupe(values)
        notes = [f"{self.condition_name} {self.condition_key(d)} was given more than once; it "
                 f"runs once" for d in dict.fromkeys(dups)]
        return values, notes

    def check_condition(self, condition) -> Hashable:
        return condition

    def check_data(self, channels: int | None, what: str) -> None:
        """Refuses data the protocol's task cannot use, before anything runs (ValueError naming
        ``what`` and the fix); ``channels`` is the data's channel count (1 gray, 3 RGB) or None
        when not known. Every image is checked again by :meth:`problem`. Default: anything."""

    def condition_key(self, condition) -> str:
        """The condition as a results.json / CSV key."""
        return str(condition)

    def condition_label(self, condition) -> str:
        """The condition as a table header."""
        return f"{self.condition_name}={self.condition_key(condition)}"

    # -- problem and score
    def problem(self, example: dict, condition) -> Problem:
        raise NotImplementedError

    def evaluate(self, output_float, meta: dict) -> dict | None:
        """Scores a restored float image: ``metrics(finalize(output, meta), reference)``;
        None where ``meta`` has no reference. Raises :class:`NonFiniteOutput` for NaN/Inf."""
        out = _check_finite("output_float", _check_float("output_float", output_float))
        if meta.get("reference") is None:
            return None
        return self.metrics(self.finalize(out, meta), meta["reference"])

    def finalize(self, output_float, meta: dict) -> np.ndarray:
        """Turns a restored float image into what the metric sees."""
        raise NotImplementedError

    def metrics(self, output, clean) -> dict:
        """{'psnr': dB, 'ssim': ...} of a finalized output against ``meta['reference']``."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "task": self.task, "condition": self.condition_name,
                "description": self.description}


class _Denoising(Protocol):
    """Gaussian denoising of clean images; the condition is sigma on the 8-bit scale."""

    def default_conditions(self) -> list:
        return [25]

    def check_condition(self, condition) -> float | int:
        try:
            s = float(condition)
        except (TypeError, ValueError):
            s = math.nan
        if not math.isfinite(s) or s <= 0:
            raise ValueError(f"sigma must be a finite number > 0 on the 8-bit scale (e.g. 15, 25, "
                             f"50), got {condition!r}. Fix: pass the noise level as on 0..255 "
                             f"images.")
        return int(s) if s.is_integer() else s

    def prepare(self, clean_uint8, name: str) -> tuple[np.ndarray, dict]:
        """Returns the float32 (H, W, C) clean image the solver works on, and ``meta`` (with
        ``meta['reference']``, the clean image the metric compares against)."""
        raise NotImplementedError

    def degrade(self, clean_float, sigma: float, name: str) -> np.ndarray:
        """Returns the noisy float32 observation of ``clean_float`` at noise level ``sigma``."""
        raise NotImplementedError

    def problem(self, example: dict, condition) -> Problem:
        img = _example_key(example, "image", self.name, self.task)
        name = str(example.get("name", ""))
        clean, meta = self.prepare(img, name)
        return Problem(name, self.degrade(clean, condition, name), clean, meta, {})


# ------------------------------------------------------------------------------ standard
@dataclasses.dataclass(frozen=True)
class Standard(_Denoising):
    name: str = "standard"
    description: str = ("DnCNN/KAIR: seed 0 per image, unclipped noise; output rounded to uint8; "
                        "PSNR + Gaussian SSIM (11x11, sigma 1.5) at data_range 255")
    task: str = "denoise"
    condition_name: str = "sigma"

    def prepare(self, clean_uint8, name: str) -> tuple[np.ndarray, dict]:
        ref = _check_uint8("clean_uint8", clean_uint8)
        x = np.float32(ref / 255.0)  # KAIR uint2single
        return x, {"protocol": self.name, "name": str(name), "reference": ref}

    def degrade(self, clean_float, sigma: float, name: str) -> np.ndarray:
        del name  # DnCNN/KAIR reseed with 0 for every image
        x = _check_float("clean_float", clean_float)
        noise = np.random.RandomState(0).normal(0, _check_sigma(sigma) / 255.0, x.shape)
        return (x + noise).astype(np.float32)

    def finalize(self, output_float, meta: dict) -> np.ndarray:
        out = _check_float("output_float", output_float)
        return np.uint8((np.clip(out, 0, 1) * 255.0).round())  # KAIR single2uint

    def metrics(self, output, clean) -> dict:
        out, ref = _check_uint8("output", output), _check_uint8("clean", clean)
        return _scores(M.psnr(out[None], ref[None], data_range=255.0),
                       M.ssim(out[None], ref[None], data_range=255.0))


# ------------------------------------------------------------------------------ authors
def crop_to_multiple(img: np.ndarray, d: int = 32) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre crop of (H, W, ...) to multiples of ``d``, as the authors' ``crop_image``.

    Returns the crop and its (top, left) offset.
    """
    h, w = img.shape[:2]
    nh, nw = h - h % d, w - w % d
    if nh == 0 or nw == 0:
        raise ValueError(f"crop_to_multiple: the image ({h}x{w}) is smaller than d={d} on a "
                         f"side; expected H, W >= {d}. Fix: use a larger image.")
    top, left = (h - nh) // 2, (w - nw) // 2  # = int((size - new) / 2) in their code
    return img[top:top + nh, left:left + nw], (top, left)


def authors_seed(name: str, sigma: float) -> int:
    """The per-image noise seed of the ``authors`` protocol: from (name, sigma) only."""
    key = f"dynpnp/authors/{name}/{float(sigma)!r}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


def _luminance_trunc(out: np.ndarray) -> np.ndarray:
    """Their ``pil_to_np(np_to_pil(v).convert('L'))`` on an (H, W, C) float image."""
    u8 = np.clip(out * 255, 0, 255).astype(np.uint8)  # truncation, as np_to_pil
    if u8.shape[-1] == 1:
        return u8.astype(np.float32) / 255.0  # the luminance of 3 equal channels is the channel
    return to_gray(u8).astype(np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class Authors(_Denoising):
    name: str = "authors"
    description: str = ("paper notebooks: crop to x32, rotate portrait, gray as 3 channels, "
                        "clipped noise seeded per (name, sigma); gray outputs truncated to 8-bit "
                        "luminance; float PSNR + 7x7 uniform SSIM (sample cov., data_range 2)")
    task: str = "denoise"
    condition_name: str = "sigma"
    multiple: int = 32

    def prepare(self, clean_uint8, name: str) -> tuple[np.ndarray, dict]:
        img = _check_uint8("clean_uint8", clean_uint8)
        orig_shape = img.shape
        img, offset = crop_to_multiple(img, self.multiple)
        rotated = needs_landscape(img.shape, mode="authors")  # their row-mix A: W >= H
        img = to_landscape(img, rotated)
        gray = img.shape[-1] == 1
        ref = np.ascontiguousarray(img).astype(np.float32) / 255.0  # their pil_to_np
        x = np.repeat(ref, 3, axis=-1) if gray else ref
        meta = {"protocol": self.name, "name": str(name), "reference": ref, "gray": gray,
                "rotated": rotated, "offset": offset, "orig_shape": orig_shape}
        return x, meta

    def degrade(self, clean_float, sigma: float, name: str) -> np.ndarray:
        x = _check_float("clean_float", clean_float)
        s = _check_sigma(sigma)
        rng = np.random.RandomState(authors_seed(str(name), s))
        return np.clip(x + rng.normal(scale=s / 255.0, size=x.shape), 0, 1).astype(np.float32)

    def finalize(self, output_float, meta: dict) -> np.ndarray:
        out = _check_float("output_float", output_float)
        if meta["gray"]:
            return _luminance_trunc(out)
        return np.clip(out, 0, 1).astype(np.float32)

    def metrics(self, output, clean) -> dict:
        out, ref = _check_float("output", output), _check_float("clean", clean)
        return _scores(M.psnr(out[None], ref[None], data_range=1.0),
                       M.ssim_uniform(out[None], ref[None], data_range=AUTHORS_SSIM_DATA_RANGE))


# ------------------------------------------------------------------------------ gopro
GOPRO_CONDITION = "recorded"


@dataclasses.dataclass(frozen=True)
class Gopro(Protocol):
    name: str = "gopro"
    description: str = ("motion blur as recorded (blur/sharp pairs): y = blur / 255; output "
                        "clipped and rounded to 8 bits; PSNR and Gaussian SSIM (11x11, sigma 1.5, "
                        "mean over RGB) at data_range 255 on the full frame; frames without a "
                        "sharp twin are restored, not scored")
    task: str = "deblur"
    condition_name: str = "blur"
    paired: bool = True

    def default_conditions(self) -> list:
        return [GOPRO_CONDITION]

    def check_condition(self, condition) -> str:
        if condition != GOPRO_CONDITION:
            raise ValueError(f"protocol 'gopro' has one condition, the recorded blur "
                             f"({GOPRO_CONDITION!r}), got {condition!r}. Fix: give no "
                             f"noise level / kernel for recorded blur.")
        return condition

    def condition_label(self, condition) -> str:
        return "recorded blur"

    def problem(self, example: dict, condition) -> Problem:
        self.check_condition(condition)
        blur = _check_uint8("blur", _example_key(example, "blur", self.name, self.task))
        sharp = None
        if example.get("has_sharp"):
            sharp = _check_uint8("sharp", example["sharp"])
            if sharp.shape != blur.shape:
                raise ValueError(f"gopro: sharp frame of {example.get('name')!r} has shape "
                                 f"{sharp.shape}, its blur frame {blur.shape}. Fix: pair files "
                                 f"of the same size.")
        name = str(example.get("name", ""))
        meta = {"protocol": self.name, "name": name, "reference": sharp}
        return Problem(name, blur.astype(np.float32) / 255.0,
                       None if sharp is None else sharp.astype(np.float32) / 255.0, meta, {})

    # scored as `standard` scores (one rule, one owner)
    def finalize(self, output_float, meta: dict) -> np.ndarray:
        return Standard().finalize(output_float, meta)

    def metrics(self, output, clean) -> dict:
        return Standard().metrics(output, clean)


# The protocols by name. ``dpir`` (``data.degradations.Dpir``, which builds on the classes above)
# is registered by the package (``dynpnp_jax.data``), which every import of this module runs first.
PROTOCOLS: dict[str, Protocol] = {"standard": Standard(), "authors": Authors(), "gopro": Gopro()}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (one of ``PROTOCOLS``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"get_protocol: unknown protocol `name`={name!r}; valid names: "
                         f"{list(PROTOCOLS)}. Fix: use 'standard' for published-table numbers, "
                         f"'authors' to reproduce the paper's notebooks, 'gopro' for blur/sharp "
                         f"pairs, 'dpir' for known degradations, 'imresize' for "
                         f"super-resolution by MATLAB imresize.")
    return PROTOCOLS[name]


def protocols_for(paired: bool) -> list[str]:
    """Names of the protocols that take paired (blur/sharp) or clean examples."""
    return [n for n, p in PROTOCOLS.items() if p.paired == paired]

