"""Demosaicing: the Bayer mask, Malvar-He-Cutler against a loop reference, the exact x-step, the
``demosaic`` task of the dpir protocol (problem, score, gray input refused) and the eval CLI."""
import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from dynpnp_jax import demosaic as D
from dynpnp_jax.baselines import run_baseline
from dynpnp_jax.data.degradations import DEMOSAIC_BORDER, Degradation
from dynpnp_jax.data.protocols import get_protocol

RGGB = Degradation("demosaic", 0, pattern="RGGB")


def _proto():
    return dataclasses.replace(get_protocol("dpir"), task="demosaic")


def _rgb(folder: str, name: str, crop=None) -> np.ndarray:
    img = np.asarray(Image.open(require_shared("data", folder, name)).convert("RGB"))
    return img if crop is None else img[crop]


# ----------------------------------------------------------------------------- the mask
def test_bayer_mask_is_rggb_with_one_channel_per_pixel():
    m = D.bayer_mask(6, 7)
    assert m.shape == (6, 7, 3) and m.dtype == np.float32
    assert set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_array_equal(m.sum(-1), 1.0)  # exactly one observed channel per pixel
    # R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1), repeated
    assert m[0::2, 0::2, 0].all() and m[0::2, 1::2, 1].all()
    assert m[1::2, 0::2, 1].all() and m[1::2, 1::2, 2].all()
    assert m[..., 1].sum() == pytest.approx(m[..., 0].sum() + m[..., 2].sum(), abs=1)
    np.testing.assert_array_equal(D.bayer_mask(4, 4, "bggr")[..., ::-1], D.bayer_mask(4, 4))
    img = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    mos = D.mosaic(img)
    assert mos.dtype == np.uint8
    np.testing.assert_array_equal(mos, img * m.astype(np.uint8))
    with pytest.raises(ValueError, match="pattern: expected a Bayer pattern.*RGGB"):
        D.bayer_mask(4, 4, "RGBG")


# ----------------------------------------------------------------------------- MHC reference
# Malvar, He, Cutler (ICASSP 2004), Fig. 2, written out again here (times 8), and applied with
# explicit loops over pixels and taps on a reflect-padded CFA.
_G = [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]
_H = [[0, 0, .5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, .5, 0, 0]]
_V = [list(r) for r in zip(*_H)]
_X = [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0],
      [0, 0, -1.5, 0, 0]]


def _mhc_loops(cfa: np.ndarray) -> np.ndarray:
    """RGGB Malvar-He-Cutler by loops (float64)."""
    h, w = cfa.shape
    p = np.pad(cfa.astype(np.float64), 2, mode="reflect")

    def f(k, i, j):
        return sum(k[a][b] * p[i + a, j + b] for a in range(5) for b in range(5)) / 8.0

    out = np.zeros((h, w, 3))
    for i in range(h):
        for j in range(w):
            v = cfa[i, j]
            if i % 2 == 0 and j % 2 == 0:    # R pixel
                out[i, j] = v, f(_G, i, j), f(_X, i, j)
            elif i % 2 == 1 and j % 2 == 1:  # B pixel
                out[i, j] = f(_X, i, j), f(_G, i, j), v
            elif i % 2 == 0:                 # G in a red row: R left/right, B above/below
                out[i, j] = f(_H, i, j), v, f(_V, i, j)
            else:                            # G in a blue row: B left/right, R above/below
                out[i, j] = f(_V, i, j), v, f(_H, i, j)
    return out


def test_malvar_matches_the_loop_reference_and_keeps_the_samples():
    rng = np.random.default_rng(0)
    img = rng.random((13, 10, 3)).astype(np.float32)  # odd and even sides
    mos = D.mosaic(img)
    cfa = np.asarray(D.to_cfa(mos))
    out = np.asarray(D.malvar(cfa))
    assert out.shape == (13, 10, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, _mhc_loops(cfa), atol=2e-6)
    m = D.bayer_mask(13, 10) > 0
    np.testing.assert_array_equal(out[m], img[m])  # observed samples exactly
    # a batch is demosaiced image by image
    batch = np.asarray(D.malvar(np.stack([cfa, cfa[::-1, ::-1] * 0 + 0.5])))
    np.testing.assert_allclose(batch[0], out, atol=1e-6)
    np.testing.assert_allclose(batch[1], 0.5, atol=1e-6)  # flat stays flat
    # bilinear keeps the samples too, and a flat image flat
    bil = np.asarray(D.bilinear(cfa))
    np.testing.assert_array_equal(bil[m], img[m])
    np.testing.assert_allclose(np.asarray(D.bilinear(np.full((6, 8), 0.25))), 0.25, atol=1e-7)
    with pytest.raises(ValueError, match="too small"):
        D.malvar(np.zeros((2, 8)))


