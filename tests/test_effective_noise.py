"""The effective noise level (dynpnp_jax.effective_noise): the sensor level for an exact kernel,
higher for a wrong one, carried by the restore command's report and log; bad input refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import fftconvolve

from conftest import require_shared
from dynpnp_jax import effective_noise as en
from dynpnp_jax import imageio, kernels, restore_cli


@pytest.fixture(scope="module")
def case():
    """A 112x112 gray tune image blurred ('valid') by Levin k1 (19x19), noise 2.55."""
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    p = require_shared("data", "tune", "train400_101.png")
    x, _ = imageio.read_image(p)
    x = np.asarray(x[0, 20:150, 20:150, 0], np.float64)
    k = np.asarray(kernels.levin(1), np.float64)
    y = fftconvolve(x, k, mode="valid")
    y = y + np.random.RandomState(3).normal(0, 2.55 / 255, y.shape)
    return y.astype(np.float32), k


def _zoom(k, s):
    z = np.maximum(ndimage.zoom(k, s, order=3), 0)
    n = max(z.shape + k.shape)
    n += 1 - n % 2
    out = np.zeros((n, n))
    out[(n - z.shape[0]) // 2:(n - z.shape[0]) // 2 + z.shape[0],
        (n - z.shape[1]) // 2:(n - z.shape[1]) // 2 + z.shape[1]] = z
    return out / out.sum()


def test_exact_kernel_keeps_the_sensor_level_and_a_wrong_one_raises_it(case):
    y, k = case
    exact = en.effective_noise_level(y, k, sensor=2.55)
    assert exact.sensor == pytest.approx(2.55) and exact.sensor_estimate is None
    assert exact.sigma == pytest.approx(2.55, rel=0.15), exact
    wrong = en.effective_noise_level(y, _zoom(k, 1.25), sensor=2.55)
    assert wrong.r > exact.r and wrong.sigma > 1.3 * exact.sigma, (exact, wrong)
    assert wrong.sigma <= en.MAX_RATIO * 2.55 + 1e-9


def test_level_ratio():
    assert en.level_ratio(0.0) == 1.0 and en.level_ratio(en.R0) == pytest.approx(1.0)
    assert en.level_ratio(2 * en.R0) > 1.4
    assert en.level_ratio(1e9) == en.MAX_RATIO and en.level_ratio(float("inf")) == en.MAX_RATIO


def test_bad_input():
    k = np.ones((3, 3))
    y = np.full((32, 32), 0.5)
    for bad_y, what in [(np.full((32, 32), np.nan), "NaN"),
                        (np.zeros((2, 32, 32, 1)), "one picture"),
                        (np.zeros((4, 32, 32, 1, 1)), "expected a picture"),
                        (np.zeros((32, 32, 2)), "C = 1")]:
        with pytest.raises(ValueError, match=what):
            en.effective_noise_level(bad_y, k, sensor=2.0)
    with pytest.raises(ValueError, match="2-D"):
        en.effective_noise_level(y, np.ones(3), sensor=2.0)
    with pytest.raises(ValueError, match="positive sum"):
        en.effective_noise_level(y, np.full((3, 3), np.inf), sensor=2.0)
    with pytest.raises(ValueError, match="larger than"):
        en.effective_noise_level(y, np.ones((40, 3)), sensor=2.0)
    with pytest.raises(ValueError, match="sensor"):
        en.effective_noise_level(y, k, sensor=float("nan"))
    with pytest.raises(ValueError, match="floor"):
        en.effective_noise_level(y, k, sensor=1.0, floor=-1)
    with pytest.raises(ValueError, match="sigma"):
        en.pilot_residual(y, k, 0.0)


def test_restore_report_and_log_carry_both_levels(case, tmp_path, capsys):
    y, k = case
    src = tmp_path / "b.png"
    imageio.write_image(src, np.clip(y, 0, 1)[..., None])
    np.save(tmp_path / "k.npy", k)
    log = tmp_path / "log.jsonl"
    for eff in ("auto", "off"):
        rc = restore_cli.main([str(src), "-o", str(tmp_path / f"o_{eff}.png"), "--task", "deblur",
                               "--kernel", str(tmp_path / "k.npy"), "--iters", "2",
                               "--effective-noise", eff, "--log", str(log), "--no-progress"])
        assert rc == 0
    out = capsys.readouterr().out
    on, off = [json.loads(line) for line in log.read_text().splitlines()]
    assert on["noise_sensor"] >= 1.0 and on["noise_effective"] == pytest.approx(on["noise"])
    assert on["noise"] >= on["noise_sensor"] and "effective x" in on["noise_source"]
    assert off["noise_effective"] is None and off["noise"] == pytest.approx(off["noise_sensor"])
    assert "effective x" in out
    x, _ = imageio.read_image(src)
    _, rep = restore_cli.restore_photo(x, "deblur", kernel=k, iters=2)
    assert {"noise_sensor", "noise_effective", "effective"} <= set(rep)
    assert rep["effective"]["sensor"] == pytest.approx(rep["noise_sensor"])
    with pytest.raises(restore_cli.RestoreError, match="effective-noise"):
        restore_cli.restore_photo(x, "deblur", kernel=k, iters=2, effective_noise="maybe")
    # a given level is never changed
    _, rep = restore_cli.restore_photo(x, "deblur", kernel=k, iters=2, noise=3)
    assert rep["noise"] == 3.0 and "noise_effective" not in rep
