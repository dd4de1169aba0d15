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
    with pytest.raises(ValueError, match="expected scales in"):
        dp.make_config("calibrated", noise_level=0.01, calib_stages=(("scale", (0.0, 1.0)),))


# ------------------------------------------------------------------------------ likelihood
def _power_law_image(n=128, alpha=1.0, seed=0):
    """A stationary Gaussian field whose spectrum is exactly the criterion's prior c / D^alpha."""
    rng = np.random.RandomState(seed)
    d = np.asarray(cal._freq_weight(n, n), np.float64)
    amp = np.where(d > 0, np.power(np.where(d > 0, d, 1.0), -alpha / 2), 0.0)
    x = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * amp))
    return (0.5 + 0.08 * x / x.std()).astype(np.float32)


def _blur(x, k, noise, seed=1):
    op = Blur.from_kernel(k, 1)
    y = np.asarray(op(jnp.asarray(x)[None, ..., None]))
    return (y + np.random.RandomState(seed).normal(0, noise, y.shape)).astype(np.float32)


def test_likelihood_prefers_the_true_gaussian_width():
    """On an image drawn from the criterion's own prior, the true width has the lowest score."""
    y = _blur(_power_law_image(), kernels.gaussian(1.5, size=25), 0.01)
    widths = (1.0, 1.25, 1.5, 1.75, 2.0)
    sc = [float(cal.likelihood_score(jnp.asarray(y), jnp.asarray(kernels.gaussian(w, size=25))[None],
                                     1e-4)[0]) for w in widths]
    assert int(np.argmin(sc)) == 2, sc
    assert sc[0] > sc[2] + 1e-3 and sc[-1] > sc[2] + 1e-3  # separated, not a tie


def test_likelihood_maximises_out_the_image_statistics():
    """The Newton fit of (log c, alpha) reaches the optimum of a brute-force grid."""
    y = _blur(_power_law_image(64, alpha=1.3), kernels.gaussian(1.2, size=15), 0.01)
    k = kernels.gaussian(1.2, size=15)
    got = float(cal.likelihood_score(jnp.asarray(y), jnp.asarray(k)[None], 1e-4)[0])
    # brute force in numpy, float64
    yy = y[0, ..., 0].astype(np.float64)
    n = yy.size
    y2 = np.abs(np.fft.fft2(yy - yy.mean())) ** 2 / n
    k2 = np.abs(np.fft.fft2(np.roll(cal.center_kernel(k, 64), (-32, -32), (0, 1)))) ** 2
    d = np.asarray(cal._freq_weight(64, 64), np.float64)
    m = d > 0
    var = 1e-4 + cal.QUANT_VAR
    best = np.inf
    for a in np.linspace(0.8, 1.8, 51):
        for c in np.geomspace(1e-6, 1e-1, 201):
            s = k2[m] * c / d[m] ** a + var
            best = min(best, np.sum(y2[m] / s + np.log(s)) / n)
    assert got <= best + 1e-5, (got, best)
    assert got >= best - 1e-3  # and it is the same optimum, not a lower bound gone wrong


def test_estimate_kernel_undoes_a_rotation_and_keeps_a_right_kernel():
    truth = kernels.motion(13, 30.0)
    y = _blur(_power_law_image(), truth, 0.01)
    given = kernels.rotate(truth, 10.0)  # kernels.rotate(k, a) is warp_kernel(k, angle=-a)
    k, th = cal.estimate_kernel(y, given, 0.01)
    assert abs(float(th["angle"][0]) - 10.0) <= 2.5 and abs(float(th["scale"][0]) - 1) < 0.1, th
    assert not bool(th["kept"][0]) and float(th["gain"][0]) > 0.01
    err = lambda kk: float(cal.kernel_distance(jnp.asarray(kk)[None] if kk.ndim == 2 else kk,  # noqa: E731
                                                jnp.asarray(truth)[None])[0])
    assert err(k) < 0.6 * err(np.asarray(given, np.float32))  # bilinear re-rotation blurs a thin line
    # a right kernel is kept when no candidate beats it by the margin
    k2, th2 = cal.estimate_kernel(y, truth, 0.01, margin=1.0)
    assert bool(th2["kept"][0]) and float(th2["gain"][0]) == 0.0
    np.testing.assert_allclose(np.asarray(k2[0]), cal.center_kernel(truth, k2.shape[-1]), atol=1e-6)
    with pytest.raises(ValueError, match="k_given"):
        cal.estimate_kernel(y, -truth, 0.01)
    with pytest.raises(ValueError, match="noise_level"):
        cal.estimate_kernel(y, truth, 2.55)
    with pytest.raises(ValueError, match="margin: expected a finite number >= 0"):
        cal.estimate_kernel(y, truth, 0.01, margin=-1.0)
    with pytest.raises(ValueError, match=r"size=5 is smaller than k_given"):
        cal.estimate_kernel(y, truth, 0.01, size=5)


