"""Classical baselines of the known-degradation protocol: each beats the degraded input."""
import dataclasses

import numpy as np
import pytest

from conftest import require_shared

from dynpnp_jax import baselines, kernels
from dynpnp_jax.data import get_protocol
from dynpnp_jax.data.degradations import Degradation


def _smooth(h, w, c, seed=0):
    """A smooth test picture (sums of a few sinusoids), uint8."""
    yy, xx = np.mgrid[:h, :w] / 8.0
    rng = np.random.default_rng(seed)
    img = sum(np.sin(a * yy + b * xx + p) for a, b, p in rng.uniform(0.2, 1.2, (4, 3)))
    img = (img - img.min()) / (img.max() - img.min())
    return np.uint8(np.round(np.repeat(img[..., None], c, -1) * 255))


def _psnr(a, b):
    return 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2))


@pytest.mark.parametrize("task,cond,mode", [
    ("deblur", Degradation("deblur", 1.0, kernel="gauss:2.5,15"), "wiener"),
    ("sr", Degradation("sr", 0, kernel="gauss:1.2,15", scale=2), "bicubic"),
    ("inpaint", Degradation("inpaint", 0, mask="random:0.5"), "interp"),
])
def test_baselines_beat_the_input(task, cond, mode):
    table = {}
    if cond.kernel:
        (name, k), = kernels.parse_kernel(cond.kernel)
        table = {name: k}
    proto = dataclasses.replace(get_protocol("dpir"), task=task, kernel_table=table)
    prob = proto.problem({"image": _smooth(64, 80, 3), "name": "s"}, cond)
    out = baselines.run_baseline(mode, prob)
    inp = baselines.run_baseline("input", prob)
    assert out.shape == inp.shape == prob.clean.shape and out.dtype == np.float32
    assert _psnr(out, prob.clean) > _psnr(inp, prob.clean) + 1.0
    assert mode in baselines.BASELINES and task in baselines.TASKS[mode]


def test_unknown_baseline():
    with pytest.raises(ValueError, match=r"^mode: unknown baseline 'median'.*fix:"):
        baselines.run_baseline("median", None)


def test_baseline_on_the_wrong_task():
    """wiener on an inpainting problem (no kernel): one error naming what is missing, not a
    KeyError."""
    proto = dataclasses.replace(get_protocol("dpir"), task="inpaint")
    prob = proto.problem({"image": _smooth(16, 16, 1), "name": "s"},
                         Degradation("inpaint", 0, mask="random:0.5"))
    with pytest.raises(ValueError, match=r"^problem: the 'wiener' baseline needs the degradation's "
                                         r"kernel in problem\.meta .*fix: run it on a deblur problem"):
        baselines.run_baseline("wiener", prob)


# ---- the Wiener filter: the DC passes, flat and small crops are not made worse -------------------

def _deblur_problem(gt, spec, noise, boundary="circular"):
    (name, k), = kernels.parse_kernel(spec)
    proto = dataclasses.replace(get_protocol("dpir"), task="deblur", kernel_table={name: k})
    gt = gt[..., None] if gt.ndim == 2 else gt
    return proto, proto.problem({"image": gt, "name": "x"},
                                Degradation("deblur", noise, kernel=name, boundary=boundary))


def _scores(proto, prob):
    return {m: proto.evaluate(baselines.run_baseline(m, prob), prob.meta)["psnr"]
            for m in ("input", "wiener")}


def test_wiener_passes_the_dc_exactly():
    """A constant image without noise comes back unchanged (the white-spectrum filter divided
    its DC by 1 + NSR), for any kernel."""
    y = np.full((24, 20, 2), 0.37)
    for spec in ("gauss:1.6,15", "motion:9,30", "identity"):
        (_, k), = kernels.parse_kernel(spec)
        np.testing.assert_allclose(baselines.wiener_filter(y, k.astype(np.float64), 0.0), y, atol=1e-9)


