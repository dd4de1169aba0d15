"""The plug-and-play algorithms as units (dynpnp_jax.algorithms) and operators from their forward.

With a linear "denoiser" D(x) = c x every algorithm's fixed point has a closed form, computed
here densely (the operator applied to every basis image): the loop must reach it. A composed
operator (blur then a Bayer mask) and a random Fourier sampling are written in this file with
their forward alone; their adjoint must equal the dense transpose and their CG x-step the dense
solve (docs/extending.md shows the same operators).
"""
import re
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import dynpnp_jax as dp
from dynpnp_jax import algorithms
from dynpnp_jax.operators import Blur, Downsample, Mask, Operator

C = 0.8   # the linear denoiser's gain
MU = 1.0  # penalty (HQS/ADMM/DRS) and RED's weight
DELTA = 1.0
NEW = ("admm", "drs", "pgd") + tuple(n for n in ("fista", "red") if n in algorithms.ALGORITHMS)
KNOWN = ("dpir",) + NEW


class Scale(nn.Module):
    c: float = C

    @nn.compact
    def __call__(self, x):
        return self.c * x


def linear_net(c=C, channels=1):
    return dp.Network(module=Scale(c), variables={}, kind="image", channels=channels,
                      name="linear")


@struct.dataclass
class BlurBayer(Operator):
    """A blur, then an RGGB Bayer mosaic: a composed operator given by its forward alone."""

    blur: Blur
    m: jax.Array  # (1, H, W, 3) 0/1

    def __call__(self, x):
        return self.m * self.blur(x)