def test_likelihood_on_a_frame():
    """A frame of a larger image drawn from the prior (no periodic boundary): scored on its
    periodic component (boundary='unknown') the true Gaussian width wins; the estimate recovers
    it."""
    big = _power_law_image(160, seed=3)
    y = _blur(big, kernels.gaussian(1.5, size=25), 0.01)[:, 16:144, 16:144]  # 128x128 frame
    widths = (1.0, 1.25, 1.5, 1.75, 2.0)
    sc = [float(cal.likelihood_score(jnp.asarray(y), jnp.asarray(kernels.gaussian(w, size=25))[None],
                                     1e-4, frame=True)[0]) for w in widths]
    assert int(np.argmin(sc)) == 2, sc
    k, th = cal.estimate_kernel(y, kernels.gaussian(2.0, size=25), 0.01, boundary="unknown")
    assert not bool(th["kept"][0])
    assert float(cal.kernel_distance(k, jnp.asarray(cal.center_kernel(
        kernels.gaussian(1.5, size=25), k.shape[-1]))[None])[0]) < 0.1
    with pytest.raises(ValueError, match="boundary"):
        cal.estimate_kernel(y, kernels.gaussian(2.0, size=25), 0.01, boundary="wrap")


def test_calibration_argument_errors():
    with pytest.raises(ValueError, match="calib_criterion"):
        dp.make_config("calibrated", noise_level=0.01, calib_criterion="magic")
    with pytest.raises(ValueError, match="calib_margin"):
        dp.make_config("calibrated", noise_level=0.01, calib_margin=-1.0)
    from test_transform import sigma_net

    y = np.full((1, 48, 48, 1), 0.5, np.float32)
    cfg = dp.make_config("calibrated", iters=1, noise_level=0.01, calib_size=9)
    with pytest.raises(ValueError, match=r"calib_size=9 is smaller than the given kernel \(25x25\)"):
        dp.restore({"prior": sigma_net(), "A": Blur.from_kernel(kernels.gaussian(1.2), 1)}, y, cfg)


def test_equal_error_margin():
    from dynpnp_jax.calibration_margins import equal_error_margin

    right = np.array([0.0, 0.001, 0.002, 0.003, 0.05])
    wrong = np.array([0.002, 0.01, 0.02, 0.03, 0.04])
    m = equal_error_margin(right, wrong)
    assert np.mean(right > m) == np.mean(wrong <= m) == 0.2
    assert equal_error_margin([0.0, 0.0], [1.0, 2.0]) == 0.0  # separable: nothing right moves


# ---- hostile input to estimate_kernel: refused before anything is compiled --------------------

@pytest.mark.parametrize("kw,match", [
    ({"stages": (("scale", (-1.0, 1.0)),)}, r"^stages\[0\]: expected scales in \[0\.1, 10\].*fix:"),
    ({"stages": (("angle", (float("nan"), 0.0)),)}, r"^stages\[0\]: expected finite angle values.*fix:"),
    ({"stages": (("width", (-0.5, 0.0)),)}, r"^stages\[0\]: expected widths in \[0, 50\].*fix:"),
    ({"stages": (("blur", (1.0,)),)}, r"^stages\[0\]: unknown stage parameter 'blur'; expected one of "
                                      r"'scale', 'angle', 'width'; fix:"),
    ({"stages": (("angle", "fine"),)}, r"^stages\[0\]: expected values \(numbers\) or 'refine'"),
    ({"stages": (("angle", ()),)}, r"^stages\[0\]: expected 1\.\.256 numbers"),
    ({"stages": (("angle", tuple(range(300))),)}, r"^stages\[0\]: expected 1\.\.256 numbers"),
    ({"stages": ("angle", (0.0, 1.0))}, r"^stages\[0\]: expected a \(param, values\) pair"),
    ({"stages": 5}, r"^stages: expected a tuple of \(param, values\) stages.*fix:"),
    ({"stages": ()}, r"^stages: expected 1\.\.32 stages"),
    ({"grid": 100000}, r"^grid: expected an integer 2\.\.64 .*fix: leave the default 9"),
    ({"grid": 1}, r"^grid: expected an integer 2\.\.64"),
    ({"size": "abc"}, r"^size: expected an integer >= 0"),
    ({"size": 41}, r"^size: size is 41x41, larger than the 32x32 images y.*fix: pass size= between 9 and 32"),
    ({"margin": "abc"}, r"^margin: expected a number, got 'abc'; fix:"),
    ({"noise_level": "abc"}, r"^noise_level: expected a number, got 'abc'; fix:"),
])
def test_estimate_kernel_refuses_bad_arguments(kw, match):
    y = np.full((1, 32, 32, 1), 0.5, np.float32)
    args = {"noise_level": 0.01, **kw}
    with pytest.raises(ValueError, match=match):
        cal.estimate_kernel(y, kernels.gaussian(1.0, 9), **args)


