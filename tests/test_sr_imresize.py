"""Super-resolution under MATLAB ``imresize`` (protocol ``imresize``): the exact down-sampler as
an operator (forward, adjoint, normal solve against dense matrices), the protocol's bicubic
baseline against the literature, the CLI end to end and its refusals."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import eval as ev
from dynpnp_jax import resize
from dynpnp_jax.data.degradations import Degradation, ImresizeSR
from dynpnp_jax.operators_resize import Imresize


def _dense(h, w, s):
    """The matrix of the operator on one-channel h x w images (column i = A e_i), from one call
    on the batch of all unit images."""
    n = h * w
    many = Imresize.from_shape(h, w, s, batch=n)
    cols = np.asarray(many(jnp.asarray(np.eye(n, dtype=np.float32).reshape(n, h, w, 1))))
    return cols.reshape(n, -1).T.astype(np.float64)


@pytest.mark.parametrize("h,w,s", [(12, 9, 3)])
def test_imresize_operator_against_dense_matrices(h, w, s):
    rng = np.random.RandomState(0)
    op = Imresize.from_shape(h, w, s)
    a = _dense(h, w, s)
    assert a.shape == (h * w // s ** 2, h * w)
    wy = rng.rand(1, h // s, w // s, 1).astype(np.float32)
    # adjoint = the dense transpose
    np.testing.assert_allclose(np.asarray(op.adjoint(jnp.asarray(wy))).ravel(), a.T @ wy.ravel(),
                               atol=1e-6)
    # <A x, w> = <x, A^T w> on a colour batch
    x = rng.rand(1, h, w, 3).astype(np.float32)
    w3 = rng.rand(1, h // s, w // s, 3).astype(np.float32)
    lhs = float(jnp.sum(op(jnp.asarray(x)) * w3))
    rhs = float(jnp.sum(jnp.asarray(x) * op.adjoint(jnp.asarray(w3))))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    # closed-form normal solve = the dense solve, for a small and a large mu
    r = rng.rand(1, h, w, 1).astype(np.float32)
    for mu in (0.05, 1.0):
        want = np.linalg.solve(a.T @ a + mu * np.eye(h * w), r.ravel())
        got = np.asarray(op.normal_solve(jnp.asarray(r), mu)).ravel()
        np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())


def test_forward_is_resize_imresize_and_initial_is_imresize_up():
    rng = np.random.RandomState(1)
    img = rng.rand(24, 18, 3)
    op = Imresize.from_shape(24, 18, 3)
    y = np.asarray(op(jnp.asarray(img[None], jnp.float32)))[0]
    np.testing.assert_allclose(y, resize.imresize(img, 1 / 3), atol=1e-6)
    up = np.asarray(op.initial(jnp.asarray(y[None])))[0]
    np.testing.assert_allclose(up, resize.imresize(y.astype(np.float64), 3), atol=1e-6)
    # uint8: the protocol's observation is imresize's rounded output
    u8 = (img * 255).round().astype(np.uint8)
    y8 = np.asarray(op(jnp.asarray(u8[None], jnp.float32)))[0]
    np.testing.assert_array_equal(np.clip(np.round(y8), 0, 255).astype(np.uint8),
                                  resize.imresize(u8, 1 / 3))


def test_bad_operator_arguments():
    with pytest.raises(ValueError, match="multiple of scale=3.*modcrop"):
        Imresize.from_shape(20, 18, 3)
    with pytest.raises(ValueError, match="scale: expected a positive integer"):
        Imresize.from_shape(20, 18, 0)
    op = Imresize.from_shape(12, 12, 2)
    with pytest.raises(ValueError, match="takes high-resolution images of 12x12"):
        op(jnp.zeros((1, 10, 12, 1)))


def test_protocol_refuses_an_image_it_cannot_modcrop():
    proto = ImresizeSR()
    c = Degradation("sr", 0, kernel="imresize", scale=4)
    with pytest.raises(ValueError, match="cannot be modcropped to scale 4.*Fix"):
        proto.problem({"image": np.zeros((12, 40, 3), np.uint8), "name": "tiny"}, c)
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        proto.check_condition(Degradation("sr", 0, kernel="imresize", scale=5))


def test_bicubic_baseline_on_one_set5_image():
    """Set5 butterfly, x3: the literature's per-image bicubic PSNR (Y channel, border 3) is
    24.04 dB (e.g. SRCNN's Set5 table); the protocol's baseline must land within 0.02 dB."""
    from dynpnp_jax.baselines import run_baseline

    src = require_shared("data", "set5", "butterfly.png")
    img = np.asarray(Image.open(src).convert("RGB"))
    proto = ImresizeSR()
    prob = proto.problem({"image": img, "name": "butterfly"},
                         Degradation("sr", 0, kernel="imresize", scale=3))
    assert prob.y.shape == (img.shape[0] // 3, img.shape[1] // 3, 3)
    np.testing.assert_array_equal(np.round(prob.y * 255).astype(np.uint8),
                                  resize.imresize(resize.modcrop(img, 3), 1 / 3))
    out = run_baseline("bicubic", prob)
    score = proto.evaluate(out, prob.meta)
    assert score["psnr"] == pytest.approx(24.04, abs=0.02)


@pytest.fixture(scope="module")
def tiny_colour(tmp_path_factory):
    src = require_shared("data", "set5", "head.png")
    folder = tmp_path_factory.mktemp("sr_crops")
    Image.fromarray(np.asarray(Image.open(src).convert("RGB"))[100:148, 100:148]).save(
        folder / "head.png")
    return folder


def test_cli_imresize_end_to_end(tiny_colour, tmp_path):
    require_shared("upstream", "ffdnet")
    out = tmp_path / "out"
    ev.main(["--task", "sr", "--dataset", "folder", "--data-dir", str(tiny_colour),
             "--protocol", "imresize", "--scale", "2", "--method", "bicubic", "dpir", "--iters",
             "3", "--out", str(out), "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert (res["protocol"], res["task"], res["conditions"]) == ("imresize", "sr", ["x2|0"])
    assert res["config"]["dpir"]["x2|0"]["iters"] == 3
    bic, dpir = (res["methods"][m]["x2|0"]["psnr"] for m in ("bicubic", "dpir"))
    # the baseline is imresize up, scored on Y without a 2-pixel border
    img = np.asarray(Image.open(tiny_colour / "head.png"))
    up = resize.imresize(resize.imresize(img, 1 / 2), 2)
    from dynpnp_jax.data.degradations import luminance_uint8

    a, b = (luminance_uint8(v)[2:-2, 2:-2].astype(float) for v in (up, img))
    assert bic == pytest.approx(10 * np.log10(255 ** 2 / np.mean((a - b) ** 2)), abs=1e-3)
    assert np.isfinite(dpir) and dpir > bic  # 3 iterations of the loop already beat bicubic


@pytest.mark.parametrize("argv,expected", [
    (["--task", "deblur", "--protocol", "imresize"], "--protocol imresize: is the super-res"),
    (["--task", "sr", "--protocol", "imresize", "--kernel", "gauss:1.2"], "--kernel gauss:1.2"),
])
def test_cli_refuses(argv, expected, tmp_path, capsys):
    require_shared("data", "set5")
    with pytest.raises(SystemExit) as info:
        ev.main(["--dataset", "set5", *argv, "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sr_on_set5_defaults_to_imresize_and_dpir_stays_by_name(tmp_path):
    require_shared("data", "set5")
    from dynpnp_jax import experiment

    def resolve(*argv):
        return experiment.resolve(ev.build_parser().parse_args(
            ["--dataset", "set5", "--task", "sr", "--out", str(tmp_path / "o"), *argv]))

    exp = resolve("--scale", "2", "4")
    assert exp.protocol.name == "imresize" and [exp.key(c) for c in exp.conditions] == [
        "x2|0", "x4|0"]
    assert exp.methods["dpir"]["x4|0"]["iters"] == 24
    exp = resolve("--protocol", "dpir", "--scale", "2")
    assert exp.protocol.name == "dpir" and exp.key(exp.conditions[0]) == "x2|bicubic:2|0"