@struct.dataclass
class FourierSampling(Operator):
    """Compressed sensing: kept frequencies of the orthonormal 2-D FFT, (real, imaginary)
    stacked as channels."""

    m: jax.Array  # (1, H, W, 1) 0/1
    observes_images = False

    def __call__(self, x):
        f = jnp.fft.fft2(x, axes=(1, 2), norm="ortho")
        return jnp.concatenate([self.m * f.real, self.m * f.imag], axis=-1)

    def input_shape(self, y_shape):
        return tuple(y_shape[:-1]) + (y_shape[-1] // 2,)


def bayer(h, w):
    m = np.zeros((1, h, w, 3), np.float32)
    m[:, 0::2, 0::2, 0] = 1
    m[:, 0::2, 1::2, 1] = 1
    m[:, 1::2, 0::2, 1] = 1
    m[:, 1::2, 1::2, 2] = 1
    return jnp.asarray(m)


def image(h=8, w=8, c=1, seed=0):
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(3 * xx + 2 * yy)
    rng = np.random.RandomState(seed)
    img = base[None, :, :, None] + 0.05 * rng.randn(1, h, w, c)
    return np.clip(img, 0, 1).astype(np.float32)


def operators():
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    rng = np.random.RandomState(3)
    return {
        "blur": (Blur.from_kernel(k, 1), 1),
        "blur_bayer": (BlurBayer(blur=Blur.from_kernel(k, 1), m=bayer(8, 8)), 3),
        "fourier": (FourierSampling(m=jnp.asarray(rng.uniform(size=(1, 8, 8, 1)) < 0.5,
                                                  jnp.float32)), 1),
    }


def dense(f, shape):
    """The matrix of a linear map on arrays of ``shape`` (columns: images of basis vectors)."""
    n = int(np.prod(shape))
    eye = jnp.eye(n, dtype=jnp.float32).reshape((n,) + tuple(shape[1:]))
    cols = jax.vmap(lambda e: f(e[None]).reshape(-1))(eye)
    return np.asarray(cols, np.float64).T


def closed_form(mode, a, y):
    """The fixed point of ``mode`` with D(x) = C x, constant MU and DELTA, as the result the
    loop returns (v, or x for RED)."""
    ata, aty = a.T @ a, a.T @ y
    eye = np.eye(a.shape[1])
    if mode in ("dpir", "hqs"):  # v = C x, x = (A^T A + mu)^-1 (A^T y + mu v)
        return C * np.linalg.solve(ata + MU * (1 - C) * eye, aty)
    if mode in ("admm", "drs"):  # the minimiser of f + g with prox_{g/mu} = C I
        return np.linalg.solve(ata + MU * (1 - C) / C * eye, aty)
    if mode in ("pgd", "fista"):  # v = C (v - delta grad f(v))
        return np.linalg.solve(ata + (1 - C) / (C * DELTA) * eye, aty)
    if mode == "red":  # A^T (A x - y) + mu (x - C x) = 0
        return np.linalg.solve(ata + MU * (1 - C) * eye, aty)
    raise AssertionError(mode)


def config(mode, iters, **kw):
    kw = {"keep_images": False, "sigma": 0.05, "mu": MU, **kw}
    if "delta" in algorithms.get(mode).numbers:
        kw.setdefault("delta", DELTA)
    return dp.make_config(mode, iters, **kw)


@pytest.mark.parametrize("opname", ["blur", "blur_bayer"])
@pytest.mark.parametrize("mode", KNOWN)
def test_fixed_point_equals_the_dense_minimiser(mode, opname):
    op, c = operators()[opname]
    x = image(c=c)
    y = np.asarray(op(jnp.asarray(x)))
    a = dense(op, x.shape)
    out, traj = dp.restore({"prior": linear_net(channels=c), "A": op}, y,
                           config(mode, 300, clip_output=False))
    ref = closed_form(mode, a, y.reshape(-1)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-4)
    if opname == "blur_bayer":  # no closed form: the exact x-step ran CG, residual recorded
        res = np.asarray(traj.x_residual) if traj.x_residual is not None else None
        if algorithms.get(mode).traits.x_kind in ("prox", "choose"):
            assert res is not None and res.shape == (300, 1) and res.max() < 1e-4


@pytest.mark.parametrize("opname", ["blur_bayer", "fourier"])
def test_forward_only_operator_adjoint_and_cg_solve(opname):
    op, c = operators()[opname]
    shape = (1, 8, 8, c)
    a = dense(op, shape)
    y = np.asarray(op(jnp.asarray(image(c=c))))
    at = dense(op.adjoint, y.shape)
    np.testing.assert_allclose(at, a.T, atol=1e-5)
    rhs = np.random.RandomState(1).rand(*shape).astype(np.float32)
    x, res = op.normal_solve_cg(jnp.asarray(rhs), 0.3)
    ref = np.linalg.solve(a.T @ a + 0.3 * np.eye(a.shape[1]), rhs.reshape(-1))
    np.testing.assert_allclose(np.asarray(x).reshape(-1), ref, atol=1e-4)
    assert float(res[0]) < 1e-4


@pytest.mark.parametrize("mode", KNOWN)
def test_every_algorithm_with_every_operator(mode):
    """A few iterations of each algorithm with each operator (built-in fast paths and forward-
    only ones), the x8 ensemble and the stopping rule: finite, the right shape, and the x8
    ensemble of an equivariant denoiser equals the plain loop."""
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    cases = dict(operators())
    cases["downsample"] = (Downsample.from_kernel(k, 2, 1), 1)
    mask = (np.random.RandomState(4).rand(1, 8, 8, 1) > 0.3).astype(np.float32)
    cases["mask"] = (Mask.from_mask(mask, 1), 1)
    for name, (op, c) in cases.items():
        x = image(c=c)
        y = np.asarray(op(jnp.asarray(x)))
        params = {"prior": linear_net(channels=c), "A": op}
        out, traj = dp.restore(params, y, config(mode, 3, stop_tol=1e-6, ensemble=True))
        assert out.shape == x.shape and np.isfinite(np.asarray(out)).all(), name
        assert np.asarray(traj.active)[0].all(), name  # the stopping rule ran
        if name == "blur":
            plain, _ = dp.restore(params, y, config(mode, 3))
            np.testing.assert_allclose(np.asarray(out), np.asarray(plain), atol=1e-5)


@pytest.mark.parametrize("mode", NEW)
def test_unknown_boundary_restores_the_frame(mode):
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    x = image(16, 16)
    y = np.asarray(Blur.from_kernel(k, 1)(jnp.asarray(x)))[:, 1:-1, 1:-1]
    op = Blur.from_kernel(k, 1, boundary="unknown")
    out, _ = dp.restore({"prior": linear_net(c=0.99), "A": op}, y, config(mode, 10))
    assert out.shape == y.shape
    assert float(np.mean((np.asarray(out) - x[:, 1:-1, 1:-1]) ** 2)) < float(
        np.mean((y - x[:, 1:-1, 1:-1]) ** 2))


@pytest.mark.parametrize("mode", NEW)
def test_gradient_through_each_algorithm(mode):
    """d loss / d sigma-or-mu by jax.grad equals a central finite difference; a new number does
    not recompile."""
    op, c = operators()["blur"]
    x = image()
    y = jnp.asarray(np.asarray(op(jnp.asarray(x))))
    name = "mu" if "mu" in algorithms.get(mode).numbers else "delta"
    cfg = config(mode, 4)

    def loss(val):
        out, _ = dp.restore({"prior": linear_net(), "A": op}, y, cfg.with_values(**{name: val}))
        return jnp.mean((out - x) ** 2)

    v0 = jnp.float32(0.7)
    g = float(jax.grad(loss)(v0))
    eps = 1e-2
    fd = float((loss(v0 + eps) - loss(v0 - eps)) / (2 * eps))
    assert abs(g - fd) <= 5e-2 * abs(fd) + 1e-7, (g, fd)
    before = dp.compile_count()
    loss(jnp.float32(0.5))
    assert dp.compile_count() == before


def test_non_linear_operator_is_refused():
    @struct.dataclass
    class Offset(Operator):
        b: float = struct.field(pytree_node=False, default=0.1)

        def __call__(self, x):
            return x + self.b

    y = image()
    with pytest.raises(ValueError, match="not linear.*Fix"):
        dp.restore({"prior": linear_net(), "A": Offset()}, y, config("admm", 2))

    class NotAPytree(Operator):
        def __call__(self, x):
            return x

    with pytest.raises(TypeError, match="struct.dataclass"):
        dp.restore({"prior": linear_net(), "A": NotAPytree()}, y, config("admm", 2))


def test_missing_capability_and_domains_are_clear_errors():
    op, _ = operators()["blur_bayer"]
    y = np.asarray(op(jnp.asarray(image(c=3))))
    cfg = dp.make_config("calibrated", 2, noise_level=0.01)
    with pytest.raises(ValueError, match="needs an operator with \\['calibrate'\\]"):
        dp.restore({"prior": linear_net(channels=3), "A": op}, y, cfg)
    with pytest.raises(ValueError, match="solves the data term: x_step must be one of"):
        dp.make_config("admm", 2, noise_level=0.01, x_step="gradient")
    with pytest.raises(ValueError, match=r"delta=.*outside its domain"):
        dp.make_config("pgd", 2, noise_level=0.01, delta=3.0)
    with pytest.raises(ValueError, match="inertia is not a number of mode 'drs'"):
        dp.make_config("drs", 2, noise_level=0.01, inertia=0.5)
    with pytest.raises(ValueError, match="mode='pgd' fixes"):
        dp.make_config("pgd", 2, noise_level=0.01, x_step="exact")


def test_cg_that_misses_its_tolerance_warns():
    op, c = operators()["blur_bayer"]
    op = op.__class__(blur=op.blur, m=op.m)
    y = np.asarray(op(jnp.asarray(image(c=c))))

    @struct.dataclass
    class Short(BlurBayer):
        cg_maxiter = 1

    short = Short(blur=op.blur, m=op.m)
    with pytest.warns(RuntimeWarning, match="cg_maxiter"):
        _, traj = dp.restore({"prior": linear_net(channels=c), "A": short}, y,
                             config("admm", 2, mu=1e-3))
    assert np.asarray(traj.x_residual).max() > 10 * Short.cg_tol
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dp.restore({"prior": linear_net(channels=c), "A": op}, y, config("admm", 2))


def test_no_mode_string_is_compared_outside_its_module():
    """A mode's name appears in comparisons only inside dynpnp_jax/algorithms/ (the solver and
    the CLIs ask the registry's traits)."""
    root = Path(dp.__file__).parent
    names = "|".join(algorithms.ALGORITHMS)
    pattern = re.compile(r"mode\w*[\"']?\)?\]?\s*(==|!=|not in|in)\s*\(?[^\n#]*[\"'](%s)[\"']"
                         % names)
    offenders = []
    for path in root.rglob("*.py"):
        if "algorithms" in path.parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
