"""Read and write a user's own pictures at their own bit depth (the ``restore`` command's I/O).

``read_image(path) -> (x, info)``: ``x`` is a float32 NHWC batch of one image, ``(1, H, W, C)``
in [0, 1] (``C`` = 1 for gray files, 3 otherwise; alpha is dropped), the data contract of
:func:`dynpnp_jax.restore`. ``info`` (:class:`ImageInfo`) remembers the file's format, bit depth
and channels, so that ``write_image(path, y, info)`` writes the result back at the input's
depth: 8-bit files as 8-bit, 16-bit PNG/TIFF as 16-bit (``v / 65535`` on the way in,
``round(v * 65535)`` on the way out; 8-bit: ``/ 255`` and ``round(v * 255)``).

Decoding reuses :mod:`dynpnp_jax.data.sources` (the data sets' reader: its 16-bit colour PNG
decoder, since Pillow keeps only the high byte of those, and its error rule); unlike
``sources.read_image`` this module keeps 16-bit values instead of quantising them to 8 bits.

Writing is atomic: the file is written to a temporary name in the destination folder and moved
over the destination with :func:`os.replace`, so an interrupted run never leaves a half-written
file. JPEG and BMP are 8-bit formats: a 16-bit image written there is quantised to 8 bits (the
function says so through ``ImageInfo.note`` of its return value).
"""
from __future__ import annotations

import dataclasses
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .data import sources

IMAGE_SUFFIXES = sources.IMAGE_SUFFIXES
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP"}
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")
JPEG_QUALITY = 95

__all__ = ["ImageInfo", "ImageReadError", "ImageWriteError", "read_image", "write_image",
           "output_format", "IMAGE_SUFFIXES"]

ImageReadError = sources.ImageReadError


class ImageWriteError(OSError):
    """An image that cannot be written (folder missing or read-only, unknown format); names the
    file and the fix."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` saw in a file, for writing the result back alike."""

    path: str
    format: str          # 'PNG', 'JPEG', 'TIFF', 'BMP'
    bits: int            # 8 or 16 bits per channel
    channels: int        # 1 (gray) or 3 (RGB)
    height: int
    width: int
    alpha_dropped: bool = False

    @property
    def max_value(self) -> int:
        return 65535 if self.bits == 16 else 255


def read_image(path) -> tuple[np.ndarray, ImageInfo]:
    """A PNG, JPEG, TIFF or BMP file (8 or 16 bits per channel) as ``((1, H, W, C) float32 in
    [0, 1], ImageInfo)``.

    Raises:
      FileNotFoundError: no such file (names it).
      ImageReadError: the file cannot be decoded (truncated, corrupt, unsupported), naming it
        and the fix.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"image {str(p)!r} not found"
                                + (" (it is a folder)" if p.is_dir() else "")
                                + "; fix: check the path")
    try:
        arr, fmt, alpha = sources.decode_native(p)
    except ImageReadError as err:
        raise ImageReadError(f"cannot read image {p}: {err}. Fix: re-export the file as an "
                             "8- or 16-bit PNG.") from None
    except (OSError, SyntaxError, ValueError, zlib.error, struct.error, EOFError) as err:
        raise ImageReadError(f"cannot read image {p}: {type(err).__name__}: {err} (truncated "
                             "or corrupt file?). Fix: re-export or re-download the file.") from err
    bits = 16 if arr.dtype == np.uint16 else 8
    x = (arr.astype(np.float32) / (65535.0 if bits == 16 else 255.0))[None]
    info = ImageInfo(path=str(p), format=fmt, bits=bits, channels=int(arr.shape[-1]),
                     height=int(arr.shape[0]), width=int(arr.shape[1]), alpha_dropped=alpha)
    return x, info


def output_format(path) -> str:
    """The format a file name asks for (by its suffix), or an ``ImageWriteError``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ImageWriteError(f"cannot write {str(path)!r}: unknown image suffix {suffix!r}; "
                              f"expected one of {', '.join(sorted(FORMATS))}. Fix: name the "
                              "output e.g. photo_restored.png")
    return FORMATS[suffix]


def _png16_bytes(arr: np.ndarray) -> bytes:
    """A 16-bit gray or RGB PNG (no interlace, filter 0) of uint16 (H, W, 1|3)."""
    h, w, c = arr.shape
    ctype = 0 if c == 1 else 2

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = arr.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _to_hwc(x) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"x: expected one image (1, H, W, C), got a batch of {a.shape[0]}; "
                             "fix: write each image of the batch on its own, x[i:i+1]")
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"x: expected an image (1, H, W, C), (H, W, C) or (H, W) with C = 1 or 3, "
                         f"got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        raise FloatingPointError("x: the image holds NaN/Inf values; nothing was written")
    return a


def write_image(path, x, info: ImageInfo | None = None, *, bits: int | None = None) -> ImageInfo:
    """Write ``x`` (``(1, H, W, C)``, ``(H, W, C)`` or ``(H, W)`` float in [0, 1]; clipped) to
    ``path`` atomically, the format chosen by the suffix.

    ``bits``: 8 or 16; default ``info.bits`` (the input's depth) where the format can hold it
    (16 bits: PNG, TIFF), else 8. JPEG is written at quality 95. Returns the written file's
    :class:`ImageInfo`. An existing file at ``path`` is replaced (the caller decides whether
    that is allowed).

    Raises:
      ImageWriteError: unknown suffix, missing or read-only folder (names the file and the fix).
    """
    p = Path(path).expanduser()
    fmt = output_format(p)
    a = _to_hwc(x)
    if bits is None:
        bits = info.bits if info is not None else 8
    if bits not in (8, 16):
        raise ValueError(f"bits: expected 8 or 16, got {bits!r}")
    if fmt not in SIXTEEN_BIT_FORMATS:
        bits = 8
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ImageWriteError(f"cannot write {str(p)!r}: folder {str(folder)!r} does not exist; "
                              "fix: create it (mkdir -p) or choose another output path")
    top = 65535.0 if bits == 16 else 255.0
    q = np.round(np.clip(a, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=folder)
    except OSError as err:
        raise ImageWriteError(f"cannot write {str(p)!r}: {err.strerror} in folder "
                              f"{str(folder)!r} (read-only?); fix: choose a writable output "
                              "folder (-o)") from err
    try:
        with os.fdopen(fd, "wb") as f:
            if bits == 16 and fmt == "PNG":
                f.write(_png16_bytes(q))
            elif bits == 16 and q.shape[-1] == 3:  # 16-bit colour TIFF: Pillow cannot write it
                try:
                    import tifffile
                except ImportError as err:
                    raise ImageWriteError(f"cannot write {str(p)!r}: a 16-bit colour TIFF needs "
                                          "the tifffile package; fix: pip install tifffile, or "
                                          "write a .png (16-bit colour PNG works)") from err
                import io as _io

                buf = _io.BytesIO()
                tifffile.imwrite(buf, q, photometric="rgb")
                f.write(buf.getvalue())
            elif bits == 16:
                Image.fromarray(np.ascontiguousarray(q[..., 0], "<u2")).save(f, format=fmt)  # I;16
            else:
                im = Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q)
                extra = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
                im.save(f, format=fmt, **extra)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written picture gets the umask's
        os.replace(tmp, p)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return ImageInfo(path=str(p), format=fmt, bits=bits, channels=int(q.shape[-1]),
                     height=int(q.shape[0]), width=int(q.shape[1]))
