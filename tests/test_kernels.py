"""Blur kernels: the published .mat files (from ../shared), synthetic kernels, files, specs."""
import math

import numpy as np
import pytest
from conftest import require_shared

from dynpnp_jax import kernels as K

LEVIN_SIZES = [19, 17, 15, 27, 13, 21, 23, 23]  # levin:1 .. levin:8, all square


@pytest.fixture(scope="module")
def kdir():
    return require_shared("data", "kernels")


def _orientation(k):
    """Centroid (x right, y up, about (kh//2, kw//2)) and principal-axis angle in degrees."""
    h, w = k.shape
    r, c = np.mgrid[:h, :w]
    x, y = c - w // 2, -(r - h // 2)
    mx, my = (k * x).sum(), (k * y).sum()
    cxx, cyy = (k * (x - mx) ** 2).sum(), (k * (y - my) ** 2).sum()
    cxy = (k * (x - mx) * (y - my)).sum()
    return mx, my, math.degrees(0.5 * math.atan2(2 * cxy, cxx - cyy))


def _check_kernel(k, allow_negative=False):
    assert isinstance(k, np.ndarray) and k.dtype == np.float32 and k.ndim == 2
    assert np.isfinite(k).all()
    assert abs(float(k.astype(np.float64).sum()) - 1.0) < 1e-5
    if not allow_negative:
        assert k.min() >= 0.0


def test_levin(kdir):
    ks = K.levin()  # located through paths.data_dir()
    assert [k.shape for k in ks] == [(s, s) for s in LEVIN_SIZES]
    for k in ks:
        _check_kernel(k)
    # 1-based, an explicit path (file or folder) gives the same kernels
    np.testing.assert_array_equal(K.levin(3), ks[2])
    np.testing.assert_array_equal(K.levin(8, path=kdir / "Levin09.mat"), ks[7])
    np.testing.assert_array_equal(K.levin(1, path=kdir), ks[0])
    # h5py gives MATLAB's arrays transposed: compare with the raw file
    import h5py

    with h5py.File(kdir / "Levin09.mat", "r") as f:
        raw = np.asarray(f[f["kernels"][()].ravel()[3]])
    assert not np.allclose(raw, raw.T)  # kernel 4 is not symmetric, so the transpose matters
    np.testing.assert_allclose(ks[3], raw.T / raw.sum(), atol=1e-7)
    # the returned arrays are copies
    ks[0][:] = 0
    assert K.levin(1).sum() > 0.99


def test_kernels12_and_bicubic(kdir):
    ks = K.kernels12()
    assert len(ks) == 12 and all(k.shape == (25, 25) for k in ks)
    for k in ks:
        _check_kernel(k)
    np.testing.assert_array_equal(K.kernels12(2), ks[1])
    from scipy.io import loadmat

    raw = loadmat(kdir / "kernels_12.mat")["kernels"][0, 9]
    np.testing.assert_allclose(ks[9], raw / raw.astype(np.float64).sum(), atol=1e-7)
    for s in (2, 3, 4):
        b = K.bicubic(s)
        assert b.shape == (25, 25)
        _check_kernel(b, allow_negative=True)  # bicubic kernels have negative lobes
        assert -0.02 < b.min() < 0
    # the x2 kernel is wider than nothing and narrower than x4
    assert K.bicubic(2).max() > K.bicubic(4).max()


def test_index_errors(kdir):
    for bad in (0, 9, 2.0, "3"):
        with pytest.raises(ValueError, match=r"^i: expected an integer 1\.\.8 \(1-based"):
            K.levin(bad)
    with pytest.raises(ValueError, match=r"^i: expected an integer 1\.\.12"):
        K.kernels12(13)
    with pytest.raises(ValueError, match=r"^scale: expected 2, 3 or 4"):
        K.bicubic(5)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Levin09\.mat not found.*path=.*DYNPNP_DATA"):
        K.levin(path=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"kernel file .* not found"):
        K.load_kernel(tmp_path / "nope.npy")