def test_estimate_kernel_kernel_and_image_sizes():
    y = np.full((2, 32, 32, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"^k_given: a 41x41 kernel is larger than the 32x32 images y.*fix:"):
        cal.estimate_kernel(y, kernels.gaussian(1.0, 41), 0.01)
    with pytest.raises(ValueError, match=r"^k_given: expected one kernel or one per image \(B=2\), got 3"):
        cal.estimate_kernel(y, np.stack([kernels.gaussian(1.0, 9)] * 3), 0.01)
    # the default support (25 from a 9x9 kernel) does not fit 16x16 images: say so, and size= fits
    with pytest.raises(ValueError, match=r"^size: the support derived from k_given .* 25x25, larger than "
                                         r"the 16x16 images y.*size= between 9 and 16"):
        cal.estimate_kernel(y[:, :16, :16], kernels.gaussian(1.0, 9), 0.01)
    k, th = cal.estimate_kernel(y[:, :16, :16], kernels.gaussian(1.0, 9), 0.01, size=15,
                                stages=(("width", (0.0, 0.5)),))
    assert k.shape == (2, 15, 15) and np.isfinite(np.asarray(k)).all()


def test_check_stages_accepts_lists_and_matches_tuples():
    """A stage list (not hashable: jit's static arguments once refused it with a raw TypeError) is
    converted; the search with it equals the search with the same stages as tuples."""
    assert cal.check_stages([["angle", [-5, 0, 5]], ["scale", "refine"]]) == (
        ("angle", (-5.0, 0.0, 5.0)), ("scale", "refine"))
    assert cal.check_stages(cal.default_stages(False)) == cal.default_stages(False)
    truth = kernels.gaussian(1.5, size=15)
    y = _blur(_power_law_image(64), truth, 0.01)
    given = kernels.gaussian(2.0, size=15)
    k1, th1 = cal.estimate_kernel(y, given, 0.01, stages=[("scale", [0.6, 0.75, 1.0])])
    k2, th2 = cal.estimate_kernel(y, given, 0.01, stages=(("scale", (0.6, 0.75, 1.0)),))
    np.testing.assert_array_equal(np.asarray(k1), np.asarray(k2))
    assert float(th1["scale"][0]) == float(th2["scale"][0]) == 0.75


def test_calibration_margins_cli_refuses_bad_arguments(capsys):
    from dynpnp_jax.calibration_margins import main

    for argv, match in ((["--limit", "-1"], "--limit: expected a number of images >= 0"),
                        (["--noise", "nan"], "--noise: expected noise levels on the 8-bit scale"),
                        (["--quantile", "2"], "--quantile: expected a fraction in [0, 1]")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and match in capsys.readouterr().err


@pytest.mark.slow
def test_margin_statistics_separates_right_from_wrong():
    """The moved margin measurement on one synthetic power-law image: the search "improves" a
    wrong (stretched) kernel by more than the right one."""
    from dynpnp_jax.calibration_margins import margin_statistics

    img = np.uint8(np.round(np.clip(_power_law_image(64), 0, 1) * 255))
    st = margin_statistics([img], [kernels.gaussian(1.5, 9)], [2.55], wrong=(("scale", 1.3),),
                           progress=False)
    assert len(st["right"]) == 1 and len(st["wrong"]["scale=1.3"]) == 1
    assert st["wrong"]["scale=1.3"][0] > st["right"][0] + 0.002, st
