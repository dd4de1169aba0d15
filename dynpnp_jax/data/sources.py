"""Where a dataset's source PNGs are, what they are, and how to fetch the public ones.

A *source* is the list of image files one builder turns into TFDS records, resolved as:

1. the explicit ``data_dir`` argument, when given (authoritative: nothing else is tried);
2. else ``paths.data_dir()``: ``$DYNPNP_DATA``, else the read-only ``shared/data`` beside the
   checkout, when it holds the dataset;
3. else a download into ``paths.cache_dir()/downloads/<name>`` where a public source exists
   (Set12 and BSD68 from github.com/cszn/DnCNN ``testsets/``, verified by a SHA-256 digest);
   GoPro is a manual download and raises with the steps.

A data root may hold the dataset in a sub-folder (``set12/`` or ``Set12/``, ``bsd68/`` or
``BSD68/``, ``gopro/`` or ``GOPRO_Large/``) or *be* the dataset folder itself.

Every source has a ``fingerprint``: a hash of its root path and of each file's relative path,
size and modification time. The builders key their prepared TFDS data by it, so a changed,
added or removed file means a new build, never a stale cache. (Contents are not hashed: that
would read the whole GOPRO_Large set on every load.)
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import urllib.request
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


def list_pngs(folder: Path) -> list[Path]:
    """The ``*.png`` files (any case) directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
                  key=lambda p: p.name)


def fingerprint(root: Path, files: list[Path]) -> str:
    """16 hex digits keyed on the root and each file's relative path, size and mtime."""
    h = hashlib.sha256(str(root.resolve()).encode())
    for f in sorted(files):
        st = f.stat()
        h.update(f"\n{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def read_png(path: Path, channels: int | None = None) -> np.ndarray:
    """Reads an 8-bit image as uint8 (H, W, C).

    Args:
      path: the image file.
      channels: 1 (convert to luminance 'L'), 3 (convert to 'RGB'), or None to keep gray
        images gray (C=1) and make everything else RGB (C=3; alpha is dropped).
    """
    with Image.open(path) as im:
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise ValueError(f"read_png: {path} is a {im.mode!r} (16-bit/float) image; expected "
                             f"8 bits per channel. Fix: convert it to 8-bit PNG first.")
        if channels is None:
            channels = 1 if im.mode in ("L", "LA", "1") else 3
        arr = np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


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


def _clean_source(name: str, folder: Path) -> Source:
    files = list_pngs(folder)
    items = tuple(Item(name=f.stem, image=f) for f in files)
    return Source(name, folder, items, paired=False, fingerprint=fingerprint(folder, files))


def _paired_items(seq_dir: Path, prefix: str = "") -> list[Item]:
    """blur/*.png of one folder, each with its sharp/ twin of the same file name when present."""
    items = []
    for b in list_pngs(seq_dir / "blur"):
        s = seq_dir / "sharp" / b.name
        items.append(Item(name=prefix + b.stem, blur=b, sharp=s if s.is_file() else None))
    return items


def _paired_source(name: str, root: Path, items: list[Item]) -> Source:
    files = [p for it in items for p in (it.blur, it.sharp) if p is not None]
    items = sorted(items, key=lambda it: it.name)
    return Source(name, root, tuple(items), paired=True, fingerprint=fingerprint(root, files))


def _gopro_items(folder: Path) -> list[Item]:
    if list_pngs(folder / "blur"):  # one sequence: <folder>/blur, <folder>/sharp
        return _paired_items(folder)
    test = folder / "test"  # GOPRO_Large: <folder>/test/<sequence>/{blur,sharp}
    seqs = sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []
    return [it for seq in seqs for it in _paired_items(seq, prefix=f"{seq.name}/")]


def _missing(name: str, where: str, expected: str, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: no images found {where}; expected {expected}. Fix: {fix}")


def resolve(name: str, data_dir: str | os.PathLike | None = None) -> Source:
    """Finds (or downloads) the files of dataset ``name``; see the module docstring.

    Args:
      name: 'set12', 'bsd68', 'gopro' or 'folder'.
      data_dir: a data root (or the dataset folder itself); required for 'folder', where it is
        the folder of PNGs or of ``blur/`` (+ optional ``sharp/``) sub-folders.

    Raises:
      FileNotFoundError: naming the folder(s) searched, what was expected, and the fix.
    """
    explicit = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "folder":
        if explicit is None:
            raise ValueError("load_dataset('folder'): `data_dir` is required, got None. Fix: "
                             "pass data_dir=<a folder of PNGs, or with blur/ and sharp/>.")
        if not explicit.is_dir():
            raise _missing(name, f"at data_dir={explicit} (no such folder)",
                           "a folder of *.png, or blur/*.png with an optional sharp/",
                           "check the path.")
        if (explicit / "blur").is_dir():
            items = _paired_items(explicit)
            if not items:
                raise _missing(name, f"in {explicit / 'blur'}", "blur/*.png files",
                               "put the blurred PNGs in blur/ (sharp twins, same names, in "
                               "sharp/).")
            return _paired_source(name, explicit, items)
        if not list_pngs(explicit):
            raise _missing(name, f"in data_dir={explicit} (the folder is empty of *.png)",
                           "*.png files directly in it, or blur/ and sharp/ sub-folders",
                           "point data_dir at the folder that holds the PNGs.")
        return _clean_source(name, explicit)

    root = explicit if explicit is not None else paths.data_dir()
    if name == "gopro":
        folder = _dataset_folder(root, _GOPRO_ALIASES, _gopro_items) if root else None
        if folder is None:
            where = f"under {root}" if root else "(no data_dir, $DYNPNP_DATA or shared/data)"
            raise _missing(name, where, "gopro/blur/*.png or GOPRO_Large/test/<seq>/blur/*.png",
                           "\n" + GOPRO_INSTRUCTIONS)
        return _paired_source(name, folder, _gopro_items(folder))

    aliases, *_ = _PUBLIC[name]
    folder = _dataset_folder(root, aliases, list_pngs) if root else None
    if folder is None and explicit is not None:
        raise _missing(name, f"under data_dir={explicit} (tried {', '.join(aliases)} and the "
                       f"folder itself)", f"{aliases[0]}/*.png",
                       f"pass the folder that holds {aliases[0]}/, or data_dir=None to use "
                       f"$DYNPNP_DATA / shared/data / a download.")
    return _clean_source(name, folder if folder is not None else download_testset(name))
