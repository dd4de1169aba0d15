"""VDN: PyTorch parity (DNet and SNet), the converter, check_size, loading from a user path.

The PyTorch reference below is written from the architecture of zsyOAOA/VDNet
(``networks/VDN.py``, ``UNet.py``, ``DnCNN.py``); its random weights are saved as an
``nn.DataParallel`` state dict (``module.`` keys), like the released ``model_state_niidgauss``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynpnp_jax.zoo.vdn import vdn_from_file, vdn_from_state_dict, vdn_hparams
from dynpnp_jax.zoo.vdn import UNet, VDN, check_size, vdn_outputs
from dynpnp_jax.weights import WeightsError

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional


# ----------------------------------------------------------------------- PyTorch reference
class _Block(tnn.Module):
    def __init__(self, cin, cout, slope):
        super().__init__()
        self.block = tnn.Sequential(tnn.Conv2d(cin, cout, 3, padding=1), tnn.LeakyReLU(slope),
                                    tnn.Conv2d(cout, cout, 3, padding=1), tnn.LeakyReLU(slope))

    def forward(self, x):
        return self.block(x)


class _Up(tnn.Module):
    def __init__(self, cin, cout, slope):
        super().__init__()
        self.up = tnn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.conv_block = _Block(cin, cout, slope)

    def forward(self, x, bridge):
        up = self.up(x)
        th, tw = up.shape[2:]
        dy, dx = (bridge.shape[2] - th) // 2, (bridge.shape[3] - tw) // 2
        return self.conv_block(torch.cat([up, bridge[:, :, dy:dy + th, dx:dx + tw]], 1))


class _UNet(tnn.Module):
    def __init__(self, cin, cout, depth, wf, slope):
        super().__init__()
        self.down_path, self.up_path = tnn.ModuleList(), tnn.ModuleList()
        prev = cin
        for i in range(depth):
            self.down_path.append(_Block(prev, wf * 2 ** i, slope))
            prev = wf * 2 ** i
        for i in reversed(range(depth - 1)):
            self.up_path.append(_Up(prev, wf * 2 ** i, slope))
            prev = wf * 2 ** i
        self.last = tnn.Conv2d(prev, cout, 3, padding=1)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i != len(self.down_path) - 1:
                skips.append(x)
                x = F.avg_pool2d(x, 2)
        for i, up in enumerate(self.up_path):
            x = up(x, skips[-i - 1])
        return self.last(x)


class _SNet(tnn.Module):
    def __init__(self, cin, cout, dep, nf, slope):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, nf, 3, padding=1)
        self.relu = tnn.LeakyReLU(slope)
        mid = []
        for _ in range(1, dep - 1):
            mid += [tnn.Conv2d(nf, nf, 3, padding=1), tnn.LeakyReLU(slope)]
        self.mid_layer = tnn.Sequential(*mid)
        self.conv_last = tnn.Conv2d(nf, cout, 3, padding=1)

    def forward(self, x):
        return self.conv_last(self.mid_layer(self.relu(self.conv1(x))))


class _VDN(tnn.Module):
    def __init__(self, c=3, wf=64, dep_S=5, dep_U=4, slope=0.2):
        super().__init__()
        self.DNet = _UNet(c, 2 * c, dep_U, wf, slope)
        self.SNet = _SNet(c, 2 * c, dep_S, 64, slope)


def _randomize(net, seed):
    """He-normal weights (fan-in) and random biases, so that outputs are O(1) and every entry
    of every kernel matters (incl. the transposed convs, which Kaiming init upstream skips)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (tnn.Conv2d, tnn.ConvTranspose2d)):
                w = m.weight
                fan_in = w.shape[1 if isinstance(m, tnn.Conv2d) else 0] * w.shape[2] * w.shape[3]
                w.copy_(torch.randn(w.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """(torch VDN, path of its DataParallel-style state dict, NHWC input 2x40x48x3)."""
    net = _randomize(_VDN(), seed=0)
    sd = tnn.DataParallel(net).state_dict()
    assert all(k.startswith("module.") for k in sd)
    path = tmp_path_factory.mktemp("vdn") / "model_state_niidgauss"
    torch.save(sd, path)
    x = np.random.RandomState(0).uniform(0, 1, (2, 40, 48, 3)).astype(np.float32)
    return net, path, x


def _err(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))


def test_parity_dnet_and_snet(ref):
    net, path, x = ref
    variables = vdn_from_file(path)
    assert vdn_hparams(torch.load(path, weights_only=True)) == {
        "channels": 3, "features": 64, "depth_u": 4, "depth_s": 5, "snet_features": 64}
    with torch.no_grad():
        want_z, want_s = _nhwc(net.DNet(_nchw(x))), _nhwc(net.SNet(_nchw(x)))
    model = VDN(channels=3)
    phi_z, phi_s = model.apply(variables, jnp.asarray(x), method=VDN.outputs)
    noise = model.apply(variables, jnp.asarray(x))
    assert phi_z.shape == phi_s.shape == (2, 40, 48, 6) and noise.shape == (2, 40, 48, 3)
    err_z, scale_z = _err(phi_z, want_z)
    err_s, scale_s = _err(phi_s, want_s)
    print(f"VDN parity: DNet max|diff| {err_z:.2e} (max|out| {scale_z:.2f}), "
          f"SNet {err_s:.2e} (max|out| {scale_s:.2f})")
    assert scale_z > 0.1 and scale_s > 0.1  # a meaningful comparison, not two near-zero maps
    assert err_z <= 1e-4 and err_s <= 1e-4
    np.testing.assert_array_equal(noise, phi_z[..., :3])


def test_unet_centre_crop_matches_torch():
    """Upstream UNet on a size that is not a multiple of 8: floors, crops, outputs smaller."""
    net = _randomize(_UNet(3, 6, 4, 8, 0.2), seed=1)
    sd = {f"DNet.{k}": v.numpy() for k, v in net.state_dict().items()}
    params = vdn_from_state_dict({**sd, **_snet_sd()})["params"]["DNet"]
    x = np.random.RandomState(1).uniform(0, 1, (1, 42, 51, 3)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(net(_nchw(x)))
    got = UNet(out_channels=6, depth=4, features=8).apply({"params": params}, jnp.asarray(x))
    assert got.shape == want.shape == (1, 40, 48, 6)
    assert _err(got, want)[0] <= 1e-4


def _snet_sd():
    return {f"SNet.{k}": v.numpy() for k, v in _SNet(3, 6, 5, 64, 0.2).state_dict().items()}


def test_up_conv_transpose_matches_flax_and_torch():
    """ConvTranspose2x2s2 (matrix product + depth-to-space) == flax ConvTranspose(2, 2, VALID,
    transpose_kernel) == torch ConvTranspose2d(k=2, s=2): same parameters and initial values."""
    import flax.linen as nn
    from dynpnp_jax.zoo.vdn import ConvTranspose2x2s2

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 5, 7, 12)), jnp.float32)
    before = nn.ConvTranspose(6, (2, 2), strides=(2, 2), padding="VALID", transpose_kernel=True)
    after = ConvTranspose2x2s2(6)
    v0, v1 = before.init(jax.random.key(1), x), after.init(jax.random.key(1), x)
    assert jax.tree.structure(v0) == jax.tree.structure(v1)
    assert all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(v0), jax.tree.leaves(v1)))
    v = {"params": {"kernel": jnp.asarray(rng.standard_normal((2, 2, 6, 12)), jnp.float32),
                    "bias": jnp.asarray(rng.standard_normal(6), jnp.float32)}}
    y0, y1 = before.apply(v, x), after.apply(v, x)
    assert y1.shape == y0.shape == (2, 10, 14, 6)
    assert float(jnp.abs(y1 - y0).max()) <= 1e-5
    m = tnn.ConvTranspose2d(12, 6, kernel_size=2, stride=2)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(np.asarray(v["params"]["kernel"]).transpose(3, 2, 0, 1).copy()))
        m.bias.copy_(torch.from_numpy(np.array(v["params"]["bias"])))
        ref = m(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy()
    assert np.abs(np.asarray(y1) - ref.transpose(0, 2, 3, 1)).max() <= 1e-5


def test_check_size():
    check_size(40, 48)
    with pytest.raises(ValueError, match=r"image h=42 .*multiple of 8.*Fix: pad"):
        check_size(42, 48)
    with pytest.raises(ValueError, match=r"image w=50 "):
        check_size(40, 50)
    with pytest.raises(ValueError, match=r"image w=0 "):
        check_size(8, 0)
    with pytest.raises(ValueError, match=r"size h must be an int"):
        check_size(40.0, 48)
    check_size(36, 36, depth=3)  # multiple of 4 is enough for a depth-3 U-Net
    with pytest.raises(ValueError, match=r"image h=41"):  # the module checks too
        VDN().init(jax.random.PRNGKey(0), jnp.zeros((1, 41, 48, 3)))


def test_converter_rejects_wrong_state_dicts(ref, tmp_path):
    _, path, _ = ref
    sd = {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}
    with pytest.raises(ValueError, match="unexpected keys.*extra"):
        vdn_from_state_dict({**sd, "module.extra.weight": np.zeros(1)})
    del sd["module.DNet.up_path.1.up.bias"]
    with pytest.raises(ValueError, match="DNet.up_path.1.up"):
        vdn_from_state_dict(sd)
    with pytest.raises(ValueError, match="not a VDN"):
        vdn_from_state_dict({"model.0.weight": np.zeros((64, 3, 3, 3))})
    bad = tmp_path / "model_state_niidgauss"
    bad.write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(WeightsError, match="could not read"):
        vdn_from_file(bad)
    with pytest.raises(WeightsError, match="does not exist"):
        vdn_from_file(tmp_path / "missing")


def test_load_network_from_user_path(ref, tmp_path, monkeypatch):
    """The released file is not available offline: load_network takes it from path=..."""
    import dynpnp_jax.zoo.vdn  # noqa: F401  (registers vdn-niidgauss)
    from dynpnp_jax.weights import load_network

    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    net, path, x = ref
    pnp = load_network("vdn-niidgauss", path=path)
    assert pnp.kind == "residual" and pnp.channels == 3 and pnp.multiple == 8
    pnp.check_structure()
    with torch.no_grad():
        want = x - _nhwc(net.DNet(_nchw(x)))[..., :3]
    assert _err(pnp.prior(jnp.asarray(x)), want)[0] <= 1e-4
    assert list((tmp_path / "cache" / "weights").iterdir())  # converted once, cached
    # other sizes are padded by reflection to a multiple of 8 and cropped back
    y = x[:1, :37, :45]
    assert pnp.prior(jnp.asarray(y)).shape == (1, 37, 45, 3)
    phi_z, phi_s = vdn_outputs(pnp, jnp.asarray(y))
    assert phi_z.shape == phi_s.shape == (1, 37, 45, 6)
    np.testing.assert_allclose(phi_z[..., :3], pnp.noise(jnp.asarray(y)), atol=1e-6)


def test_load_network_from_upstream_folder_unknown_hash(ref, tmp_path, monkeypatch):
    """No sha256 is recorded for vdn-niidgauss: a file in the upstream folder is used, warned."""
    import shutil

    import dynpnp_jax.zoo.vdn  # noqa: F401  (registers vdn-niidgauss)
    from dynpnp_jax.weights import load_network

    net, path, x = ref
    up = tmp_path / "upstream"
    (up / "vdn").mkdir(parents=True)
    shutil.copy(path, up / "vdn" / "model_state_niidgauss")
    monkeypatch.setenv("DYNPNP_UPSTREAM", str(up))
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="no recorded sha256"):
        pnp = load_network("vdn-niidgauss", download=False)
    with torch.no_grad():
        want = _nhwc(net.DNet(_nchw(x)))[..., :3]
    assert _err(pnp.noise(jnp.asarray(x)), want)[0] <= 1e-4
