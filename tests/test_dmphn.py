"""DMPHN port: parity with a PyTorch reference, the authors' outputs, converter errors.

The PyTorch reference below (``TorchEncoder``, ``TorchDecoder``, ``torch_dmphn_124``, ...) is
written from the facts of upstream ``models.py`` and the test scripts (``DMPHN_1_2_4_test.py``,
``DMPHN_1_2_4_8_test.py``, ``SDNet4_test.py``), deliberately *without* the generic split/merge
code of :mod:`dynpnp_jax.zoo.dmphn`: every patch is sliced and concatenated by hand, as the
scripts do. ``bench/bench_dmphn.py`` imports it as its PyTorch baseline.

Timing (2 shared CPU cores): the default run (parity on small random inputs, reference checks on
crops, the no-torch subprocess) takes about 70 s; the full-frame checks are marked ``slow``
(about 3 min: 14-26 s for 1-2-4, 17-30 s for 1-2-4-8, 70-80 s for Stack(4) per frame).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# ============================================================================ torch reference
try:  # the reference needs torch; the tests that use it are skipped without it
    import torch
    from torch import nn as tnn
except ImportError:  # pragma: no cover
    torch = None


def _res(c):
    return tnn.Sequential(tnn.Conv2d(c, c, 3, padding=1), tnn.ReLU(), tnn.Conv2d(c, c, 3, padding=1))


if torch is not None:
    class TorchEncoder(tnn.Module):
        """Upstream ``models.Encoder`` (same attribute names, so the same state-dict keys)."""

        def __init__(self):
            super().__init__()
            self.layer1 = tnn.Conv2d(3, 32, 3, padding=1)
            self.layer2, self.layer3 = _res(32), _res(32)
            self.layer5 = tnn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.layer6, self.layer7 = _res(64), _res(64)
            self.layer9 = tnn.Conv2d(64, 128, 3, stride=2, padding=1)
            self.layer10, self.layer11 = _res(128), _res(128)

        def forward(self, x):
            x = self.layer1(x)
            x = self.layer2(x) + x
            x = self.layer3(x) + x
            x = self.layer5(x)
            x = self.layer6(x) + x
            x = self.layer7(x) + x
            x = self.layer9(x)
            x = self.layer10(x) + x
            return self.layer11(x) + x

    class TorchDecoder(tnn.Module):
        """Upstream ``models.Decoder``."""

        def __init__(self):
            super().__init__()
            self.layer13, self.layer14 = _res(128), _res(128)
            self.layer16 = tnn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
            self.layer17, self.layer18 = _res(64), _res(64)
            self.layer20 = tnn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
            self.layer21, self.layer22 = _res(32), _res(32)
            self.layer24 = tnn.Conv2d(32, 3, 3, padding=1)

        def forward(self, x):
            x = self.layer13(x) + x
            x = self.layer14(x) + x
            x = self.layer16(x)
            x = self.layer17(x) + x
            x = self.layer18(x) + x
            x = self.layer20(x)
            x = self.layer21(x) + x
            x = self.layer22(x) + x
            return self.layer24(x)


def torch_dmphn_124(enc, dec, img):
    """``DMPHN_1_2_4_test.py``: ``img`` NCHW in [0, 1]; ``enc``/``dec`` = {'lv1': ..}."""
    x = img - 0.5
    H, W = x.shape[2], x.shape[3]
    h2, w2 = H // 2, W // 2
    lv2_1, lv2_2 = x[:, :, :h2, :], x[:, :, h2:, :]
    lv3 = [lv2_1[:, :, :, :w2], lv2_1[:, :, :, w2:], lv2_2[:, :, :, :w2], lv2_2[:, :, :, w2:]]
    f3 = [enc["lv3"](p) for p in lv3]
    f3_top, f3_bot = torch.cat(f3[:2], 3), torch.cat(f3[2:], 3)
    f3_all = torch.cat((f3_top, f3_bot), 2)
    r3_top, r3_bot = dec["lv3"](f3_top), dec["lv3"](f3_bot)
    f2 = torch.cat((enc["lv2"](lv2_1 + r3_top), enc["lv2"](lv2_2 + r3_bot)), 2) + f3_all
    r2 = dec["lv2"](f2)
    f1 = enc["lv1"](x + r2) + f2
    return dec["lv1"](f1) + 0.5


def torch_dmphn_1248(enc, dec, img):
    """``DMPHN_1_2_4_8_test.py`` (patch order and concatenations as there)."""
    x = img - 0.5
    H, W = x.shape[2], x.shape[3]
    h2, w2, h4 = H // 2, W // 2, H // 4
    lv2_1, lv2_2 = x[:, :, :h2, :], x[:, :, h2:, :]
    lv3 = [lv2_1[:, :, :, :w2], lv2_1[:, :, :, w2:], lv2_2[:, :, :, :w2], lv2_2[:, :, :, w2:]]
    lv4 = []
    for q in lv3:
        lv4 += [q[:, :, :h4, :], q[:, :, h4:h2, :]]
    f4 = [enc["lv4"](p) for p in lv4]
    f4_q = [torch.cat((f4[2 * i], f4[2 * i + 1]), 2) for i in range(4)]  # tl, tr, bl, br
    f4_top, f4_bot = torch.cat(f4_q[:2], 3), torch.cat(f4_q[2:], 3)
    r4 = [dec["lv4"](f) for f in f4_q]
    f3 = [enc["lv3"](lv3[i] + r4[i]) for i in range(4)]
    f3_top = torch.cat(f3[:2], 3) + f4_top
    f3_bot = torch.cat(f3[2:], 3) + f4_bot
    f3_all = torch.cat((f3_top, f3_bot), 2)
    r3_top, r3_bot = dec["lv3"](f3_top), dec["lv3"](f3_bot)
    f2 = torch.cat((enc["lv2"](lv2_1 + r3_top), enc["lv2"](lv2_2 + r3_bot)), 2) + f3_all
    r2 = dec["lv2"](f2)
    f1 = enc["lv1"](x + r2) + f2
    return dec["lv1"](f1) + 0.5


def torch_sdnet(enc, dec, img, stacks):
    """``SDNet4_test.py`` generalised to ``stacks`` stacks; ``enc['s1']['lv1']`` etc."""
    x = img - 0.5
    H, W = x.shape[2], x.shape[3]
    h2, w2 = H // 2, W // 2
    F, R = {}, {}
    for i in range(1, stacks + 1):
        s, ps = f"s{i}", f"s{i - 1}"
        e, d, f, r = enc[s], dec[s], {}, {}
        src = x if i == 1 else R[ps]["lv1"]
        quarters = [src[:, :, :h2, :w2], src[:, :, :h2, w2:], src[:, :, h2:, :w2], src[:, :, h2:, w2:]]
        q = [e["lv3"](p) for p in quarters]
        f["lv3_top"] = torch.cat(q[:2], 3)
        f["lv3_bot"] = torch.cat(q[2:], 3)
        if i > 1:
            f["lv3_top"] = f["lv3_top"] + F[ps]["lv3_top"]
            f["lv3_bot"] = f["lv3_bot"] + F[ps]["lv3_bot"]
        r["lv3_top"] = d["lv3"](f["lv3_top"])
        r["lv3_bot"] = d["lv3"](f["lv3_bot"])
        f["lv2_1"] = e["lv2"](src[:, :, :h2, :] + r["lv3_top"]) + f["lv3_top"]
        f["lv2_2"] = e["lv2"](src[:, :, h2:, :] + r["lv3_bot"]) + f["lv3_bot"]
        if i > 1:
            f["lv2_1"] = f["lv2_1"] + F[ps]["lv2_1"]
            f["lv2_2"] = f["lv2_2"] + F[ps]["lv2_2"]
        f["lv2"] = torch.cat((f["lv2_1"], f["lv2_2"]), 2)
        r["lv2"] = d["lv2"](f["lv2"])
        if i > 1:
            r["lv2"] = r["lv2"] + R["s1"]["lv1"]  # stack 1's output, as in SDNet4_test.py
        f["lv1"] = e["lv1"](src + r["lv2"]) + f["lv2"]
        if i > 1:
            f["lv1"] = f["lv1"] + F[ps]["lv1"]
        r["lv1"] = d["lv1"](f["lv1"])
        F[s], R[s] = f, r
    return R[f"s{stacks}"]["lv1"] + 0.5


def torch_modules(names, seed=0):
    """Random-weight reference blocks ``{stem: module}`` for checkpoint stems like
    ``encoder_lv1`` / ``decoder_s2_lv3`` (torch's default init scaled x1.4, small biases)."""
    torch.manual_seed(seed)
    mods = {}
    for n in names:
        m = TorchEncoder() if n.startswith("encoder") else TorchDecoder()
        with torch.no_grad():
            for p in m.parameters():
                if p.ndim == 1:
                    p.normal_(0, 0.01)
                else:  # x1.4: outputs of O(0.1 .. 1), neither vanishing nor blowing up
                    p.mul_(1.4)
        mods[n] = m.eval()
    return mods


def save_legacy(mods, folder: Path) -> dict[str, Path]:
    """Write each state dict as a *legacy* (pre-zip) torch.save pickle, like the releases."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for n, m in mods.items():
        p = folder / f"{n}.pkl"
        torch.save(m.state_dict(), p, _use_new_zipfile_serialization=False)
        files[n + ".pkl"] = p
    return files


def nest(mods, stacks=None):
    """``{'lv1': ..}`` (or ``{'s1': {'lv1': ..}}``) views of ``mods`` for the reference code."""
    enc, dec = {}, {}
    for n, m in mods.items():
        parts = n.split("_")
        target = enc if parts[0] == "encoder" else dec
        if len(parts) == 3:
            target = target.setdefault(parts[1], {})
        target[parts[-1]] = m
    return enc, dec


def to_nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def from_nchw(t):
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


# ============================================================================ parity
needs_torch = pytest.mark.skipif(torch is None, reason="the PyTorch reference needs torch")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@needs_torch
def test_encoder_decoder_parity(tmp_path, rng):
    import jax
    from dynpnp_jax.zoo.dmphn import dmphn_from_files
    from dynpnp_jax.zoo.dmphn import Decoder, Encoder

    mods = torch_modules(["encoder_lv1", "decoder_lv1"])
    params = dmphn_from_files(save_legacy(mods, tmp_path))["params"]
    x = rng.uniform(-0.5, 0.5, (2, 40, 56, 3)).astype(np.float32)  # 40, 56: not multiples of 8
    with torch.no_grad():
        f_ref = from_nchw(mods["encoder_lv1"](to_nchw(x)))
    f = np.asarray(jax.jit(Encoder().apply)({"params": params["encoder_lv1"]}, x))
    assert f.shape == f_ref.shape == (2, 10, 14, 128)
    assert np.abs(f - f_ref).max() <= 1e-4

    g = rng.standard_normal((2, 7, 9, 128)).astype(np.float32)  # odd sizes: n -> 4n exactly
    with torch.no_grad():
        y_ref = from_nchw(mods["decoder_lv1"](to_nchw(g)))
    y = np.asarray(jax.jit(Decoder().apply)({"params": params["decoder_lv1"]}, g))
    assert y.shape == y_ref.shape == (2, 28, 36, 3)
    assert np.abs(y - y_ref).max() <= 1e-4


@needs_torch
@pytest.mark.parametrize("what, size", [("124", (48, 64)), ("1248", (64, 48)),
                                        ("stack2", (32, 48)), ("stack4", (32, 32))])
def test_hierarchy_parity(tmp_path, rng, what, size):
    """The whole hierarchy (patch cutting, concatenation order, feature / residual additions,
    stack wiring) against the hand-written reference, with random weights, converted from
    legacy .pkl files by the production converter; batch of 2."""
    import jax
    from dynpnp_jax.zoo.dmphn import dmphn_from_files
    from dynpnp_jax.zoo.dmphn import DMPHN, StackDMPHN

    if what.startswith("stack"):
        n = int(what[5:])
        names = [f"{k}_s{s}_lv{lv}" for k in ("encoder", "decoder") for s in range(1, n + 1)
                 for lv in (1, 2, 3)]
        module = StackDMPHN(stacks=n)
    else:
        levels = 3 if what == "124" else 4
        names = [f"{k}_lv{lv}" for k in ("encoder", "decoder") for lv in range(1, levels + 1)]
        module = DMPHN(levels=levels)
    mods = torch_modules(names, seed=len(names))
    variables = dmphn_from_files(save_legacy(mods, tmp_path))
    x = rng.uniform(0, 1, (2, *size, 3)).astype(np.float32)
    enc, dec = nest(mods)
    with torch.no_grad():
        if what == "124":
            ref = torch_dmphn_124(enc, dec, to_nchw(x))
        elif what == "1248":
            ref = torch_dmphn_1248(enc, dec, to_nchw(x))
        else:
            ref = torch_sdnet(enc, dec, to_nchw(x), int(what[5:]))
    ref = from_nchw(ref)
    out = np.asarray(jax.jit(module.apply)(variables, x))
    err = np.abs(out - ref).max()
    print(f"{what}: max abs diff {err:.2e} (output std {ref.std():.3f})")
    assert out.shape == ref.shape
    assert err <= 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_phase_conv_transpose_matches_conv_transpose(dtype):
    """ConvTranspose4x4s2 (phase form) == flax ConvTranspose with the same parameters (and torch
    ConvTranspose2d(4, 2, 1)): same parameter names, shapes and initial values, same outputs up
    to float rounding, odd sizes included."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from dynpnp_jax.zoo.dmphn import ConvTranspose4x4s2

    rng = np.random.default_rng(11)
    dt = jnp.dtype(dtype)
    x = jnp.asarray(rng.standard_normal((2, 7, 9, 16)), jnp.float32)
    before = nn.ConvTranspose(8, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                              transpose_kernel=True, dtype=dt)
    after = ConvTranspose4x4s2(8, dtype=dt)
    v0, v1 = before.init(jax.random.key(3), x), after.init(jax.random.key(3), x)
    assert jax.tree.structure(v0) == jax.tree.structure(v1)
    assert all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(v0), jax.tree.leaves(v1)))
    v = {"params": {"kernel": jnp.asarray(rng.standard_normal((4, 4, 8, 16)) * 0.2, jnp.float32),
                    "bias": jnp.asarray(rng.standard_normal(8), jnp.float32)}}
    y0, y1 = before.apply(v, x), after.apply(v, x)
    assert y1.shape == y0.shape == (2, 14, 18, 8) and y1.dtype == y0.dtype == dt
    # relative to the output scale: float32 rounding, or bfloat16's (8-bit mantissa) rounding of
    # the operands and the output in a different summation order
    tol = 1e-6 if dtype == "float32" else 2e-2
    y0f, y1f = y0.astype(jnp.float32), y1.astype(jnp.float32)
    assert float(jnp.abs(y1f - y0f).max()) <= tol * float(jnp.abs(y0f).max())
    if torch is not None and dtype == "float32":
        m = tnn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.asarray(v["params"]["kernel"]).transpose(3, 2, 0, 1).copy()))
            m.bias.copy_(torch.from_numpy(np.array(v["params"]["bias"])))
            ref = from_nchw(m(to_nchw(np.asarray(x))))
        assert np.abs(np.asarray(y1) - ref).max() <= 1e-5
    # gradients flow through the phase form like through the transposed conv
    g0 = jax.grad(lambda v: (before.apply(v, x).astype(jnp.float32) ** 2).sum())(v)
    g1 = jax.grad(lambda v: (after.apply(v, x).astype(jnp.float32) ** 2).sum())(v)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        assert float(jnp.abs(a - b).max()) <= 5 * tol * float(jnp.abs(a).max())


