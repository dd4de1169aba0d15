"""Saturated highlights (dynpnp_jax.saturation): clipped pixels of y are unobserved.

A bright disc (1.6 on 0.2) blurred and clipped at 1: the saturation-aware loop is closer to the
(clipped) truth than the plain one, for every algorithm that solves or steps on the data term,
with a circular and with an unknown boundary; unclipped, every saturation mode is the plain loop
exactly (the same program). The clipped model's one-sided data term, the denoiser's highlight
compression, the calibrated mode's masked score. Bad input: the clipping level, a mask that
leaves nothing, an operator without a blur. A small smoothing network stands in for a denoiser
(no data files needed)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import dynpnp_jax as dp
from dynpnp_jax import saturation as sat
from dynpnp_jax.metrics import psnr
from dynpnp_jax.operators import Blur, Mask
from dynpnp_jax.solver import compile_count

N = 32
NOISE = 2.0 / 255


class Smooth(nn.Module):
    """A linear smoother standing in for a denoiser: x + 0.2 * (discrete Laplacian of x)."""

    @nn.compact
    def __call__(self, x):
        p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * x
        return x + 0.2 * lap


NET = dp.Network(module=Smooth(), variables={}, kind="image", channels=1, name="smooth")


def gauss_kernel(size=7, s=1.5):
    r = np.arange(size) - size // 2
    k = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * s * s))
    return (k / k.sum()).astype(np.float32)


def disc(peak):
    yy, xx = np.mgrid[:N, :N]
    x = np.where((yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 7 ** 2, peak, 0.2)
    return x[None, ..., None].astype(np.float32)


def degrade(x, k):
    b = ndimage.convolve(x[0, ..., 0].astype(np.float64), k, mode="wrap")
    n = np.random.RandomState(0).normal(0, NOISE, b.shape)
    return np.clip(b + n, 0, 1)[None, ..., None].astype(np.float32)


def run(mode, y, saturation, boundary="circular", **kw):
    k = gauss_kernel()
    extra = dict(delta=1.0) if mode in ("pgd", "fista", "red") else {}
    cfg = dp.make_config(mode, iters=kw.pop("iters", 12), noise_level=NOISE, saturation=saturation,
                         boundary=boundary, keep_images=False, **extra, **kw)
    out, _ = dp.restore({"prior": NET, "A": Blur.from_kernel(k, 1)}, y, cfg)
    return np.asarray(out)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("mode", ["dpir", pytest.param("admm", marks=SLOW),
                                  pytest.param("drs", marks=SLOW), "fista",
                                  pytest.param("pgd", marks=SLOW), pytest.param("red", marks=SLOW)])
def test_clipped_disc_closer_to_truth(mode):
    k = gauss_kernel()
    x = disc(1.6)
    y = degrade(x, k)
    assert 0.05 < float(sat.saturated_fraction(y)[0]) < 0.3
    truth = np.clip(x, 0, 1)
    plain = float(psnr(run(mode, y, "off"), truth)[0])
    aware = float(psnr(run(mode, y, "auto"), truth)[0])
    # measured: prox algorithms +1.5 to +2.5 dB, gradient ones (12 steps) +0.6 to +0.8 dB
    gain = 1.0 if dp.algorithms.get(mode).traits.x_kind == "prox" else 0.4
    assert aware > plain + gain, (plain, aware)


def frame_case():
    k = gauss_kernel()
    x = disc(1.6)
    y_full = degrade(x, k)
    return y_full[:, 3:-5, 3:-5], np.clip(x, 0, 1)[:, 3:-5, 3:-5]  # a 'valid' frame (24x24)


def test_clipped_disc_unknown_boundary():
    y, truth = frame_case()
    plain = float(psnr(run("dpir", y, "off", "unknown", iters=8), truth)[0])
    aware = float(psnr(run("dpir", y, "auto", "unknown", iters=8), truth)[0])
    assert aware > plain + 1.0, (plain, aware)


@pytest.mark.slow
def test_masked_data_term_gains_too():
    y, truth = frame_case()
    plain = float(psnr(run("dpir", y, "off", "unknown", iters=8), truth)[0])
    masked = float(psnr(run("dpir", y, "masked", "unknown", iters=8), truth)[0])
    assert masked > plain + 1.0, (plain, masked)


def test_auto_is_the_measured_choice():
    assert sat.AUTO == "clipped"
    assert dp.make_config("dpir", noise_level=NOISE, saturation="auto").saturation == sat.AUTO
    assert dp.make_config("dpir", noise_level=NOISE, saturation="masked").saturation == "masked"


@pytest.mark.parametrize("boundary,mode", [("circular", "auto"), ("unknown", "auto"),
                                           ("unknown", "masked")])
def test_saturation_is_the_plain_loop_without_clipping(boundary, mode):
    y = degrade(disc(0.8), gauss_kernel())
    assert float(sat.saturated_fraction(y)[0]) == 0
    off = run("dpir", y, "off", boundary, iters=4)
    n = compile_count()
    aware = run("dpir", y, mode, boundary, iters=4)
    np.testing.assert_array_equal(aware, off)
    assert compile_count() == n  # the same program: resolved to 'off', nothing compiled


def _problem(mode, y, net=None):
    from dynpnp_jax.algorithms import Problem

    cfg = dp.make_config("dpir", iters=2, noise_level=NOISE, saturation=mode)
    seen = sat.observed(jnp.asarray(y), cfg.clip_level)
    return Problem(cfg=cfg, prior=net or NET, obs=seen, b=1, sat=1 - seen)


def test_clipped_data_term_is_one_sided():
    """A clipped value of y bounds the blur from below: no pull where the blur is above the
    level (the gradient), the blur lifted to the level where it is below (the x-step)."""
    k = gauss_kernel()
    op = Blur.from_kernel(k, 1)
    y = degrade(disc(1.6), k)
    seen = np.asarray(sat.observed(jnp.asarray(y), 1.0))
    for x0, sign in ((disc(2.0), 0), (disc(0.9), -1)):  # blur above 1 where clipped; too dark
        grads = {m: np.asarray(_problem(m, y).gradient(op, jnp.asarray(y), jnp.asarray(x0)))
                 for m in ("masked", "clipped")}
        diff = grads["clipped"] - grads["masked"]
        if sign == 0:
            np.testing.assert_allclose(diff, 0, atol=1e-6)
        else:  # the one-sided term pushes the dark disc up: a negative gradient inside it
            assert diff[0, 16, 16, 0] < -1e-3
    z = jnp.asarray(disc(0.9))  # the prior pulls the highlight down to 0.9
    gap = {}  # how far below the level the blur stays at the clipped values, on average
    for m in ("masked", "clipped"):
        x, _ = _problem(m, y).prox(op, jnp.asarray(y) * seen + (1 - seen) * op(z), z, 0.05, z)
        gap[m] = float(np.mean(np.maximum(1 - np.asarray(op(x)), 0)[seen == 0]))
    assert gap["clipped"] < 0.5 * gap["masked"], gap  # measured: 0.026 against 0.061


def test_highlight_compression():
    """The denoiser sees [KNEE, m] compressed onto [KNEE, 1]; below KNEE, and whenever the
    estimate at the clipped values stays at or below 1, nothing changes (bit for bit)."""
    x = jnp.asarray(np.linspace(0, 2, 64, dtype=np.float32).reshape(1, 8, 8, 1))
    m = jnp.asarray([2.0])
    c = np.asarray(sat.compress(x, m))
    assert c.max() <= 1 + 1e-6 and np.all(np.diff(c.ravel()) > 0)
    low = np.asarray(x) <= sat.KNEE
    np.testing.assert_array_equal(c[low], np.asarray(x)[low])
    np.testing.assert_allclose(np.asarray(sat.expand(jnp.asarray(c), m)), np.asarray(x),
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(sat.compress(x, jnp.asarray([1.0]))), np.asarray(x))
    mask = jnp.asarray((np.arange(64) % 7 == 0).reshape(1, 8, 8, 1).astype(np.float32))
    want = np.quantile(np.asarray(x)[np.asarray(mask) > 0], sat.PEAK_QUANTILE)
    np.testing.assert_allclose(float(sat.peak(x, mask)[0]), want, rtol=1e-6)
    assert float(sat.peak(x * 0.4, mask)[0]) == 1.0  # no highlight above 1: m = 1, the identity


def test_mask_per_channel():
    y = np.full((1, 4, 4, 3), 0.5, np.float32)
    y[0, 1, 2, 1] = 1.0
    y[0, 0, 0, 0] = 1.0 - 0.5 / 255  # near the level: saturated too
    y[0, 3, 3, 2] = 1.0 - 2 / 255    # below the margin: observed
    m = np.asarray(sat.observed(jnp.asarray(y), 1.0))
    assert m.shape == y.shape and m.sum() == y.size - 2
    assert m[0, 1, 2, 1] == 0 and m[0, 0, 0, 0] == 0 and m[0, 3, 3, 2] == 1
    assert float(sat.observed(jnp.asarray(y), 0.5).sum()) == 0


@pytest.mark.parametrize("level", [0, -0.1, 1.5, float("nan"), "1", True, [1.0]])
def test_bad_clip_level(level):
    with pytest.raises(ValueError, match="clip_level"):
        dp.make_config("dpir", noise_level=NOISE, saturation="auto", clip_level=level)


def test_bad_saturation_mode():
    with pytest.raises(ValueError, match="saturation must be one of"):
        dp.make_config("dpir", noise_level=NOISE, saturation="on")


def test_nothing_observed():
    y = np.ones((1, N, N, 1), np.float32)
    cfg = dp.make_config("dpir", iters=2, noise_level=NOISE, saturation="auto")
    with pytest.raises(ValueError, match="leaves nothing observed"):
        dp.restore({"prior": NET, "A": Blur.from_kernel(gauss_kernel(), 1)}, y, cfg)


def test_saturation_needs_a_blur():
    y = degrade(disc(1.6), gauss_kernel())
    cfg = dp.make_config("dpir", iters=2, noise_level=NOISE, saturation="auto")
    m = jnp.ones((1, N, N, 1))
    with pytest.raises(ValueError, match="needs a blur.*Mask.*saturation='off'"):
        dp.restore({"prior": NET, "A": Mask(m)}, y, cfg)
    with pytest.raises(ValueError, match="needs a blur.*operator='identity'"):
        dp.restore({"prior": NET}, y, cfg)  # denoising
    with pytest.raises(ValueError, match="no data term"):
        dp.make_config("prior", saturation="auto")


class ClipNet(nn.Module):
    """A "denoiser" that knows only [0, 1]: it clips."""

    @nn.compact
    def __call__(self, x):
        return jnp.clip(x, 0.0, 1.0)


def test_denoiser_sees_highlights_compressed_into_its_range():
    net = dp.Network(module=ClipNet(), variables={}, kind="image", channels=1, name="clip")
    x = jnp.asarray(np.linspace(0, 2, 16, dtype=np.float32).reshape(1, 4, 4, 1))
    y = np.asarray(jnp.clip(x, 0, 1))  # its clipped values: x >= 1
    # the network sees values up to the peak m (a quantile) inside [0, 1]: they come back intact
    m = float(sat.peak(x, jnp.asarray(y >= 1 - sat.MARGIN, jnp.float32))[0])
    assert 1.5 < m < 2.0
    keep = np.minimum(np.asarray(x), m)
    for mode, want in (("off", y), ("auto", keep), ("masked", keep)):
        p = _problem(mode, y, net)
        if mode == "off":
            p = p._replace(sat=None)
        np.testing.assert_allclose(np.asarray(p.denoise(x, 0.01, 0)), want, atol=1e-5)


def test_calibration_score_weight():
    """The 'sparsity' criterion's residual counts the unsaturated values only."""
    from dynpnp_jax.calibration import calibration_score

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.uniform(0, 1, (1, 24, 24, 1)).astype(np.float32))
    r = jnp.asarray(rng.normal(0, 0.01, (1, 24, 24, 1)).astype(np.float32))
    w = jnp.asarray((rng.uniform(0, 1, (1, 24, 24, 1)) > 0.3).astype(np.float32))
    big = r + (1 - w) * 0.5  # a huge residual where the weight is 0 (clipped values)
    a = float(calibration_score(r, x, 1e-4, 2, w)[0])
    np.testing.assert_allclose(float(calibration_score(big, x, 1e-4, 2, w)[0]), a, rtol=1e-5)
    assert float(calibration_score(big, x, 1e-4, 2)[0]) > a + 1  # unweighted: it counts
    np.testing.assert_allclose(float(calibration_score(r, x, 1e-4, 2, jnp.ones_like(w))[0]),
                               float(calibration_score(r, x, 1e-4, 2)[0]), rtol=1e-5)


