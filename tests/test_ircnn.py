"""IRCNN (dynpnp_jax.zoo.ircnn): 25 denoisers stacked in one network. The converted tree against
model.init, parity of every level choice with a PyTorch IRCNN loaded with the state dict KAIR's
rule picks (bench/torch_ref_kair.py), through a KAIR-format .pth file and
load_network(name, path=...); no recompilation for a new sigma; clear errors; the registry
entry; the restore plumbing.

KAIR's released ircnn_gray.pth / ircnn_color.pth are not available offline, so the tests use
RANDOM weights saved in KAIR's format (a dict of 25 state dicts, keys '0'..'24')."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.torch_ref_kair import random_ircnn, save_ircnn_file  # noqa: E402

import dynpnp_jax as dp  # noqa: E402
from dynpnp_jax.weights import UNKNOWN, WeightsError, get_spec, load_network  # noqa: E402
from dynpnp_jax.zoo.ircnn import (IRCNN, LEVELS, ircnn_from_pth,  # noqa: E402
                                  ircnn_from_state_dicts, level_index_np)

TOL = 1e-4
VARIANTS = {"gray": 1, "color": 3}


@pytest.fixture(autouse=True)
def _full_float32_convs():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{variant: (25 torch denoisers, KAIR-format .pth)} with random weights."""
    root = tmp_path_factory.mktemp("ircnn")
    out = {}
    for variant, c in VARIANTS.items():
        nets = [random_ircnn(c, seed=100 * c + i) for i in range(len(LEVELS))]
        out[variant] = (nets, save_ircnn_file(root / f"ircnn_{variant}.pth", nets))
    return out


@pytest.fixture(scope="module")
def loaded(files, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DYNPNP_CACHE", str(cache))
        return {v: load_network(f"ircnn-{v}", path=files[v][1]) for v in VARIANTS}


def _sds(nets) -> dict:
    return {str(i): {k: v.numpy() for k, v in n.state_dict().items()} for i, n in enumerate(nets)}


def _torch(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)


def _kair_index(sigma: float) -> int:
    """KAIR's/DPIR's rule in float64: ceil(sigma * 255 / 2) - 1 (at most 24, the demo's min)."""
    return min(24, int(np.ceil(sigma * 255.0 / 2.0) - 1))


_prior = jax.jit(lambda net, x, s: net.prior(x, s))


# ------------------------------------------------------------------ level rule
def test_level_rule_matches_kair():
    """level = ceil(sigma*255/2)*2: every 8-bit level 1..50, values between, both ends clipped."""
    sig = [l / 255 for l in range(1, 51)] + [(l + 0.3) / 255 for l in range(1, 50)] + \
          [49.9 / 255, 12.75 / 255, 7.65 / 255]
    got = np.asarray(IRCNN.level_index(jnp.asarray(sig, jnp.float32)))
    want = [_kair_index(s) for s in sig]
    np.testing.assert_array_equal(got, want)
    assert [level_index_np(s) for s in sig] == want
    for l in range(2, 51, 2):  # an even level picks its own denoiser
        assert LEVELS[level_index_np(l / 255)] == l
        assert LEVELS[level_index_np((l - 1) / 255)] == l  # an odd one the next level up
    ends = np.asarray(IRCNN.level_index(jnp.asarray([0.0, 0.1 / 255, 75 / 255, 1.0])))
    np.testing.assert_array_equal(ends, [0, 0, 24, 24])


# ------------------------------------------------------------------ converter
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_converted_tree_matches_init(files, variant):
    c = VARIANTS[variant]
    v = ircnn_from_state_dicts(_sds(files[variant][0]), c)
    want = jax.eval_shape(IRCNN(channels=c).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8, 8, c)), 0.1)
    shapes = lambda t: jax.tree_util.tree_map(np.shape, t)  # noqa: E731
    assert shapes(want) == shapes(v)
    assert v["params"]["conv3"]["kernel"].shape == (25, 3, 3, 64, 64)
    w = files[variant][0][7].model[4].weight.detach().numpy()  # level 16, third conv
    np.testing.assert_array_equal(v["params"]["conv2"]["kernel"][7], w.transpose(2, 3, 1, 0))