def test_mhc_beats_bilinear_by_more_than_1db_on_a_natural_crop():
    proto = _proto()
    img = _rgb("set3c", "starfish.png", np.s_[64:160, 80:176])  # 96x96
    prob = proto.problem({"image": img, "name": "starfish"}, RGGB)
    mhc = proto.evaluate(run_baseline("mhc", prob), prob.meta)["psnr"]
    bil = proto.evaluate(run_baseline("bilinear", prob), prob.meta)["psnr"]
    assert mhc > bil + 1.0, (mhc, bil)


# ----------------------------------------------------------------------------- operator
def test_exact_x_step_with_the_bayer_mask_is_the_dense_solve():
    h, w, mu = 4, 6, 0.3
    op = D.Bayer.from_pattern(h, w, "RGGB", 1)
    rng = np.random.default_rng(1)
    y = op(jnp.asarray(rng.random((1, h, w, 3)), jnp.float32))
    z = rng.random((1, h, w, 3)).astype(np.float32)
    n = h * w * 3
    eye = np.eye(n, dtype=np.float32).reshape(n, 1, h, w, 3)
    a = np.stack([np.asarray(op(jnp.asarray(e))).ravel() for e in eye], axis=1)  # dense A
    rhs = np.asarray(op.adjoint(y)).ravel() + mu * z.ravel()
    dense = np.linalg.solve(a.T @ a + mu * np.eye(n), rhs)
    x = op.normal_solve(op.adjoint(y) + mu * jnp.asarray(z), mu)
    np.testing.assert_allclose(np.asarray(x).ravel(), dense, atol=1e-5)
    # DPIR's form of the same step: (y + rho z) / (mask + rho)
    m = D.bayer_mask(h, w)[None]
    np.testing.assert_allclose(np.asarray(x), (np.asarray(y) + mu * z) / (m + mu), atol=1e-6)
    # the operator's start is MHC of the mosaic
    np.testing.assert_allclose(np.asarray(op.initial(y))[0],
                               np.asarray(D.malvar(D.to_cfa(y[0]))), atol=1e-6)


# ----------------------------------------------------------------------------- protocol
def test_protocol_problem_score_and_refill():
    proto = _proto()
    img = _rgb("set3c", "leaves.png", np.s_[:40, :48])
    prob = proto.problem({"image": img, "name": "leaves"}, RGGB)
    assert prob.y.shape == (40, 48, 3) and prob.meta["border"] == DEMOSAIC_BORDER == 10
    m = D.bayer_mask(40, 48) > 0
    np.testing.assert_array_equal(prob.y[~m], 0)
    np.testing.assert_array_equal(prob.y[m], (img / 255.0).astype(np.float32)[m])
    assert isinstance(prob.params_extra["A"], D.Bayer)
    assert proto.condition_key(RGGB) == "RGGB|0"
    # noiseless: the observed samples are put back before rounding (DPIR's x[mask] = y[mask])
    out = proto.finalize(np.full(img.shape, 0.5, np.float32), prob.meta)
    np.testing.assert_array_equal(out[m], img[m])
    # the score leaves the 10-pixel border out: damage there costs nothing
    exact = img / 255.0
    spoilt = exact.copy()
    spoilt[:10] = 0.0
    assert proto.evaluate(spoilt, prob.meta)["psnr"] == proto.evaluate(exact, prob.meta)["psnr"]


def test_gray_input_is_refused_with_the_fix():
    proto = _proto()
    gray = np.full((32, 32, 1), 100, np.uint8)
    with pytest.raises(ValueError, match=r"needs RGB images.*gray.*Fix: use a colour set: "
                                         r"--dataset cbsd68, set3c or set5"):
        proto.problem({"image": gray, "name": "g"}, RGGB)
    with pytest.raises(ValueError, match=r"image 'g' is gray \(its three channels are equal"):
        proto.problem({"image": np.repeat(gray, 3, -1), "name": "g"}, RGGB)
    with pytest.raises(ValueError, match="--dataset set12 is gray"):
        proto.check_data(1, "--dataset set12")
    proto.check_data(3, "--dataset cbsd68")
    with pytest.raises(ValueError, match="mosaic needs an RGB image"):
        D.mosaic(gray[..., 0])


