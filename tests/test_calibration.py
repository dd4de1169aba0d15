"""Kernel self-calibration: the kernel family, the projected A-step, the calibrated mode's search."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax import calibration as cal
from dynpnp_jax import kernels
from dynpnp_jax.operators import Blur


def _moments(k):
    k = np.asarray(k, np.float64)
    c = k.shape[0] // 2
    u = np.arange(k.shape[0]) - c
    uu, vv = np.meshgrid(u, u, indexing="ij")
    m = k.sum()
    mr, mc = (k * uu).sum() / m, (k * vv).sum() / m
    return mr, mc, (k * (uu - mr) ** 2).sum() / m, (k * (vv - mc) ** 2).sum() / m


def test_warp_identity_recentres_exactly():
    k = kernels.levin(3)
    size = 41
    out = np.asarray(cal.warp_kernel(jnp.asarray(k), size))
    np.testing.assert_allclose(out, cal.center_kernel(k, size), atol=1e-6)


def test_warp_scales_and_blurs_a_gaussian():
    g = kernels.gaussian(1.2, size=25)
    for scale in (0.8, 1.5):
        out = cal.warp_kernel(jnp.asarray(g), 31, scale=scale)
        var = _moments(out)[2]
        # bilinear resampling adds a little variance (about 1/6 px^2 at scale 1)
        assert abs(np.sqrt(var) - 1.2 * scale) < 0.12, (scale, np.sqrt(var))
    out = cal.warp_kernel(jnp.asarray(g), 31, width=1.0)
    assert abs(np.sqrt(_moments(out)[2]) - np.hypot(1.2, 1.0)) < 0.05
    assert float(out.min()) >= 0 and abs(float(out.sum()) - 1) < 1e-5


def test_warp_rotates():
    line = np.zeros((15, 15))
    line[7, 2:13] = 1
    line /= line.sum()
    out = np.asarray(cal.warp_kernel(jnp.asarray(line), 15, angle=90.0))
    _, _, vr, vc = _moments(out)
    assert vr > 5 * vc  # a horizontal line became vertical


def test_warp_is_differentiable_in_its_parameters():
    g = jnp.asarray(kernels.gaussian(1.2, size=25))
    f = lambda s: cal.warp_kernel(g, 25, scale=s)[12, 12]  # noqa: E731
    d = jax.grad(f)(1.3)
    fd = (f(1.3 + 1e-3) - f(1.3 - 1e-3)) / 2e-3
    np.testing.assert_allclose(d, fd, rtol=2e-2)
    assert float(d) < 0  # a wider kernel has a lower peak


def test_project_simplex_matches_a_reference():
    rng = np.random.RandomState(0)
    k = rng.normal(0, 0.2, (3, 5, 5)).astype(np.float32)
    p = np.asarray(cal.project_simplex(jnp.asarray(k)))
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=(1, 2)), 1, atol=1e-5)
    # the projection is the closest point of the simplex: no random simplex point is closer
    for b in range(3):
        d0 = np.sum((p[b] - k[b]) ** 2)
        for _ in range(200):
            q = rng.dirichlet(np.ones(25) * 0.3).reshape(5, 5)
            assert np.sum((q - k[b]) ** 2) >= d0 - 1e-6


def test_kernel_a_step_stays_physical():
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.uniform(0, 1, (2, 24, 24, 1)).astype(np.float32))
    op = Blur.from_kernel(kernels.gaussian(1.0, size=7), 2)
    y = Blur.from_kernel(kernels.gaussian(1.6, size=7), 2)(x)
    new = cal.a_step_kernel(op, x, x, y, jnp.zeros_like(y), jnp.asarray([1e-3, 1e-3]))
    k = np.asarray(new.k)
    assert (k >= 0).all()
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1, atol=1e-5)
    loss = lambda o: float(jnp.sum((o(x) - y) ** 2))  # noqa: E731
    assert loss(new) < loss(op)  # on the clean image, the step moves towards the true kernel


def test_calibrated_mode_runs_and_records(tmp_path):
    """Mechanics on a tiny problem (the search and the full loop compile and run; the kernel and
    its parameters are recorded; the chosen kernel is a kernel)."""
    from test_transform import sigma_net

    rng = np.random.RandomState(0)
    clean = rng.uniform(0.2, 0.8, (1, 48, 48, 1)).astype(np.float32)
    true = Blur.from_kernel(kernels.gaussian(1.6, size=25), 1)
    y = np.asarray(true(jnp.asarray(clean))) + rng.normal(0, 0.01, clean.shape).astype(np.float32)
    given = Blur.from_kernel(kernels.gaussian(1.2, size=25), 1)
    cfg = dp.make_config("calibrated", iters=2, noise_level=0.01, calib_iters=2, calib_crop=48,
                         calib_stages=(("scale", (0.8, 1.0, 1.33)),))
    out, traj = dp.restore({"prior": sigma_net(), "A": given}, y.astype(np.float32), cfg,
                           clean=clean, true_A=true)
    assert traj.kernel.shape == (1, 39, 39) and traj.kernel_err.shape == (2, 1)  # 25 x 1.33 x 1.15
    k = np.asarray(traj.kernel)
    assert (k >= 0).all() and abs(k.sum() - 1) < 1e-4
    assert float(traj.calib["scale"][0]) in (pytest.approx(0.8), pytest.approx(1.0),
                                             pytest.approx(1.33))
    with pytest.raises(ValueError, match="Blur"):
        dp.restore({"prior": sigma_net()}, y.astype(np.float32), cfg)
    with pytest.raises(ValueError, match="noise_level"):
        dp.make_config("calibrated")
    with pytest.raises(ValueError, match="scales must be > 0"):
        dp.make_config("calibrated", noise_level=0.01, calib_stages=(("scale", (0.0, 1.0)),))
