"""Classical baselines of the known-degradation protocol: each beats the degraded input."""
import dataclasses

import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("median", None)