# ------------------------------------------------------------------ parity + level selection
@pytest.mark.parametrize("variant,hw", [("gray", (64, 64)), ("color", (37, 53))])
def test_parity_and_level_selection(files, loaded, variant, hw):
    """Each image of a batch gets the denoiser KAIR's rule picks for its sigma; the output equals
    that PyTorch denoiser's (<= 1e-4) and differs from the neighbouring levels'; new sigmas never
    recompile; a batch at one level (the fast branch) gives the same numbers."""
    nets = files[variant][0]
    c = VARIANTS[variant]
    sigmas = [1 / 255, 7.65 / 255, 24 / 255, 25 / 255, 49 / 255, 50 / 255]
    x = np.random.RandomState(3).rand(len(sigmas), *hw, c).astype(np.float32)
    out = np.asarray(_prior(loaded[variant], jnp.asarray(x), jnp.asarray(sigmas, jnp.float32)))
    for b, s in enumerate(sigmas):
        i = _kair_index(s)
        ref = _torch(nets[i], x[b:b + 1])
        err = float(np.abs(out[b:b + 1] - ref).max())
        assert err <= TOL, f"sigma {s * 255:.2f}: level {LEVELS[i]}, max abs diff {err:.2e}"
        for j in (i - 1, i + 1):
            if 0 <= j < len(LEVELS):
                assert float(np.abs(out[b:b + 1] - _torch(nets[j], x[b:b + 1])).max()) > 1e-3
    before = _prior._cache_size()
    again = np.asarray(_prior(loaded[variant], jnp.asarray(x),
                              jnp.asarray(sigmas[::-1], jnp.float32)))
    assert _prior._cache_size() == before
    i = _kair_index(sigmas[-1])
    np.testing.assert_allclose(again[:1], _torch(nets[i], x[:1]), atol=TOL)
    # one level for the whole batch takes the shared-kernel branch: same numbers, no recompile
    one = jnp.full((len(sigmas),), 25 / 255, jnp.float32)
    same = np.asarray(_prior(loaded[variant], jnp.asarray(x), one))
    assert _prior._cache_size() == before
    np.testing.assert_allclose(same, _torch(nets[12], x), atol=TOL)


def test_sigma_map_uses_its_per_image_mean(files):
    v = ircnn_from_state_dicts(_sds(files["gray"][0]), 1)
    x = np.random.RandomState(4).rand(1, 16, 16, 1).astype(np.float32)
    m = np.full((1, 16, 16, 1), 20 / 255, np.float32)
    m[:, :8] = 30 / 255  # mean 25/255 -> level 26
    out = np.asarray(jax.jit(IRCNN(channels=1).apply)(v, x, m))
    np.testing.assert_allclose(out, _torch(files["gray"][0][12], x), atol=TOL)


# ------------------------------------------------------------------ errors
def test_fewer_than_25_denoisers_named(files, tmp_path):
    nets = files["gray"][0]
    short = save_ircnn_file(tmp_path / "ircnn_gray.pth", nets[:20])
    with pytest.raises(ValueError, match=r"holds 20 denoiser\(s\), expected 25.*missing keys "
                                         r"\['20', '21', '22', '23', '24'\] \(levels \[42, 44, 46, "
                                         r"48, 50\]\)"):
        ircnn_from_pth(short, 1)


def test_other_wrong_files(files, tmp_path, monkeypatch):
    sds = _sds(files["gray"][0])
    with pytest.raises(ValueError, match=r"for 1-channel images but 3 was expected.*'ircnn-gray'"):
        ircnn_from_state_dicts(sds, 3)
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match=r"for 3-channel images but 1 was expected"):
        load_network("ircnn-gray", path=files["color"][1])
    with pytest.raises(ValueError, match=r"single state dict.*not KAIR's dict of 25"):
        ircnn_from_state_dicts(sds["0"], 1)
    bad = dict(sds, **{"5": {k: v for k, v in sds["5"].items() if k != "model.6.bias"}})
    with pytest.raises(ValueError, match=r"denoiser '5' \(level 12\).*missing \['model.6.bias'\]"):
        ircnn_from_state_dicts(bad, 1)
    with pytest.raises(ValueError, match=r"sigma.*\[0, 1\].*divide the 8-bit"):
        IRCNN(channels=1).apply(ircnn_from_state_dicts(sds, 1), np.zeros((1, 8, 8, 1)), 25.0)


# ------------------------------------------------------------------ registry
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_registry_entry(variant):
    spec = get_spec(f"ircnn-{variant}")
    (f,) = spec.files
    assert f.sha256 == UNKNOWN
    assert f.url == f"https://github.com/cszn/KAIR/releases/download/v1.0/ircnn_{variant}.pth"
    assert spec.noise_input and spec.kind == "image" and spec.channels == VARIANTS[variant]
    assert spec.receptive_field == 16 and spec.tiling_exact


