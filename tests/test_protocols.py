"""Evaluation protocols: noise bit-exactness, seeding, crop/rotate, output conversion, metrics."""
import numpy as np
import pytest
from PIL import Image

from dynpnp_jax.data import protocols as P
from dynpnp_jax.data.protocols import get_protocol


def _image(h, w, c, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("sigma", [15, 25, 50])
@pytest.mark.parametrize("shape", [(40, 52, 1), (33, 20, 3)])
def test_standard_noise_is_dncnn_bit_for_bit(sigma, shape):
    proto = get_protocol("standard")
    clean = _image(*shape)
    x, meta = proto.prepare(clean, "01")
    assert x.dtype == np.float32 and np.array_equal(x, np.float32(clean / 255.0))
    np.testing.assert_array_equal(meta["reference"], clean)

    state = np.random.get_state()
    y = proto.degrade(x, sigma, "01")
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state[1:3], after[1:3]))  # global RNG untouched

    np.random.seed(0)
    ref = (x + np.random.normal(0, sigma / 255, x.shape)).astype(np.float32)
    np.random.set_state(state)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, ref)  # exact, and the same field for every image name
    np.testing.assert_array_equal(proto.degrade(x, sigma, "another name"), ref)
    assert (y < 0).any() and (y > 1).any()  # not clipped


