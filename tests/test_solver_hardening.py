"""Bad input to make_config / restore / dpir_schedule / the operators: a clear error naming the
argument and the fix, and no diverged run returned as a result (each case was found by trying
the library as a hostile user would)."""
import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax import solver
from dynpnp_jax.operators import Blur, Mask
from test_algorithms import image, linear_net
from test_solver import tiny_net


@pytest.mark.parametrize("kw, match", [
    (dict(keep_images="no"), "keep_images must be True or False"),
    (dict(clip_output="False"), "clip_output must be True or False"),
    (dict(ensemble=1), "ensemble must be True or False"),
    (dict(stop_tol=[1e-3, 1e-3]), "stop_tol must be a single number"),
    (dict(stop_tol="1e-3"), "stop_tol must be a number"),
    (dict(iters=10 ** 6), "iters=1000000 is more than 1000"),
    (dict(x_step="cg", cg_iters=10 ** 9), "cg_iters must be an integer >= 1 and <= 1000"),
])
def test_gradient_mode_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.make_config("gradient", **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(noise_level="abc"), "noise_level must be a number"),
    (dict(noise_level=float("nan")), "noise_level must be finite"),
    (dict(noise_level=-0.01), "noise_level=-0.01 is outside"),
    (dict(noise_level=0.01, calib_stages=5), "calib_stages: expected"),
    (dict(noise_level=0.01, calib_stages=(("bogus", (1.0,)),)), "unknown stage parameter"),
])
def test_calibrated_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.make_config("calibrated", 4, **kw)


def test_calibrated_with_explicit_schedule_still_checks_the_noise_level():
    """Given sigma and mu, the noise level is not used by the schedule but by the kernel
    search: a NaN or negative one must not silently skip the calibration."""
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="noise_level"):
            dp.make_config("calibrated", 2, sigma=0.05, mu=0.1, noise_level=bad)


@pytest.mark.parametrize("kw, match", [
    (dict(sigma_max=0.0), "sigma_max must be in"),
    (dict(sigma_max=-1.0), "sigma_max must be in"),
    (dict(weight=-0.5), "weight must be in"),
    (dict(weight=float("nan")), "weight must be finite"),
])
def test_dpir_schedule_domain(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.dpir_schedule(8, 0.01, **kw)
    sigma, rho = dp.dpir_schedule(8, 0.01)
    assert (sigma > 0).all() and (rho > 0).all()


def test_operators_that_observe_nothing_are_refused():
    y = image()
    cfg = dp.make_config("dpir", 2, noise_level=0.01)
    with pytest.raises(ValueError, match="all zero"):
        dp.restore({"prior": linear_net(), "A": Blur(k=np.zeros((1, 3, 3), np.float32))}, y, cfg)
    with pytest.raises(ValueError, match="observe no pixel"):
        dp.restore({"prior": linear_net(), "A": Mask(m=np.zeros((1, 8, 8, 1), np.float32))},
                   y, cfg)
    with pytest.raises(ValueError, match="observe no pixel"):
        Mask.from_mask(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="k\\[..., 0\\]"):
        Blur.from_kernel(np.ones((5, 5, 1), np.float32) / 25)
    with pytest.raises(ValueError, match="2-D"):
        Blur.from_kernel(np.ones(5, np.float32) / 5)


def test_diverged_runs_raise_instead_of_scoring():
    """An unstable A-step (authors, alpha=1) makes the operator non-finite; the result, clipped
    to [0, 1], would look like an image: restore raises instead."""
    rng = np.random.RandomState(0)
    clean = rng.uniform(0.2, 0.8, (1, 16, 24, 1)).astype(np.float32)
    y = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    with pytest.raises(FloatingPointError, match="diverged.*alpha"):
        dp.restore({"prior": tiny_net()}, y, dp.make_config("authors", 4, alpha=1.0))


def test_result_far_outside_the_data_raises():
    """A result far outside [0, 1] and y before clipping (here: a 'denoiser' that multiplies by
    5, iterated) is refused; the same loop with a sane prior is returned."""
    y = image()
    with pytest.raises(FloatingPointError, match="far outside the data"):
        dp.restore({"prior": linear_net(c=5.0)}, y, dp.make_config("static", 4))
    out, traj = dp.restore({"prior": linear_net(c=0.9)}, y, dp.make_config("static", 4))
    assert np.asarray(traj.out_range).shape == (1, 2)
    solver.check_converged(traj, None, y)  # no error
