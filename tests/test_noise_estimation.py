"""Noise-level estimation (``dynpnp_jax.noise_estimation``): known noise on synthetic and real
images within stated bands, invariance to the image's offset, batches, and clear errors.

Bands (8-bit units unless said): measured errors are in docs/results/noise_estimation.md; the
bands here are about twice the largest error seen on the same kind of input there."""
import numpy as np
import pytest
from PIL import Image

from dynpnp_jax.noise_estimation import estimate_noise_level, mad_noise_level, pca_noise_level

from conftest import load_gray, require_shared


def _noise(shape, level, seed=0):
    return np.random.RandomState(seed).normal(0.0, level / 255.0, shape)


def _set12(name="05"):
    return load_gray(require_shared("data", "set12", f"{name}.png"))


# ------------------------------------------------------------------ known noise
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("level", [2.0, 40.0])
def test_flat_image(channels, level):
    """Pure noise on a flat grey: every method within 4%. Gray on 256x256 (62k 8x8 patches):
    on 128x128 Chen's rule (trimming the covariance spectrum until its mean is its median) can
    stop a few eigenvalues low on pure noise (-6.5% for this seed)."""
    side = 256 if channels == 1 else 128
    y = (0.5 + _noise((1, side, side, channels), level)).astype(np.float32)
    for method in ("default", "pca", "mad"):
        est = estimate_noise_level(y, method=method)[0] * 255
        assert abs(est - level) <= 0.04 * level, (method, est, level)


def test_smooth_gradient():
    """A smooth ramp plus a slow wave (no texture) plus noise 20: within 3%."""
    h = w = 128
    r, c = np.mgrid[0:h, 0:w] / 127.0
    clean = 0.2 + 0.5 * r * c + 0.1 * np.sin(2 * np.pi * c)
    y = (clean + _noise((h, w), 20.0, seed=1)).astype(np.float32)[None, ..., None]
    est = estimate_noise_level(y)[0] * 255
    assert abs(est - 20.0) <= 0.6, est


@pytest.mark.parametrize("level, band", [(15.0, 0.7), (50.0, 1.0)])
def test_real_image(level, band):
    """Set12 05 (256x256) + noise: the default within ``band``."""
    x = _set12("05")
    y = (x + _noise(x.shape, level, seed=3)).astype(np.float32)[None, ..., None]
    est = estimate_noise_level(y)[0] * 255
    assert abs(est - level) <= band, est


def test_weak_texture_beats_all_patches_at_low_noise():
    """Why the default selects weak-texture patches on gray images: on a textured image at
    noise 5, the all-patch PCA (and the wavelet MAD) read texture as noise; measured on Set12 01
    (cameraman): default +0.25, all-patch PCA +3.7, MAD +1.4."""
    x = _set12("01")
    y = (x + _noise(x.shape, 5.0, seed=4)).astype(np.float32)[None, ..., None]
    default = estimate_noise_level(y)[0] * 255 - 5.0
    pca = estimate_noise_level(y, method="pca")[0] * 255 - 5.0
    mad = estimate_noise_level(y, method="mad")[0] * 255 - 5.0
    assert abs(default) <= 0.7, default
    assert pca > 2.0 and mad > 0.7, (pca, mad)


def test_blurred_image():
    """The deblurring input: Set3G house blurred circularly by Levin kernel 4 (27x27, the
    largest) + noise 2.55 and 7.65; within 1 (8-bit) of the true level."""
    from scipy import ndimage

    from dynpnp_jax import kernels

    path = require_shared("data", "set3g", "house.png")
    require_shared("data", "kernels", "Levin09.mat")
    x = np.asarray(Image.open(path).convert("L"), np.float64) / 255.0
    b = ndimage.convolve(x, np.asarray(kernels.levin(4), np.float64), mode="wrap")
    for level in (2.55, 7.65):
        y = (b + _noise(b.shape, level, seed=5)).astype(np.float32)[None, ..., None]
        est = estimate_noise_level(y)[0] * 255
        assert abs(est - level) <= 1.0, (level, est)


def test_colour_one_level_and_gray_stored_as_rgb():
    """A colour image gets one level (all channels together); a gray picture stored as three
    identical channels gets its gray level, not 0 (three copies of one noise draw)."""
    x = _set12("05")[:128, :128]
    gray = (x + _noise(x.shape, 15.0, seed=6)).astype(np.float32)[None, ..., None]
    as_rgb = np.repeat(gray, 3, axis=-1)
    np.testing.assert_allclose(estimate_noise_level(as_rgb), estimate_noise_level(gray), rtol=1e-12)
    tint = np.stack([x, 0.8 * x + 0.1, 0.6 * x + 0.2], -1)
    colour = (tint + _noise(tint.shape, 15.0, seed=7)).astype(np.float32)[None]
    est = estimate_noise_level(colour)
    assert est.shape == (1,) and abs(est[0] * 255 - 15.0) <= 0.7, est * 255


