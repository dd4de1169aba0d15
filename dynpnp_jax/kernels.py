"""Blur kernels: the published test kernels, synthetic ones, files, and a small spec language.

Every function returns float32 ``(kh, kw)`` numpy arrays normalised to sum 1 (the files' kernels
are renormalised in float64: the bicubic ones sum to 0.9999 in the file). Their centre is the
``Blur``/``scipy.ndimage.convolve`` one, ``(kh // 2, kw // 2)``.

* ``levin(i=None)``      -- the 8 real camera-shake kernels of Levin et al. (2009), ``Levin09.mat``
                            (IRCNN/DPIR deblurring); ``i`` is 1-based as in the papers
* ``kernels12(i=None)``  -- the 12 kernels of the USRNet/DPIR super-resolution experiments
                            (8 Gaussian-like + 4 motion), ``kernels_12.mat``; 1-based
* ``bicubic(scale)``     -- the x2/x3/x4 bicubic kernels of ``kernels_bicubicx234.mat`` (they have
                            small negative lobes)
* ``gaussian(sigma, size=25)``, ``motion(length, angle_deg, size=None)``, ``rotate(k, angle_deg)``
* ``camera_shake(seed, size=25)`` -- a random camera-shake kernel (synthetic training kernels)
* ``load_kernel(path)``  -- .npy, image files (.png, ...), .mat (v5 or v7.3)
* ``parse_kernel(spec)`` -- ``levin``, ``levin:3``, ``kernels12:2``, ``bicubic:2``, ``gauss:1.6``,
                            ``motion:15,45``, ``shake:7``, ``identity`` or a file path ->
                            ``[(name, kernel)]``

The ``.mat`` files are read from ``dynpnp_jax.paths.data_dir() / "kernels"`` (``$DYNPNP_DATA``
or ``shared/data``) unless a ``path`` (the file, or a folder holding it) is given.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from . import paths

LEVIN_FILE = "Levin09.mat"
KERNELS12_FILE = "kernels_12.mat"
BICUBIC_FILE = "kernels_bicubicx234.mat"

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
FILE_SUFFIXES = (".npy", ".mat") + IMAGE_SUFFIXES

# The largest kernel side accepted (synthetic kernels, specs and files). The published kernels are
# 13..27 pixels wide; a blur kernel must be smaller than the image it is applied to (the FFT blur of
# operators.Blur refuses larger ones), and a 1001 x 1001 kernel already takes 8 MB and an FFT of a
# 1001-pixel image per use: larger requests are typos (motion:1e6,45 would allocate 7 TiB).
MAX_KERNEL_SIZE = 1001


class KernelError(ValueError):
    """A bad kernel argument, spec or file (a ``ValueError``: the CLIs print its message)."""


class KernelFileNotFoundError(FileNotFoundError, KernelError):
    """A kernel file that does not exist (both a ``FileNotFoundError`` and a ``KernelError``)."""


SPECS = ("levin", "levin:I (I = 1..8)", "kernels12", "kernels12:I (I = 1..12)",
         "bicubic", "bicubic:S (S = 2, 3, 4)", "gauss:SIGMA[,SIZE]", "motion:LENGTH,ANGLE[,SIZE]",
         "shake:SEED[,SIZE] (a synthetic camera-shake kernel)", "identity", "a file path (" + ", ".join(FILE_SUFFIXES) + ")")


# ---- helpers ----------------------------------------------------------------------------------

# negative mass a kernel file may hold, relative to its positive mass: as operators.Blur allows
# (the bicubic kernels' lobes are about 0.23)
NEG_MASS_MAX = 0.5


def _normalised(k, arg: str = "k", where: str = "") -> np.ndarray:
    """float64 -> finite, positive-mass check -> k / k.sum() as float32. ``where``: ' in FILE'."""
    k = np.asarray(k, np.float64)
    if not np.isfinite(k).all():
        raise KernelError(f"{arg}: expected finite kernel values{where}, got NaN/Inf; fix: clean the "
                          "kernel (e.g. np.nan_to_num) before using it")
    total = k.sum()
    if total <= 0:
        raise KernelError(f"{arg}: expected a kernel with positive total mass{where}, got sum "
                          f"{total:.4g} (all zero or negative); fix: pass a non-negative blur kernel")
    neg, pos = -np.minimum(k, 0.0).sum(), np.maximum(k, 0.0).sum()
    if neg > NEG_MASS_MAX * pos:
        raise KernelError(f"{arg}: expected a (mostly) non-negative kernel{where} (negative mass at "
                          f"most {NEG_MASS_MAX:g} x the positive mass), got negative mass {neg:.4g} vs "
                          f"positive {pos:.4g}; fix: clip it, np.clip(k, 0, None)")
    return (k / total).astype(np.float32)


def _locate(filename: str, path) -> Path:
    """``path`` (a file or a folder holding ``filename``), else ``data_dir()/kernels/filename``."""
    if path is not None:
        p = Path(path).expanduser()
        p = p / filename if p.is_dir() else p
        looked = str(p)
    else:
        root = paths.data_dir()
        p = root / "kernels" / filename if root is not None else None
        looked = str(p) if p is not None else "no data folder found"
    if p is None or not p.is_file():
        raise KernelFileNotFoundError(f"{filename} not found ({looked}); fix: pass path= (the file or "
                                      "its folder) or set DYNPNP_DATA to the data folder holding "
                                      "kernels/")
    return p


def _pick(kernels: list, i, arg: str, what: str):
    if i is None:
        return [k.copy() for k in kernels]
    n = len(kernels)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 1 <= i <= n:
        raise KernelError(f"{arg}: expected an integer 1..{n} (1-based, as in the papers) for the "
                         f"{what} kernels, got {i!r}; fix: pass {arg}=1..{n}, or None for all")
    return kernels[int(i) - 1].copy()


def _unreadable(p: Path, what: str, err: BaseException) -> KernelError:
    return KernelError(f"path: {str(p)!r} is not {what} ({type(err).__name__}: {err}); fix: pass "
                       "the original file (re-download or re-export it)")


@functools.lru_cache(maxsize=8)
def _read_levin(p: Path) -> tuple:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            refs = f["kernels"][()].ravel()
            # MATLAB stores column-major: h5py returns each kernel transposed
            raw = [np.asarray(f[r]).T for r in refs]
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise _unreadable(p, f"a readable {LEVIN_FILE} (MATLAB v7.3 cell array 'kernels')",
                          err) from None
    return tuple(_normalised(k, "path", f" in {str(p)!r}") for k in raw)


@functools.lru_cache(maxsize=8)
def _read_cells(p: Path) -> tuple:
    from scipy.io import loadmat

    try:
        cells = loadmat(p)["kernels"]
        raw = [np.asarray(cells[0, j]) for j in range(cells.shape[1])]
    except Exception as err:  # scipy's MatReadError is a bare Exception
        raise _unreadable(p, "a readable MATLAB file with a cell array 'kernels'", err) from None
    return tuple(_normalised(k, "path", f" in {str(p)!r}") for k in raw)


# ---- the published kernels ----------------------------------------------------------------------

def levin(i: int | None = None, path=None):
    """The 8 Levin et al. (2009) kernels (sizes 19, 17, 15, 27, 13, 21, 23, 23; square), or the
    ``i``-th (1-based: ``levin(3)`` is the third, 15x15)."""
    return _pick(list(_read_levin(_locate(LEVIN_FILE, path))), i, "i", "8 Levin")


def kernels12(i: int | None = None, path=None):
    """The 12 USRNet/DPIR SR kernels (25x25; DPIR uses the first 8), or the ``i``-th (1-based)."""
    return _pick(list(_read_cells(_locate(KERNELS12_FILE, path))), i, "i", "12")


def bicubic(scale: int, path=None) -> np.ndarray:
    """The 25x25 bicubic kernel for ``scale`` 2, 3 or 4 (index ``scale - 2`` of the file)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale not in (2, 3, 4):
        raise KernelError(f"scale: expected 2, 3 or 4 for the bicubic kernels, got {scale!r}; "
                         "fix: pass scale=2, 3 or 4")
    return _read_cells(_locate(BICUBIC_FILE, path))[int(scale) - 2].copy()