def test_gaussian():
    g = K.gaussian(1.6)
    _check_kernel(g)
    assert g.shape == (25, 25)
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1, ::-1])
    assert np.unravel_index(g.argmax(), g.shape) == (12, 12)
    # the variance of a well-sampled Gaussian is sigma^2
    x = np.arange(25) - 12
    np.testing.assert_allclose((g.sum(0) * x ** 2).sum(), 1.6 ** 2, rtol=1e-3)
    assert K.gaussian(0.8, size=7).shape == (7, 7)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(ValueError, match=r"^sigma: expected a positive number"):
            K.gaussian(bad)
    with pytest.raises(ValueError, match=r"^size: expected a positive integer"):
        K.gaussian(1.0, size=0)


@pytest.mark.parametrize("length,angle", [(9, 0), (15, 45), (15, 30), (10, 90), (7, -60), (20, 135)])
def test_motion(length, angle):
    k = K.motion(length, angle)
    _check_kernel(k)
    assert k.shape[0] % 2 == 1 and k.shape[0] == k.shape[1] >= length
    mx, my, ang = _orientation(k)
    assert abs(mx) < 1e-5 and abs(my) < 1e-5  # centred on (kh//2, kw//2)
    assert abs((ang - angle + 90) % 180 - 90) < 0.5
    # the mass is spread along a segment of the requested length: for a uniform segment the
    # variance along it is length^2 / 12 (+ the bilinear splat's 1/6 per axis, small)
    h, w = k.shape
    r, c = np.mgrid[:h, :w]
    t = (c - w // 2) * math.cos(math.radians(angle)) - (r - h // 2) * math.sin(math.radians(angle))
    var = (k * t ** 2).sum()
    assert length ** 2 / 12 <= var <= length ** 2 / 12 + 0.35


def test_motion_details():
    # horizontal length 4 on the pixel grid: half-weight end pixels (anti-aliased), sum 1
    k = K.motion(4, 0)
    np.testing.assert_allclose(k[2], [0.125, 0.25, 0.25, 0.25, 0.125], atol=1e-3)
    assert k.sum() - k[2].sum() < 1e-6
    np.testing.assert_array_equal(K.motion(0, 30), [[1.0]])
    assert K.motion(5, 0, size=9).shape == (9, 9)
    with pytest.raises(ValueError, match=r"^size: a line of length 15 does not fit a 9x9 kernel.*size=17"):
        K.motion(15, 0, size=9)
    with pytest.raises(ValueError, match=r"^length: expected a non-negative number"):
        K.motion(-3, 0)
    with pytest.raises(ValueError, match=r"^angle_deg: expected a finite angle"):
        K.motion(3, float("inf"))


def test_rotate():
    rng = np.random.default_rng(0)
    k = rng.random((9, 9))
    k /= k.sum()
    np.testing.assert_allclose(K.rotate(k, 0), k, atol=1e-7)
    np.testing.assert_allclose(K.rotate(k, 90), np.rot90(k), atol=1e-6)  # counter-clockwise
    np.testing.assert_allclose(K.rotate(k, -90), np.rot90(k, -1), atol=1e-6)
    delta = np.zeros((6, 6))
    delta[3, 3] = 1.0  # the centre of an even kernel is (kh//2, kw//2): a delta stays centred
    rd = K.rotate(delta, 33)  # (bilinear sampling spreads it a little, symmetrically)
    assert np.unravel_index(rd.argmax(), rd.shape) == (3, 3) and rd.max() > 0.7
    assert max(abs(v) for v in _orientation(rd)[:2]) < 1e-6
    # rotating a horizontal line gives the corresponding motion kernel's orientation
    for a in (30, 45, -70):
        r = K.rotate(K.motion(15, 0), a)
        _check_kernel(r)
        assert abs((_orientation(r)[2] - a + 90) % 180 - 90) < 1.0
        assert abs((_orientation(K.motion(15, a))[2] - _orientation(r)[2] + 90) % 180 - 90) < 1.0
    # negatives are clipped, the result renormalised
    neg = k.copy()
    neg[0, 0] = -0.01
    out = K.rotate(neg, 10)
    _check_kernel(out)
    with pytest.raises(ValueError, match=r"^k: expected a 2-D"):
        K.rotate(np.ones((2, 3, 3)), 10)


def test_load_kernel(tmp_path):
    from PIL import Image
    from scipy.io import savemat

    k = K.motion(7, 20)
    np.save(tmp_path / "k.npy", 3.0 * k[None])  # unnormalised, extra axis
    np.testing.assert_allclose(K.load_kernel(tmp_path / "k.npy"), k, atol=1e-7)
    img = np.round(k / k.max() * 255).astype(np.uint8)
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "k.png")  # RGB -> gray
    np.testing.assert_allclose(K.load_kernel(tmp_path / "k.png"), img / img.sum(dtype=np.float64),
                               atol=1e-7)
    savemat(tmp_path / "k.mat", {"label": np.array([3.0]), "kern": 2 * k, "other": np.eye(3)})
    np.testing.assert_allclose(K.load_kernel(tmp_path / "k.mat"), k, atol=1e-7)
    np.testing.assert_allclose(K.load_kernel(tmp_path / "k.mat", name="other"), np.eye(3) / 3)
    with pytest.raises(ValueError, match=r"^name: variable 'nope' not found.*'kern'"):
        K.load_kernel(tmp_path / "k.mat", name="nope")
    np.save(tmp_path / "bad.npy", -k)
    with pytest.raises(ValueError, match=r"^path: expected a kernel with positive total mass"):
        K.load_kernel(tmp_path / "bad.npy")
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match=r"^path: expected a 2-D kernel"):
        K.load_kernel(tmp_path / "cube.npy")
    (tmp_path / "k.txt").write_text("1")
    with pytest.raises(ValueError, match=r"^path: unsupported kernel file.*\.npy"):
        K.load_kernel(tmp_path / "k.txt")


