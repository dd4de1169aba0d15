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

SPECS = ("levin", "levin:I (I = 1..8)", "kernels12", "kernels12:I (I = 1..12)",
         "bicubic", "bicubic:S (S = 2, 3, 4)", "gauss:SIGMA[,SIZE]", "motion:LENGTH,ANGLE[,SIZE]",
         "shake:SEED[,SIZE] (a synthetic camera-shake kernel)", "identity", "a file path (" + ", ".join(FILE_SUFFIXES) + ")")


# ---- helpers ----------------------------------------------------------------------------------

def _normalised(k, arg: str = "k") -> np.ndarray:
    """float64 -> finite, positive-mass check -> k / k.sum() as float32."""
    k = np.asarray(k, np.float64)
    if not np.isfinite(k).all():
        raise ValueError(f"{arg}: expected finite kernel values, got NaN/Inf; fix: clean the kernel "
                         "(e.g. np.nan_to_num) before using it")
    total = k.sum()
    if total <= 0:
        raise ValueError(f"{arg}: expected a kernel with positive total mass, got sum {total:.4g}; "
                         "fix: pass a non-negative blur kernel")
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
        raise FileNotFoundError(f"{filename} not found ({looked}); fix: pass path= (the file or its "
                                "folder) or set DYNPNP_DATA to the data folder holding kernels/")
    return p


def _pick(kernels: list, i, arg: str, what: str):
    if i is None:
        return [k.copy() for k in kernels]
    n = len(kernels)
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 1 <= i <= n:
        raise ValueError(f"{arg}: expected an integer 1..{n} (1-based, as in the papers) for the "
                         f"{what} kernels, got {i!r}; fix: pass {arg}=1..{n}, or None for all")
    return kernels[int(i) - 1].copy()


@functools.lru_cache(maxsize=8)
def _read_levin(p: Path) -> tuple:
    import h5py

    with h5py.File(p, "r") as f:
        refs = f["kernels"][()].ravel()
        # MATLAB stores column-major: h5py returns each kernel transposed
        return tuple(_normalised(np.asarray(f[r]).T) for r in refs)


@functools.lru_cache(maxsize=8)
def _read_cells(p: Path) -> tuple:
    from scipy.io import loadmat

    cells = loadmat(p)["kernels"]
    return tuple(_normalised(cells[0, j]) for j in range(cells.shape[1]))


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
        raise ValueError(f"scale: expected 2, 3 or 4 for the bicubic kernels, got {scale!r}; "
                         "fix: pass scale=2, 3 or 4")
    return _read_cells(_locate(BICUBIC_FILE, path))[int(scale) - 2].copy()


# ---- synthetic kernels ----------------------------------------------------------------------------

def _positive(v, arg: str, allow_zero: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = float("nan")
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{arg}: expected a {'non-negative' if allow_zero else 'positive'} number, "
                         f"got {v!r}; fix: pass e.g. {arg}=2")
    return f