def test_bench_rejects_bad_arguments(capsys):
    """bench/bench_dmphn.py refuses bad values before running anything."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_dmphn", ROOT / "bench" / "bench_dmphn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for argv, msg in [(["--stack-runs", "0"], "--stack-runs must be >= 1"),
                      (["--runs", "0"], "--runs must be >= 1"),
                      (["--threads", "-2"], "--threads must be >= 0"),
                      (["--image", str(ROOT / "nope.png")], "no such file"),
                      (["--image", str(ROOT / "README.md")], "not a readable image")]:
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err


def test_split_merge_roundtrip():
    import jax.numpy as jnp
    from dynpnp_jax.zoo.dmphn import GRIDS, merge, split

    x = jnp.arange(2 * 16 * 8 * 3, dtype=jnp.float32).reshape(2, 16, 8, 3)
    for g in GRIDS:
        assert (merge(split(x, g), g) == x).all()
    p = split(x, (4, 2))  # patch (i, j) of image b at (b * 4 + i) * 2 + j
    assert (p[(1 * 4 + 2) * 2 + 1] == x[1, 8:12, 4:8]).all()


def test_check_size_and_multiples():
    from dynpnp_jax.zoo.dmphn import check_size, network_multiple, size_multiple

    assert size_multiple(3) == (8, 8) and size_multiple(4) == (16, 8)
    assert network_multiple(3) == 8 and network_multiple(4) == 16
    check_size(720, 1280, 3)
    check_size(9, 17, 3)  # padded by Network.apply
    check_size(np.int64(720), 1280, 4)
    with pytest.raises(ValueError, match=r"h=5 is too small.*at least 8"):
        check_size(5, 100, 3)
    with pytest.raises(ValueError, match=r"w=12 is too small.*at least 16"):
        check_size(720, 12, 4)
    with pytest.raises(ValueError, match="must be an int"):
        check_size(720.0, 1280, 3)
    with pytest.raises(ValueError, match="levels must be"):
        size_multiple(5)


# ============================================================================ converter errors
@needs_torch
def test_converter_errors(tmp_path):
    from dynpnp_jax.zoo.dmphn import dmphn_from_files, load_checkpoint as load_legacy_state_dict
    from dynpnp_jax.weights import WeightsError

    files = save_legacy(torch_modules(["encoder_lv1", "decoder_lv1"]), tmp_path / "good")
    good = files["encoder_lv1.pkl"].read_bytes()

    trunc = tmp_path / "encoder_lv1.pkl"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(WeightsError, match=r"could not read .*encoder_lv1\.pkl.*truncated"):
        load_legacy_state_dict(trunc)

    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(WeightsError, match="could not read"):
        load_legacy_state_dict(junk)

    # a decoder saved under an encoder's name
    with pytest.raises(WeightsError, match=r"not a DMPHN encoder.*looks like a DMPHN decoder"):
        dmphn_from_files({"encoder_lv1.pkl": files["decoder_lv1.pkl"]})
    # a state dict of another network
    other = tmp_path / "encoder_lv2.pkl"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, other)
    with pytest.raises(WeightsError, match="missing keys"):
        dmphn_from_files({"encoder_lv2.pkl": other})
    with pytest.raises(WeightsError, match="does not exist"):
        load_legacy_state_dict(tmp_path / "nope.pkl")


def test_user_path_wrong_file(tmp_path, shared_upstream):
    """``load_network(name, path=folder)`` with a corrupt or foreign file: a WeightsError that
    names the file (user files are not hash-checked, so the converter must catch it)."""
    from dynpnp_jax.weights import WeightsError, load_network

    src = shared_upstream / "dmphn" / "DMPHN_1_2_4"
    folder = tmp_path / "mine"
    folder.mkdir()
    for p in src.glob("*.pkl"):
        data = p.read_bytes()
        (folder / p.name).write_bytes(data[: len(data) // 3] if p.name == "decoder_lv2.pkl" else data)
    with pytest.raises(WeightsError, match=r"decoder_lv2\.pkl"):
        load_network("dmphn-1-2-4", path=folder)
    # a DnCNN file under a DMPHN name
    (folder / "decoder_lv2.pkl").write_bytes((shared_upstream / "dncnn" / "sigma=25.mat").read_bytes())
    with pytest.raises(WeightsError, match=r"decoder_lv2\.pkl"):
        load_network("dmphn-1-2-4", path=folder)


def test_registry_files(shared_upstream):
    from dynpnp_jax.weights import get_spec, sha256_file

    for name, n in [("dmphn-1-2-4", 6), ("dmphn-1-2-4-8", 8), ("stack4-dmphn", 24)]:
        spec = get_spec(name)
        assert len(spec.files) == n and spec.converter_needs_torch
        for f in spec.files:
            assert f.url.startswith("https://github.com/HongguangZhang/DMPHN-cvpr19-master/raw/")
            assert f.url == ("https://github.com/HongguangZhang/DMPHN-cvpr19-master/raw/master/"
                             "checkpoints/" + f.relpath.removeprefix("dmphn/"))
            assert sha256_file(shared_upstream / f.relpath) == f.sha256


# ============================================================================ authors' outputs
MODELS = {"dmphn-1-2-4": "DMPHN_1_2_4", "dmphn-1-2-4-8": "DMPHN_1_2_4_8",
          "stack4-dmphn": "SDNet4"}


def _load_rgb(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def _psnr8(a8, b8):
    mse = np.mean((a8.astype(np.float64) - b8.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _truncate8(out):
    """How the authors saved (torchvision ``save_image`` of their era): truncation to 8 bits."""
    return np.floor(np.clip(np.asarray(out), 0.0, 1.0) * 255.0)


@pytest.fixture(scope="module")
def gopro(shared_data):
    blur = _load_rgb(shared_data / "gopro" / "blur" / "000001.png")
    refs = {name: np.asarray(_load_rgb(shared_data / "gopro" / "reference_outputs" /
                                       f"{folder}_000001.png")) * 255.0
            for name, folder in MODELS.items()}
    return blur, refs


def _net(name, shared_upstream):
    from dynpnp_jax.weights import load_network

    return load_network(name)


# Default-run check on crops. A crop is not exactly comparable with the full frame for a
# multi-patch network: the crop's patch borders (its H/2, W/2, H/4 lines) and its outer border
# (zero padding where the frame has content) differ. So: (1) the crops are placed so that their
# split lines fall on the frame's (centre crops for 1-2-4 and Stack(4): H/2, W/2 at rows 360 and
# col 640; for 1-2-4-8 the H/4 lines coincide only for the full height, so its crop spans rows
# 0..720); (2) only the interior, CROP_MARGIN px away from the crop's cut edges, is compared.
# Measured interior PSNR vs the authors' frame (margin 64): 62.9 dB (1-2-4), 56.2 dB (1-2-4-8,
# the same as its full frame, see the slow test), 59.7 dB (Stack(4)); the whole crop (margin 0)
# only gives 39-45 dB, 32 px give 51-54 dB. Threshold 53 dB (the full frame: 50 dB).
CROPS = {  # name: (top, left, height, width)
    "dmphn-1-2-4": (232, 512, 256, 256),
    "dmphn-1-2-4-8": (0, 512, 720, 256),
    "stack4-dmphn": (232, 512, 256, 256),
}
CROP_MARGIN = 64
CROP_MIN_PSNR = 53.0


@pytest.fixture(scope="module")
def crop_outputs(gopro, shared_upstream):
    """``{name: (ours, theirs)}`` on each crop's interior, lazily computed once per module:
    ``ours`` our float output x 255 (not truncated), ``theirs`` the authors' 8-bit values."""
    import jax

    blur, refs = gopro
    cache = {}

    def get(name):
        if name not in cache:
            net = _net(name, shared_upstream)
            t, l, h, w = CROPS[name]
            out = jax.jit(lambda n, x: n.prior(x))(net, blur[None, t:t + h, l:l + w])
            # margins only on cut edges (a crop edge on the frame border is the frame's own)
            frame_h, frame_w = blur.shape[:2]
            m = CROP_MARGIN
            r0, r1 = (m if t > 0 else 0), (h - m if t + h < frame_h else h)
            c0, c1 = (m if l > 0 else 0), (w - m if l + w < frame_w else w)
            ours = np.clip(np.asarray(out[0], np.float64), 0.0, 1.0)[r0:r1, c0:c1] * 255.0
            theirs = refs[name][t:t + h, l:l + w][r0:r1, c0:c1]
            cache[name] = (ours, theirs)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_output_crop(crop_outputs, name):
    ours, theirs = crop_outputs(name)
    p = _psnr8(np.floor(ours), theirs)
    t, l, h, w = CROPS[name]
    print(f"{name}: crop {h}x{w}+{t}+{l}, interior PSNR vs authors {p:.2f} dB")
    assert p >= CROP_MIN_PSNR