def test_load_kernel_mat_v73(kdir):
    # a v7.3 (HDF5) file: the first 2-D dataset; Levin09.mat only holds references
    with pytest.raises(ValueError, match=r"^path: no 2-D numeric array"):
        K.load_kernel(kdir / "Levin09.mat")


def test_parse_kernel(kdir, tmp_path):
    levin = K.parse_kernel("levin")
    assert [n for n, _ in levin] == [f"levin:{i}" for i in range(1, 9)]
    name, k = K.parse_kernel("levin:3")[0]
    assert name == "levin:3" and k.shape == (15, 15)
    np.testing.assert_array_equal(k, levin[2][1])
    assert [n for n, _ in K.parse_kernel("kernels12")][-1] == "kernels12:12"
    np.testing.assert_array_equal(K.parse_kernel("kernels12:2")[0][1], K.kernels12(2))
    assert [n for n, _ in K.parse_kernel("bicubic")] == ["bicubic:2", "bicubic:3", "bicubic:4"]
    np.testing.assert_array_equal(K.parse_kernel("bicubic:3")[0][1], K.bicubic(3))
    np.testing.assert_array_equal(K.parse_kernel("gauss:1.6")[0][1], K.gaussian(1.6))
    assert K.parse_kernel("gaussian:2,15")[0][1].shape == (15, 15)
    np.testing.assert_array_equal(K.parse_kernel(" motion:15,45 ")[0][1], K.motion(15, 45))
    np.testing.assert_array_equal(K.parse_kernel("identity")[0][1], [[1.0]])
    # names round-trip: parsing a returned name gives the same kernel
    for spec in ("levin", "bicubic", "gauss:1.6", "gauss:2,15", "motion:15,45", "motion:7.5,-30,13",
                 "identity", "kernels12:5"):
        for name, k in K.parse_kernel(spec):
            [(name2, k2)] = K.parse_kernel(name)
            assert name2 == name
            np.testing.assert_array_equal(k2, k)
    np.save(tmp_path / "mine.npy", K.gaussian(2.0, 9))
    [(name, k)] = K.parse_kernel(str(tmp_path / "mine.npy"))
    assert name == str(tmp_path / "mine.npy")
    np.testing.assert_allclose(k, K.gaussian(2.0, 9), atol=1e-7)
    # user folder for the .mat files
    np.testing.assert_array_equal(K.parse_kernel("levin:2", path=kdir)[0][1], K.levin(2))


