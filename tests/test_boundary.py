"""Unknown boundaries (dynpnp_jax.boundary): a frame cut out of a larger blurred scene.

Checks: the margins hold the kernel's reach; the masked x-step is the exact solution of the
masked least-squares problem (dense reference); the protocol's frame is a 'valid' convolution of
the scene; a restored frame beats the circular model by a wide margin; calibration scores a
frame's periodic component; argument errors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

import dynpnp_jax as dp
from dynpnp_jax import boundary as bd
from dynpnp_jax.operators import Blur, Downsample
from dynpnp_jax.solver import make_config, restore
from conftest import require_shared


@pytest.mark.parametrize("kshape,hw", [((5, 5), (16, 24)), ((4, 7), (13, 21)), ((27, 27), (224, 224))])
def test_margins_hold_the_kernel_reach(kshape, hw):
    kh, kw = kshape
    top, bottom, left, right = bd.margins(kshape, *hw)
    assert top >= kh - 1 - kh // 2 and bottom >= kh // 2
    assert left >= kw - 1 - kw // 2 and right >= kw // 2
    assert (hw[0] + top + bottom) % 8 == 0 and (hw[1] + left + right) % 8 == 0
    # the circular blur of an extended image equals the linear one on the frame: no wrap reaches
    rng = np.random.RandomState(0)
    k = rng.rand(kh, kw)
    k /= k.sum()
    x = rng.rand(1, hw[0] + top + bottom, hw[1] + left + right, 1).astype(np.float32)
    circ = np.asarray(Blur.from_kernel(k)(x))[0, ..., 0]
    lin = ndimage.convolve(x[0, ..., 0].astype(np.float64), k, mode="constant")
    np.testing.assert_allclose(bd.crop(circ, (top, bottom, left, right), axis=0),
                               bd.crop(lin, (top, bottom, left, right), axis=0), atol=2e-6)


def test_extend_and_crop():
    y = np.arange(2 * 5 * 6 * 1, dtype=np.float32).reshape(2, 5, 6, 1)
    pads = (7, 3, 2, 9)  # wider than the frame: mirrored in rounds
    y_ext, mask = bd.extend(y, pads)
    assert y_ext.shape == (2, 15, 17, 1) and mask.shape == (1, 15, 17, 1)
    np.testing.assert_array_equal(np.asarray(bd.crop(y_ext, pads)), y)
    assert float(mask.sum()) == 30 and float(bd.crop(mask, pads).min()) == 1
    np.testing.assert_array_equal(np.asarray(y_ext[:, 6, 2:8]), y[:, 0])  # mirror of row 0
    np.testing.assert_array_equal(np.asarray(y_ext[:, 7:12, 1]), y[:, :, 0])  # mirror of col 0


def test_periodic_component():
    """Moisan's split: y - p is harmonic inside (its discrete Laplacian vanishes) and p has
    (almost) no jump across the wrapped edges; detail is kept."""
    rng = np.random.RandomState(2)
    ramp = np.linspace(0, 3, 24)[None, None, :, None] + np.linspace(0, 1, 20)[None, :, None, None]
    y = (rng.rand(1, 20, 24, 1) + ramp).astype(np.float32)
    p = np.asarray(bd.periodic_component(y))
    s = (y - p)[0, ..., 0]
    lap = -4 * s[1:-1, 1:-1] + s[:-2, 1:-1] + s[2:, 1:-1] + s[1:-1, :-2] + s[1:-1, 2:]
    assert np.abs(lap).max() < 1e-4
    jump = lambda a: np.abs(a[0, :, -1] - a[0, :, 0]).mean()  # noqa: E731
    assert jump(p) < 0.15 * jump(y)
    assert np.std(np.diff(p[0, ..., 0], axis=1) - np.diff(y[0, ..., 0], axis=1)) < 0.1


def test_masked_solve_is_exact():
    """PCG equals the dense solution of (A^T M A + mu I) x = A^T M y + mu v."""
    rng = np.random.RandomState(1)
    h, w, kh = 12, 10, 5
    k = rng.rand(kh, kh) ** 3
    k /= k.sum()
    op = Blur.from_kernel(k)
    mask = np.zeros((1, h, w, 1), np.float32)
    mask[:, 3:9, 2:8] = 1
    y = rng.rand(1, h, w, 1).astype(np.float32)
    v = rng.rand(1, h, w, 1).astype(np.float32)
    mu = 0.02
    n = h * w
    a = np.stack([np.asarray(op(np.eye(n, dtype=np.float32)[i].reshape(1, h, w, 1))).ravel()
                  for i in range(n)], 1)
    m = np.diag(mask.ravel())
    x_ref = np.linalg.solve(a.T @ m @ a + mu * np.eye(n), a.T @ m @ y.ravel() + mu * v.ravel())
    x0 = op.normal_solve(op.adjoint(bd.complete(y, mask, op(v))) + mu * v, mu)
    err = [np.abs(np.asarray(bd.masked_solve(op, y, mask, v, mu, x0, it)).ravel() - x_ref).max()
           for it in (0, 5, 40)]
    assert err[1] < 0.2 * err[0] and err[2] < 1e-4, err


def test_protocol_frame_is_a_valid_convolution():
    from dynpnp_jax.data.degradations import Degradation
    from dynpnp_jax.data.protocols import get_protocol
    import dataclasses

    rng = np.random.RandomState(3)
    k = rng.rand(7, 6)
    k /= k.sum()
    proto = dataclasses.replace(get_protocol("dpir"), kernel_table={"k": k.astype(np.float32)})
    img = rng.randint(0, 256, (53, 61, 1)).astype(np.uint8)
    prob = proto.problem({"image": img, "name": "x"},
                         Degradation("deblur", 0, kernel="k", boundary="unknown"))
    gt = img[:48, :56, 0]  # modcrop 8
    valid = signal.convolve2d(gt.astype(np.float64),
                              np.asarray(proto.kernel_table["k"], np.float64), mode="valid")
    fh, fw = prob.y.shape[:2]
    assert (fh, fw) == (40, 48) and fh <= valid.shape[0] and fw <= valid.shape[1]
    # uint8 truncation of the degradation: within one level of the valid convolution
    assert np.abs(prob.y[..., 0] * 255 - valid[:fh, :fw]).max() < 1 + 1e-3
    top, left = 7 - 1 - 7 // 2, 6 - 1 - 6 // 2
    np.testing.assert_array_equal(prob.meta["reference"][..., 0], gt[top:top + fh, left:left + fw])
    assert prob.params_extra["A"].boundary == "unknown"
    assert "boundary=unknown" in proto.condition_key(
        Degradation("deblur", 0, kernel="k", boundary="unknown"))
    with pytest.raises(ValueError, match="boundary"):
        proto.problem({"image": img, "name": "x"},
                      Degradation("deblur", 0, kernel="k", boundary="reflect"))


@pytest.fixture(scope="module")
def ffdnet():
    require_shared("upstream", "ffdnet", "FFDNet_gray.mat")
    return dp.load_network("ffdnet-gray")


def _frame_problem(kid=4, noise=2.55, size=128):
    from dynpnp_jax import kernels as kn
    from PIL import Image

    path = require_shared("data", "set3g") / "house.png"
    gt = np.asarray(Image.open(path).convert("L"), np.uint8)[64:64 + size, 64:64 + size]
    k = kn.levin(kid)
    b = ndimage.convolve(gt.astype(np.float64), k, mode="wrap")
    kh, kw = k.shape
    t, l = kh - 1 - kh // 2, kw - 1 - kw // 2
    fh, fw = (size - kh + 1) // 8 * 8, (size - kw + 1) // 8 * 8
    y = b[t:t + fh, l:l + fw] / 255 + np.random.RandomState(0).normal(0, noise / 255, (fh, fw))
    return y.astype(np.float32)[None, ..., None], gt[t:t + fh, l:l + fw], k


def _psnr8(out, ref):
    o = np.round(np.clip(np.asarray(out, np.float64)[0, ..., 0], 0, 1) * 255)
    return 10 * np.log10(255 ** 2 / np.mean((o - ref) ** 2))


def test_unknown_boundary_restores_a_frame(ffdnet):
    """A frame of a larger blurred scene (Levin k1, house 128x128 crop, 104x104 frame): the
    circular model rings (measured 18.1 dB); the unknown-boundary loop restores it (31.8 dB);
    the exact masked x-step beats one completion per iteration (27.5 dB)."""
    y, ref, k = _frame_problem(kid=1)
    cfg = make_config("dpir", noise_level=2.55 / 255, keep_images=False)
    out_c, _ = restore({"prior": ffdnet, "A": Blur.from_kernel(k)}, y, cfg)
    out_u, tr = restore({"prior": ffdnet, "A": Blur.from_kernel(k, boundary="unknown")}, y, cfg,
                        clean=ref[None, ..., None] / 255.0)
    out_0, _ = restore({"prior": ffdnet, "A": Blur.from_kernel(k)}, y,
                       make_config("dpir", noise_level=2.55 / 255, keep_images=False,
                                   boundary="unknown", boundary_iters=0))
    p_c, p_u, p_0 = _psnr8(out_c, ref), _psnr8(out_u, ref), _psnr8(out_0, ref)
    assert out_u.shape == y.shape and tr.psnr.shape == (8, 1)
    assert p_c < 21 and p_u > 30.5 and p_u > p_0 + 2.0, (p_c, p_u, p_0)
    assert abs(float(tr.psnr[-1, 0]) - p_u) < 0.1  # the trajectory scores the frame


def test_boundary_values_do_not_recompile(ffdnet):
    y, ref, k = _frame_problem(kid=1, size=64)
    params = {"prior": ffdnet, "A": Blur.from_kernel(k, boundary="unknown")}
    cfg = make_config("dpir", noise_level=2.55 / 255, keep_images=False)
    restore(params, y, cfg)
    n = dp.compile_count()
    restore(params, y, cfg.with_values(mu=np.asarray(cfg.mu) * 2))
    assert dp.compile_count() == n


def test_calibrated_on_a_frame_finds_the_width(ffdnet):
    """The likelihood criterion on a frame (its periodic component): told Gaussian 2.0, truth
    1.6."""
    from dynpnp_jax import kernels as kn
    from PIL import Image

    path = require_shared("data", "set3g") / "cameraman.png"
    gt = np.asarray(Image.open(path).convert("L"), np.uint8)
    k = kn.gaussian(1.6, 25)
    b = ndimage.convolve(gt.astype(np.float64), k, mode="wrap")
    y = (b[12:12 + 224, 12:12 + 224] / 255
         + np.random.RandomState(0).normal(0, 2.55 / 255, (224, 224)))[None, ..., None]
    ref = gt[12:12 + 224, 12:12 + 224]
    params = {"prior": ffdnet, "A": Blur.from_kernel(kn.gaussian(2.0, 25), boundary="unknown")}
    cfg = make_config("calibrated", noise_level=2.55 / 255, keep_images=False)
    out, tr = restore(params, y.astype(np.float32), cfg,
                      true_A=Blur.from_kernel(k, boundary="unknown"))
    assert float(tr.kernel_err[-1, 0]) < 0.15
    out_d, _ = restore(params, y.astype(np.float32),
                       make_config("dpir", noise_level=2.55 / 255, keep_images=False))
    assert _psnr8(out, ref) > _psnr8(out_d, ref) + 1.0


def test_boundary_errors(ffdnet):
    k = np.ones((3, 3)) / 9
    with pytest.raises(ValueError, match="boundary.*'circular'"):
        Blur.from_kernel(k, boundary="reflect")
    with pytest.raises(ValueError, match="boundary must be"):
        make_config("dpir", noise_level=0.01, boundary="mirror")
    with pytest.raises(ValueError, match="boundary_iters"):
        make_config("dpir", noise_level=0.01, boundary_iters=-1)
    y = np.zeros((1, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="needs params\\['A'\\] = Blur"):
        restore({"prior": ffdnet, "A": Downsample.from_kernel(k, 2)}, y[:, :8, :8],
                make_config("dpir", noise_level=0.01, boundary="unknown"))


def test_wiener_baseline_filters_the_mirrored_frame():
    """The Wiener baseline on a frame (unknown boundaries) filters its mirror extension: no
    ringing from the frame's edges (measured on house, Levin k1, noise 2.55: 24.4 dB, within
    0.1 dB of the same filter on DPIR's periodic blur; the circular filter on the frame 18.3)."""
    import dataclasses

    from dynpnp_jax import kernels as kn
    from dynpnp_jax.baselines import run_baseline
    from dynpnp_jax.data.degradations import Degradation
    from dynpnp_jax.data.protocols import get_protocol
    from PIL import Image

    gt = np.asarray(Image.open(require_shared("data", "set3g") / "house.png").convert("L"))
    (name, k), = kn.parse_kernel("levin:1")
    proto = dataclasses.replace(get_protocol("dpir"), kernel_table={name: k})
    score = {}
    for b in ("circular", "unknown"):
        prob = proto.problem({"image": gt[..., None], "name": "house"},
                             Degradation("deblur", 2.55, kernel=name, boundary=b))
        score[b] = proto.evaluate(run_baseline("wiener", prob), prob.meta)["psnr"]
        if b == "unknown":  # the same frame filtered as if it were periodic
            prob = prob._replace(params_extra={"A": Blur.from_kernel(k, 1)})
            score["ringing"] = proto.evaluate(run_baseline("wiener", prob), prob.meta)["psnr"]
    assert abs(score["unknown"] - score["circular"]) < 0.5, score
    assert score["unknown"] > score["ringing"] + 3, score