def _mismatch_stats(ours, theirs):
    """How the authors' 8-bit values ``theirs`` depart from ``floor(ours)`` (docs/results/gopro.md).

    ``e = ours - theirs - 0.5`` is uniform on [-0.5, 0.5) (variance 1/12) when ``theirs`` is our
    value truncated; an extra difference ``d`` between their float output and ours adds
    ``var(d)``. Returns PSNR under truncation and under rounding, the std of ``d`` in 8-bit levels,
    and the correlation of ``e`` with its right neighbour and across the R/G channels (both ~0 for
    pure quantisation, large when ``d`` is a smooth, channel-common field).
    """
    inner = (theirs > 2) & (theirs < 253) & (ours > 2) & (ours < 253)  # away from the clipping
    e = np.where(inner, ours - theirs - 0.5, 0.0)
    both = inner[:, :-1] & inner[:, 1:]
    return {
        "psnr_trunc": _psnr8(np.floor(ours), theirs),
        "psnr_round": _psnr8(np.floor(ours + 0.5), theirs),
        "extra_std": float(np.sqrt(max(e[inner].var() - 1.0 / 12.0, 0.0))),
        "corr_right": float(np.corrcoef(e[:, :-1][both], e[:, 1:][both])[0, 1]),
        "corr_rg": float(np.corrcoef(e[..., 0][inner[..., 0] & inner[..., 1]],
                                     e[..., 1][inner[..., 0] & inner[..., 1]])[0, 1]),
    }