def test_parse_kernel_errors():
    for bad in ("levn", "blur:3", "", "motion"):
        with pytest.raises(ValueError, match=r"^spec: .*levin.*gauss:SIGMA.*motion:LENGTH,ANGLE.*"
                                             r"identity.*file path") if bad != "motion" else \
                pytest.raises(ValueError, match=r"^spec: could not parse 'motion'"):
            K.parse_kernel(bad)
    with pytest.raises(ValueError, match=r"^spec: could not parse 'gauss:abc'.*gauss:SIGMA"):
        K.parse_kernel("gauss:abc")
    with pytest.raises(ValueError, match=r"^spec: could not parse 'motion:15'"):
        K.parse_kernel("motion:15")
    with pytest.raises(ValueError, match=r"^spec: could not parse 'levin:x'"):
        K.parse_kernel("levin:x")
    with pytest.raises(ValueError, match=r"^sigma: expected a positive number"):
        K.parse_kernel("gauss:-1")
    with pytest.raises(FileNotFoundError):
        K.parse_kernel("no/such/kernel.npy")
    with pytest.raises(ValueError, match=r"^spec: expected a kernel spec string"):
        K.parse_kernel(None)
    for bad in ("shake:1.5", "shake:-1", "shake:nan"):
        with pytest.raises(ValueError, match=r"shake:SEED\[,SIZE\] with integers >= 0"):
            K.parse_kernel(bad)
    with pytest.raises(ValueError, match=r"^spec: could not parse 'shake'.*e\.g\. shake:7"):
        K.parse_kernel("shake")
    with pytest.raises(ValueError, match=r"^size: .*>= 7"):
        K.parse_kernel("shake:3,5")


def test_kernels_make_valid_operators(kdir):
    # every named kernel passes the operators' validation
    from dynpnp_jax.operators import Blur, Downsample

    for spec in ("levin", "kernels12", "bicubic", "gauss:1.6", "motion:15,45", "identity"):
        for _, k in K.parse_kernel(spec):
            Blur.from_kernel(k)
    Downsample.from_kernel(K.bicubic(4), 4)


def test_camera_shake(kdir):
    """Synthetic camera-shake kernels: valid kernels, reproducible from the seed, centred, of the
    asked extent, varied, and never one of Levin's test kernels."""
    from dynpnp_jax.tune import same_kernel

    ks = [K.camera_shake(s) for s in range(12)]
    for k in ks:
        _check_kernel(k)
        assert k.shape == (25, 25)
        r, c = np.mgrid[:25, :25]
        assert abs((k * r).sum() - 12) < 1.0 and abs((k * c).sum() - 12) < 1.0  # centre of mass
        assert (k > 0).sum() >= 8  # a path, not a point
    np.testing.assert_array_equal(K.camera_shake(3), ks[3])
    np.testing.assert_array_equal(K.camera_shake(np.random.default_rng(3)), ks[3])
    assert min(np.abs(a - b).max() for i, a in enumerate(ks) for b in ks[i + 1:]) > 1e-3
    for ext in (6.0, 15.0):
        k = K.camera_shake(0, extent=ext)
        rows, cols = np.flatnonzero(k.sum(1) > 1e-9), np.flatnonzero(k.sum(0) > 1e-9)
        span = max(rows[-1] - rows[0], cols[-1] - cols[0])
        assert ext - 1 <= span <= ext + 2  # bilinear splatting adds at most a pixel each side
    assert K.camera_shake(1, size=15).shape == (15, 15)
    assert [n for n, _ in K.parse_kernel("shake:3")] == ["shake:3"]
    np.testing.assert_array_equal(K.parse_kernel("shake:3")[0][1], ks[3])
    name, k19 = K.parse_kernel("shake:3,19")[0]
    assert name == "shake:3,19" and k19.shape == (19, 19)
    levin = K.levin(path=kdir)
    assert not any(same_kernel(k, t) for k in ks for t in levin)


@pytest.mark.parametrize("kw,arg", [({"size": 5}, "size"), ({"size": 0}, "size"),
                                    ({"extent": 30.0}, "extent"), ({"extent": -1.0}, "extent"),
                                    ({"extent": float("nan")}, "extent"), ({"samples": 1}, "samples")])
def test_camera_shake_errors(kw, arg):
    with pytest.raises(ValueError, match=arg):
        K.camera_shake(0, **kw)


# ---- hostile input: every kernel argument, spec and file is refused with one clear ValueError ----

