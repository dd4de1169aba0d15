"""DnCNN: PyTorch parity, .mat == .pth conversion, and the published Set12 numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax.zoo.dncnn import dncnn_from_state_dict
from dynpnp_jax.zoo import DnCNN

from conftest import load_gray


def _torch_dncnn(depth, channels):
    torch = pytest.importorskip("torch")
    layers = []
    for i in range(depth):
        cin = channels if i == 0 else 64
        cout = channels if i == depth - 1 else 64
        layers.append(torch.nn.Conv2d(cin, cout, 3, padding=1, bias=True))
        if i < depth - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("depth,channels", [(17, 1), (20, 3)])
def test_parity_with_pytorch(depth, channels):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = _torch_dncnn(depth, channels).eval()
    sd = {f"model.{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
    variables = dncnn_from_state_dict(sd)
    x = np.random.RandomState(0).uniform(0, 1, (2, 33, 40, channels)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    got = DnCNN(depth=depth, channels=channels).apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mat_and_pth_convert_identically(shared_upstream):
    a = dp.load_network("dncnn-s25")
    b = dp.load_network("dncnn-s25-kair")
    la, lb = jax.tree_util.tree_leaves(a.variables), jax.tree_util.tree_leaves(b.variables)
    assert len(la) == len(lb) == 34
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name,depth,channels", [("dncnn-b-gray", 20, 1), ("dncnn-b-color", 20, 3)])
def test_blind_models_load(shared_upstream, name, depth, channels):
    net = dp.load_network(name)
    assert net.channels == channels and net.module.depth == depth
    net.check_structure()


# Published DnCNN-S means on Set12 (TIP 2017 Table; reproduced by KAIR under 'standard').
PUBLISHED_SET12 = {15: 32.86, 25: 30.44, 50: 27.18}


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_prior_reproduces_published_set12(shared_data, sigma):
    """Standard protocol: seed 0 per image, unclipped noise, output clipped and rounded."""
    net = dp.load_network(f"dncnn-s{sigma}")
    cfg = dp.make_config("prior")
    psnrs = []
    for path in sorted((shared_data / "set12").glob("*.png")):
        x = load_gray(path)
        np.random.seed(0)
        y = (x + np.random.normal(0, sigma / 255.0, x.shape)).astype(np.float32)
        out, _ = dp.restore({"prior": net}, y[None, ..., None], cfg)
        out8 = np.round(np.clip(np.asarray(out)[0, ..., 0], 0, 1) * 255)
        mse = np.mean((out8 - np.round(x * 255)) ** 2)
        psnrs.append(10 * np.log10(255.0 ** 2 / mse))
    assert len(psnrs) == 12
    assert abs(np.mean(psnrs) - PUBLISHED_SET12[sigma]) <= 0.02, np.mean(psnrs)


def test_authors_mode_on_set12_no_recompilation(shared_data):
    """Issue acceptance: authors mode, Set12 sigma 25, T=2; new numbers do not recompile."""
    net = dp.load_network("dncnn-s25")
    x = load_gray(shared_data / "set12" / "02.png")[None, ..., None]
    y = (x + np.random.RandomState(0).normal(0, 25 / 255, x.shape)).astype(np.float32)
    out, traj = dp.restore({"prior": net}, y, dp.make_config("authors", iters=2, mu=0.1,
                                                             delta=0.01, alpha=1e-5), clean=x)
    assert traj.x.shape[0] == traj.v.shape[0] == traj.psnr.shape[0] == 2
    assert float(traj.psnr[-1, 0]) > 28.0
    n = dp.trace_count()
    out2, _ = dp.restore({"prior": net}, y, dp.make_config("authors", iters=2, mu=0.3,
                                                           delta=0.02, alpha=1e-4), clean=x)
    assert dp.trace_count() == n
    assert float(np.abs(np.asarray(out2) - np.asarray(out)).max()) > 1e-4  # numbers did change it
