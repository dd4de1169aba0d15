"""Numerical parity of the PyTorch FFDNet / DPIR references (``bench/torch_ref.py``) with the
JAX code, so that ``bench/bench_dpir.py`` times the same computation on both sides.

* ``TorchFFDNet.from_flax(net)`` == ``Network.apply`` of ``ffdnet-gray`` / ``ffdnet-color``
  (odd sizes, one sigma per image) to 1e-4;
* ``torch_dpir`` == ``restore`` in ``dpir`` mode with ``Blur.from_kernel(levin(1), 1)``,
  8 iterations, noise level 2.55/255, without and with the x8 self-ensemble, to 1e-4, on a small
  crop (square and non-square). A flipped kernel or a missing self-ensemble moves the output by
  far more than the tolerance (checked, so a wrong x-step or augmentation order cannot pass).

Weights convert from ``../shared/upstream`` via ``load_network``; torch runs on one thread
(small convolutions on a shared 2-core machine are much faster that way; the numbers do not
depend on it). Speed is measured by ``bench/bench_dpir.py``, never here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.torch_ref import TorchFFDNet, augment_nchw, augment_nchw_inverse, torch_dpir  # noqa: E402

import dynpnp_jax as dj  # noqa: E402

TOL = 1e-4
NOISE = 2.55 / 255
ITERS = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nets(shared_upstream):
    out = {}
    for name in ("ffdnet-gray", "ffdnet-color"):
        net = dj.load_network(name)
        out[name] = (net, TorchFFDNet.from_flax(net))
    return out


@pytest.fixture(scope="module")
def levin1(shared_data):
    from dynpnp_jax import kernels

    return np.asarray(kernels.levin(1), np.float32)  # 19x19, not symmetric


@pytest.fixture(scope="module")
def blurred(shared_data, levin1):
    """Set12 01.png, a 64x80 crop, circularly blurred by Levin kernel 1, noise 2.55/255."""
    from scipy import ndimage

    from conftest import load_gray

    clean = load_gray(shared_data / "set12" / "01.png")[80:144, 72:152]
    y = ndimage.convolve(clean.astype(np.float64), levin1, mode="wrap")
    y += np.random.default_rng(0).normal(0.0, NOISE, y.shape)
    return y.astype(np.float32)


def _jax_dpir(net, y, k, ensemble):
    from dynpnp_jax.operators import Blur

    cfg = dj.make_config("dpir", iters=ITERS, noise_level=NOISE, ensemble=ensemble,
                         keep_images=False)
    out, _ = dj.restore({"prior": net, "A": Blur.from_kernel(k, 1)}, y[None, :, :, None], cfg)
    return np.asarray(out)[0, :, :, 0]


def _torch_dpir(tnet, y, k, ensemble):
    return torch_dpir(tnet, torch.from_numpy(y)[None, None], k, ITERS, NOISE,
                      ensemble=ensemble).numpy()[0, 0]


@pytest.mark.parametrize("name", ["ffdnet-gray", "ffdnet-color"])
def test_ffdnet_parity(nets, name):
    import jax

    net, tnet = nets[name]
    rng = np.random.default_rng(1)
    x = rng.random((2, 33, 46, net.channels), np.float32)  # odd height: replicate padding
    sigma = np.array([5 / 255, 40 / 255], np.float32)
    out = np.asarray(jax.jit(lambda n, x, s: n.apply(x, s))(net, x, sigma))
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(sigma))
    ref = ref.permute(0, 2, 3, 1).numpy()
    assert out.shape == ref.shape == x.shape
    assert np.abs(out - ref).max() < TOL
    with torch.no_grad():  # sigma is used: another level gives another output
        other = tnet(torch.from_numpy(x).permute(0, 3, 1, 2), 20 / 255).permute(0, 2, 3, 1).numpy()
    assert np.abs(other - ref).max() > 100 * TOL


def test_augment_round_trip():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    outs = [augment_nchw(x, m) for m in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8  # 8 distinct transforms
    for m, o in enumerate(outs):
        assert torch.equal(augment_nchw(o, augment_nchw_inverse(m)), x)


@pytest.mark.parametrize("crop, ensemble", [("square", False), ("square", True), ("wide", True)],
                         ids=["square-plain", "square-x8", "wide-x8"])
def test_torch_dpir_matches_restore(nets, blurred, levin1, crop, ensemble):
    net, tnet = nets["ffdnet-gray"]
    y = blurred[:, 8:72] if crop == "square" else blurred
    ours = _jax_dpir(net, y, levin1, ensemble)
    ref = _torch_dpir(tnet, y, levin1, ensemble)
    assert ours.shape == ref.shape == y.shape
    err = np.abs(ours - ref).max()
    assert err < TOL, f"max |restore - torch_dpir| = {err:.3g}"
    # sensitivity: the kernel's orientation and the ensemble both matter far beyond TOL
    flipped = _torch_dpir(tnet, y, levin1[::-1, ::-1].copy(), ensemble)
    assert np.abs(flipped - ours).max() > 100 * TOL
    if ensemble:
        assert np.abs(_torch_dpir(tnet, y, levin1, False) - ours).max() > 100 * TOL