@pytest.mark.slow
def test_calibrated_sparsity_with_saturation():
    """``calibrated`` with the 'sparsity' criterion and saturation on: the search runs with the
    saturation-aware data term (its score masked: test_calibration_score_weight) and the result
    gains on the clipped disc (measured +0.64 dB; both searches shrink the toy's kernel)."""
    k = gauss_kernel()
    y, truth = degrade(disc(1.6), k), np.clip(disc(1.6), 0, 1)
    out = {}
    for mode in ("off", "auto"):
        cfg = dp.make_config("calibrated", iters=8, noise_level=NOISE, saturation=mode,
                             calib_criterion="sparsity", calib_iters=3, keep_images=False)
        r, traj = dp.restore({"prior": NET, "A": Blur.from_kernel(k, 1)}, y, cfg)
        out[mode] = float(psnr(np.asarray(r), truth)[0])
        assert traj.kernel is not None
    assert out["auto"] > out["off"] + 0.3, out


def test_bench_residual_next_to_highlights():
    """bench/saturation.py's real-picture measure: the re-blur residual on the unclipped values
    within the kernel's reach of a clipped one is zero for the true (unclipped) scene and not
    for the scene clipped to [0, 1], and it leaves out the clipped values themselves."""
    import sys
    from pathlib import Path

    from scipy.signal import fftconvolve
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.saturation import near_clipped_residual

    x = np.full((48, 48, 1), 0.2)
    yy, xx = np.mgrid[:48, :48]
    x[(yy - 24) ** 2 + (xx - 24) ** 2 <= 36, 0] = 1.6
    k = np.outer(np.hanning(9)[1:-1], np.hanning(9)[1:-1])
    k /= k.sum()
    y = np.clip(fftconvolve(x[..., 0], k, mode="same"), 0, 1)[..., None]
    assert (y >= 1 - 1 / 255).any()
    r_true, n = near_clipped_residual(y, x, k)
    r_shown, n2 = near_clipped_residual(y, np.clip(x, 0, 1), k)
    assert r_true < 1e-6 and r_shown > 5.0  # 8-bit units
    clipped = (y >= 1 - 1 / 255)[3:-3, 3:-3]
    assert n == n2 and 0 < n <= clipped.size - clipped.sum()