def test_dmphn_1248_mismatch_is_a_smooth_field(crop_outputs):
    """Pins the finding of docs/results/gopro.md: the authors' DMPHN 1-2-4-8 frame is our output
    truncated (not rounded) plus a smooth, channel-common difference of ~0.25 levels, which the
    released code and checkpoint do not reproduce (1-2-4 matches to quantisation)."""
    s124 = _mismatch_stats(*crop_outputs("dmphn-1-2-4"))
    s1248 = _mismatch_stats(*crop_outputs("dmphn-1-2-4-8"))
    print("1-2-4:", {k: round(v, 3) for k, v in s124.items()})
    print("1-2-4-8:", {k: round(v, 3) for k, v in s1248.items()})
    # 1-2-4: truncation of our output; on a crop, plus a little of the crop's own border effect
    # (measured: extra std 0.08 levels, correlations 0.06; on the full frame 0.01 and 0.02, see
    # test_reference_output_full_frame)
    assert s124["psnr_trunc"] > 60 and s124["psnr_round"] < s124["psnr_trunc"] - 5
    assert s124["extra_std"] < 0.12
    assert abs(s124["corr_right"]) < 0.15 and abs(s124["corr_rg"]) < 0.15
    # 1-2-4-8 (its crop spans the full height, the interior equals the full frame: 56.2 dB):
    # still truncation (rounding is worse), but with an extra smooth, channel-common field
    assert s1248["psnr_round"] < s1248["psnr_trunc"] - 2
    assert 54 < s1248["psnr_trunc"] < 60  # if this starts passing at > 60, update the notes
    assert 0.18 < s1248["extra_std"] < 0.35 and s1248["extra_std"] > 2 * s124["extra_std"]
    assert s1248["corr_right"] > 0.3 and s1248["corr_rg"] > 0.3
    assert s1248["corr_right"] > 3 * abs(s124["corr_right"])
    assert s1248["corr_rg"] > 3 * abs(s124["corr_rg"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_reference_output_full_frame(gopro, shared_upstream, name):
    import time

    import jax

    blur, refs = gopro
    net = _net(name, shared_upstream)
    f = jax.jit(lambda n, x: n.prior(x))
    x = blur[None]
    t0 = time.perf_counter()
    out = np.asarray(f(net, x))
    t1 = time.perf_counter()
    ours = _truncate8(out[0])
    p = _psnr8(ours, refs[name])
    frac = float(np.mean(ours != refs[name]))
    stats = _mismatch_stats(np.clip(out[0].astype(np.float64), 0.0, 1.0) * 255.0, refs[name])
    print(f"{name}: full frame {t1 - t0:.1f} s (incl. compile), PSNR vs authors {p:.2f} dB, "
          f"{frac:.2e} of values differ; {({k: round(v, 3) for k, v in stats.items()})}")
    assert p >= 50.0
    if name == "dmphn-1-2-4-8":  # docs/results/gopro.md: a smooth extra field of ~0.25 levels
        assert 0.18 < stats["extra_std"] < 0.35 and stats["corr_right"] > 0.3
    else:  # truncation of our output and nothing else
        assert p > 90 and stats["extra_std"] < 0.05 and abs(stats["corr_right"]) < 0.1


# ============================================================================ no torch at run time
def test_running_needs_no_torch(shared_upstream):
    """Converted (cached) DMPHN weights load and run in a process where ``import torch`` fails."""
    from dynpnp_jax.weights import convert

    for name in MODELS:
        convert(name)  # populate the cache (this may import torch)
    code = textwrap.dedent("""
        import sys
        sys.modules['torch'] = None  # any 'import torch' now raises ImportError
        import numpy as np, jax
        from dynpnp_jax.weights import load_network
        for name in ('dmphn-1-2-4', 'dmphn-1-2-4-8', 'stack4-dmphn'):
            net = load_network(name, download=False)
            y = net.prior(np.full((1, 20, 24, 3), 0.5, np.float32))
            assert y.shape == (1, 20, 24, 3) and bool(np.isfinite(np.asarray(y)).all())
        assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules
                       if sys.modules[m] is not None)
        print('ok')
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