@pytest.mark.parametrize("noise", [2.55, 7.65])
@pytest.mark.parametrize("spec", ["gauss:1.6,15", "motion:9,30"])
def test_wiener_on_a_flat_image(noise, spec):
    """Flat grey, blurred and noisy: the Wiener output must beat the input by at least 3 dB
    (measured: +8.4 to +15.5 dB) and keep the observed brightness (the old filter gave 6 dB: the
    mean went from 0.5 to 0). The protocol's uint8 blur itself darkens y by about one level."""
    proto, prob = _deblur_problem(np.full((48, 48), 128, np.uint8), spec, noise)
    sc = _scores(proto, prob)
    assert sc["wiener"] > sc["input"] + 3.0, sc
    out = baselines.run_baseline("wiener", prob)
    assert abs(float(out.mean()) - float(np.mean(prob.y))) < 1e-5
    assert float(out.std()) < 0.2 * float(np.std(prob.y))  # the noise is (nearly) all removed


@pytest.mark.parametrize("noise", [2.55, 7.65])
def test_wiener_on_small_natural_crops(noise):
    """32x32 crops of Set3G (house, cameraman, lena; Levin k1, a Gaussian, a motion line): the
    Wiener output is never worse than the blurred input by more than 0.5 dB (measured: it is
    better on all 18, by +1.2 to +7.5 dB; the white-spectrum filter gave 17.78 dB for a 27.33 dB
    input on house)."""
    from PIL import Image

    root = require_shared("data", "set3g")
    for name in ("house", "cameraman", "lena256"):
        gt = np.asarray(Image.open(root / f"{name}.png").convert("L"))[100:132, 100:132]
        for spec in ("levin:1", "gauss:1.6,15", "motion:9,30"):
            sc = _scores(*_deblur_problem(gt, spec, noise))
            assert sc["wiener"] > sc["input"] - 0.5, (name, spec, sc)


def _set3g_gains(names, boundary):
    from PIL import Image

    root = require_shared("data", "set3g")
    gains = []
    for name in names:
        gt = np.asarray(Image.open(root / f"{name}.png").convert("L"))
        for i in range(1, 9):
            sc = _scores(*_deblur_problem(gt, f"levin:{i}", 2.55, boundary))
            gains.append(sc["wiener"] - sc["input"])
    return gains


@pytest.mark.parametrize("boundary,gain,worst", [("circular", 6.0, 0.0), ("unknown", 4.0, 0.0)])
def test_wiener_beats_the_input_on_house(boundary, gain, worst):
    """house x the 8 Levin kernels, noise 2.55 (DPIR's protocol): mean gain over the blurred input
    at least ``gain`` dB, every kernel better (measured: +7.7 dB circular, +6.2 dB on frames with
    unknown boundaries, every kernel by 3.6 dB or more)."""
    gains = _set3g_gains(["house"], boundary)
    assert np.mean(gains) > gain and min(gains) > worst, gains


@pytest.mark.slow
@pytest.mark.parametrize("boundary,gain,worst", [("circular", 6.0, 0.0), ("unknown", 4.0, -2.5)])
def test_wiener_beats_the_input_on_set3g(boundary, gain, worst):
    """Set3G x the 8 Levin kernels, noise 2.55 (DPIR's protocol): mean gain over the blurred
    input at least ``gain`` dB, and no image below ``worst`` (measured: 20.99 -> 28.30 dB
    circular, every image better by 4.0 dB or more; 20.99 -> 25.92 dB on frames with unknown
    boundaries, whose mirrored borders ring: lena with k2 loses 1.8 dB there, the white-spectrum
    filter 1.5 dB. The white-spectrum filter's means: 23.55 circular, 22.57 on frames)."""
    gains = _set3g_gains(["house", "cameraman", "lena256"], boundary)
    assert np.mean(gains) > gain and min(gains) > worst, gains
