"""The ``dpir`` protocol: known degradations -- blur, super-resolution, inpainting, demosaicing
-- plus Gaussian noise, as the DPIR scripts (Zhang et al., TPAMI 2021, ``main_dpir_deblur.py``,
``main_dpir_sisr.py``) make and score them. A condition is one degradation: a kernel and a noise
level (deblurring), a scale, a kernel and a noise level (SR), a mask and a noise level
(inpainting), a Bayer pattern and a noise level (demosaicing). Noise levels are on the 8-bit scale (2.55, 7.65), as DPIR writes them.

``deblur`` (``main_dpir_deblur.py``, exactly):
  * ``gt = modcrop(img_uint8, 8)``; ``y8 = scipy.ndimage.convolve(gt, k[..., None],
    mode='wrap')`` on the uint8 image, so the result is uint8 (scipy *truncates*: with a
    kernel summing to 1 - 2e-16 a flat region of value v becomes v - 1, as in DPIR's inputs);
  * ``np.random.seed(0)`` for every image and kernel, then ``y = float32(y8 / 255);
    y += np.random.normal(0, noise / 255, y.shape)`` (in place: float32);
  * the Levin kernels are used as stored in ``Levin09.mat`` (float64, not renormalised) for the
    degradation, as DPIR does; ``operators.Blur`` gets ``kernels.parse_kernel``'s kernel;
  * output ``uint8(round(clip(x, 0, 1) * 255))``; PSNR on the whole image (border 0).
``sr`` (``main_dpir_sisr.py``, classical degradation): ``gt = modcrop(img, scale)``; the same
  uint8 convolution, then ``[0::scale, 0::scale]``; the same noise; ``operators.Downsample``.
  PSNR and SSIM without a border of ``scale`` pixels (DPIR's ``border = sf``), on the 8-bit
  luminance (``luminance_uint8``: KAIR's ``rgb2ycbcr(only_y=True)``) for colour images, as SR
  tables (IRCNN, DPIR's ``PSNR_Y``) report them.
``inpaint``: ``gt`` as it is; a mask ``m`` (1 = observed): ``random:P`` drops each pixel with
  probability P (``np.random.seed(1)`` per image, so the mask does not depend on the noise), or a
  mask image (white = observed); ``y = m * (gt / 255 + N(0, noise / 255))`` with the noise drawn
  after ``np.random.seed(0)``; ``operators.Mask``. PSNR on the whole image.
``demosaic`` (``main_dpir_demosaick.py``): ``gt`` as it is (8-bit RGB; a gray image is refused,
  :func:`check_channels`); the Bayer mask ``m`` of the pattern (``RGGB``: R at (0, 0), B at
  (1, 1); ``demosaic.bayer_mask``), ``y = m * (gt / 255 + N(0, noise / 255))`` (noise drawn
  after ``np.random.seed(0)``; noise 0 by default: DPIR's noiseless benchmark);
  ``demosaic.Bayer`` (a per-channel ``Mask``: the exact x-step is pixel-wise), whose start is
  the Malvar-He-Cutler interpolation. ``finalize`` puts the observed samples of ``y`` back into
  the output when the noise is 0 (DPIR's last step, ``x[mask] = y[mask]``; a no-op for the
  interpolations, which keep them), then rounds to 8 bits; colour PSNR and SSIM (RGB) without a
  border of :data:`DEMOSAIC_BORDER` = 10 pixels (DPIR's ``border = 10``). The solver runs
  ``DEFAULTS['demosaic']['iters']`` = 40 iterations (DPIR's ``iter_num``).

SSIM is the ``standard`` protocol's (Gaussian window) on the same 8-bit images and crop; DPIR's
scripts report PSNR only for deblurring.

The wrap border of ``sr``: ``mode='wrap'`` makes every low-resolution pixel within the kernel's
reach of an edge a mix of both opposite edges of the image. Where those differ (most
photographs) the border is a band no up-sampler can restore and the loop's circular model
matches it only because it makes the same assumption; no SR paper's table is made this way. The
SR literature's degradation is the ``imresize`` protocol (:class:`ImresizeSR` below: MATLAB
``imresize``, symmetric boundary), the default for ``--task sr`` on the standard SR sets.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np

from .. import demosaic, operators, paths, resize
from ..operators_resize import Imresize
from .protocols import (Problem, Protocol, Standard, _check_finite, _check_float, _check_uint8,
                        _example_key)
from .sources import read_image

__all__ = ["Degradation", "Dpir", "ImresizeSR", "IMRESIZE", "SR_SETS", "TASKS", "DEFAULTS",
           "COLOUR_TASKS", "DEMOSAIC_BORDER", "check_channels", "parse_mask", "check_mask_spec",
           "modcrop", "luminance_uint8"]

#: The known-degradation tasks (the one list: the eval CLI's --task choices come from it).
TASKS = ("deblur", "sr", "inpaint", "demosaic")
#: Tasks that need RGB images (a gray image has no colours to sample).
COLOUR_TASKS = ("demosaic",)
#: Pixels left out on every side when a demosaicing result is scored (DPIR's ``border = 10``).
DEMOSAIC_BORDER = 10
# task -> default kernels / scales / masks / noise levels, and the DPIR solver settings
DEFAULTS = {
    "deblur": {"kernels": ["levin"], "noise": [2.55], "iters": 8},
    "sr": {"scales": [2], "kernels": ["bicubic:{scale}"], "noise": [0], "iters": 24},
    "inpaint": {"masks": ["random:0.5"], "noise": [0], "iters": 8},
    # DPIR's demosaicing script: RGGB, noiseless, 40 iterations
    "demosaic": {"patterns": ["RGGB"], "noise": [0], "iters": 40},
}


class Degradation(NamedTuple):
    """One condition of the ``dpir`` protocol (hashable; names, not arrays)."""

    task: str
    noise: float | int                # 8-bit scale
    kernel: str | None = None         # deblur, sr
    scale: int = 1                    # sr
    mask: str | None = None           # inpaint
    boundary: str = "circular"        # deblur: 'circular' (DPIR's wrap) or 'unknown' (a frame)
    pattern: str | None = None        # demosaic: the Bayer pattern ('RGGB')


def check_channels(task: str, channels: int | None, what: str) -> None:
    """Refuses gray data for a task of :data:`COLOUR_TASKS` (ValueError naming ``what`` -- the
    dataset or image -- and the fix). ``channels``: 1 (gray), 3, or None (not known yet)."""
    if task in COLOUR_TASKS and channels is not None and channels != 3:
        kind = "gray (1 channel)" if channels == 1 else f"{channels}-channel"
        raise ValueError(f"--task {task} needs RGB images (a Bayer sensor samples one colour "
                         f"per pixel), but {what} is {kind}. Fix: use a colour set: "
                         f"--dataset cbsd68, set3c or set5, or --dataset folder with RGB "
                         f"images.")


def luminance_uint8(img: np.ndarray) -> np.ndarray:
    """The 8-bit Y channel of an RGB uint8 image, as KAIR's ``rgb2ycbcr(img, only_y=True)``
    computes it for SR scores: ``round(16 + (65.481 R + 128.553 G + 24.966 B) / 255)`` on 0..255
    values, (H, W, 1) uint8."""
    img = _check_uint8("image", img)
    return np.uint8(np.round(resize.rgb2ycbcr_y(img).astype(np.float64) * 255.0))[..., None]


def frame_crop(img: np.ndarray, kernel_shape, m: int = 8) -> np.ndarray:
    """The ``unknown``-boundary frame of an image blurred with ``mode='wrap'``: the part no
    wrapped pixel reaches (the kernel's reach off every side, centre ``(kh // 2, kw // 2)``),
    cut to sides that are multiples of ``m`` from the top left of that part. Every pixel of the
    frame of the blurred image then saw only the scene (the image), as in a photograph."""
    kh, kw = kernel_shape
    h, w = img.shape[:2]
    top, left = kh - 1 - kh // 2, kw - 1 - kw // 2
    fh, fw = (h - kh + 1) // m * m, (w - kw + 1) // m * m
    if fh < m or fw < m:
        raise ValueError(f"an image of {h}x{w} leaves no frame for a {kh}x{kw} kernel with "
                         f"--boundary unknown. Fix: larger images or --boundary circular.")
    return img[top:top + fh, left:left + fw]


def modcrop(img: np.ndarray, m: int) -> np.ndarray:
    """The top-left crop of (H, W, ...) to multiples of ``m`` (DPIR ``util.modcrop``)."""
    h, w = img.shape[:2]
    return img[:h - h % m, :w - w % m]


@functools.lru_cache(maxsize=4)
def _levin_file_kernels(path: str) -> tuple:
    """Levin09.mat's kernels as stored (float64; DPIR's ``kernels[0, i].astype(np.float64)``)."""
    import h5py

    with h5py.File(path, "r") as f:
        refs = f["kernels"][()].ravel()
        return tuple(np.asarray(f[r], np.float64).T for r in refs)


def _degradation_kernel(name: str, k32: np.ndarray) -> np.ndarray:
    """The kernel the degradation uses: the file's float64 values for ``levin:I``, else
    ``k32`` in float64."""
    if name.lower().startswith("levin:"):
        root = paths.data_dir()
        path = root / "kernels" / "Levin09.mat" if root is not None else None
        if path is not None and path.is_file():
            raw = _levin_file_kernels(str(path))[int(name.split(":")[1]) - 1]
            if raw.shape == k32.shape and np.allclose(raw, k32, atol=1e-6):
                return raw
    return np.asarray(k32, np.float64)


def check_mask_spec(spec: str) -> str:
    """Checks the syntax of a mask spec (``random:P`` or an existing file) without an image."""
    from pathlib import Path

    head, _, arg = spec.partition(":")
    if head == "random":
        try:
            p = float(arg)
        except ValueError:
            p = math.nan
        if not 0 <= p < 1:
            raise ValueError(f"--mask {spec!r}: random:P needs the missing fraction P in [0, 1), "
                             f"got {arg!r}. Fix: e.g. --mask random:0.5.")
        return spec
    if not Path(spec).expanduser().is_file():
        raise ValueError(f"--mask {spec!r}: expected random:P or a mask image file, and no such "
                         f"file exists. Fix: e.g. --mask random:0.5, or the path of a PNG whose "
                         f"white pixels are observed.")
    return spec


def parse_mask(spec: str, shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """A bool (H, W) mask, True = observed: ``random:P`` (each pixel missing with probability
    P, drawn after ``np.random.seed(seed)``) or an image file (white = observed: > 127)."""
    from pathlib import Path

    check_mask_spec(spec)
    head, _, arg = spec.partition(":")
    if head == "random":
        return np.random.RandomState(seed).rand(*shape) >= float(arg)
    path = Path(spec).expanduser()
    m = read_image(path, channels=1)[..., 0] > 127
    if m.shape != tuple(shape):
        raise ValueError(f"--mask {spec}: the mask is {m.shape[0]}x{m.shape[1]}, the image "
                         f"{shape[0]}x{shape[1]}. Fix: a mask of the image's size.")
    return m


def _noise_key(n) -> str:
    return f"{float(n):g}"


@dataclasses.dataclass(frozen=True)
class Dpir(Protocol):
    """Known degradation + noise, the DPIR way (see the module docstring)."""

    name: str = "dpir"
    description: str = ("DPIR scripts: gt modcropped (8, or the SR scale), degraded on the uint8 "
                        "image by scipy.ndimage.convolve(mode='wrap') (uint8 out), /255 + "
                        "Gaussian noise after np.random.seed(0) per image and degradation; "
                        "inpainting/demosaicing: y = mask * (gt/255 + noise); output rounded to 8 "
                        "bits (demosaicing without noise: observed samples put back first); PSNR "
                        "(border: SR scale, demosaicing 10, else 0; SR colour: 8-bit Y channel) "
                        "+ Gaussian SSIM")
    task: str = "deblur"
    condition_name: str = "degradation"
    kernel_table: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    # -- conditions
    def default_conditions(self) -> list:
        return []  # built from the CLI by experiment.resolve (kernels x noise levels ...)

    def check_condition(self, c) -> Degradation:
        if not isinstance(c, Degradation) or c.task != self.task:
            raise ValueError(f"protocol 'dpir' ({self.task}) takes Degradation conditions of "
                             f"task {self.task!r}, got {c!r}.")
        n = float(c.noise)
        if not math.isfinite(n) or n < 0 or n > 255:
            raise ValueError(f"noise must be a level >= 0 on the 8-bit scale (e.g. 2.55, 7.65), "
                             f"got {c.noise!r}. Fix: pass --noise 2.55 (not 0.01).")
        if self.task in ("deblur", "sr") and c.kernel not in self.kernel_table:
            raise ValueError(f"kernel {c.kernel!r} is not known to this protocol (have "
                             f"{sorted(self.kernel_table)}).")
        if c.boundary not in ("circular", "unknown") or (
                c.boundary != "circular" and self.task != "deblur"):
            raise ValueError(f"boundary must be 'circular' or 'unknown' (deblurring only), got "
                             f"{c.boundary!r} for {self.task}. Fix: --boundary circular or "
                             f"unknown with --task deblur.")
        if self.task == "sr" and c.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {c.scale!r}. Fix: --scale 2.")
        if self.task == "demosaic":
            c = c._replace(pattern=demosaic.check_pattern(c.pattern or "RGGB"))
        elif c.pattern is not None:
            raise ValueError(f"a Bayer pattern is for the demosaic task, got pattern "
                             f"{c.pattern!r} for {self.task}.")
        return c._replace(noise=int(n) if n.is_integer() else n)

    def check_data(self, channels: int | None, what: str) -> None:
        """Refuses data this task cannot use before anything runs (gray images for
        demosaicing: :func:`check_channels`)."""
        check_channels(self.task, channels, what)

    def condition_key(self, c: Degradation) -> str:
        parts = {"deblur": [c.kernel], "sr": [f"x{c.scale}", c.kernel],
                 "inpaint": [c.mask], "demosaic": [c.pattern]}[c.task]
        if c.boundary != "circular":
            parts.append(f"boundary={c.boundary}")
        return "|".join([*parts, _noise_key(c.noise)])

    def condition_label(self, c: Degradation) -> str:
        parts = {"deblur": [f"k={c.kernel}"], "sr": [f"x{c.scale}", f"k={c.kernel}"],
                 "inpaint": [f"mask={c.mask}"], "demosaic": [f"bayer={c.pattern}"]}[c.task]
        if c.boundary != "circular":
            parts.append(f"boundary={c.boundary}")
        return ", ".join([*parts, f"noise={_noise_key(c.noise)}"])

    def condition_group(self, c: Degradation) -> str | None:
        """Conditions that differ only by kernel/mask share a group (a 'mean' column)."""
        parts = {"deblur": [], "sr": [f"x{c.scale}"], "inpaint": [], "demosaic": []}[c.task]
        if c.boundary != "circular":
            parts.append(f"boundary={c.boundary}")
        return ", ".join([*parts, f"noise={_noise_key(c.noise)}"])

    def condition_fields(self, c: Degradation) -> dict:
        return {k: v for k, v in c._asdict().items()
                if v is not None and not (k == "boundary" and v == "circular")}

    def solver_defaults(self, c: Degradation) -> dict:
        """What the ``dpir`` solver mode takes from the condition: T and the noise level."""
        return {"iters": DEFAULTS[self.task]["iters"], "noise_level": float(c.noise) / 255.0}

    # -- problem and score
    def problem(self, example: dict, condition) -> Problem:
        c = self.check_condition(condition)
        img = _check_uint8("image", _example_key(example, "image", self.name, self.task))
        name = str(example.get("name", ""))
        rng = np.random.RandomState(0)  # DPIR: np.random.seed(seed=0) per image and kernel
        meta = {"protocol": self.name, "name": name, "noise": c.noise, "scale": c.scale,
                "border": 0}
        if c.task in ("deblur", "sr"):
            k32 = self.kernel_table[c.kernel]
            mult = 8 if c.task == "deblur" else c.scale
            gt = modcrop(img, mult)
            if min(gt.shape[:2]) < max(k32.shape):
                raise ValueError(f"image {name!r} ({gt.shape[0]}x{gt.shape[1]} after modcrop) is "
                                 f"smaller than kernel {c.kernel} ({k32.shape[0]}x{k32.shape[1]}). "
                                 f"Fix: larger images or a smaller kernel.")
            from scipy import ndimage

            y8 = ndimage.convolve(gt, _degradation_kernel(c.kernel, k32)[..., None], mode="wrap")
            if c.task == "sr":
                y8 = y8[0::c.scale, 0::c.scale]
                op = operators.Downsample.from_kernel(k32, c.scale, 1)
                meta["border"] = c.scale
            else:
                if c.boundary == "unknown":  # a frame of the larger blurred scene (no wrap in it)
                    gt, y8 = frame_crop(gt, k32.shape), frame_crop(y8, k32.shape)
                op = operators.Blur.from_kernel(k32, 1, boundary=c.boundary)
            y = np.float32(y8 / 255.0)
            y += rng.normal(0, float(c.noise) / 255.0, y.shape)  # in place, as theirs
            meta["kernel"] = k32
        elif c.task == "demosaic":
            if img.ndim == 3 and img.shape[-1] == 3 and (
                    np.array_equal(img[..., 0], img[..., 1])
                    and np.array_equal(img[..., 1], img[..., 2])):
                raise ValueError(f"--task demosaic needs RGB images, but image {name!r} is gray "
                                 f"(its three channels are equal: a gray image stored as RGB, "
                                 f"or converted for an RGB prior). Fix: use a colour set: "
                                 f"--dataset cbsd68, set3c or set5, or drop the gray images.")
            check_channels(c.task, img.shape[-1] if img.ndim == 3 else 1, f"image {name!r}")
            gt = img
            h, w = gt.shape[:2]
            if min(h, w) <= 2 * DEMOSAIC_BORDER:
                raise ValueError(f"image {name!r} ({h}x{w}) leaves nothing to score inside the "
                                 f"{DEMOSAIC_BORDER}-pixel border of the demosaicing protocol. "
                                 f"Fix: images of at least {2 * DEMOSAIC_BORDER + 1} pixels a "
                                 f"side.")
            m = demosaic.bayer_mask(h, w, c.pattern)
            x = np.float32(gt / 255.0)
            y = (m * (x + rng.normal(0, float(c.noise) / 255.0, x.shape))).astype(np.float32)
            op = demosaic.Bayer.from_pattern(h, w, c.pattern, 1)
            meta.update(mask=m > 0.5, mosaic=y, pattern=c.pattern, border=DEMOSAIC_BORDER)
        else:
            gt = img
            m = parse_mask(c.mask, gt.shape[:2])
            x = np.float32(gt / 255.0)
            y = (m[..., None] * (x + rng.normal(0, float(c.noise) / 255.0, x.shape))
                 ).astype(np.float32)
            op = operators.Mask.from_mask(m[..., None].astype(np.float32), 1)
            meta["mask"] = m
        meta["reference"] = gt
        return Problem(name, y.astype(np.float32), np.float32(gt / 255.0), meta, {"A": op})

    def finalize(self, output_float, meta: dict) -> np.ndarray:
        """8-bit output (``Standard``: clip, round). Demosaicing without noise: the observed
        samples of ``y`` are put back first (DPIR's ``x[mask] = y[mask]``)."""
        if self.task == "demosaic" and float(meta.get("noise", 0)) == 0 and "mosaic" in meta:
            output_float = np.where(meta["mask"], meta["mosaic"], output_float)
        return Standard().finalize(output_float, meta)

    def metrics(self, output, clean, border: int = 0) -> dict:
        if border:
            output, clean = output[border:-border, border:-border], clean[border:-border,
                                                                          border:-border]
        if self.task == "sr" and np.ndim(output) == 3 and np.shape(output)[-1] == 3:
            output, clean = luminance_uint8(output), luminance_uint8(clean)
        return Standard().metrics(output, clean)

    def evaluate(self, output_float, meta: dict) -> dict | None:
        out = _check_finite("output_float", _check_float("output_float", output_float))
        return self.metrics(self.finalize(out, meta), meta["reference"], meta.get("border", 0))


#: The ``imresize`` protocol's one degradation name (its condition's ``kernel`` field).
IMRESIZE = "imresize"
#: Data sets whose published super-resolution tables use the ``imresize`` protocol: for these,
#: ``--task sr`` defaults to it (other sets keep the ``dpir`` protocol).
SR_SETS = ("set5", "set14", "bsd100", "b100", "urban100", "manga109")


@dataclasses.dataclass(frozen=True)
class ImresizeSR(Dpir):
    """Super-resolution as the SR literature makes and scores it (bicubic degradation):

    * ``gt = modcrop(img_uint8, scale)``; ``y8 = resize.imresize(gt, 1 / scale)``: MATLAB
      ``imresize`` (antialiased Keys cubic, symmetric boundary), on the uint8 image, so rounded
      and clipped to uint8 as MATLAB returns it;
    * ``y = float32(y8 / 255)``, plus Gaussian noise ``N(0, noise / 255)`` after
      ``np.random.seed(0)`` (noise 0 by default: the noiseless bicubic benchmark);
    * the operator is the exact down-sampler, ``operators_resize.Imresize`` (its kernel, its
      grid, its boundary), whose start is ``imresize(y, scale)``;
    * output rounded to uint8; PSNR and SSIM on the 8-bit Y channel (MATLAB ``rgb2ycbcr``,
      ``luminance_uint8``) for colour images, without a border of ``scale`` pixels.

    Unlike ``dpir``'s SR (a wrap-around convolution, then ``[0::s, 0::s]``), no pixel near the
    border sees the opposite edge of the image."""

    name: str = "imresize"
    description: str = ("SR literature (bicubic degradation): gt modcropped to the scale, "
                        "down-sampled by MATLAB imresize (antialiased cubic, symmetric boundary) "
                        "to uint8, /255 (+ Gaussian noise after np.random.seed(0) if --noise); "
                        "output rounded to 8 bits; PSNR + Gaussian SSIM on the 8-bit Y channel "
                        "(colour), border = scale")
    task: str = "sr"

    def check_condition(self, c) -> Degradation:
        if not isinstance(c, Degradation) or c.task != "sr" or c.kernel != IMRESIZE:
            raise ValueError(f"protocol 'imresize' takes Degradation('sr', noise, "
                             f"kernel='imresize', scale=S) conditions, got {c!r}.")
        return Dpir.check_condition(dataclasses.replace(self, kernel_table={IMRESIZE: None}), c)

    def condition_key(self, c: Degradation) -> str:
        return "|".join([f"x{c.scale}", _noise_key(c.noise)])

    def condition_label(self, c: Degradation) -> str:
        return f"x{c.scale}, noise={_noise_key(c.noise)}"

    def condition_group(self, c: Degradation) -> str | None:
        return None  # one condition per scale and noise level: no 'mean' column

    def problem(self, example: dict, condition) -> Problem:
        c = self.check_condition(condition)
        img = _check_uint8("image", _example_key(example, "image", self.name, self.task))
        name = str(example.get("name", ""))
        h, w = img.shape[:2]
        if min(h, w) < 4 * c.scale:
            raise ValueError(f"image {name!r} ({h}x{w}) cannot be modcropped to scale "
                             f"{c.scale}: the protocol needs at least {4 * c.scale} pixels a side "
                             f"(4 low-resolution pixels). Fix: drop the image (or use --scale "
                             f"2), or use larger images.")
        gt = modcrop(img, c.scale)
        y8 = resize.imresize(gt, 1.0 / c.scale)
        y = np.float32(y8 / 255.0)
        y += np.random.RandomState(0).normal(0, float(c.noise) / 255.0, y.shape)
        op = Imresize.from_shape(gt.shape[0], gt.shape[1], c.scale, 1)
        meta = {"protocol": self.name, "name": name, "noise": c.noise, "scale": c.scale,
                "border": c.scale, "kernel": None, "reference": gt}
        return Problem(name, y.astype(np.float32), np.float32(gt / 255.0), meta, {"A": op})
