"""Evaluation protocols (ALGORITHM.md section 4): how a clean test image becomes a noisy input,
and how a restored output is turned into the numbers a table reports.

Every protocol has the same four steps (plain numpy; only the metric calls into JAX)::

    clean, meta = proto.prepare(clean_uint8, name)    # float32 (H, W, C) in [0, 1] + metadata
    noisy = proto.degrade(clean, sigma, name)         # float32, what the solver sees
    out = proto.finalize(restored, meta)              # what the metric sees
    proto.metrics(out, meta["reference"])             # {'psnr': float, 'ssim': float}

(``proto.evaluate(restored, meta)`` does the last two.) ``sigma`` is on the 8-bit scale
(15, 25, 50); the noise standard deviation on [0, 1] images is ``sigma / 255``.

``standard`` (DnCNN / KAIR, what published tables use):
  * prepare: ``x = float32(clean / 255)``; the reference is the clean uint8 image.
  * degrade: ``np.random.seed(0); y = x + np.random.normal(0, sigma/255, x.shape)`` for every
    image (a fresh ``RandomState(0)``, so the global NumPy state is left alone), no clipping,
    float32. The image name does not enter: every image gets the same noise field.
  * finalize: ``uint8(round(clip(out, 0, 1) * 255))`` (KAIR ``single2uint``).
  * metrics: PSNR and Gaussian SSIM (``metrics.ssim``) of the uint8 images, ``data_range=255``.

``authors`` (section 1: the paper's notebooks, WillDreamer/SND), with their noise seeded:
  * prepare: centre crop both sides to multiples of 32 (their ``crop_image(img, d=32)``:
    ``new = size - size % 32``, bbox from ``(size - new) // 2``); rotate portrait images
    (H > W) by 90 degrees counter-clockwise (PIL ``ROTATE_90``) so that W >= H; gray images
    become 3 identical channels (they read them with ``convert('RGB')``). The reference is the
    cropped/rotated clean image as float32 (1 channel for gray images).
  * degrade: ``clip(x + N(0, sigma/255), 0, 1)``, float32, drawn independently for each of the
    3 channels (as theirs). Theirs was unseeded; here ``RandomState(seed)`` with ``seed`` a
    SHA-256 of (image name, sigma) only, so runs repeat and do not depend on order, batching
    or device count.
  * finalize, gray inputs: as their ``np_to_pil(v).convert('L')``: the 3-channel output is
    clipped and *truncated* to uint8 (``uint8(clip(v * 255, 0, 255))``), converted to 8-bit
    luminance by PIL (L = R*299/1000 + G*587/1000 + B*114/1000, PIL's fixed-point rounding),
    and read back as float32 / 255, shape (H, W, 1). A 1-channel output is treated as 3
    identical channels (its luminance is itself, so this is plain truncation).
    RGB inputs: ``clip(out, 0, 1)`` float32, no quantisation (their ``torch.clamp``).
  * metrics: PSNR on the float images (``data_range=1``), SSIM with the 7x7 uniform window and
    sample covariance (``metrics.ssim_uniform``) at ``data_range=2``: they called
    ``compare_ssim(..., multichannel=True)`` on float32 images without ``data_range``, and old
    scikit-image then took the float dtype range (-1, 1). This inflates SSIM against
    ``data_range=1``; it is kept because the point of this protocol is their numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
from PIL import Image

__all__ = ["Protocol", "Standard", "Authors", "PROTOCOLS", "get_protocol", "crop_to_multiple",
           "authors_seed", "AUTHORS_SSIM_DATA_RANGE"]

AUTHORS_SSIM_DATA_RANGE = 2.0  # old skimage dtype_range[float] = (-1, 1)


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


@dataclasses.dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: prepare -> degrade -> finalize -> metrics (see module doc)."""

    name: str = ""
    description: str = ""

    def prepare(self, clean_uint8, name: str) -> tuple[np.ndarray, dict]:
        """Returns the float32 (H, W, C) clean image the solver works on, and ``meta`` (with
        ``meta['reference']``, the clean image the metric compares against)."""
        raise NotImplementedError

    def degrade(self, clean_float, sigma: float, name: str) -> np.ndarray:
        """Returns the noisy float32 observation of ``clean_float`` at noise level ``sigma``."""
        raise NotImplementedError

    def finalize(self, output_float, meta: dict) -> np.ndarray:
        """Turns a restored float image into what the metric sees."""
        raise NotImplementedError

    def metrics(self, output, clean) -> dict:
        """{'psnr': dB, 'ssim': ...} of a finalized output against ``meta['reference']``."""
        raise NotImplementedError

    def evaluate(self, output_float, meta: dict) -> dict:
        """``metrics(finalize(output_float, meta), meta['reference'])``."""
        return self.metrics(self.finalize(output_float, meta), meta["reference"])


@dataclasses.dataclass(frozen=True)
class Standard(Protocol):
    name: str = "standard"
    description: str = ("DnCNN/KAIR: seed 0 per image, unclipped noise; output rounded to uint8; "
                        "PSNR + Gaussian SSIM (11x11, sigma 1.5) at data_range 255")

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
        from .. import metrics as M  # JAX only when scoring
        out, ref = _check_uint8("output", output), _check_uint8("clean", clean)
        return _scores(M.psnr(out[None], ref[None], data_range=255.0),
                       M.ssim(out[None], ref[None], data_range=255.0))


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
        u8 = np.repeat(u8, 3, axis=-1)
    lum = np.asarray(Image.fromarray(np.ascontiguousarray(u8)).convert("L"))
    return (lum.astype(np.float32) / 255.0)[..., None]


@dataclasses.dataclass(frozen=True)
class Authors(Protocol):
    name: str = "authors"
    description: str = ("paper notebooks: crop to x32, rotate portrait, gray as 3 channels, "
                        "clipped noise seeded per (name, sigma); gray outputs truncated to 8-bit "
                        "luminance; float PSNR + 7x7 uniform SSIM (sample cov., data_range 2)")
    multiple: int = 32

    def prepare(self, clean_uint8, name: str) -> tuple[np.ndarray, dict]:
        img = _check_uint8("clean_uint8", clean_uint8)
        orig_shape = img.shape
        img, offset = crop_to_multiple(img, self.multiple)
        rotated = img.shape[0] > img.shape[1]
        if rotated:
            img = np.rot90(img, k=1, axes=(0, 1))  # = PIL transpose(ROTATE_90), counter-clockwise
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
        from .. import metrics as M
        out, ref = _check_float("output", output), _check_float("clean", clean)
        return _scores(M.psnr(out[None], ref[None], data_range=1.0),
                       M.ssim_uniform(out[None], ref[None], data_range=AUTHORS_SSIM_DATA_RANGE))


PROTOCOLS: dict[str, Protocol] = {"standard": Standard(), "authors": Authors()}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` ('standard' or 'authors')."""
    if name not in PROTOCOLS:
        raise ValueError(f"get_protocol: unknown protocol `name`={name!r}; valid names: "
                         f"{list(PROTOCOLS)}. Fix: use 'standard' for published-table numbers, "
                         f"'authors' to reproduce the paper's notebooks.")
    return PROTOCOLS[name]