def test_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNPNP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DYNPNP_UPSTREAM", str(tmp_path / "upstream"))
    with pytest.raises(WeightsError, match=r"ircnn_color\.pth.*not found.*"
                                           r"https://github.com/cszn/KAIR/releases/download/v1.0/"
                                           r"ircnn_color\.pth"):
        load_network("ircnn-color", download=False)


# ------------------------------------------------------------------ restore plumbing
def test_restore_dpir_runs_with_ircnn(loaded):
    """Plumbing only (random weights): restore in 'dpir' mode (known Gaussian blur) with the IRCNN
    from load_network(path=...) as prior: the schedule's sigma reaches the level choice inside
    the jitted loop and the result is finite and of the input's size. (Its last layer scaled by
    1/20 to a gentle denoiser: the parity nets' O(1) noise estimates would push the loop out of
    [0, 1], which restore rightly refuses.)"""
    from dynpnp_jax import kernels
    from dynpnp_jax.operators import Blur

    net = loaded["gray"]
    p = dict(net.variables["params"])
    p["conv6"] = jax.tree_util.tree_map(lambda a: a / 20, p["conv6"])
    net = net.replace(variables={"params": p})
    rr, cc = np.mgrid[:24, :30]
    x = (0.5 + 0.3 * np.sin(rr / 3.0)[..., None] * np.cos(cc / 4.0)[..., None])[None]
    x = np.concatenate([x, 1 - x]).astype(np.float32)  # two smooth images (2, 24, 30, 1)
    A = Blur.from_kernel(kernels.gaussian(1.0, 7), 1)
    y = np.asarray(A(jnp.asarray(x))) + np.random.RandomState(0).normal(0, 7.65 / 255, x.shape)
    y = y.astype(np.float32)
    cfg = dp.make_config("dpir", iters=3, noise_level=7.65 / 255)
    out, _ = dp.restore({"prior": net, "A": A}, y, cfg)
    out = np.asarray(out)
    assert out.shape == y.shape and np.all(np.isfinite(out))
    assert float(np.abs(out - y).max()) > 1e-3
    assert math.isfinite(float(out.mean()))
    # another noise level: other sigmas, other denoisers, the same compiled loop
    before = dp.compile_count()
    out2, _ = dp.restore({"prior": net, "A": A}, y,
                         dp.make_config("dpir", iters=3, noise_level=20 / 255))
    assert dp.compile_count() == before
    assert float(np.abs(np.asarray(out2) - out).max()) > 1e-4


# ------------------------------------------------------------------ the released weights
# DPIR (Zhang et al., TPAMI 2021), Table 2: IRCNN, Set12 means, gray, sigma 15 / 25 / 50, under
# KAIR's protocol (seed 0 per image, unclipped noise, uint8 output) = the 'standard' protocol;
# KAIR's demo picks the level-16 / 26 / 50 denoisers. The released file is not available offline:
# these tests SKIP until it is in the upstream folder; they have never run here.
PUBLISHED_SET12 = {15: 32.76, 25: 30.37, 50: 27.12}


@pytest.mark.slow
@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_published_set12_with_released_file(sigma):
    from PIL import Image

    from conftest import require_shared
    from dynpnp_jax.data.protocols import get_protocol
    from dynpnp_jax.weights import locate_upstream

    try:
        locate_upstream(get_spec("ircnn-gray"), download=False)
    except WeightsError as err:
        pytest.skip(f"ircnn-gray: released file not present ({str(err)[:160]}...)")
    net = load_network("ircnn-gray", download=False)
    proto = get_protocol("standard")
    scores = []
    for i in range(1, 13):
        img = np.asarray(Image.open(require_shared("data", "set12", f"{i:02d}.png")).convert("L"))
        clean, meta = proto.prepare(img[..., None], f"{i:02d}.png")
        noisy = proto.degrade(clean, sigma, f"{i:02d}.png")
        den = _prior(net, jnp.asarray(noisy[None]), jnp.float32(sigma / 255))
        scores.append(proto.evaluate(np.asarray(den[0]), meta)["psnr"])
    assert abs(float(np.mean(scores)) - PUBLISHED_SET12[sigma]) <= 0.05, np.mean(scores)