def test_standard_finalize_and_metrics():
    skm = pytest.importorskip("skimage.metrics")
    proto = get_protocol("standard")
    clean = _image(64, 48, 1, seed=1)
    x, meta = proto.prepare(clean, "a")
    restored = x + np.random.default_rng(3).normal(0, 0.03, x.shape).astype(np.float32)
    out = proto.finalize(restored, meta)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.uint8((np.clip(restored, 0, 1) * 255).round()))
    scores = proto.evaluate(restored, meta)
    assert scores["psnr"] == pytest.approx(
        skm.peak_signal_noise_ratio(clean, out, data_range=255), abs=1e-3)
    assert scores["ssim"] == pytest.approx(skm.structural_similarity(
        clean, out, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-4)


def test_authors_noise_is_seeded_and_order_independent():
    proto = get_protocol("authors")
    xa, _ = proto.prepare(_image(64, 96, 1, seed=1), "test001")
    xb, _ = proto.prepare(_image(64, 96, 3, seed=2), "test002")
    a1 = proto.degrade(xa, 25, "test001")
    b1 = proto.degrade(xb, 25, "test002")
    np.random.seed(123)  # global state must not matter
    b2 = proto.degrade(xb, 25.0, "test002")  # other order, sigma as float
    a2 = proto.degrade(xa, 25, "test001")
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert a1.dtype == np.float32 and a1.shape == xa.shape == (64, 96, 3)
    assert a1.min() >= 0 and a1.max() <= 1  # clipped
    assert not np.array_equal(a1, proto.degrade(xa, 25, "test002"))  # name enters the seed
    assert not np.array_equal(a1, proto.degrade(xa, 15, "test001"))  # sigma enters the seed
    assert not np.array_equal(a1[..., 0], a1[..., 1])  # noise drawn per channel, as theirs
    assert P.authors_seed("test001", 25) == P.authors_seed("test001", 25.0)
    # the residual is N(0, sigma/255) where nothing was clipped
    inner = (xa > 0.2) & (xa < 0.8)
    assert np.std((a1 - xa)[inner]) == pytest.approx(25 / 255, rel=0.05)


def _their_crop_image(img, d=32):
    """The authors' utils.crop_image, verbatim in logic (PIL, W x H sizes)."""
    new_size = (img.size[0] - img.size[0] % d, img.size[1] - img.size[1] % d)
    bbox = [int((img.size[0] - new_size[0]) / 2), int((img.size[1] - new_size[1]) / 2),
            int((img.size[0] + new_size[0]) / 2), int((img.size[1] + new_size[1]) / 2)]
    return img.crop(bbox)


@pytest.mark.parametrize("hw", [(481, 321), (321, 481), (100, 203), (256, 256)])
def test_authors_crop_rotate_matches_their_code(hw):
    proto = get_protocol("authors")
    clean = _image(*hw, 1, seed=4)
    x, meta = proto.prepare(clean, "img")
    pil = _their_crop_image(Image.fromarray(clean[..., 0]))
    ref = np.asarray(pil)
    if ref.shape[0] > ref.shape[1]:
        ref = np.asarray(pil.transpose(Image.ROTATE_90))
    assert x.shape == ref.shape + (3,) and x.shape[1] >= x.shape[0]
    assert x.shape[0] % 32 == 0 and x.shape[1] % 32 == 0
    np.testing.assert_array_equal(meta["reference"][..., 0], ref.astype(np.float32) / 255)
    for c in range(3):  # gray as 3 identical channels
        np.testing.assert_array_equal(x[..., c], meta["reference"][..., 0])
    assert meta["gray"] and meta["rotated"] == (hw[0] - hw[0] % 32 > hw[1] - hw[1] % 32)


def test_authors_bsd68_shape():
    proto = get_protocol("authors")
    for hw in [(481, 321), (321, 481)]:
        x, meta = proto.prepare(_image(*hw, 1), "t")
        assert x.shape == (320, 480, 3) and meta["reference"].shape == (320, 480, 1)
    x, meta = proto.prepare(_image(481, 321, 3), "rgb")
    assert x.shape == (320, 480, 3) and not meta["gray"] and meta["reference"].shape == x.shape


def test_authors_finalize_gray_is_truncated_pil_luminance():
    proto = get_protocol("authors")
    x, meta = proto.prepare(_image(64, 64, 1, seed=5), "g")
    out = np.clip(x + np.random.default_rng(6).normal(0, 0.05, x.shape), -0.1, 1.1)
    out = out.astype(np.float32)
    got = proto.finalize(out, meta)
    # their: pil_to_np(np_to_pil(v).convert('L')), np_to_pil truncating
    u8 = np.clip(out * 255, 0, 255).astype(np.uint8)
    lum = np.asarray(Image.fromarray(u8).convert("L")).astype(np.float32) / 255.0
    assert got.shape == (64, 64, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got[..., 0], lum)
    r, g, b = (u8[..., i].astype(np.int64) for i in range(3))  # ITU-R 601-2 luma, PIL rounding
    assert np.abs(got[..., 0] * 255 - (r * 299 + g * 587 + b * 114) / 1000).max() <= 0.5 + 1e-3
    one = proto.finalize(out[..., :1], meta)  # a 1-channel output: plain truncation
    np.testing.assert_array_equal(one[..., 0], np.clip(out[..., 0] * 255, 0, 255).astype(
        np.uint8).astype(np.float32) / 255)


def test_authors_metrics_match_old_skimage_defaults():
    skm = pytest.importorskip("skimage.metrics")
    proto = get_protocol("authors")
    x, meta = proto.prepare(_image(96, 64, 1, seed=7), "m")
    noisy = proto.degrade(x, 25, "m")
    out = proto.finalize(noisy, meta)
    scores = proto.metrics(out, meta["reference"])
    ref, o = meta["reference"].astype(np.float64), out.astype(np.float64)
    assert scores["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(ref, o, data_range=1),
                                           abs=1e-3)
    assert scores["ssim"] == pytest.approx(  # compare_ssim(multichannel=True) on float32
        skm.structural_similarity(ref, o, data_range=2.0, channel_axis=-1), abs=1e-4)
    assert scores == proto.evaluate(noisy, meta)


def test_errors():
    with pytest.raises(ValueError, match=r"valid names: \['standard', 'authors', 'gopro', "
                                         r"'dpir', 'imresize'\]"):
        get_protocol("kair")
    proto = get_protocol("standard")
    with pytest.raises(ValueError, match="uint8"):
        proto.prepare(np.zeros((8, 8), np.float32), "x")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        proto.prepare(np.zeros((2, 8, 8, 1), np.uint8), "x")
    x, _ = proto.prepare(np.zeros((8, 8), np.uint8), "x")
    for bad in (-1, float("nan"), None):
        with pytest.raises(ValueError, match="sigma"):
            proto.degrade(x, bad, "x")
    with pytest.raises(ValueError, match="smaller than d=32"):
        get_protocol("authors").prepare(np.zeros((20, 64), np.uint8), "x")


# ------------------------------------------------------------------------------ the interface
def _clean_example(h=40, w=52, c=1, seed=0, name="img"):
    return {"image": _image(h, w, c, seed), "name": name}


def _paired_example(h=24, w=32, sharp=True, seed=0, name="f1"):
    rng = np.random.default_rng(seed)
    blur = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {"blur": blur, "sharp": rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if sharp
            else np.zeros((0, 0, 3), np.uint8), "has_sharp": sharp, "name": name}


@pytest.mark.parametrize("name", ["standard", "authors"])
def test_denoising_problem_is_prepare_then_degrade(name):
    proto = get_protocol(name)
    ex = _clean_example(64, 96, 1, seed=3, name="test007")
    prob = proto.problem(ex, 25)
    clean, meta = proto.prepare(ex["image"], ex["name"])
    assert isinstance(prob, P.Problem) and prob.name == "test007" and prob.params_extra == {}
    np.testing.assert_array_equal(prob.clean, clean)
    np.testing.assert_array_equal(prob.y, proto.degrade(clean, 25, "test007"))
    assert prob.y.dtype == np.float32 and prob.y.shape == clean.shape
    restored = np.clip(prob.clean + 0.01, 0, 1).astype(np.float32)
    assert proto.evaluate(restored, prob.meta) == proto.metrics(
        proto.finalize(restored, meta), meta["reference"])


def test_conditions_are_validated_and_deduplicated():
    proto = get_protocol("standard")
    assert proto.conditions(None) == ([25], [])  # the default
    conds, notes = proto.conditions([25, 15.0, 25, 50, 15])
    assert conds == [25, 15, 50] and all(isinstance(c, int) for c in conds)
    assert len(notes) == 2 and "25 was given more than once" in notes[0]
    assert proto.conditions([25.5]) == ([25.5], [])
    for bad in (-5, 0, float("nan"), "x"):
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            proto.conditions([bad])
    assert [proto.condition_key(c) for c in conds] == ["25", "15", "50"]
    assert proto.condition_label(25.5) == "sigma=25.5"


def test_gopro_problem_and_scores():
    proto = get_protocol("gopro")
    assert proto.task == "deblur" and proto.paired and proto.conditions(None) == (["recorded"], [])
    with pytest.raises(ValueError, match="one condition"):
        proto.conditions([25])
    ex = _paired_example()
    prob = proto.problem(ex, "recorded")
    np.testing.assert_array_equal(prob.y, ex["blur"].astype(np.float32) / 255)
    np.testing.assert_array_equal(prob.clean, ex["sharp"].astype(np.float32) / 255)
    out = np.clip(prob.clean + np.float32(0.3 / 255), 0, 1)  # rounds back to the sharp frame
    assert proto.evaluate(out, prob.meta)["psnr"] == np.inf
    noisy = np.clip(prob.clean + 0.02, 0, 1).astype(np.float32)
    std = get_protocol("standard")  # scored exactly as `standard` scores
    assert proto.evaluate(noisy, prob.meta) == std.metrics(std.finalize(noisy, {}), ex["sharp"])
    unscored = proto.problem(_paired_example(sharp=False), "recorded")
    assert unscored.clean is None and proto.evaluate(unscored.y, unscored.meta) is None


def test_protocols_refuse_the_other_kind_of_example():
    with pytest.raises(ValueError, match="needs examples with 'image'.*'gopro'"):
        get_protocol("standard").problem(_paired_example(), 25)
    with pytest.raises(ValueError, match="needs examples with 'blur'.*'standard' or 'authors'"):
        get_protocol("gopro").problem(_clean_example(), "recorded")


@pytest.mark.parametrize("name", ["standard", "authors", "gopro"])
def test_non_finite_output_is_never_scored(name):
    proto = get_protocol(name)
    prob = (proto.problem(_paired_example(sharp=False), "recorded") if proto.paired
            else proto.problem(_clean_example(64, 64), 25))
    out = np.array(prob.y if prob.clean is None else prob.clean, np.float32)
    out[3, 4, 0] = np.nan
    with pytest.raises(P.NonFiniteOutput, match="1 NaN/Inf value"):
        proto.evaluate(out, prob.meta)  # also without a reference: never silently passed
    out[3, 4, 0] = np.inf
    with pytest.raises(P.NonFiniteOutput):
        proto.evaluate(out, prob.meta)


def test_authors_rotation_is_the_library_rule():
    from dynpnp_jax import algorithms, validation

    proto = get_protocol("authors")
    img = _image(96, 64, 1, seed=8)  # portrait
    x, meta = proto.prepare(img, "p")
    assert meta["rotated"] and algorithms.needs_landscape(img.shape, mode="authors")
    np.testing.assert_array_equal(meta["reference"],
                                  validation.to_landscape(img, True).astype(np.float32) / 255)
    np.testing.assert_array_equal(validation.to_landscape(meta["reference"], True, inverse=True),
                                  img.astype(np.float32) / 255)


# ------------------------------------------------------------------------------ dpir
def _dpir(task="deblur", **table):
    import dataclasses

    return dataclasses.replace(get_protocol("dpir"), task=task, kernel_table=table)


def _levin_raw(i):
    """Levin09.mat's i-th kernel as DPIR's script reads it (float64, as stored)."""
    import h5py

    from conftest import require_shared

    path = require_shared("data", "kernels", "Levin09.mat")
    with h5py.File(path, "r") as f:
        return np.asarray(f[f["kernels"][()].ravel()[i - 1]], np.float64).T


@pytest.mark.parametrize("channels", [1, 3])
def test_dpir_deblur_is_their_script(channels):
    """main_dpir_deblur.py, line by line: modcrop 8, uint8 convolution (wrap), seed 0, noise."""
    from scipy import ndimage

    from dynpnp_jax import kernels, operators
    from dynpnp_jax.data.degradations import Degradation

    k_raw = _levin_raw(2)
    (name, k32), = kernels.parse_kernel("levin:2")
    proto = _dpir(**{name: k32})
    img = _image(70, 83, channels, seed=11)
    img[10:40, 10:40] = 100  # a flat patch: where the kernel's sum (1 - 4e-16) shows
    cond = Degradation("deblur", 7.65, kernel=name)
    prob = proto.problem({"image": img, "name": "x"}, cond)
    # theirs
    img_H = img[:64, :80]  # util.modcrop(img_H, 8)
    img_L = ndimage.convolve(img_H, np.expand_dims(k_raw, axis=2), mode="wrap")
    assert img_L.dtype == np.uint8
    img_L = np.float32(img_L / 255.)  # util.uint2single
    np.random.seed(seed=0)
    img_L += np.random.normal(0, 7.65 / 255., img_L.shape)
    np.testing.assert_array_equal(prob.y, img_L)
    np.testing.assert_array_equal(prob.meta["reference"], img_H)
    assert isinstance(prob.params_extra["A"], operators.Blur)
    # the operator blurs as the degradation did (up to scipy's truncation to uint8)
    blurred = np.asarray(prob.params_extra["A"](np.float32(img_H / 255.)[None]))[0]
    y8 = ndimage.convolve(img_H, np.expand_dims(k_raw, 2), mode="wrap")
    assert np.abs(blurred * 255 - y8).max() < 1.0 + 1e-3
    # scored as theirs: uint8(round(clip)) against img_H, PSNR on the whole image
    out = np.clip(np.float32(img_H / 255.) + 0.004, 0, 1)
    mse = np.mean((np.uint8((out * 255).round()).astype(float) - img_H) ** 2)
    assert proto.evaluate(out, prob.meta)["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse),
                                                                   abs=1e-3)


def test_dpir_sr_and_inpaint_problems():
    from scipy import ndimage

    from dynpnp_jax import kernels, operators
    from dynpnp_jax.data.degradations import Degradation

    (name, k), = kernels.parse_kernel("gauss:1.6,15")
    proto = _dpir("sr", **{name: k})
    img = _image(50, 61, 3, seed=12)
    prob = proto.problem({"image": img, "name": "x"}, Degradation("sr", 0, kernel=name, scale=3))
    gt = img[:48, :60]
    y8 = ndimage.convolve(gt, k.astype(np.float64)[..., None], mode="wrap")[0::3, 0::3]
    np.testing.assert_array_equal(prob.y, np.float32(y8 / 255.))  # noise 0
    assert prob.clean.shape == (48, 60, 3) and prob.meta["border"] == 3
    op = prob.params_extra["A"]
    assert isinstance(op, operators.Downsample) and op.factor == 3
    assert np.abs(np.asarray(op(np.float32(gt / 255.)[None]))[0] * 255 - y8).max() < 1 + 1e-3
    out = np.float32(gt / 255.).copy()
    out[0, 0] = 0  # inside the border: not scored
    assert proto.evaluate(out, prob.meta)["psnr"] == np.inf

    proto = _dpir("inpaint")
    img = _image(40, 50, 1, seed=13)
    prob = proto.problem({"image": img, "name": "x"}, Degradation("inpaint", 0, mask="random:0.3"))
    m = prob.meta["mask"]
    assert m.shape == (40, 50) and 0.6 < m.mean() < 0.8
    np.testing.assert_array_equal(prob.y[..., 0], np.where(m, np.float32(img[..., 0] / 255.), 0))
    assert isinstance(prob.params_extra["A"], operators.Mask)


def test_dpir_conditions():
    from dynpnp_jax.data.degradations import Degradation

    proto = _dpir(**{"levin:1": np.ones((3, 3)) / 9, "gauss:2": np.ones((3, 3)) / 9})
    conds, notes = proto.conditions([Degradation("deblur", 2.55, kernel="levin:1"),
                                     Degradation("deblur", 2.55, kernel="gauss:2"),
                                     Degradation("deblur", 2.55, kernel="levin:1")])
    assert len(conds) == 2 and len(notes) == 1
    assert [proto.condition_key(c) for c in conds] == ["levin:1|2.55", "gauss:2|2.55"]
    assert proto.condition_group(conds[0]) == proto.condition_group(conds[1]) == "noise=2.55"
    assert proto.solver_defaults(conds[0]) == {"iters": 8, "noise_level": 2.55 / 255}
    with pytest.raises(ValueError, match="noise must be a level >= 0 on the 8-bit scale"):
        proto.conditions([Degradation("deblur", -1, kernel="levin:1")])
    with pytest.raises(ValueError, match="not known"):
        proto.conditions([Degradation("deblur", 0, kernel="motion:3,4")])