# ---- synthetic kernels ----------------------------------------------------------------------------

def _positive(v, arg: str, allow_zero: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = float("nan")
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise KernelError(f"{arg}: expected a {'non-negative' if allow_zero else 'positive'} number, "
                          f"got {v!r}; fix: pass e.g. {arg}=2")
    return f


def _size(size, arg: str = "size", bound: int | None = MAX_KERNEL_SIZE) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise KernelError(f"{arg}: expected a positive integer kernel size, got {size!r}; "
                          f"fix: pass e.g. {arg}=25")
    if bound is not None and size > bound:
        if bound == MAX_KERNEL_SIZE:
            raise KernelError(f"{arg}: expected a kernel size <= {bound} (MAX_KERNEL_SIZE: a blur "
                              f"kernel must be smaller than the images it blurs), got {size}; fix: "
                              f"pass a smaller {arg} (the published kernels are 13..27 pixels)")
        raise KernelError(f"{arg}: expected an integer <= {bound}, got {size}; fix: pass a smaller "
                          f"{arg}")
    return int(size)


def _angle(angle_deg) -> float:
    """``angle_deg`` (degrees, finite) in radians."""
    try:
        theta = math.radians(float(angle_deg))
    except (TypeError, ValueError, OverflowError):
        theta = float("nan")
    if not math.isfinite(theta):
        raise KernelError(f"angle_deg: expected a finite angle in degrees, got {angle_deg!r}; "
                          "fix: pass e.g. angle_deg=45")
    return theta


def _seed(seed):
    """A ``numpy.random.Generator`` from an int seed >= 0 (or a Generator, used as it is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise KernelError(f"seed: expected an integer >= 0 (the same seed gives the same kernel) or a "
                          f"numpy.random.Generator, got {seed!r}; fix: pass e.g. seed=7, or "
                          "np.random.default_rng() for a fresh random kernel")
    return np.random.default_rng(int(seed))


def gaussian(sigma: float, size: int = 25) -> np.ndarray:
    """Isotropic Gaussian ``exp(-r^2 / (2 sigma^2))`` on a ``size x size`` grid centred at
    ``(size - 1) / 2`` (the middle pixel for odd sizes; a half-pixel shift for even ones), sum 1."""
    sigma = _positive(sigma, "sigma")
    size = _size(size)
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return _normalised(np.outer(g, g))


def motion(length: float, angle_deg: float, size: int | None = None) -> np.ndarray:
    """A straight motion-blur line of ``length`` pixels through the kernel centre (kh//2, kw//2).

    Construction: the segment from ``-length/2`` to ``+length/2`` along the direction
    ``angle_deg`` (degrees, counter-clockwise from the +x axis as displayed, i.e. with rows
    pointing down: 0 = horizontal, 90 = vertical) is sampled at ``8 * length + 1`` equally
    spaced points (midpoints of equal sub-segments), each carrying equal mass, and every point is
    splatted onto its 4 neighbouring pixels with bilinear weights -- an anti-aliased line, whose
    mass is spread uniformly along its length. The result is normalised to sum 1. ``length`` 0
    gives a delta. ``size`` defaults to the smallest odd size that holds the line,
    ``2 * ceil(length / 2) + 1``; a smaller ``size`` that would clip the line raises.
    """
    length = _positive(length, "length", allow_zero=True)
    if length > MAX_KERNEL_SIZE - 1:
        raise KernelError(f"length: expected a motion length <= {MAX_KERNEL_SIZE - 1} pixels (the "
                          f"line must fit a kernel of at most MAX_KERNEL_SIZE = {MAX_KERNEL_SIZE}, "
                          f"smaller than the images it blurs), got {length:g}; fix: pass a shorter "
                          "length (real camera motion: 5..50 pixels)")
    theta = _angle(angle_deg)
    size = 2 * math.ceil(length / 2) + 1 if size is None else _size(size)
    c = size // 2
    n = int(math.ceil(8 * length)) + 1
    t = (np.arange(n) + 0.5) / n * length - length / 2.0
    col = c + t * math.cos(theta)
    row = c - t * math.sin(theta)  # rows point down: a positive angle goes up
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    fr, fc = row - r0, col - c0
    k = np.zeros((size, size), np.float64)
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                        (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        live = wgt > 1e-12
        if np.any(live & ((rr < 0) | (rr >= size) | (cc < 0) | (cc >= size))):
            need = 2 * math.ceil(length / 2) + 1
            raise KernelError(f"size: a line of length {length:g} does not fit a {size}x{size} kernel; "
                             f"expected size >= {need} (or None); fix: pass size={need}")
        np.add.at(k, (rr[live], cc[live]), wgt[live])
    return _normalised(k)


# trajectory steps of camera_shake (a Python loop: 10^5 steps take about a second)
MAX_SAMPLES = 100_000


def camera_shake(seed, size: int = 25, *, extent=None, samples: int = 1000) -> np.ndarray:
    """A random camera-shake kernel (``size x size``, sum 1, centre of mass at the centre pixel):
    a synthetic training kernel of the kind of Levin et al.'s real ones, never one of them.

    The trajectory is the random motion of a particle with inertia (after Boracchi & Foi, "Modeling
    the performance of image restoration from motion blur", IEEE TIP 2012): ``samples`` steps of
    constant speed whose velocity is pushed by Gaussian shake, pulled back towards the start
    (centripetal term) and now and then turned round (an abrupt shake). The path is scaled so that
    its largest extent is ``extent`` pixels (default: uniform in [5, size - 2]), sampled densely,
    weighted by a smooth random dwell time (the camera slows and speeds up), centred on its mean
    and splatted bilinearly on the grid.
    ``seed``: an int >= 0 or a ``numpy.random.Generator`` -- the same seed gives the same kernel.
    ``size`` 7..``MAX_KERNEL_SIZE``; ``samples`` 2..``MAX_SAMPLES``."""
    size = _size(size)
    if size < 7:
        raise KernelError(f"size: expected a camera-shake kernel size >= 7, got {size}; fix: pass "
                          "e.g. size=25")
    samples = _size(samples, "samples", bound=MAX_SAMPLES)  # a Python loop: ~1 s per 1e5 steps
    if samples < 2:
        raise KernelError(f"samples: expected at least 2 trajectory steps, got {samples}; fix: "
                          "leave the default (1000)")
    rng = _seed(seed)
    if extent is None:
        extent = rng.uniform(5.0, size - 2.0)
    extent = _positive(extent, "extent")
    if extent > size - 2:
        raise KernelError(f"extent: a path of {extent:g} pixels does not fit a {size}x{size} kernel; "
                         f"expected extent <= {size - 2}; fix: pass a smaller extent or a larger size")
    anxiety = 0.02 * rng.uniform()
    centripetal, big, shake = 0.7 * rng.uniform(), 0.2 * rng.uniform(), 10.0 * rng.uniform()
    step = 1.0 / (samples - 1)
    v = np.exp(1j * rng.uniform(0, 2 * np.pi)) * max(anxiety, 1e-4)
    pos = np.zeros(samples, complex)
    for t in range(samples - 1):
        turn = 2 * v * np.exp(1j * (np.pi + rng.uniform(-0.5, 0.5))) if rng.uniform() < big * anxiety else 0
        v = v + turn + anxiety * (shake * complex(rng.normal(), rng.normal()) - centripetal * pos[t]) * step
        v = v / abs(v) * step
        pos[t + 1] = pos[t] + v
    # the dwell time varies along the path (the camera slows and speeds up): smooth log-normal
    # weights, the bright knots of real shake kernels
    tt = np.linspace(0, samples - 1, 4 * samples)
    dense = np.interp(tt, np.arange(samples), pos.real) + 1j * np.interp(tt, np.arange(samples), pos.imag)
    knots = rng.normal(size=8)
    dwell = np.exp(rng.uniform(0.0, 1.5) * np.interp(tt, np.linspace(0, samples - 1, 8), knots))
    dwell = dwell / dwell.sum()
    dense = dense - np.sum(dwell * dense)
    span = max(np.ptp(dense.real), np.ptp(dense.imag), 1e-9)
    dense = dense * (extent / span)
    c = size // 2
    # the mean at the centre; shifted (the least that does) only if the path would leave the grid
    col, row = c + dense.real, c - dense.imag
    col = col - min(0.0, col.min()) - max(0.0, col.max() - (size - 1.001))
    row = row - min(0.0, row.min()) - max(0.0, row.max() - (size - 1.001))
    r0, c0 = np.floor(row).astype(int), np.floor(col).astype(int)
    fr, fc = row - r0, col - c0
    k = np.zeros((size, size), np.float64)
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                        (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        np.add.at(k, (np.clip(r0 + dr, 0, size - 1), np.clip(c0 + dc, 0, size - 1)), wgt * dwell)
    return _normalised(k)


def rotate(k, angle_deg: float) -> np.ndarray:
    """``k`` rotated by ``angle_deg`` (counter-clockwise as displayed, like ``motion``) about its
    centre ``(kh // 2, kw // 2)`` (so a delta stays a delta), same size, bilinear interpolation,
    zero outside; negatives clipped, renormalised to sum 1. Mass rotated out of the
    ``kh x kw`` box is lost before the renormalisation: pad the kernel first if it fills its box.
    Used to simulate a wrong (mis-estimated) kernel."""
    from scipy.ndimage import map_coordinates

    k = np.asarray(k, np.float64)
    if k.ndim != 2:
        raise KernelError(f"k: expected a 2-D (kh, kw) kernel, got shape {k.shape}; "
                          "fix: rotate one kernel at a time")
    k = _normalised(k).astype(np.float64)
    theta = _angle(angle_deg)
    kh, kw = k.shape
    cy, cx = kh // 2, kw // 2
    rows, cols = np.meshgrid(np.arange(kh) - cy, np.arange(kw) - cx, indexing="ij")
    x, y = cols, -rows  # display coordinates, y up
    cos, sin = math.cos(theta), math.sin(theta)
    xs = cos * x + sin * y  # source point: rotate the output grid back by -theta
    ys = -sin * x + cos * y
    out = map_coordinates(k, [cy - ys, cx + xs], order=1, mode="constant", cval=0.0)
    out = np.clip(out, 0.0, None)
    if out.sum() <= 0:
        raise KernelError(f"angle_deg: rotating by {angle_deg} moved all the kernel's mass out of its "
                         f"{kh}x{kw} box; fix: pad the kernel (np.pad) before rotating it")
    return _normalised(out)


# ---- files and specs ------------------------------------------------------------------------------

def _first_2d(items, name, where: str):
    """The array called ``name`` (or the first numeric 2-D one) among (key, array) pairs."""
    found = []
    for key, val in items:
        val = np.asarray(val)
        if val.dtype.kind in "fiub":
            found.append(key)
            if (name is None and np.squeeze(val).ndim == 2) or key == name:
                return key, val
    if name is not None:
        raise KernelError(f"name: variable {name!r} not found or not numeric in {where}; expected "
                          f"one of {found}; fix: pass name= one of those")
    raise KernelError(f"path: no 2-D numeric array in {where} (numeric variables: {found}); fix: "
                      "save the kernel as a 2-D array, or use levin()/kernels12()/bicubic() for the "
                      "cell-array files")


_SAVE_FIX = "fix: save a 2-D float kernel, np.save(path, np.asarray(k, np.float32))"


def _read_npy(p: Path) -> np.ndarray:
    with open(p, "rb") as f:
        magic = f.read(6)
    if not (magic == b"\x93NUMPY" or magic.startswith(b"PK")):  # .npy, or an .npz (zip)
        raise KernelError(f"path: {str(p)!r} is not a numeric kernel: it is not a NumPy .npy file "
                          f"(starts with {magic!r}); {_SAVE_FIX}")
    try:
        k = np.load(p, allow_pickle=False)
    except ValueError as err:  # object arrays (pickled data), a damaged header
        what = ("holds pickled Python objects (an object array)" if "pickle" in str(err).lower()
                else f"is damaged or truncated ({err})")
        raise KernelError(f"path: {str(p)!r} is not a numeric kernel: it {what}; {_SAVE_FIX}") from None
    except (OSError, EOFError) as err:
        raise KernelError(f"path: {str(p)!r} is not a numeric kernel: it cannot be read as a .npy "
                          f"file ({type(err).__name__}: {err}); {_SAVE_FIX}") from None
    if not isinstance(k, np.ndarray):  # an .npz archive under a .npy name
        k.close()
        raise KernelError(f"path: {str(p)!r} is not a numeric kernel: it is an .npz archive, not a "
                          f"single array; {_SAVE_FIX}")
    if k.dtype.kind not in "fiub":
        raise KernelError(f"path: {str(p)!r} is not a numeric kernel: it holds a {k.dtype} array "
                          f"(expected real numbers); {_SAVE_FIX}")
    return k


def _read_image(p: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("L"), np.float64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise KernelError(f"path: {str(p)!r} is not a readable image ({type(err).__name__}: {err}); "
                          "fix: save the kernel as a grayscale PNG, or as .npy with np.save") from None


def _read_mat(p: Path, name) -> np.ndarray:
    from scipy.io import loadmat

    try:
        d = loadmat(p)
    except NotImplementedError:  # MATLAB v7.3 = HDF5
        import h5py

        try:
            with h5py.File(p, "r") as f:
                items = [(key, np.asarray(v).T) for key, v in f.items()
                         if isinstance(v, h5py.Dataset) and not key.startswith("#")]
        except (OSError, ValueError, TypeError) as err:
            raise _unreadable(p, "a readable MATLAB v7.3 file", err) from None
        return _first_2d(items, name, str(p))[1]
    except Exception as err:  # scipy's MatReadError is a bare Exception; truncated files: ValueError
        raise _unreadable(p, "a readable MATLAB .mat file", err) from None
    items = [(key, v) for key, v in d.items() if not key.startswith("__")]
    return _first_2d(items, name, str(p))[1]


def load_kernel(path, name: str | None = None) -> np.ndarray:
    """A kernel from a file, normalised to sum 1 (float32).

    ``.npy``: the array (extra singleton axes dropped; a ``(1, n)`` line stays 2-D); image
    files (``.png``, ``.bmp``, ...): converted to grayscale; ``.mat`` (MATLAB v5 via scipy, v7.3 via h5py, transposed back to MATLAB's
    orientation): the variable ``name``, or the first numeric 2-D one.

    Every bad file raises a :class:`KernelError` (a ``ValueError``) naming the file: not a file of
    its kind (garbage, pickled objects, a truncated file), not real numbers, not 2-D, NaN/Inf, all
    zero, (mostly) negative, or larger than ``MAX_KERNEL_SIZE``; a missing file a
    :class:`KernelFileNotFoundError` (a ``FileNotFoundError`` and a ``KernelError``).
    """
    try:
        p = Path(path).expanduser()
    except TypeError:
        raise KernelError(f"path: expected a kernel file path (str or Path), got {path!r}; fix: pass "
                          "e.g. 'kernel.npy'") from None
    suffix = p.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise KernelError(f"path: unsupported kernel file {str(p)!r}; expected one of "
                          f"{', '.join(FILE_SUFFIXES)}; fix: save the kernel with np.save (.npy)")
    if not p.is_file():
        raise KernelFileNotFoundError(f"path: kernel file {str(p)!r} not found"
                                      f"{' (a folder)' if p.is_dir() else ''}; fix: check the path")
    if suffix == ".npy":
        k = _read_npy(p)
    elif suffix in IMAGE_SUFFIXES:
        k = _read_image(p)
    else:
        k = _read_mat(p, name)
    k = np.asarray(k)
    while k.ndim > 2 and 1 in k.shape:  # extra singleton axes; a (1, n) line kernel stays 2-D
        k = np.squeeze(k, axis=k.shape.index(1))
    if k.ndim != 2 or 0 in k.shape:
        raise KernelError(f"path: expected a 2-D kernel in {str(p)!r}, got shape {k.shape}; fix: "
                          "save a single (kh, kw) kernel")
    if max(k.shape) > MAX_KERNEL_SIZE:
        raise KernelError(f"path: expected a kernel of at most {MAX_KERNEL_SIZE} x {MAX_KERNEL_SIZE} "
                          f"in {str(p)!r} (MAX_KERNEL_SIZE: a blur kernel must be smaller than the "
                          f"images it blurs), got shape {k.shape}; fix: crop the kernel to its support")
    return _normalised(k, arg="path", where=f" in {str(p)!r}")


def _numbers(args: str, spec: str, form: str, n_min: int, n_max: int):
    parts = [a.strip() for a in args.split(",")] if args else []
    try:
        vals = [float(a) for a in parts]
    except ValueError:
        vals = None
    if vals is None or not n_min <= len(vals) <= n_max:
        raise KernelError(f"spec: could not parse {spec!r}; expected {form!r}; "
                          f"fix: e.g. {form.split(':')[0]}:"
                          f"{ {'motion': '15,45', 'shake': '7'}.get(form.split(':')[0], '1.6')}")
    return vals


def _spec_size(v: float, spec: str, form: str) -> int:
    """The optional SIZE of a spec: a positive integer <= MAX_KERNEL_SIZE."""
    if not math.isfinite(v) or v != int(v) or v < 1:
        raise KernelError(f"spec: {spec!r}: expected {form} with SIZE a positive integer, got {v:g}; "
                          f"fix: e.g. {form.split(':')[0]}:"
                          f"{ {'motion': '15,45,21'}.get(form.split(':')[0], '1.6,15')}")
    return _size(int(v))


def _int_arg(args: str, spec: str, form: str) -> int | None:
    if args == "":
        return None
    try:
        return int(args)
    except ValueError:
        raise KernelError(f"spec: could not parse {spec!r}; expected {form!r} with an integer; "
                          f"fix: e.g. {form.split(':')[0]}:2") from None


def _fmt(v: float) -> str:
    return f"{v:g}"


def parse_kernel(spec: str, path=None) -> list:
    """Kernels named by ``spec`` as a list of ``(name, kernel)`` pairs.

    Accepted: ``levin`` (all 8, named ``levin:1`` .. ``levin:8``), ``levin:3``, ``kernels12``,
    ``kernels12:2``, ``bicubic`` (x2, x3, x4), ``bicubic:2``, ``gauss:1.6`` or
    ``gauss:1.6,15`` (sigma[, size]; ``gaussian:`` too), ``motion:15,45`` or
    ``motion:15,45,21`` (length, angle in degrees[, size]), ``shake:7`` or ``shake:7,19``
    (``camera_shake(seed[, size])``), ``identity`` (a 1x1 delta), or the
    path of a kernel file (see ``load_kernel``). ``path``: where the ``.mat`` files are (a
    folder), as for ``levin``. Indices are 1-based; sizes at most ``MAX_KERNEL_SIZE``.

    Every bad spec raises a :class:`KernelError` (a ``ValueError``; a missing file a
    :class:`KernelFileNotFoundError`, also a ``FileNotFoundError``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise KernelError(f"spec: expected a kernel spec string, got {spec!r}; accepted: "
                          f"{'; '.join(SPECS)}")
    spec = spec.strip()
    head, _, args = spec.partition(":")
    key = head.lower()
    if key in ("levin", "kernels12"):
        form = f"{key}:I"
        i = _int_arg(args, spec, form)
        fn = levin if key == "levin" else kernels12
        ks = fn(i, path=path)
        return [(spec, ks)] if i is not None else [(f"{key}:{j + 1}", k) for j, k in enumerate(ks)]
    if key == "bicubic":
        s = _int_arg(args, spec, "bicubic:S")
        scales = (2, 3, 4) if s is None else (s,)
        return [(f"bicubic:{s_}", bicubic(s_, path=path)) for s_ in scales]
    if key in ("gauss", "gaussian"):
        form = "gauss:SIGMA[,SIZE]"
        vals = _numbers(args, spec, form, 1, 2)
        size = 25 if len(vals) == 1 else _spec_size(vals[1], spec, form)
        return [(f"gauss:{_fmt(vals[0])}" + (f",{size}" if len(vals) == 2 else ""),
                 gaussian(vals[0], size))]
    if key == "motion":
        form = "motion:LENGTH,ANGLE[,SIZE]"
        vals = _numbers(args, spec, form, 2, 3)
        size = None if len(vals) == 2 else _spec_size(vals[2], spec, form)
        return [(f"motion:{_fmt(vals[0])},{_fmt(vals[1])}" + (f",{size}" if size else ""),
                 motion(vals[0], vals[1], size))]
    if key == "shake":
        vals = _numbers(args, spec, "shake:SEED[,SIZE]", 1, 2)
        if any(not math.isfinite(v) or v != int(v) or v < 0 for v in vals):
            raise KernelError(f"spec: {spec!r}: expected shake:SEED[,SIZE] with integers >= 0; fix: "
                              "e.g. shake:7 or shake:7,19")
        size = 25 if len(vals) == 1 else _size(int(vals[1]))
        return [(f"shake:{int(vals[0])}" + (f",{size}" if len(vals) == 2 else ""),
                 camera_shake(int(vals[0]), size))]
    if key in ("identity", "delta") and not args:
        return [("identity", np.ones((1, 1), np.float32))]
    p = Path(spec).expanduser()
    if p.suffix.lower() in FILE_SUFFIXES or p.is_file():
        return [(spec, load_kernel(p))]
    raise KernelError(f"spec: unknown kernel {spec!r}; accepted: {'; '.join(SPECS)}")
