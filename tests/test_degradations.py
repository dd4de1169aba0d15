"""Known degradations (Blur, Downsample, Mask): conventions vs scipy, adjointness, exact normal
solves against dense linear algebra, hand-written kernel/mask gradients vs jax.grad, input errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dynpnp_jax import operators as ops

RNG = np.random.default_rng(0)


def _kernel(kh, kw, seed=0):
    k = np.random.default_rng(seed).random((kh, kw)) + 0.05
    return (k / k.sum()).astype(np.float32)


def _images(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _dense(op, h, w):
    """The matrix of ``op`` on single-channel h x w images (op parameters for one image)."""
    n = h * w
    basis = np.eye(n, dtype=np.float32).reshape(n, h, w, 1)
    cols = np.asarray(op(basis), np.float64).reshape(n, -1)
    return cols.T  # (out, n)


BLUR_KERNELS = [(3, 3), (4, 4), (5, 2)]  # odd, even, mixed
DOWN = [(2, (3, 3)), (2, (4, 4)), (3, (5, 4))]  # (factor, kernel size)
HW = 12  # one image size for all tests: fewer XLA compilations


def _all_ops():
    """(name, operator, input shape) with two different parameters per image."""
    out = []
    for ks in BLUR_KERNELS:
        k = np.stack([_kernel(*ks, seed=10), _kernel(*ks, seed=11)])
        out.append((f"blur{ks}", ops.Blur.from_kernel(k), (2, HW, HW, 1)))
    for factor, ks in DOWN:
        k = np.stack([_kernel(*ks, seed=12), _kernel(*ks, seed=13)])
        out.append((f"down{factor}{ks}", ops.Downsample.from_kernel(k, factor), (2, HW, HW, 1)))
    m = RNG.random((2, HW, HW, 1)).astype(np.float32)
    m[0, ::2] = 0.0  # hard zeros in one image
    out.append(("mask1", ops.Mask.from_mask(m), (2, HW, HW, 1)))
    out.append(("maskC", ops.Mask.from_mask(RNG.random((2, HW, HW, 3))), (2, HW, HW, 3)))
    return out


ALL = _all_ops()
IDS = [a[0] for a in ALL]
KERNEL_OPS = [a for a in ALL if not a[0].startswith("mask")]


# ---- conventions ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,op,shape", KERNEL_OPS, ids=[a[0] for a in KERNEL_OPS])
def test_matches_ndimage_convolve_wrap(name, op, shape):
    """Blur == ndimage.convolve(mode='wrap'); Downsample == the same, then [0::s, 0::s]."""
    x = _images(shape)
    y = np.asarray(op(x))
    s = getattr(op, "factor", 1)
    assert y.shape == (2, HW // s, HW // s, 1)
    for b in range(2):
        want = ndimage.convolve(x[b, :, :, 0].astype(np.float64), np.asarray(op.k[b], np.float64),
                                mode="wrap")[0::s, 0::s]
        np.testing.assert_allclose(y[b, :, :, 0], want, atol=2e-6)


@pytest.mark.parametrize("cls,factor", [(ops.Blur, None), (ops.Downsample, 4)])
def test_large_kernel_and_channels_match_ndimage(cls, factor):
    """A kernel as large as the image (even size), shared by 3 channels."""
    x = _images((1, HW, HW, 3))
    k = _kernel(HW, 8, seed=5)
    op = cls.from_kernel(k) if factor is None else cls.from_kernel(k, factor)
    y = np.asarray(op(x))
    s = factor or 1
    for c in range(3):
        want = ndimage.convolve(x[0, :, :, c].astype(np.float64), k.astype(np.float64),
                                mode="wrap")[0::s, 0::s]
        np.testing.assert_allclose(y[0, :, :, c], want, atol=2e-6)


def test_delta_operators_are_identity_and_decimation():
    x = _images((2, HW, HW, 1))
    np.testing.assert_allclose(ops.Blur.init(x.shape, 4)(x), x, atol=1e-6)
    np.testing.assert_allclose(ops.Downsample.init(x.shape, 3, 4)(x), x[:, ::3, ::3], atol=1e-6)
    np.testing.assert_allclose(ops.Mask.init(x.shape)(x), x)
    for op in (ops.Blur.init(x.shape, 4), ops.Downsample.init(x.shape, 3, 4), ops.Mask.init(x.shape)):
        np.testing.assert_allclose(op.deviation(), 0.0, atol=1e-7)
    blurred = ops.Blur.from_kernel(_kernel(3, 3), batch=2)
    assert blurred.k.shape == (2, 3, 3)
    assert np.all(np.asarray(blurred.deviation()) > 0.01)


def test_mask_multiplies_pixelwise():
    x = _images((2, 6, 5, 3))
    m = (RNG.random((6, 5)) > 0.5).astype(np.float32)
    y = np.asarray(ops.Mask.from_mask(m, batch=2)(x))
    np.testing.assert_array_equal(y, x * m[None, :, :, None])


# ---- adjointness and exact solves --------------------------------------------------------------

@pytest.mark.parametrize("name,op,shape", ALL, ids=IDS)
def test_adjoint(name, op, shape):
    x = _images(shape, seed=2)
    w = _images(op(x).shape, seed=3)
    lhs = float(jnp.vdot(op(x), w))
    rhs = float(jnp.vdot(x, op.adjoint(w)))
    assert abs(lhs - rhs) <= 1e-5 * (abs(lhs) + np.sqrt(x.size))


def _single(op, b):
    return jax.tree_util.tree_map(lambda p: jnp.asarray(np.asarray(p)[b:b + 1]), op)


@pytest.mark.parametrize("name,op,shape", [a for a in ALL if a[2][-1] == 1],
                         ids=[a[0] for a in ALL if a[2][-1] == 1])
def test_normal_solve_matches_dense(name, op, shape):
    _, h, w, _ = shape
    rhs = _images(shape, seed=4)
    mu = np.array([0.05, 1.5], np.float32)  # one per image
    got = np.asarray(op.normal_solve(rhs, mu), np.float64)
    for b in range(2):
        a = _dense(_single(op, b), h, w)
        at = _dense_adjoint(_single(op, b), a.shape[0], h, w)
        np.testing.assert_allclose(at, a.T, atol=1e-6)  # the adjoint is the transpose
        want = np.linalg.solve(a.T @ a + mu[b] * np.eye(h * w), rhs[b].reshape(-1).astype(np.float64))
        np.testing.assert_allclose(got[b].reshape(-1), want, rtol=2e-4,
                                   atol=2e-4 * np.abs(want).max())
    if name.startswith("down3"):  # scalar mu is the same as a constant vector
        np.testing.assert_allclose(op.normal_solve(rhs, 0.7), op.normal_solve(rhs, np.full(2, 0.7)),
                                   rtol=1e-6, atol=1e-6)


def _dense_adjoint(op, m, h, w):
    """The matrix of ``op.adjoint`` (n x m) from the output basis."""
    s = getattr(op, "factor", 1)
    out_shape = (h // s, w // s, 1)
    basis = np.eye(m, dtype=np.float32).reshape((m,) + out_shape)
    return np.asarray(op.adjoint(basis), np.float64).reshape(m, -1).T


def test_downsample_normal_solve_is_exact_in_float64():
    # in double precision the closed form (Zhao et al.) matches the dense solve to ~1e-14, even
    # for a small mu where A^T A + mu I is badly conditioned (A^T A has rank H W / s^2)
    with jax.enable_x64(True):
        k = np.random.default_rng(3).random((5, 4))
        op = ops.Downsample.from_kernel(k / k.sum(), 3, dtype=jnp.float64)
        n = HW * HW
        a = np.asarray(op(np.eye(n).reshape(n, HW, HW, 1))).reshape(n, -1).T
        rhs = np.random.default_rng(4).standard_normal((1, HW, HW, 1))
        x = np.asarray(op.normal_solve(rhs, 1e-3))
        assert x.dtype == np.float64
        want = np.linalg.solve(a.T @ a + 1e-3 * np.eye(n), rhs.reshape(-1))
        np.testing.assert_allclose(x.reshape(-1), want, atol=1e-10 * np.abs(want).max())


def test_mask_normal_solve_with_channels():
    op = [a for a in ALL if a[0] == "maskC"][0][1]
    rhs = _images((2, HW, HW, 3), seed=5)
    mu = np.array([0.1, 2.0], np.float32)
    x = op.normal_solve(rhs, mu)
    back = op.adjoint(op(x)) + mu[:, None, None, None] * x
    np.testing.assert_allclose(back, rhs, rtol=1e-5, atol=1e-5)


# ---- parameter gradients ---------------------------------------------------------------------

@pytest.mark.parametrize("name,op,shape", ALL, ids=IDS)
def test_loss_grad_matches_autodiff(name, op, shape):
    # a generic (not normalised, signed) operator: gradients must not depend on validity
    op = jax.tree_util.tree_map(lambda p: p + 0.2 * jnp.asarray(_images(p.shape, seed=6)), op)
    x = _images(shape, seed=7)
    ax = op(x)
    g = 0.1 * _images(ax.shape, seed=8)
    y = _images(ax.shape, seed=9)

    def loss(o):
        return jnp.sum((o(x) + g - y) ** 2)

    auto = jax.jit(jax.grad(loss))(op)
    hand = op.loss_grad(x, op(x) + g - y)  # eager
    assert type(hand) is type(op)
    for a, h in zip(jax.tree_util.tree_leaves(auto), jax.tree_util.tree_leaves(hand)):
        assert a.shape == h.shape
        np.testing.assert_allclose(h, a, rtol=2e-4, atol=2e-4 * float(jnp.abs(a).max()))
    # and the A-step runs eagerly (concrete values, no validation of the stepped kernel)
    new = op.descend(hand, jnp.array([0.1, 0.2]))
    leaf = jax.tree_util.tree_leaves(op)[0]
    np.testing.assert_allclose(jax.tree_util.tree_leaves(new)[0][1],
                               leaf[1] - 0.2 * jax.tree_util.tree_leaves(hand)[0][1], rtol=1e-5, atol=1e-6)


def test_operators_work_under_jit_and_scan():
    x = _images((2, HW, HW, 1))
    op = ops.Downsample.from_kernel(_kernel(4, 4), 2, batch=2)

    @jax.jit
    def run(op, x):
        def body(o, _):
            r = o(x) - o(x) * 0.9
            return o.descend(o.loss_grad(x, r), 1e-3), None
        return jax.lax.scan(body, op, None, length=3)[0]

    out = run(op, x)
    assert isinstance(out, ops.Downsample) and out.factor == 2
    assert out.k.shape == (2, 4, 4)
    # a traced raw kernel skips value checks (it need not sum to 1)
    y = jax.jit(lambda k: ops.Blur(k=k)(x))(jnp.ones((2, 3, 3)))
    np.testing.assert_allclose(y, ops.Blur.from_kernel(np.ones((2, 3, 3)) / 9)(x) * 9, rtol=1e-4,
                               atol=1e-4)


# ---- input errors ---------------------------------------------------------------------------

def test_kernel_value_errors():
    k = _kernel(5, 5)
    bad = k.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"^k: expected finite") as e:
        ops.Blur.from_kernel(bad)
    assert "nan_to_num" in str(e.value)
    with pytest.raises(ValueError, match=r"^k: expected a blur kernel with positive total mass"):
        ops.Blur.from_kernel(-k)
    mostly_negative = k.copy()
    mostly_negative[0, 0] -= 2.0
    mostly_negative[4, 4] += 2.0
    with pytest.raises(ValueError, match=r"^k: expected a \(mostly\) non-negative kernel.*np.clip"):
        ops.Downsample.from_kernel(mostly_negative, 2)
    with pytest.raises(ValueError, match=r"^k: expected a kernel summing to 1.*got sum\(s\) \[2\.0\].*k / k\.sum\(\)"):
        ops.Blur.from_kernel(2 * k)
    # one bad kernel in a batch is enough; within the tolerance passes; check=False bypasses
    with pytest.raises(ValueError, match="summing to 1"):
        ops.Blur.from_kernel(np.stack([k, 1.01 * k]))
    ops.Blur.from_kernel(np.stack([k, 1.0005 * k]))
    ops.Blur.from_kernel(2 * k, check=False)
    with pytest.raises(ValueError, match=r"^k: expected a (2-D )?\(kh, kw\) kernel"):
        ops.Blur.from_kernel(np.ones((1, 1, 3, 3)) / 9)
    with pytest.raises(ValueError, match=r"^k: expected 1 or batch=3 kernels, got 2"):
        ops.Blur.from_kernel(np.stack([k, k]), batch=3)
    with pytest.raises(ValueError, match=r"^k: Blur expects kernels of shape \(B, kh, kw\).*from_kernel"):
        ops.Blur(k=jnp.asarray(k))


def test_kernel_larger_than_image():
    x = _images((1, 8, 10, 1))
    op = ops.Blur.from_kernel(_kernel(9, 9))
    for f in (op, op.adjoint, lambda v: op.normal_solve(v, 1.0)):
        with pytest.raises(ValueError, match=r"^k: kernel of size 9x9 is larger than the 8x10 image.*fix"):
            f(x)
    ds = ops.Downsample.from_kernel(_kernel(9, 9), 2)
    with pytest.raises(ValueError, match=r"^k: kernel of size 9x9 is larger than the 8x10"):
        ds(x)
    with pytest.raises(ValueError, match=r"^k: expected 1 or 3 kernels \(one per image of x\), got 2"):
        ops.Blur.from_kernel(np.stack([_kernel(3, 3)] * 2))(_images((3, 8, 8, 1)))


def test_factor_errors():
    op = ops.Downsample.from_kernel(_kernel(3, 3), 3)
    with pytest.raises(ValueError, match=r"^x: image size 13x12 is not a multiple of factor=3.*"
                                         r"crop to a multiple of the factor.*:12, :12"):
        op(_images((1, 13, 12, 1)))
    with pytest.raises(ValueError, match=r"^rhs: image size 12x10 is not a multiple of factor=3"):
        op.normal_solve(_images((1, 12, 10, 1)), 1.0)
    for bad in (0, 2.5, -2, True):
        with pytest.raises(ValueError, match=r"^factor: expected a positive integer"):
            ops.Downsample.from_kernel(_kernel(3, 3), bad)
    # the adjoint maps LR (any size) to HR
    assert op.adjoint(_images((1, 5, 4, 2))).shape == (1, 15, 12, 2)


def test_mask_errors():
    x = _images((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"^m: mask of shape \(1, 8, 6, 1\) does not match x of shape "
                                         r"\(2, 8, 8, 3\); expected \(B or 1, 8, 8, 1 or 3\)"):
        ops.Mask.from_mask(np.ones((8, 6)))(x)
    with pytest.raises(ValueError, match=r"^m: mask of shape \(1, 8, 8, 2\)"):
        ops.Mask.from_mask(np.ones((8, 8, 2))).adjoint(x)
    with pytest.raises(ValueError, match=r"^m: expected mask values in \[0, 1\].*got range \[0, 255\].*np.clip"):
        ops.Mask.from_mask(np.where(np.eye(8) > 0, 255.0, 0.0))
    nan = np.ones((8, 8))
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^m: expected finite"):
        ops.Mask.from_mask(nan)
    with pytest.raises(ValueError, match=r"^m: expected a mask of shape \(H, W\)"):
        ops.Mask.from_mask(np.ones((1, 1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"^m: Mask expects a mask of shape \(B, H, W, 1\)"):
        ops.Mask(m=jnp.ones((8, 8)))
    with pytest.raises(ValueError, match=r"^x: expected an NHWC batch"):
        ops.Mask.from_mask(np.ones((8, 8)))(np.ones((8, 8, 3), np.float32))
    # a boolean mask is accepted and becomes float32
    assert ops.Mask.from_mask(np.ones((8, 8), bool)).m.dtype == jnp.float32


def test_not_in_make_operator():
    # they need user data (kernel, factor, mask), so make_operator does not build them
    for name in ("blur", "downsample", "mask"):
        assert name not in ops.OPERATORS
        with pytest.raises(ValueError, match="unknown operator"):
            ops.make_operator(name, (1, 8, 8, 1))


# ---- MATLAB-compatible bicubic resize -------------------------------------------------------------

from dynpnp_jax import resize  # noqa: E402


def _smooth(h, w, seed=0):
    r, c = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    return 0.5 + 0.3 * np.sin(2 * np.pi * (r + 0.5 * c)) * np.cos(2 * np.pi * c + seed)


def _matlab_coord(n_out, s):
    """0-based input coordinate of each output pixel: u = x/s + 0.5 (1 - 1/s), 1-based."""
    x = np.arange(1, n_out + 1)
    return x / s + 0.5 * (1 - 1 / s) - 1


@pytest.mark.parametrize("s", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_imresize_reproduces_quadratics(s):
    # Keys' a = -0.5 cubic reproduces polynomials of degree <= 2; so does its stretched version on
    # integer down-scaling: away from the (mirrored) borders the output is f at the mapped points
    h, w = 36, 48
    f = lambda r, c: 0.3 + 0.02 * r - 0.01 * c + 1e-3 * r * r - 5e-4 * r * c + 2e-4 * c * c  # noqa: E731
    r, c = np.mgrid[:h, :w].astype(np.float64)
    out = resize.imresize(f(r, c), s)
    assert out.shape == (round(h * s), round(w * s)) and out.dtype == np.float64
    ur, uc = _matlab_coord(out.shape[0], s), _matlab_coord(out.shape[1], s)
    reach = 2 * max(1, 1 / s)  # kernel half-width in input pixels
    rows = (ur - reach >= 0) & (ur + reach <= h - 1)
    cols = (uc - reach >= 0) & (uc + reach <= w - 1)
    assert rows.sum() >= 3 and cols.sum() >= 3
    want = f(ur[:, None], uc[None, :])
    np.testing.assert_allclose(out[np.ix_(rows, cols)], want[np.ix_(rows, cols)], atol=1e-12)
    # constants everywhere, borders included (weights are normalised)
    np.testing.assert_allclose(resize.imresize(np.full((h, w, 2), 0.7), s), 0.7, atol=1e-12)


@pytest.mark.parametrize("s", [2, 3, 4, 1 / 2, 1 / 4])
def test_imresize_matches_torch_antialias_in_the_interior(s):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((48, 36))
    ours = resize.imresize(x, s)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(x)[None, None], scale_factor=s, mode="bicubic", align_corners=False,
        antialias=True)[0, 0].numpy()
    assert ours.shape == theirs.shape
    m = int(np.ceil(2 * max(s, 1 / s) + s))  # output pixels whose taps reach the border
    np.testing.assert_allclose(ours[m:-m, m:-m], theirs[m:-m, m:-m], atol=1e-12)
    # at the border MATLAB mirrors, torch renormalises the truncated kernel: they differ there
    assert np.abs(ours - theirs).max() > 1e-3
    # torch without antialias uses a = -0.75: different even in the interior
    if s > 1:
        plain = torch.nn.functional.interpolate(
            torch.from_numpy(x)[None, None], scale_factor=s, mode="bicubic",
            align_corners=False)[0, 0].numpy()
        assert np.abs(ours - plain)[m:-m, m:-m].max() > 1e-2


def test_imresize_down_up_and_shapes():
    x = _smooth(60, 48).astype(np.float32)
    for s in (2, 3, 4):
        small = resize.imresize(x, 1 / s)
        assert small.shape == (60 // s, 48 // s) and small.dtype == np.float32
        back = resize.imresize(small, s)
        assert back.shape == x.shape
        err = np.abs(back - x)[2 * s:-2 * s, 2 * s:-2 * s].max()
        assert err < 0.01 * s, (s, err)
    # MATLAB's output size is ceil(scale * size); channels resized independently
    rgb = np.stack([x, 1 - x, 0.5 * x], -1)[:41]
    out = resize.imresize(rgb, 1 / 2)
    assert out.shape == (21, 24, 3)
    np.testing.assert_allclose(out[..., 1], resize.imresize(1 - x[:41], 1 / 2), atol=1e-6)
    assert resize.imresize(x, output_shape=(30, 16)).shape == (30, 16)
    np.testing.assert_allclose(resize.imresize(x, output_shape=(30, 24)), resize.imresize(x, 0.5),
                               atol=1e-7)
    # uint8 in, uint8 out, rounded and clipped (the cubic overshoots at a sharp edge)
    step = np.zeros((16, 16), np.uint8)
    step[:, 8:] = 255
    up = resize.imresize(step, 2)
    assert up.dtype == np.uint8 and up.min() == 0 and up.max() == 255
    raw = resize.imresize(step.astype(np.float64), 2)
    assert raw.max() > 255 and raw.min() < 0
    np.testing.assert_array_equal(up, np.clip(np.round(raw), 0, 255))


def test_imresize_matches_dpir_bicubic_kernels():
    # DPIR's x2/x3/x4 "bicubic" kernels followed by [0::s, 0::s] approximate MATLAB's bicubic
    # down-scaling (a check that ties kernels, Downsample and imresize together)
    from conftest import require_shared

    from dynpnp_jax import kernels

    require_shared("data", "kernels", "kernels_bicubicx234.mat")
    x = _smooth(48, 48)[None, :, :, None].astype(np.float32)
    for s, tol in ((2, 1e-2), (3, 2e-3), (4, 2e-3)):
        y = np.asarray(ops.Downsample.from_kernel(kernels.bicubic(s), s)(x))[0, :, :, 0]
        want = resize.imresize(x[0, :, :, 0], 1 / s)
        m = 12 // s + 2
        assert np.abs(y - want)[m:-m, m:-m].max() < tol


def test_rgb2ycbcr_y_and_modcrop():
    rgb = np.random.default_rng(0).random((5, 7, 3))
    y = resize.rgb2ycbcr_y(rgb)
    want = 16 / 255 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    np.testing.assert_allclose(y, want, atol=1e-12)
    np.testing.assert_allclose(resize.rgb2ycbcr_y(np.zeros((1, 3))), 16 / 255)
    np.testing.assert_allclose(resize.rgb2ycbcr_y(np.ones((1, 3))), 235 / 255, atol=1e-6)
    np.testing.assert_allclose(resize.rgb2ycbcr_y(np.array([[255, 255, 255]], np.uint8)), 235 / 255,
                               atol=1e-6)
    assert resize.rgb2ycbcr_y(rgb.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"^img: expected an RGB image with 3 channels.*got shape \(5, 7\)"):
        resize.rgb2ycbcr_y(rgb[..., 0])
    img = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    assert resize.modcrop(img, 4).shape == (4, 8, 3)
    np.testing.assert_array_equal(resize.modcrop(img, 4), img[:4, :8])
    assert resize.modcrop(img[..., 0], 3).shape == (6, 9)
    assert resize.modcrop(np.zeros((2, 7, 10, 1)), 3).shape == (2, 6, 9, 1)
    with pytest.raises(ValueError, match=r"^m: expected a positive integer"):
        resize.modcrop(img, 0)
    with pytest.raises(ValueError, match=r"^img: a 7x10 image is smaller than m=8"):
        resize.modcrop(img, 8)


def test_imresize_errors():
    x = np.zeros((8, 8))
    with pytest.raises(ValueError, match=r"^scale: expected a positive number.*scale=1/4"):
        resize.imresize(x, 0)
    with pytest.raises(ValueError, match=r"^scale: expected exactly one of scale or output_shape"):
        resize.imresize(x)
    with pytest.raises(ValueError, match=r"^output_shape: expected \(h, w\)"):
        resize.imresize(x, output_shape=(4,))
    with pytest.raises(ValueError, match=r"^img: expected a numeric \(H, W\) or \(H, W, C\) image.*x\[0\]"):
        resize.imresize(np.zeros((1, 8, 8, 1)), 2)


def test_sr_scores_colour_on_the_8bit_luminance():
    """SR tables (IRCNN, DPIR's PSNR_Y) score colour on KAIR's rounded 8-bit Y, border = scale;
    deblurring keeps RGB."""
    from dynpnp_jax import metrics
    from dynpnp_jax.data.degradations import Dpir, luminance_uint8

    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
    out = np.clip(ref.astype(int) + rng.integers(-6, 7, ref.shape), 0, 255).astype(np.uint8)
    y = luminance_uint8(ref)
    want = np.round(np.dot(ref.astype(np.float64), [65.481, 128.553, 24.966]) / 255.0 + 16.0)
    assert y.shape == (20, 22, 1) and y.dtype == np.uint8
    np.testing.assert_array_equal(y[..., 0], want.astype(np.uint8))
    b = 3
    got = Dpir(task="sr").metrics(out, ref, border=b)["psnr"]
    y_ref, y_out = luminance_uint8(ref)[b:-b, b:-b], luminance_uint8(out)[b:-b, b:-b]
    mse = np.mean((y_out.astype(np.float64) - y_ref) ** 2)
    assert got == pytest.approx(10 * np.log10(255.0 ** 2 / mse), abs=1e-4)
    rgb = float(np.asarray(metrics.psnr(out[None, b:-b, b:-b], ref[None, b:-b, b:-b], data_range=255.0))[0])
    assert abs(got - rgb) > 0.5  # the luminance averages the channel errors: a different score
    assert Dpir(task="deblur").metrics(out, ref)["psnr"] == pytest.approx(
        float(np.asarray(metrics.psnr(out[None], ref[None], data_range=255.0))[0]), abs=1e-4)
    with pytest.raises(ValueError, match="image"):
        luminance_uint8(ref.astype(np.float32))


def test_downsample_initial_is_bicubic_on_the_degradations_grid():
    """SR starts from bicubic up-sampling aligned with the kernel: for DPIR's bicubic kernels it
    is MATLAB imresize(y, s); for a centred Gaussian it is shifted by (s - 1) / 2 px, as DPIR's
    shift_pixel does, and then fits the truth better than the unshifted imresize."""
    from conftest import require_shared

    from dynpnp_jax import kernels

    require_shared("data", "kernels", "kernels_bicubicx234.mat")
    x = _smooth(48, 48).astype(np.float32)
    for s in (2, 3):
        op = ops.Downsample.from_kernel(kernels.bicubic(s), s, 1)
        y = np.asarray(op(jnp.asarray(x)[None, :, :, None]))
        up = np.asarray(op.initial(jnp.asarray(y)))[0, :, :, 0]
        want = resize.imresize(y[0, :, :, 0], s)
        assert up.shape == x.shape
        assert np.abs(up - want)[4:-4, 4:-4].max() < 2e-3
        g = ops.Downsample.from_kernel(kernels.gaussian(1.0, size=9), s, 1)
        yg = np.asarray(g(jnp.asarray(x)[None, :, :, None]))
        aligned = np.asarray(g.initial(jnp.asarray(yg)))[0, :, :, 0]
        plain = resize.imresize(yg[0, :, :, 0], s)
        m = 3 * s
        err = lambda a: np.mean((a - x)[m:-m, m:-m] ** 2)  # noqa: E731
        assert err(aligned) < 0.5 * err(plain), (s, err(aligned), err(plain))


def test_mask_initial_fills_the_holes():
    """Inpainting starts from y with its holes filled (normalised convolution), not from zeros."""
    x = _smooth(40, 44).astype(np.float32)[None, :, :, None]
    m = (np.random.RandomState(0).rand(1, 40, 44, 1) > 0.6).astype(np.float32)  # 60 % missing
    m[:, 10:20, 10:20] = 0  # and a 10 x 10 hole
    op = ops.Mask.from_mask(m, 1)
    y = np.asarray(op(jnp.asarray(x)))
    x0 = np.asarray(op.initial(jnp.asarray(y)))
    np.testing.assert_array_equal(x0[m > 0], y[m > 0])  # observed pixels kept
    assert np.abs(x0 - x)[m == 0].max() < 0.15  # holes close to the smooth truth (10 px hole: 0.11)
    assert np.mean((x0 - x) ** 2) < 0.01 * np.mean((y - x) ** 2)
    full = ops.Mask.from_mask(np.ones_like(m), 1)
    np.testing.assert_allclose(np.asarray(full.initial(jnp.asarray(x))), x)
    # the solver starts from it
    from dynpnp_jax import solver
    np.testing.assert_allclose(np.asarray(solver._initial(op, jnp.asarray(y))), x0)
