"""PSNR/SSIM against scikit-image on real Set12/BSD68/GoPro images with noise added."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dynpnp_jax import metrics as M

skm = pytest.importorskip("skimage.metrics")

PSNR_TOL = 1e-3  # dB
SSIM_TOL = 1e-4


def _read(path, mode):
    arr = np.asarray(Image.open(path).convert(mode))
    return arr[..., None] if arr.ndim == 2 else arr


def _noisy(clean_u8, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(clean_u8 + rng.normal(0, sigma, clean_u8.shape)), 0, 255).astype(np.uint8)


def _crop(img, size):
    """The centre ``size`` x ``size`` crop (or the image, when ``size`` is None)."""
    if size is None:
        return img
    t, l = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[t:t + size, l:l + size]


@pytest.fixture(scope="module", params=[pytest.param(72, id="crops"),
                                        pytest.param(None, id="full", marks=pytest.mark.slow)])
def batches(shared_data, request):
    """{kind: (noisy uint8 batch, clean uint8 batch)}; one shape per batch, noise 5..50. The
    fast suite compares on 72x72 centre crops (every code path, edges included); the full
    images run under -m slow."""
    size = request.param
    out = {}
    set12 = [_read(shared_data / "set12" / f"{i:02d}.png", "L") for i in (1, 2, 8, 9)]
    out["gray256"] = set12[:2]
    out["gray512"] = set12[2:]
    out["bsd68"] = [_read(shared_data / "bsd68" / f"test{i:03d}.png", "L") for i in (1, 3)]
    frame = _read(shared_data / "gopro" / "blur" / "000001.png", "RGB")
    out["rgb"] = [frame[200:456, 300:684], frame[400:656, 700:1084]]
    rgb3 = [np.repeat(im, 3, axis=-1) for im in set12[:2]]  # RGB with structure in all channels
    out["rgb_set12"] = [np.stack([rgb3[0][..., 0], rgb3[1][..., 0], 255 - rgb3[0][..., 0]], -1)]
    assert out["bsd68"][0].shape == out["bsd68"][1].shape
    result = {}
    out = {kind: [_crop(c, size) for c in clean] for kind, clean in out.items()}
    for kind, clean in out.items():
        noisy = [_noisy(c, s, i) for i, (c, s) in enumerate(zip(clean, (5, 25, 50, 15)))]
        result[kind] = (np.stack(noisy), np.stack(clean))
    return result


KINDS = ["gray256", "gray512", "bsd68", "rgb", "rgb_set12"]


def _conventions(noisy, clean):
    """(x, ref, data_range, skimage x, skimage ref) for the [0,1]-float and 0..255 conventions."""
    nf, cf = (noisy / 255.0).astype(np.float32), (clean / 255.0).astype(np.float32)
    yield "unit", nf, cf, 1.0, nf.astype(np.float64), cf.astype(np.float64)
    yield "u8", noisy, clean, 255.0, noisy, clean


@pytest.mark.parametrize("kind", KINDS)
def test_psnr_matches_skimage(batches, kind):
    noisy, clean = batches[kind]
    for conv, x, ref, dr, sx, sref in _conventions(noisy, clean):
        ours = np.asarray(M.psnr(x, ref, data_range=dr))
        assert ours.shape == (len(x),)
        theirs = [skm.peak_signal_noise_ratio(sref[i], sx[i], data_range=dr) for i in range(len(x))]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=PSNR_TOL, err_msg=f"{kind} {conv}")


@pytest.mark.parametrize("kind", KINDS)
def test_ssim_matches_skimage(batches, kind):
    noisy, clean = batches[kind]
    for conv, x, ref, dr, sx, sref in _conventions(noisy, clean):
        ours = np.asarray(M.ssim(x, ref, data_range=dr))
        theirs = [skm.structural_similarity(sx[i], sref[i], data_range=dr, channel_axis=-1,
                                            gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False) for i in range(len(x))]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=SSIM_TOL, err_msg=f"{kind} {conv}")


@pytest.mark.parametrize("kind", ["bsd68", "rgb"])
def test_uniform_windows_match_skimage(batches, kind):
    noisy, clean = batches[kind]
    for conv, x, ref, dr, sx, sref in _conventions(noisy, clean):
        for scale in (1.0, 2.0):  # 2.0: old compare_ssim's float default, the authors' metric
            ours = np.asarray(M.ssim_uniform(x, ref, data_range=scale * dr))
            theirs = [skm.structural_similarity(sx[i], sref[i], data_range=scale * dr,
                                                channel_axis=-1) for i in range(len(x))]
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=SSIM_TOL)
        ours = np.asarray(M.ssim(x, ref, data_range=dr, gaussian=False))
        theirs = [skm.structural_similarity(sx[i], sref[i], data_range=dr, channel_axis=-1,
                                            use_sample_covariance=False) for i in range(len(x))]
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=SSIM_TOL)


def test_data_range_conventions_agree(batches):
    noisy, clean = batches["gray256"]
    nf, cf = noisy / 255.0, clean / 255.0
    np.testing.assert_allclose(M.psnr(noisy, clean, data_range=255), M.psnr(nf, cf), atol=1e-4)
    np.testing.assert_allclose(M.ssim(noisy, clean, data_range=255), M.ssim(nf, cf), atol=1e-6)


def test_identical_images():
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    assert np.all(np.isinf(np.asarray(M.psnr(x, x))))
    np.testing.assert_allclose(M.ssim(x, x), 1.0, atol=1e-6)
    np.testing.assert_allclose(M.ssim_uniform(x, x), 1.0, atol=1e-6)


def test_jit_does_not_recompile_for_same_shapes():
    rng = np.random.default_rng(1)
    x, y = (rng.random((2, 24, 20, 1), dtype=np.float32) for _ in range(2))
    for fn, kernel in ((M.psnr, M._psnr), (M.ssim, M._ssim), (M.ssim_uniform, M._ssim_uniform)):
        fn(x, y)
        before = kernel._cache_size()
        fn(y, x)
        fn(x * 0.5, y, data_range=2.0)  # new numbers (traced): no new compilation
        fn(x, y, data_range=255)  # an int is the same float32 array
        assert kernel._cache_size() == before, fn.__name__
    # and they trace inside a user's jit
    f = jax.jit(lambda a, b: M.ssim(a, b) + M.psnr(a, b) + M.ssim_uniform(a, b))
    assert f(x, y).shape == (2,)


def test_ssim_is_differentiable():
    rng = np.random.default_rng(2)
    x, y = (jnp.asarray(rng.random((1, 16, 16, 1), dtype=np.float32)) for _ in range(2))
    g = jax.grad(lambda a: M.ssim(a, y).sum())(x)
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("fn", [M.psnr, M.ssim, M.ssim_uniform])
def test_errors(fn):
    img = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        fn(img, np.zeros((1, 16, 17, 1), np.float32))
    with pytest.raises(ValueError, match=r"rank 4 \(B, H, W, C\)"):
        fn(img[0], img[0])
    with pytest.raises(ValueError, match="`ref` must be a batch"):
        fn(img, img[0, ..., 0])
    if fn is not M.psnr:
        with pytest.raises(ValueError, match="at least"):
            fn(img[:, :6, :6], img[:, :6, :6])


def test_quantize():
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 0.49, 0.999, 1.0, 1.7], np.float32)
    np.testing.assert_array_equal(  # exactly the float32 k / 255
        M.quantize(x), np.round(np.clip(x, 0, 1) * 255).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(
        np.round(np.asarray(M.quantize(x, mode="truncate")) * 255),
        (np.clip(x, 0, 1) * 255).astype(np.uint8))
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for mode in ("round", "truncate"):  # every 8-bit level is a fixed point, bit for bit
        np.testing.assert_array_equal(M.quantize(levels / np.float32(255), mode=mode),
                                      levels / np.float32(255))
    with pytest.raises(ValueError, match="'round'"):
        M.quantize(x, mode="nearest")