@pytest.mark.parametrize("seed", [-1, 1.5, "a", None, True, np.float64(3.0)])
def test_camera_shake_bad_seed(seed):
    with pytest.raises(K.KernelError, match=r"^seed: expected an integer >= 0 .*fix: pass e\.g\. seed=7"):
        K.camera_shake(seed)
    K.camera_shake(np.int64(3))  # numpy integers are seeds too


@pytest.mark.parametrize("call,match", [
    (lambda: K.camera_shake(0, size=10**6), r"^size: expected a kernel size <= 1001 \(MAX_KERNEL_SIZE"),
    (lambda: K.camera_shake(0, samples=10**7), r"^samples: expected an integer <= 100000"),
    (lambda: K.gaussian(1.0, size=10**6), r"^size: expected a kernel size <= 1001"),
    (lambda: K.motion(1e6, 45), r"^length: expected a motion length <= 1000 pixels .*fix:"),
    (lambda: K.motion(15, float("nan")), r"^angle_deg: expected a finite angle"),
    (lambda: K.rotate(K.gaussian(1.0, 9), float("nan")), r"^angle_deg: expected a finite angle"),
    (lambda: K.parse_kernel("motion:1e6,45"), r"^length: expected a motion length <= 1000"),
    (lambda: K.parse_kernel("motion:15,45,1e9"), r"^size: expected a kernel size <= 1001"),
    (lambda: K.parse_kernel("gauss:1,1e9"), r"^size: expected a kernel size <= 1001"),
    (lambda: K.parse_kernel("shake:3,100000"), r"^size: expected a kernel size <= 1001"),
    (lambda: K.parse_kernel("gauss:1,nan"), r"^spec: 'gauss:1,nan': expected .*SIZE a positive integer"),
    (lambda: K.parse_kernel("gauss:1,inf"), r"^spec: 'gauss:1,inf': expected .*SIZE a positive integer"),
    (lambda: K.parse_kernel("gauss:1,2.5"), r"^spec: 'gauss:1,2.5': expected .*SIZE a positive integer"),
    (lambda: K.parse_kernel("motion:9,0,0"), r"^spec: 'motion:9,0,0': expected .*fix: e\.g\. motion:15,45,21"),
])
def test_bounded_sizes_and_bad_numbers(call, match):
    """Sizes are bounded (a typo such as motion:1e6,45 once allocated 7 TiB), non-finite and
    non-integer sizes are refused, all as KernelError (a ValueError the CLIs print)."""
    with pytest.raises(K.KernelError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and "fix:" in str(info.value)


def test_largest_kernel_is_accepted():
    k = K.motion(K.MAX_KERNEL_SIZE - 1, 0)
    assert k.shape == (K.MAX_KERNEL_SIZE,) * 2 and abs(float(k.sum()) - 1) < 1e-5


def _bad_files(d):
    """(file, what the message must say) for each kind of broken kernel file."""
    from PIL import Image
    from scipy.io import savemat

    out = []

    def npy(name, arr, **kw):
        np.save(d / name, arr, **kw)
        return d / name

    out.append((npy("objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
                "not a numeric kernel: it holds pickled Python objects"))
    (d / "garbage.npy").write_bytes(b"this is not an array")
    out.append((d / "garbage.npy", "not a numeric kernel: it is not a NumPy .npy file"))
    full = npy("full.npy", np.ones((30, 30)))
    (d / "truncated.npy").write_bytes(full.read_bytes()[:300])
    out.append((d / "truncated.npy", "not a numeric kernel: it is damaged or truncated"))
    np.savez(d / "archive", k=np.ones((3, 3)))
    (d / "archive.npz").rename(d / "archive.npy")
    out.append((d / "archive.npy", "is an .npz archive"))
    out.append((npy("complex.npy", np.ones((3, 3), complex)), "holds a complex128 array"))
    out.append((npy("strings.npy", np.array([["a", "b"]])), "holds a <U1 array"))
    out.append((npy("zeros.npy", np.zeros((5, 5))), "positive total mass in"))
    out.append((npy("negative.npy", -K.gaussian(1.0, 5)), "positive total mass in"))
    neg = K.gaussian(1.0, 5).astype(np.float64)
    neg[0, 0] = -0.9
    out.append((npy("mostly_negative.npy", neg), "(mostly) non-negative kernel in"))
    nan = np.ones((5, 5))
    nan[2, 2] = np.nan
    out.append((npy("nan.npy", nan), "finite kernel values in"))
    out.append((npy("flat.npy", np.ones(5)), "2-D kernel in"))
    out.append((npy("cube.npy", np.ones((2, 3, 3))), "2-D kernel in"))
    out.append((npy("empty.npy", np.ones((0, 3))), "2-D kernel in"))
    out.append((npy("huge.npy", np.ones((2, 1002), np.float32)), "at most 1001 x 1001"))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(d / "black.png")
    out.append((d / "black.png", "positive total mass in"))
    (d / "garbage.png").write_bytes(b"\x89PNG not really")
    out.append((d / "garbage.png", "is not a readable image"))
    savemat(d / "zeros.mat", {"k": np.zeros((3, 3))})
    out.append((d / "zeros.mat", "positive total mass in"))
    savemat(d / "nan.mat", {"k": nan})
    out.append((d / "nan.mat", "finite kernel values in"))
    (d / "garbage.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    out.append((d / "garbage.mat", "is not a readable MATLAB .mat file"))
    return out


def test_bad_kernel_files(tmp_path):
    """Every broken kernel file (NPY, PNG, MAT): one KernelError (a ValueError) naming the file and
    the fix, through load_kernel and through parse_kernel (the CLIs' --kernel); numpy's
    allow_pickle message never reaches the user."""
    for f, what in _bad_files(tmp_path):
        for call in (lambda: K.load_kernel(f), lambda: K.parse_kernel(str(f))):
            with pytest.raises(K.KernelError) as info:
                call()
            msg = str(info.value)
            assert isinstance(info.value, ValueError)
            assert msg.startswith("path: ") and str(f) in msg and what in msg and "fix:" in msg, (f, msg)
            assert "allow_pickle" not in msg
    # a bicubic-like kernel with small negative lobes still loads (as operators.Blur accepts it)
    lobes = np.full((5, 5), -0.01)
    lobes[1:4, 1:4] = 0.2
    np.save(tmp_path / "lobes.npy", lobes)
    np.testing.assert_allclose(K.load_kernel(tmp_path / "lobes.npy"), lobes / lobes.sum(), atol=1e-7)
    # a horizontal line kernel saved as (1, n), or with extra axes, stays a (1, n) kernel
    np.save(tmp_path / "line.npy", np.ones((1, 1, 7)))
    np.testing.assert_allclose(K.load_kernel(tmp_path / "line.npy"), np.full((1, 7), 1 / 7), atol=1e-7)


def test_missing_and_odd_paths(tmp_path):
    (tmp_path / "folder.npy").mkdir()
    for spec in (str(tmp_path / "nope.npy"), str(tmp_path / "folder.npy")):
        with pytest.raises(K.KernelFileNotFoundError, match=r"^path: kernel file .* not found.*fix:") as info:
            K.parse_kernel(spec)
        assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(K.KernelError, match=r"^path: expected a kernel file path"):
        K.load_kernel(5)
    (tmp_path / "Levin09.mat").write_bytes(b"\x89HDF garbage")
    with pytest.raises(K.KernelError, match=r"^path: .*Levin09\.mat' is not a readable Levin09\.mat"):
        K.levin(path=tmp_path)
    with pytest.raises(K.KernelFileNotFoundError, match=r"kernels_12\.mat not found"):
        K.kernels12(path=tmp_path)


def test_eval_cli_prints_kernel_errors_cleanly(tmp_path, capsys):
    """End to end: a bad --kernel (a huge motion line, a pickled .npy, a bad seed) is one usage
    line naming the spec, the argument and the fix (exit status 2), before any image is read."""
    from PIL import Image

    from dynpnp_jax import eval as ev

    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(data / "a.png")
    np.save(tmp_path / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
    for spec, match in (("motion:1e6,45", "length: expected a motion length <= 1000"),
                        (str(tmp_path / "obj.npy"), "is not a numeric kernel: it holds pickled"),
                        ("shake:3,1e9", "size: expected a kernel size <= 1001")):
        with pytest.raises(SystemExit) as info:
            ev.main(["--task", "deblur", "--dataset", "folder", "--data-dir", str(data),
                     "--kernel", spec, "--method", "input", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert info.value.code == 2 and f"--kernel {spec}: " in err and match in err and "fix:" in err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
