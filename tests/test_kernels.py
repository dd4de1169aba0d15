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