def test_dpir_beats_mhc_on_a_crop(cache):
    """DPIR's 40 iterations (the loop is one compiled scan: T costs no compile time; 8
    iterations do not yet beat MHC on this crop, 40 do by about 8 dB)."""
    from dynpnp_jax.zoo.ffdnet import FILES

    import dynpnp_jax as dp

    require_shared("upstream", FILES["color"][0])
    proto = _proto()
    img = _rgb("cbsd68", "101085.png", np.s_[100:164, 100:164])
    prob = proto.problem({"image": img, "name": "101085"}, RGGB)
    mhc = proto.evaluate(run_baseline("mhc", prob), prob.meta)["psnr"]
    cfg = dp.make_config(mode="dpir", iters=40, noise_level=0.0, ensemble=True,
                         keep_images=False)
    out, _ = dp.restore({"prior": dp.load_network("ffdnet-color"), **prob.params_extra},
                        prob.y[None], cfg)
    got = proto.evaluate(np.asarray(out)[0], prob.meta)["psnr"]
    assert got > mhc + 3.0, (got, mhc)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def colour_crops(cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    for name in ("butterfly", "starfish"):
        # 64x64, restored one at a time: the program test_dpir_beats_mhc_on_a_crop compiled
        Image.fromarray(_rgb("set3c", f"{name}.png", np.s_[96:160, 96:160])).save(
            folder / f"{name}.png")
    return folder


def test_cli_demosaic_end_to_end(colour_crops, tmp_path):
    from dynpnp_jax import eval as ev
    from dynpnp_jax.zoo.ffdnet import FILES

    require_shared("upstream", FILES["color"][0])
    out = tmp_path / "dm"
    ev.main(["--task", "demosaic", "--dataset", "folder", "--data-dir", str(colour_crops),
             "--method", "input", "bilinear", "mhc", "dpir", "--batch", "1", "--out", str(out),
             "--no-compile-cache"])
    res = json.loads((out / "results.json").read_text())
    assert res["conditions"] == ["RGGB|0"]
    psnr = {m: res["methods"][m]["RGGB|0"]["psnr"] for m in ("input", "bilinear", "mhc", "dpir")}
    assert psnr["input"] < psnr["bilinear"] < psnr["mhc"] < psnr["dpir"], psnr
    assert res["config"]["dpir"]["RGGB|0"]["iters"] == 40  # DPIR's, the task's default


def test_cli_refuses_gray_data_and_wrong_arguments(colour_crops, tmp_path, capsys):
    import re

    from dynpnp_jax import eval as ev

    gray = tmp_path / "gray"
    gray.mkdir()
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(gray / "a.png")
    for folder, extra, expected in (
            (gray, [], r"--task demosaic needs RGB images.*--dataset folder is gray.*Fix: use "
                       r"a colour set: --dataset cbsd68, set3c or set5"),
            (colour_crops, ["--kernel", "levin"], "--kernel levin: demosaicing has no blur "
                                                  "kernel"),
            (colour_crops, ["--mask", "random:0.5"], "--mask is for --task inpaint, not "
                                                     "demosaic"),
            (colour_crops, ["--method", "interp"], "--method interp: does not apply to task "
                                                   "'demosaic'")):
        with pytest.raises(SystemExit) as info:
            ev.main(["--task", "demosaic", "--dataset", "folder", "--data-dir", str(folder),
                     "--out", str(tmp_path / "out"), *extra])
        assert info.value.code == 2
        msg = capsys.readouterr().err
        assert re.search(expected, msg), msg
        assert not (tmp_path / "out").exists()


def test_demosaic_is_a_task_everywhere():
    from dynpnp_jax import eval as ev
    from dynpnp_jax import experiment
    from dynpnp_jax.data import degradations

    assert "demosaic" in degradations.TASKS and "demosaic" in experiment.TASKS
    choices = next(a.choices for a in ev.build_parser()._actions if a.dest == "task")
    assert tuple(choices) == experiment.TASKS
    assert experiment.BASELINE_MODES["mhc"] == ("demosaic",)
    assert degradations.DEFAULTS["demosaic"]["iters"] == 40