# ------------------------------------------------------------------ invariances, batches
def test_offset_invariance_and_determinism():
    x = _set12("05")[:128, :128] * 0.8
    y = (x + _noise(x.shape, 10.0, seed=8)).astype(np.float32)[None, ..., None]
    a = estimate_noise_level(y)
    np.testing.assert_array_equal(a, estimate_noise_level(y))  # deterministic
    for method in ("default", "pca", "mad"):
        np.testing.assert_allclose(estimate_noise_level(y + np.float32(0.15), method=method),
                                   estimate_noise_level(y, method=method), rtol=1e-5)


def test_batch_matches_single_images():
    base = 0.3 + 0.4 * np.mgrid[0:96, 0:96][1] / 95.0
    levels = [3.0, 12.0, 30.0]
    ys = np.stack([base + _noise(base.shape, s, seed=i) for i, s in enumerate(levels)])
    ys = ys.astype(np.float32)[..., None]
    est = estimate_noise_level(ys)
    assert est.shape == (3,) and est.dtype == np.float64
    for i in range(3):
        assert est[i] == estimate_noise_level(ys[i:i + 1])[0]
        assert abs(est[i] * 255 - levels[i]) <= 0.06 * levels[i]
    # the per-image helpers are what the batch function runs
    assert est[1] == pca_noise_level(ys[1], weak_texture=True)
    assert estimate_noise_level(ys, method="mad")[2] == mad_noise_level(ys[2])


def test_constant_image_is_zero():
    y = np.full((2, 32, 32, 1), 0.4, np.float32)
    for method in ("default", "pca", "mad"):
        est = estimate_noise_level(y, method=method)
        assert np.all(np.isfinite(est)) and np.all(est == 0.0), (method, est)


# ------------------------------------------------------------------ bad input
def test_bad_input_errors():
    y = (0.5 + _noise((1, 32, 32, 1), 10.0)).astype(np.float32)
    bad = y.copy()
    bad[0, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN"):
        estimate_noise_level(bad)
    with pytest.raises(ValueError, match=r"rank 4.*y\[None"):
        estimate_noise_level(y[0])
    with pytest.raises(ValueError, match=r"rank 4"):
        estimate_noise_level(y[0, ..., 0])
    with pytest.raises(ValueError, match=r"float32.*astype"):
        estimate_noise_level((y * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"method.*'mad'"):
        estimate_noise_level(y, method="wavelet")
    with pytest.raises(ValueError, match=r"divide 8-bit images by 255"):
        estimate_noise_level(y * 255)


@pytest.mark.parametrize("shape", [(1, 6, 40, 1), (1, 12, 12, 1), (1, 16, 16, 3)])
def test_too_small_image_is_a_clear_error(shape):
    y = (0.5 + _noise(shape, 10.0)).astype(np.float32)
    with pytest.raises(ValueError, match=r"too small for the PCA noise estimator.*larger image"):
        estimate_noise_level(y)
    assert estimate_noise_level(y, method="mad").shape == (1,)  # the MAD needs only 2x2


# ------------------------------------------------------------------ the bench script's report
def test_bench_summary_and_figure(tmp_path):
    """bench/noise_estimation.py --from-json: the tables hold the means of the records given,
    and the plot is written."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import noise_estimation as bench

    recs = [dict(kind="estimate", set="set12", image=str(i), level=15.0, clip=False,
                 method="default", estimate=15.0 + e, seconds=0.1, shape=[8, 8, 1])
            for i, e in enumerate([0.5, -0.25])]
    recs += [dict(kind="ffdnet", set="set12", image="0", level=15.0, method="true", sigma=15.0,
                  psnr=32.0),
             dict(kind="ffdnet", set="set12", image="0", level=15.0, method="default",
                  sigma=15.5, psnr=31.9, loss=0.1)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"meta": {}, "records": recs}))
    fig = tmp_path / "f.png"
    bench.main(["--from-json", str(path), "--figure", str(fig)])
    text = bench.summarize({"records": recs})
    assert "| set12 | 2 | 15 | 0.38 (+0.12), max 0.50 |" in text
    assert "| set12 | 1 | 15 | 32.00 | 0.100 (0.100) |" in text
    assert fig.stat().st_size > 10_000


def test_traced_input_is_a_clear_error():
    import jax

    y = (0.5 + _noise((1, 32, 32, 1), 10.0)).astype(np.float32)
    with pytest.raises(ValueError, match=r"y is traced.*before the jitted loop"):
        jax.jit(lambda v: estimate_noise_level(v))(y)


@pytest.mark.parametrize("channels", [1, 3])
def test_texture_threshold_is_the_pure_noise_quantile(channels):
    """The weak-texture threshold (a gamma law for a pure-noise patch's gradient energy) keeps
    about 99% of the patches of pure noise: the selection itself barely biases the level."""
    from dynpnp_jax.noise_estimation import DELTA, PATCH, _patches, _texture_quantile

    sigma = 0.05
    z = np.random.RandomState(9).normal(0.0, sigma, (160, 160, channels))
    _, energy = _patches(z, PATCH, 1 << 20)
    kept = np.mean(energy <= sigma ** 2 * _texture_quantile(PATCH, channels, DELTA))
    assert 0.975 <= kept <= 0.997, kept