def _size(size, arg: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{arg}: expected a positive integer kernel size, got {size!r}; "
                         f"fix: pass e.g. {arg}=25")
    return int(size)


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
    try:
        theta = math.radians(float(angle_deg))
    except (TypeError, ValueError):
        theta = float("nan")
    if not math.isfinite(theta):
        raise ValueError(f"angle_deg: expected a finite angle in degrees, got {angle_deg!r}; "
                         "fix: pass e.g. angle_deg=45")
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
            raise ValueError(f"size: a line of length {length:g} does not fit a {size}x{size} kernel; "
                             f"expected size >= {need} (or None); fix: pass size={need}")
        np.add.at(k, (rr[live], cc[live]), wgt[live])
    return _normalised(k)


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
    ``seed``: an int or a ``numpy.random.Generator`` -- the same seed gives the same kernel."""
    size = _size(size)
    if size < 7:
        raise ValueError(f"size: expected a camera-shake kernel size >= 7, got {size}; fix: pass "
                         "e.g. size=25")
    samples = _size(samples, "samples")
    if samples < 2:
        raise ValueError(f"samples: expected at least 2 trajectory steps, got {samples}; fix: "
                         "leave the default (1000)")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if extent is None:
        extent = rng.uniform(5.0, size - 2.0)
    extent = _positive(extent, "extent")
    if extent > size - 2:
        raise ValueError(f"extent: a path of {extent:g} pixels does not fit a {size}x{size} kernel; "
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
        raise ValueError(f"k: expected a 2-D (kh, kw) kernel, got shape {k.shape}; "
                         "fix: rotate one kernel at a time")
    k = _normalised(k).astype(np.float64)
    theta = math.radians(float(angle_deg))
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
        raise ValueError(f"angle_deg: rotating by {angle_deg} moved all the kernel's mass out of its "
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
        raise ValueError(f"name: variable {name!r} not found or not numeric in {where}; expected "
                         f"one of {found}; fix: pass name= one of those")
    raise ValueError(f"path: no 2-D numeric array in {where} (numeric variables: {found}); fix: "
                     "save the kernel as a 2-D array, or use levin()/kernels12()/bicubic() for the "
                     "cell-array files")


def load_kernel(path, name: str | None = None) -> np.ndarray:
    """A kernel from a file, normalised to sum 1 (float32).

    ``.npy``: the array (squeezed to 2-D); image files (``.png``, ``.bmp``, ...): converted to
    grayscale; ``.mat`` (MATLAB v5 via scipy, v7.3 via h5py, transposed back to MATLAB's
    orientation): the variable ``name``, or the first numeric 2-D one.
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(f"path: unsupported kernel file {str(p)!r}; expected one of "
                         f"{', '.join(FILE_SUFFIXES)}; fix: save the kernel with np.save (.npy)")
    if not p.is_file():
        raise FileNotFoundError(f"kernel file {str(p)!r} not found; fix: check the path")
    if suffix == ".npy":
        k = np.load(p, allow_pickle=False)
    elif suffix in IMAGE_SUFFIXES:
        from PIL import Image

        k = np.asarray(Image.open(p).convert("L"), np.float64)
    else:
        try:
            from scipy.io import loadmat

            d = loadmat(p)
            items = [(key, v) for key, v in d.items() if not key.startswith("__")]
            _, k = _first_2d(items, name, str(p))
        except NotImplementedError:  # MATLAB v7.3 = HDF5
            import h5py

            with h5py.File(p, "r") as f:
                items = [(key, np.asarray(v).T) for key, v in f.items()
                         if isinstance(v, h5py.Dataset) and not key.startswith("#")]
                _, k = _first_2d(items, name, str(p))
    k = np.squeeze(np.asarray(k))
    if k.ndim != 2:
        raise ValueError(f"path: expected a 2-D kernel in {str(p)!r}, got shape {k.shape}; fix: "
                         "save a single (kh, kw) kernel")
    return _normalised(k, arg="path")


def _numbers(args: str, spec: str, form: str, n_min: int, n_max: int):
    parts = [a.strip() for a in args.split(",")] if args else []
    try:
        vals = [float(a) for a in parts]
    except ValueError:
        vals = None
    if vals is None or not n_min <= len(vals) <= n_max:
        raise ValueError(f"spec: could not parse {spec!r}; expected {form!r}; "
                         f"fix: e.g. {form.split(':')[0]}:"
                         f"{ {'motion': '15,45', 'shake': '7'}.get(form.split(':')[0], '1.6')}")
    return vals


def _int_arg(args: str, spec: str, form: str) -> int | None:
    if args == "":
        return None
    try:
        return int(args)
    except ValueError:
        raise ValueError(f"spec: could not parse {spec!r}; expected {form!r} with an integer; "
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
    folder), as for ``levin``. Indices are 1-based.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec: expected a kernel spec string, got {spec!r}; accepted: "
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
        vals = _numbers(args, spec, "gauss:SIGMA[,SIZE]", 1, 2)
        size = 25 if len(vals) == 1 else int(vals[1])
        return [(f"gauss:{_fmt(vals[0])}" + (f",{size}" if len(vals) == 2 else ""),
                 gaussian(vals[0], size))]
    if key == "motion":
        vals = _numbers(args, spec, "motion:LENGTH,ANGLE[,SIZE]", 2, 3)
        size = None if len(vals) == 2 else int(vals[2])
        return [(f"motion:{_fmt(vals[0])},{_fmt(vals[1])}" + (f",{size}" if size else ""),
                 motion(vals[0], vals[1], size))]
    if key == "shake":
        vals = _numbers(args, spec, "shake:SEED[,SIZE]", 1, 2)
        if any(not math.isfinite(v) or v != int(v) or v < 0 for v in vals):
            raise ValueError(f"spec: {spec!r}: expected shake:SEED[,SIZE] with integers >= 0; fix: "
                             "e.g. shake:7 or shake:7,19")
        size = 25 if len(vals) == 1 else int(vals[1])
        return [(f"shake:{int(vals[0])}" + (f",{size}" if len(vals) == 2 else ""),
                 camera_shake(int(vals[0]), size))]
    if key in ("identity", "delta") and not args:
        return [("identity", np.ones((1, 1), np.float32))]
    p = Path(spec).expanduser()
    if p.suffix.lower() in FILE_SUFFIXES or p.is_file():
        return [(spec, load_kernel(p))]
    raise ValueError(f"spec: unknown kernel {spec!r}; accepted: {'; '.join(SPECS)}")
