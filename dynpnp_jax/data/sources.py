"""Where a dataset's source images are, what they are, how to read them, and how to fetch the
public ones.

A *source* is the list of image files one builder turns into TFDS records, resolved as:

1. the explicit ``data_dir`` argument, when given (authoritative: nothing else is tried);
2. else ``paths.data_dir()``: ``$DYNPNP_DATA``, else the read-only ``shared/data`` beside the
   checkout, when it holds the dataset;
3. else a download into ``paths.cache_dir()/downloads/<name>`` where a public source exists
   (Set12 and BSD68 from github.com/cszn/DnCNN ``testsets/``, verified by a SHA-256 digest);
   GoPro is a manual download and raises with the steps; Set3G, Set3C, Set5 and CBSD68 (the
   IRCNN/DPIR/FFDNet test sets) are read from a local copy only.

A data root may hold the dataset in a sub-folder (``set12/`` or ``Set12/``, ``bsd68/`` or
``BSD68/``, ``gopro/`` or ``GOPRO_Large/``, ``set3g/``, ``set3c/``, ``set5/``, ``cbsd68/``) or
*be* the dataset folder itself.

Every source has a ``fingerprint``: a hash of its root path and of each file's relative path
and content (sha256). The builders key their prepared TFDS data by it, so a changed, added or
removed file means a new build, never a stale cache -- also when a file is replaced by another
of the same size and modification time. The content hashes are remembered in
``cache_dir()/file_hashes/`` keyed by each file's size, modification time, inode and status
change time (which no user tool sets back), so a large set is read in full only once.

Separately, :func:`reference_status` says whether a source *is* the published test set (the
file names and a SHA-256 digest of the contents match the upstream copy): only then does a
report print published numbers beside its own.

Files are read by :func:`read_image`: PNG, BMP, JPEG, TIFF; 8 or 16 bits per channel
(``BIT_DEPTH_RULE``); gray/colour conversions by ``GRAY_RULE`` (ITU-R BT.601 luma, as PIL).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import paths

_DNCNN_RAW = "https://raw.githubusercontent.com/cszn/DnCNN/master/testsets"
GOPRO_PAGE = "https://seungjunnah.github.io/Datasets/gopro"

# name -> (sub-folder aliases, upstream folder, file names, digest over "name:sha256\n" lines).
_PUBLIC = {
    "set12": (("set12", "Set12"), "Set12", tuple(f"{i:02d}.png" for i in range(1, 13)),
              "4d78137d959a69ef2cf645b13e6eeae218579bc5cd0b3325752a0b1c773280ca"),
    "bsd68": (("bsd68", "BSD68"), "BSD68", tuple(f"test{i:03d}.png" for i in range(1, 69)),
              "0cd31e72ce3df30574f8f5d3b7588b2127b1d2db9481d3e4dee299a5b272d9f7"),
}
_GOPRO_ALIASES = ("gopro", "GOPRO_Large", "GoPro")

# Test sets read from a local copy only (shared/data; no download here): name -> (sub-folder
# aliases, upstream, number of files, digest over "name:sha256\n" lines of the local copy).
_LOCAL = {
    "set3g": (("set3g", "Set3G"), "cszn/IRCNN testsets/Set3G (cameraman, house, lena256)", 3,
              "ac96727b8b9dee30f10279ea5c0944a51f2fdbe42ad56215fdedaa4a44591a0a"),
    "set3c": (("set3c", "Set3C"), "cszn/DPIR testsets/set3c (butterfly, leaves, starfish)", 3,
              "e671372de7da2fcfe5524d1e2e3e513439a5b04811cfef5fc5f1073ab5c8bf39"),
    "set5": (("set5", "Set5"), "cszn/DPIR testsets/set5 ground truths (BMP converted to PNG)", 5,
             "f39c9e12542fd22e4dfae1e80befc82da638821b630aabe19386d2ca6e2a9d60"),
    "cbsd68": (("cbsd68", "CBSD68"), "cszn/FFDNet testsets/CBSD68", 68,
               "71f0be8b49dfa966f1c89e517cf67ef23486cc6e0f98b41987814e2d340dc0e3"),
}

GOPRO_INSTRUCTIONS = f"""\
GoPro (GOPRO_Large) is a manual download (no scriptable public URL):
  1. get GOPRO_Large.zip from the DeepDeblur project page {GOPRO_PAGE}
     (Nah et al., CVPR 2017; github.com/SeungjunNah/DeepDeblur_release);
  2. unzip it into a data folder so that <root>/GOPRO_Large/test/<sequence>/blur/*.png and
     .../sharp/*.png exist (or <root>/gopro/blur/*.png with an optional gopro/sharp/);
  3. pass data_dir=<root> (or set DYNPNP_DATA=<root>)."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One example: its name and the files it is made of (None where absent)."""
    name: str
    image: Path | None = None
    blur: Path | None = None
    sharp: Path | None = None


@dataclasses.dataclass(frozen=True)
class Source:
    """The resolved files of one dataset; ``paired`` means blur/sharp items, else clean ones."""
    name: str
    root: Path
    items: tuple[Item, ...]
    paired: bool
    fingerprint: str


IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

# How images become the uint8 records every protocol starts from (stated once; results.json
# repeats it).
BIT_DEPTH_RULE = ("8-bit files as they are; 16-bit files (PNG, TIFF) scaled to [0, 1] by "
                  "v / 65535 and stored as the nearest 8-bit level round(v * 255 / 65535): every "
                  "protocol's reference is 8-bit")
GRAY_RULE = ("colour to gray: ITU-R BT.601 luma as PIL convert('L') computes it, "
             "L = R * 299/1000 + G * 587/1000 + B * 114/1000 (rounded) on the 8-bit image; gray to "
             "colour: the channel repeated 3 times; alpha dropped")


class ImageReadError(ValueError):
    """An image file that cannot be decoded (truncated, corrupt, unsupported); names the file."""


def list_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files (``suffixes``, any case) directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()),
                  key=lambda p: p.name)


def list_pngs(folder: Path) -> list[Path]:
    """The ``*.png`` files (any case) directly in ``folder``, sorted by name."""
    return list_images(folder, (".png",))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def content_hashes(root: Path, files: list[Path]) -> dict[str, str]:
    """``{relative path: sha256 of the content}`` of ``files`` under ``root``. A file whose
    size, modification time, inode and status-change time are those remembered from an
    earlier call is not read again (``cache_dir()/file_hashes/``)."""
    import json
    import os

    memo_path = (paths.cache_dir() / "file_hashes"
                 / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json")
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out, changed = {}, False
    for f in sorted(files):
        rel = f.relative_to(root).as_posix()
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        got = memo.get(rel)
        if isinstance(got, list) and len(got) == 5 and got[:4] == stamp:
            out[rel] = got[4]
            continue
        out[rel] = _sha256(f)
        memo[rel] = [*stamp, out[rel]]
        changed = True
    if changed:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_name(f".{memo_path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(memo))
            os.replace(tmp, memo_path)
        except OSError:
            pass  # a read-only cache: hashed again next time
    return out


def fingerprint(root: Path, files: list[Path]) -> str:
    """16 hex digits keyed on the root and each file's relative path and content (sha256)."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for rel, sha in content_hashes(root, files).items():
        h.update(f"\n{rel}\t{sha}".encode())
    return h.hexdigest()[:16]


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> (H, W, 1) by ITU-R BT.601 luma, exactly as PIL ``convert('L')``
    (``GRAY_RULE``); a (H, W, 1) image is returned as it is."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        return img
    lum = np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("L"))
    return lum[..., None]


def to_channels(img: np.ndarray, channels: int | None) -> np.ndarray:
    """uint8 (H, W, C) with ``channels`` channels by ``GRAY_RULE`` (None: unchanged)."""
    c = img.shape[-1]
    if channels is None or c == channels:
        return img
    if channels == 1 and c == 3:
        return to_gray(img)
    if channels == 3 and c == 1:
        return np.repeat(img, 3, axis=-1)
    raise ValueError(f"to_channels: cannot convert a {c}-channel image to {channels} channels; "
                     f"expected 1 or 3 on both sides. Fix: pass a gray or RGB image.")


def file_channels(source: "Source") -> int:
    """1 when every image file of ``source`` is gray (by its header, as ``read_image`` keeps
    it), else 3."""
    for item in source.items:
        for path in (item.image, item.blur):
            if path is None:
                continue
            try:
                with Image.open(path) as im:
                    gray = im.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N")
            except (OSError, SyntaxError) as err:
                raise ImageReadError(f"cannot read image {path}: {err}. Fix: re-export or "
                                     f"remove the file.") from err
            if not gray:
                return 3
    return 1


def _u16_to_u8(arr: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535) in integers (no ties: 65535 = 255 * 257 is odd)
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _png_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(29)
    # signature (8) + length (4) + b'IHDR' + width, height (8) + bit depth + colour type
    return (len(head) >= 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
            and head[24] == 16 and head[25] in (2, 6))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _read_png16_colour(path: Path) -> np.ndarray:
    """A 16-bit RGB(A) PNG as uint16 (H, W, 3): Pillow would keep only the high byte."""
    data = Path(path).read_bytes()
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ImageReadError(f"truncated PNG chunk {kind!r}")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise ImageReadError("no IHDR/IDAT chunk (truncated file?)")
    w, h, depth, ctype, _, _, interlace = ihdr
    if interlace:
        raise ImageReadError("interlaced 16-bit colour PNGs are not supported; re-save it "
                             "without interlacing")
    bpp = 6 if ctype == 2 else 8
    stride = w * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) < h * (stride + 1):
        raise ImageReadError(f"image data holds {len(raw)} bytes, expected {h * (stride + 1)} "
                             f"(truncated file?)")
    rows = np.frombuffer(raw, np.uint8)[:h * (stride + 1)].reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for r in range(h):
        ftype, line = rows[r, 0], rows[r, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: a running sum per byte lane
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif ftype == 2:  # Up
            cur = (line + prev) & 255
        elif ftype in (3, 4):  # Average, Paeth: depend on the reconstructed left pixel
            cur = np.zeros(stride, np.int32)
            left, upleft = np.zeros(bpp, np.int32), np.zeros(bpp, np.int32)
            for i in range(0, stride, bpp):
                up = prev[i:i + bpp]
                pred = (left + up) // 2 if ftype == 3 else _paeth(left, up, upleft)
                left = (line[i:i + bpp] + pred) & 255
                cur[i:i + bpp] = left
                upleft = up
        else:
            raise ImageReadError(f"unknown PNG filter type {ftype} in row {r}")
        out[r] = cur
        prev = cur
    arr = out.view(">u2").reshape(h, w, bpp // 2).astype(np.uint16)
    return arr[..., :3]


def _tiff_16bit_colour(im) -> bool:
    bits = getattr(im, "tag_v2", {}).get(258)
    return isinstance(bits, tuple) and len(bits) >= 3 and bits[0] == 16


def decode_native(path: Path) -> tuple[np.ndarray, str, bool]:
    """``(array, format, alpha dropped)`` of a PNG, JPEG, TIFF or BMP file: the array uint8 or
    uint16 (H, W, C) as stored (8 or 16 bits per channel, C = 1 or 3). The one decoder of image
    files: ``read_image`` (data sets, uint8 by ``BIT_DEPTH_RULE``) and
    ``dynpnp_jax.imageio.read_image`` (pictures to restore, bit depth kept) both call it."""
    with Image.open(path) as im:
        fmt = im.format or "?"
        alpha = "A" in im.getbands()
        if fmt == "PNG" and _png_16bit_colour(path):
            return _read_png16_colour(path), fmt, alpha
        if fmt == "TIFF" and _tiff_16bit_colour(im):
            try:
                import tifffile
            except ImportError as err:
                raise ImageReadError("a 16-bit colour TIFF needs the tifffile package (Pillow "
                                     "reads only its high byte); pip install tifffile") from err
            arr = np.asarray(tifffile.imread(path))
            if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or arr.dtype != np.uint16:
                raise ImageReadError(f"expected a (H, W, 3) uint16 TIFF, got {arr.shape} "
                                     f"{arr.dtype}")
            return arr[..., :3], fmt, arr.shape[-1] == 4
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im)
            if arr.min() < 0 or arr.max() > 65535:
                raise ImageReadError(f"32-bit integer image with values {arr.min()}..{arr.max()}"
                                     "; expected 8 or 16 bits per channel")
            return arr.astype(np.uint16)[..., None], fmt, False
        if im.mode == "F":
            raise ImageReadError("a floating-point image; expected 8 or 16 bits per channel "
                                 "(convert it to an 8- or 16-bit PNG)")
        gray = im.mode in ("L", "LA", "1")
        im.load()  # decode everything now: a truncated file fails here, naming it
        arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8)
    return (arr[..., None] if arr.ndim == 2 else arr), fmt, alpha


def _decode(path: Path) -> np.ndarray:
    """uint8 (H, W, 1) or (H, W, 3) of any supported file (see ``read_image``)."""
    arr = decode_native(path)[0]
    return _u16_to_u8(arr) if arr.dtype == np.uint16 else arr


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """Reads a PNG, BMP, JPEG or TIFF file as uint8 (H, W, C).

    8-bit files are read as they are; 16-bit ones (gray or colour PNG and TIFF) by
    ``BIT_DEPTH_RULE`` (not Pillow's ``convert``, which clips 16-bit gray values to 255 and
    keeps only the high byte of 16-bit colour). Channels by ``GRAY_RULE``.

    Args:
      path: the image file.
      channels: 1 (gray: BT.601 luma of a colour file), 3 (RGB), or None to keep gray files
        gray (C=1) and make everything else RGB (C=3; alpha is dropped).

    Raises:
      ImageReadError: the file cannot be decoded (truncated, corrupt, unsupported), naming it.
    """
    path = Path(path)
    try:
        arr = _decode(path)
    except ImageReadError as err:
        raise ImageReadError(f"cannot read image {path}: {err}. Fix: re-export the file as an "
                             f"8- or 16-bit PNG, or remove it from the folder.") from None
    except (OSError, SyntaxError, ValueError, zlib.error, struct.error, EOFError) as err:
        raise ImageReadError(f"cannot read image {path}: {type(err).__name__}: {err} (truncated "
                             f"or corrupt file?). Fix: re-export or re-download the file, or "
                             f"remove it from the folder.") from err
    return to_channels(arr, channels)


read_png = read_image  # the old name


def _verify_digest(folder: Path, files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for fname in files:
        h.update(f"{fname}:{hashlib.sha256((folder / fname).read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _fetch_url(url: str) -> bytes:
    """Downloads one file (a seam the tests replace; no retries: the files are tiny)."""
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (fixed https URL)
        return resp.read()


def download_testset(name: str) -> Path:
    """Downloads Set12/BSD68 from cszn/DnCNN into the cache (once) and returns the folder.

    The files are checked against a SHA-256 digest of the DnCNN master copies; on a mismatch the
    download is deleted and a ValueError raised, so a half or altered set is never used.
    """
    _, upstream, files, digest = _PUBLIC[name]
    dest = paths.cache_dir() / "downloads" / name
    if all((dest / f).is_file() for f in files):
        return dest
    tmp = dest.with_name(f"{name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for fname in tqdm(files, desc=f"downloading {name} from cszn/DnCNN", unit="file"):
            url = f"{_DNCNN_RAW}/{upstream}/{fname}"
            try:
                data = _fetch_url(url)
            except OSError as err:
                raise FileNotFoundError(
                    f"could not download {name}: {url} failed ({err}). Fix: check the network, "
                    f"or put the PNGs in <root>/{name}/ and pass data_dir=<root> (or set "
                    f"DYNPNP_DATA=<root>).") from err
            (tmp / fname).write_bytes(data)
        got = _verify_digest(tmp, files)
        if got != digest:
            raise ValueError(
                f"downloaded {name} does not match the expected SHA-256 digest (expected "
                f"{digest}, got {got}); upstream changed or the download was corrupted. Fix: "
                f"retry, or supply the files yourself with data_dir=<root>.")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _dataset_folder(root: Path, aliases: tuple[str, ...], has_it) -> Path | None:
    for cand in [root / a for a in aliases] + [root]:
        if has_it(cand):
            return cand
    return None


def _unique_stems(files: list[Path], where: Path) -> None:
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise ValueError(f"{where}: {seen[f.stem].name} and {f.name} would both be image "
                             f"{f.stem!r}; expected one file per name. Fix: rename or remove one.")
        seen[f.stem] = f


def _clean_source(name: str, folder: Path) -> Source:
    files = list_images(folder)
    _unique_stems(files, folder)
    items = tuple(Item(name=f.stem, image=f) for f in files)
    return Source(name, folder, items, paired=False, fingerprint=fingerprint(folder, files))


def _paired_items(seq_dir: Path, prefix: str = "") -> list[Item]:
    """blur/* images of one folder, each with its sharp/ twin of the same name (the same file
    name, else the same stem with another image suffix) when present."""
    blurs, sharps = list_images(seq_dir / "blur"), list_images(seq_dir / "sharp")
    _unique_stems(blurs, seq_dir / "blur")
    _unique_stems(sharps, seq_dir / "sharp")
    by_stem = {f.stem: f for f in sharps}
    return [Item(name=prefix + b.stem, blur=b, sharp=by_stem.get(b.stem)) for b in blurs]


def _paired_source(name: str, root: Path, items: list[Item]) -> Source:
    files = [p for it in items for p in (it.blur, it.sharp) if p is not None]
    items = sorted(items, key=lambda it: it.name)
    return Source(name, root, tuple(items), paired=True, fingerprint=fingerprint(root, files))


def _gopro_items(folder: Path) -> list[Item]:
    if list_images(folder / "blur"):  # one sequence: <folder>/blur, <folder>/sharp
        return _paired_items(folder)
    test = folder / "test"  # GOPRO_Large: <folder>/test/<sequence>/{blur,sharp}
    seqs = sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []
    return [it for seq in seqs for it in _paired_items(seq, prefix=f"{seq.name}/")]


def _missing(name: str, where: str, expected: str, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: no images found {where}; expected {expected}. Fix: {fix}")


def resolve(name: str, data_dir: str | os.PathLike | None = None) -> Source:
    """Finds (or downloads) the files of dataset ``name``; see the module docstring.

    Args:
      name: 'set12', 'bsd68', 'gopro', 'set3g', 'set3c', 'set5', 'cbsd68' or 'folder'.
      data_dir: a data root (or the dataset folder itself); required for 'folder', where it is
        the folder of images (``IMAGE_SUFFIXES``) or of ``blur/`` (+ optional ``sharp/``)
        sub-folders.

    Raises:
      FileNotFoundError: naming the folder(s) searched, what was expected, and the fix.
    """
    explicit = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "folder":
        if explicit is None:
            raise ValueError("load_dataset('folder'): `data_dir` is required, got None. Fix: "
                             "pass data_dir=<a folder of images, or with blur/ and sharp/>.")
        if not explicit.is_dir():
            raise _missing(name, f"at data_dir={explicit} (no such folder)",
                           "a folder of images, or blur/ with an optional sharp/",
                           "check the path.")
        if (explicit / "blur").is_dir():
            items = _paired_items(explicit)
            if not items:
                raise _missing(name, f"in {explicit / 'blur'}",
                               f"blur/ image files ({', '.join(IMAGE_SUFFIXES)})",
                               "put the blurred images in blur/ (sharp twins, same names, in "
                               "sharp/).")
            return _paired_source(name, explicit, items)
        if not list_images(explicit):
            raise _missing(name, f"in data_dir={explicit} (the folder holds no image files)",
                           f"image files ({', '.join(IMAGE_SUFFIXES)}) directly in it, or "
                           f"blur/ and sharp/ sub-folders",
                           "point data_dir at the folder that holds the images.")
        return _clean_source(name, explicit)

    root = explicit if explicit is not None else paths.data_dir()
    if name == "gopro":
        folder = _dataset_folder(root, _GOPRO_ALIASES, _gopro_items) if root else None
        if folder is None:
            where = f"under {root}" if root else "(no data_dir, $DYNPNP_DATA or shared/data)"
            raise _missing(name, where, "gopro/blur/*.png or GOPRO_Large/test/<seq>/blur/*.png",
                           "\n" + GOPRO_INSTRUCTIONS)
        return _paired_source(name, folder, _gopro_items(folder))

    if name in _LOCAL:
        aliases, upstream, count, _ = _LOCAL[name]
        folder = _dataset_folder(root, aliases, list_images) if root else None
        if folder is None:
            where = f"under {root}" if root else "(no data_dir, $DYNPNP_DATA or shared/data)"
            raise _missing(name, f"{where} (tried {', '.join(aliases)} and the folder itself)",
                           f"{aliases[0]}/ with the {count} images of {upstream}",
                           f"copy them into <root>/{aliases[0]}/ and pass data_dir=<root> (or "
                           f"set DYNPNP_DATA=<root>).")
        return _clean_source(name, folder)

    aliases, *_ = _PUBLIC[name]
    folder = _dataset_folder(root, aliases, list_images) if root else None
    if folder is None and explicit is not None:
        raise _missing(name, f"under data_dir={explicit} (tried {', '.join(aliases)} and the "
                       f"folder itself)", f"{aliases[0]}/*.png",
                       f"pass the folder that holds {aliases[0]}/, or data_dir=None to use "
                       f"$DYNPNP_DATA / shared/data / a download.")
    return _clean_source(name, folder if folder is not None else download_testset(name))


# Digests (over "relative path:sha256" lines) of local copies that are the published sets
# without a download: the offline GoPro sample (20 blur frames of GOPR0384_11_00 + the sharp
# frame 000001) in shared/data.
_KNOWN_DIGESTS = {
    "gopro": {"4ee192aab850f679b3c788aaefee545d34ee794d7df80864c6fd925ed15096ec":
              "the offline GoPro sample: 20 frames of test sequence GOPR0384_11_00"},
}
GOPRO_TEST_FRAMES = 1111


def _content_digest(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}:{hashlib.sha256(f.read_bytes()).hexdigest()}"
                 f"\n".encode())
    return h.hexdigest()


def reference_status(source: Source) -> tuple[bool, str]:
    """Whether ``source`` is the published test set its name says, and how that was decided.

    Set12/BSD68: the exact file names of cszn/DnCNN ``testsets`` and their SHA-256 digest;
    Set3G/Set3C/Set5/CBSD68: the digest of the copies in ``shared/data``.
    GoPro: the offline sample (by digest) or the full test set (1111 frames in
    ``<sequence>/<frame>`` form; too large to hash on every run). ``folder``: never.

    Returns ``(is_reference, reason)``.
    """
    if source.name in _PUBLIC:
        _, upstream, names, digest = _PUBLIC[source.name]
        files = [it.image for it in source.items]
        if tuple(f.name for f in files) != names:
            return False, (f"custom data: {len(files)} file(s) in {source.root}, not the "
                           f"{len(names)} files of cszn/DnCNN testsets/{upstream}")
        if _verify_digest(source.root, names) != digest:
            return False, (f"custom data: the files in {source.root} have the names of "
                           f"{upstream} but not its contents (SHA-256 differs)")
        return True, f"cszn/DnCNN testsets/{upstream} (SHA-256 verified)"
    if source.name in _LOCAL:
        _, upstream, count, digest = _LOCAL[source.name]
        files = [it.image for it in source.items]
        if len(files) != count:
            return False, (f"custom data: {len(files)} file(s) in {source.root}, not the {count} "
                           f"of {upstream}")
        if _content_digest(source.root, files) != digest:
            return False, f"custom data: the files in {source.root} are not those of {upstream}"
        return True, f"{upstream} (SHA-256 verified)"
    if source.name == "gopro":
        files = sorted(p for it in source.items for p in (it.blur, it.sharp) if p is not None)
        if len(files) <= 64:
            known = _KNOWN_DIGESTS["gopro"].get(_content_digest(source.root, files))
            if known:
                return True, f"{known} (SHA-256 verified)"
        if len(source.items) == GOPRO_TEST_FRAMES and all("/" in it.name for it in source.items):
            return True, f"GOPRO_Large test set ({GOPRO_TEST_FRAMES} frames, by count and layout)"
        return False, f"custom data: {len(source.items)} frame(s) in {source.root}"
    return False, f"custom data: a folder ({source.root})"
