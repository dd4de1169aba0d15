"""Tiled inference (:mod:`dynpnp_jax.tiling`): exactness for local functions, DMPHN on GoPro."""
from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from dynpnp_jax.tiling import apply_tiled, tile_starts


def _box(radius):
    """A zero-padded (2r+1)^2 box filter per channel: a local function of radius ``r``."""
    k = 2 * radius + 1

    def fn(x):
        c = x.shape[-1]
        w = jnp.ones((k, k, 1, c), x.dtype) / k ** 2
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=c)
    return fn


def test_tile_starts():
    assert tile_starts(100, 128, 16) == [0]
    s = tile_starts(512, 256, 64)
    assert s[0] == 0 and s[-1] == 256
    assert all(b - a <= 256 - 64 for a, b in zip(s, s[1:]))
    s = tile_starts(1000, 96, 32)
    assert s[-1] == 1000 - 96 and all(0 < b - a <= 64 for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("blend", ["cosine", "linear", "none"])
def test_pointwise_is_exact(blend):
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 70, 93, 3))
    fn = lambda t: 2.0 * t + 1.0  # noqa: E731
    halo = 8 if blend == "none" else 4
    y = apply_tiled(fn, x, tile=(32, 40), overlap=16, halo=halo, blend=blend)
    np.testing.assert_allclose(np.asarray(y), np.asarray(fn(x)), atol=1e-6)


def test_local_function_is_exact_with_halo_and_jit():
    """A function of receptive-field radius r, tiled with halo >= r, equals its untiled output
    everywhere (tiles only contribute pixels that see no tile border)."""
    x = jax.random.uniform(jax.random.PRNGKey(1), (1, 100, 130, 2))
    fn = _box(3)
    f = jax.jit(lambda x: apply_tiled(fn, x, tile=48, overlap=16, halo=4, multiple=8,
                                      batch_size=3))
    np.testing.assert_allclose(np.asarray(f(x)), np.asarray(fn(x)), atol=1e-6)


def test_gradient_flows():
    x = jnp.ones((1, 40, 40, 1))
    g = jax.grad(lambda x: apply_tiled(lambda t: t ** 2, x, tile=16, overlap=8).sum())(x)
    np.testing.assert_allclose(np.asarray(g), 2.0, atol=1e-6)


def test_small_image_single_call():
    x = jnp.ones((1, 20, 30, 3))
    calls = []
    y = apply_tiled(lambda t: calls.append(t.shape) or t, x, tile=64, overlap=16)
    assert calls == [(1, 20, 30, 3)] and y.shape == x.shape


def test_errors():
    x = jnp.ones((1, 100, 100, 3))
    with pytest.raises(ValueError, match=r"tile=30 along height is not a multiple of multiple=8"):
        apply_tiled(lambda t: t, x, tile=30, overlap=8, multiple=8)
    with pytest.raises(ValueError, match="overlap=32 along height must be smaller than tile=32"):
        apply_tiled(lambda t: t, x, tile=32, overlap=32)
    with pytest.raises(ValueError, match="halo=8 along height"):
        apply_tiled(lambda t: t, x, tile=32, overlap=16, halo=8)
    with pytest.raises(ValueError, match="blend must be one of"):
        apply_tiled(lambda t: t, x, tile=32, overlap=16, blend="gauss")
    with pytest.raises(ValueError, match="NHWC"):
        apply_tiled(lambda t: t, x[0], tile=32, overlap=16)
    with pytest.raises(ValueError, match="keep height and width"):
        apply_tiled(lambda t: t[:, ::2, ::2], x, tile=32, overlap=16)


# ---------------------------------------------------------------------------- DMPHN on GoPro
# 512 x 512 crop of frame 000001, DMPHN 1-2-4, tiles of 256 (a multiple of 8), overlap 128 with
# halo 32 and cosine blending: 3 x 3 tiles. Measured: PSNR vs the sharp frame changes by -0.026 dB
# (31.375 -> 31.349 dB); tiled vs untiled output 51.1 dB. Overlap 64 / halo 16, linear or
# 'none' blending give the same -0.025 .. -0.026 dB: the change comes from the tiles' own
# patch hierarchy (each tile is cut in halves / quarters by DMPHN), not from the tile borders.
TILE, OVERLAP, HALO = 256, 128, 32
CROP = (104, 384, 512, 512)  # top, left, height, width
MAX_DB_CHANGE = 0.05


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_tiled_dmphn_on_gopro(shared_data, shared_upstream):
    from PIL import Image

    from dynpnp_jax.weights import load_network

    def rgb(p):
        return np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0

    t, l, h, w = CROP
    blur = rgb(shared_data / "gopro" / "blur" / "000001.png")[None, t:t + h, l:l + w]
    sharp = rgb(shared_data / "gopro" / "sharp" / "000001.png")[None, t:t + h, l:l + w]
    net = load_network("dmphn-1-2-4")
    full = jax.jit(lambda n, x: jnp.clip(n.prior(x), 0, 1))(net, blur)
    tiled = jax.jit(lambda n, x: jnp.clip(apply_tiled(
        n.prior, x, tile=TILE, overlap=OVERLAP, halo=HALO, multiple=n.multiple), 0, 1))(net, blur)
    p_full, p_tiled = _psnr(full, sharp), _psnr(tiled, sharp)
    p_between = _psnr(tiled, np.asarray(full))
    print(f"DMPHN 1-2-4, {h}x{w} crop, tile {TILE} overlap {OVERLAP} halo {HALO}: PSNR vs sharp "
          f"untiled {p_full:.3f} dB, tiled {p_tiled:.3f} dB (change {p_tiled - p_full:+.3f} dB); "
          f"tiled vs untiled {p_between:.2f} dB")
    assert abs(p_tiled - p_full) < MAX_DB_CHANGE


def test_dncnn_default_tiling_is_exact(dncnn_s25, shared_data):
    """DnCNN-S sees 17 pixels: the default halo/overlap make --tile 48 exact; --tile 32 cannot
    hold an overlap of 2 x 17 + 2 and is refused (it used to run and differ from untiled)."""
    from conftest import load_gray

    x = load_gray(shared_data / "set12" / "01.png")[None, :128, :128, None]
    full = np.asarray(dncnn_s25.prior(jnp.asarray(x)))
    tiled = dncnn_s25.tiled(48)
    assert tiled.tile_halo == 17 and tiled.tile_overlap == 36
    np.testing.assert_allclose(np.asarray(tiled.prior(jnp.asarray(x))), full, atol=2e-5)
    for bad in (3, 32):
        with pytest.raises(ValueError, match="too small"):
            dncnn_s25.tiled(bad)
