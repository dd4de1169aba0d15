"""restore(): modes, trajectory, no recompilation, input validation, differentiability."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax.zoo import DnCNN


def tiny_net(channels=1, seed=0, name="tiny"):
    module = DnCNN(depth=3, channels=channels, features=8)
    variables = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, channels)))
    variables = jax.tree_util.tree_map(lambda a: 0.3 * a, variables)
    return dp.Network(module=module, variables=variables, kind="residual", channels=channels,
                      name=name)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    clean = rng.uniform(0.2, 0.8, (2, 16, 24, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    return noisy, clean


@pytest.fixture(scope="module")
def net():
    return tiny_net()


def test_prior_mode_is_the_network(net, data):
    y, _ = data
    out, traj = dp.restore({"prior": net}, y, dp.make_config("prior"))
    np.testing.assert_allclose(out, np.clip(net.prior(jnp.asarray(y)), 0, 1), atol=1e-6)
    assert traj.v.shape == (1,) + y.shape


def test_static_iterates_the_network(net, data):
    y, _ = data
    out, traj = dp.restore({"prior": net}, y, dp.make_config("static", iters=3))
    v = jnp.asarray(y)
    for t in range(3):
        v = net.prior(v)
        np.testing.assert_allclose(traj.v[t], v, atol=1e-5)


def test_hqs_exact_step(net, data):
    y, _ = data
    mu = 0.5
    out, traj = dp.restore({"prior": net}, y, dp.make_config("hqs", iters=2, mu=mu))
    v1 = net.prior(jnp.asarray(y))
    x2 = (y + mu * v1) / (1 + mu)
    np.testing.assert_allclose(traj.x[1], x2, atol=1e-5)
    np.testing.assert_allclose(traj.v[1], net.prior(x2), atol=1e-5)


def test_authors_mode_by_hand(net, data):
    """The ``authors`` mode of docs/algorithm.md written out with numpy for T=2."""
    y, _ = data
    eta, delta, rho = 0.1, 0.01, 1e-3
    out, traj = dp.restore({"prior": net}, y, dp.make_config("authors", iters=2, delta=delta,
                                                             mu=eta, alpha=rho))
    lam = 1 - delta * (1 + eta)
    h = y.shape[1]
    g = np.asarray(net.noise(jnp.asarray(y)))
    for b in range(y.shape[0]):
        a = np.eye(h)
        x = y[b, ..., 0].astype(np.float64)
        v = np.zeros_like(x)
        yb = y[b, ..., 0]
        for _ in range(2):
            x = lam * x + delta * a.T @ yb + delta * v
            v = np.asarray(net.prior(jnp.asarray(x, jnp.float32)[None, ..., None]))[0, ..., 0]
            s = (yb - g[b, ..., 0]) + ((v.T @ a) @ v)[:h, :]
            a = a - rho * s[:, :h]
        np.testing.assert_allclose(out[b, ..., 0], np.clip(v, 0, 1), atol=2e-5)


@pytest.mark.parametrize("x_step,operator", [("gradient", "gain"), ("exact", "gain"),
                                             ("fft", "conv"), ("cg", "conv"),
                                             ("gradient", "rowmix"), ("gradient", "identity")])
def test_gradient_mode_variants(net, data, x_step, operator):
    y, clean = data
    cfg = dp.make_config("gradient", iters=3, delta=0.5, mu=1.0, alpha=1e-3, x_step=x_step,
                         operator=operator, kernel_size=3)
    out, traj = dp.restore({"prior": net}, y, cfg, clean=clean)
    assert out.shape == y.shape and traj.psnr.shape == (3, 2) and traj.a_loss.shape == (3, 2)
    assert np.all(np.isfinite(np.asarray(out)))
    if operator != "identity":
        # the A-step moves A away from the identity and lowers the A-loss over iterations
        assert float(traj.a_dev[-1].min()) > 0
        assert np.all(np.asarray(traj.a_loss[-1]) <= np.asarray(traj.a_loss[0]) + 1e-7)


def test_trajectory_has_t_entries_and_psnr(net, data):
    y, clean = data
    out, traj = dp.restore({"prior": net}, y, dp.make_config("authors", iters=4), clean=clean)
    assert traj.x.shape == traj.v.shape == (4,) + y.shape
    mse = np.mean((np.clip(np.asarray(traj.v[-1]), 0, 1) - clean) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(traj.psnr[-1], -10 * np.log10(mse), rtol=1e-4)
    out2, traj2 = dp.restore({"prior": net}, y, dp.make_config("authors", iters=4,
                                                               keep_images=False))
    assert traj2.x is None and traj2.psnr is None
    np.testing.assert_allclose(out, out2, atol=1e-6)


def test_new_numbers_do_not_recompile(net, data):
    y, clean = data
    dp.restore({"prior": net}, y, dp.make_config("authors", iters=2, delta=0.01), clean=clean)
    before = dp.trace_count()
    for delta, mu, alpha in [(0.02, 0.2, 1e-4), (0.005, [0.1, 0.3], [1e-5, 2e-5])]:
        cfg = dp.make_config("authors", iters=2, delta=delta, mu=mu, alpha=alpha)
        out, _ = dp.restore({"prior": net}, y, cfg, clean=clean)
    # other weights of the same architecture: no recompilation either
    dp.restore({"prior": tiny_net(seed=1)}, y, cfg, clean=clean)
    assert dp.trace_count() == before
    dp.restore({"prior": net}, y, dp.make_config("authors", iters=3), clean=clean)
    assert dp.trace_count() == before + 1  # structure changed: one new trace


def test_hyperparameters_are_differentiable(net, data):
    y, clean = data

    def loss(delta):
        cfg = dp.make_config("gradient", iters=2, mu=1.0, alpha=1e-3).with_values(delta=delta)
        out, _ = dp.restore({"prior": net}, jnp.asarray(y), cfg)
        return jnp.mean((out - clean) ** 2)

    d0 = jnp.float32(0.3)
    grad = jax.grad(loss)(d0)
    eps = 1e-2
    fd = (loss(d0 + eps) - loss(d0 - eps)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=5e-2, atol=1e-6)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((16, 24, 1), np.float32), "rank 4"),
    (np.zeros((1, 16, 24, 1), np.uint8), "float32"),
    (np.full((1, 16, 24, 1), np.nan, np.float32), "NaN"),
    (np.full((1, 16, 24, 1), 200.0, np.float32), r"\[0, 1\]"),
])
def test_bad_input(net, bad, match):
    with pytest.raises(ValueError, match=match):
        dp.restore({"prior": net}, bad, dp.make_config("prior"))


def test_bad_channels_and_config(data):
    y, _ = data
    color = tiny_net(channels=3)
    with pytest.raises(ValueError, match="channel"):
        dp.restore({"prior": color}, y, dp.make_config("prior"))
    portrait = np.zeros((1, 24, 16, 1), np.float32)
    with pytest.raises(ValueError, match="rotate"):
        dp.restore({"prior": tiny_net()}, portrait, dp.make_config("authors"))
    with pytest.raises(ValueError, match="mode must be"):
        dp.make_config("bogus")  # (admm is an algorithm now)
    with pytest.raises(ValueError, match="one value per iteration"):
        dp.make_config("authors", iters=2, delta=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="fixes"):
        dp.make_config("authors", operator="gain")
    with pytest.raises(ValueError, match="fft"):
        dp.make_config("gradient", x_step="fft", operator="gain")
    with pytest.raises(TypeError, match="prior"):
        dp.restore({"net": tiny_net()}, y, dp.make_config("prior"))


def test_gray_network_runs_per_channel(net):
    y = np.random.RandomState(1).uniform(0, 1, (1, 16, 24, 3)).astype(np.float32)
    out, _ = dp.restore({"prior": net}, y, dp.make_config("prior"))
    for c in range(3):
        np.testing.assert_allclose(out[..., c:c + 1],
                                   np.clip(net.prior(jnp.asarray(y[..., c:c + 1])), 0, 1), atol=1e-6)


def test_tiled_network_matches_untiled(net, data):
    """A 3-conv network sees 3 pixels around each output: the default tiling (halo = receptive
    field) is exact, and tiles or halos smaller than the receptive field are refused."""
    y, _ = data
    y = np.tile(y, (1, 3, 2, 1))  # 48 x 48
    net = net.replace(receptive_field=3)
    tiled = net.tiled(16)
    assert (tiled.tile_halo, tiled.tile_overlap) == (3, 8)
    np.testing.assert_allclose(tiled.prior(jnp.asarray(y)), net.prior(jnp.asarray(y)), atol=1e-5)
    out_t, _ = dp.restore({"prior": tiled}, y, dp.make_config("authors", iters=2))
    out, _ = dp.restore({"prior": net}, y, dp.make_config("authors", iters=2))
    np.testing.assert_allclose(out_t, out, atol=1e-5)
    with pytest.raises(ValueError, match="tile"):
        net.replace(multiple=8).tiled(12)
    with pytest.raises(ValueError, match="tile=3 is too small"):
        net.tiled(3)
    with pytest.raises(ValueError, match="receptive field"):
        net.tiled(32, halo=2)


@pytest.mark.parametrize("kw, match", [
    (dict(relax=0.0), r"relax=.*outside its domain.*\(0, 2\]"),
    (dict(relax=[1.0, 2.5]), r"relax=.*outside its domain"),
    (dict(inertia=-1.0), r"inertia=.*outside its domain.*\(-1, 1\)"),
    (dict(inertia=float("nan")), r"inertia must be finite"),
    (dict(relax=[1.0, 1.0, 1.0]), r"relax must be a scalar or have one value per iteration"),
])
def test_relax_inertia_domain(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.make_config("dpir", 2, noise_level=0.01, **kw)


def test_relax_inertia_only_for_dpir_modes():
    with pytest.raises(ValueError, match="relax / inertia are for modes 'dpir' and 'calibrated'"):
        dp.make_config("gradient", 2, relax=0.9)
    with pytest.raises(ValueError, match="relax / inertia are for modes"):
        dp.make_config("hqs", 2).with_values(inertia=0.1)
    cfg = dp.make_config("dpir", 2, noise_level=0.01)
    assert not cfg.relaxed and cfg.with_values(relax=0.9).relaxed
    again = dp.make_config(**dp.make_config("dpir", 2, noise_level=0.01, inertia=0.3).as_dict())
    assert again.relaxed and np.allclose(np.asarray(again.inertia), 0.3)
    assert dp.make_config(**cfg.as_dict()).relaxed is False


def test_relaxed_loop_with_the_stopping_rule(net, data):
    """With the stopping rule, frozen images keep their estimate (and the extrapolation's
    memory): a threshold every image meets at once gives the one-iteration result."""
    from dynpnp_jax.operators import Blur

    y, _ = data
    params = {"prior": net, "A": Blur.from_kernel(np.ones((3, 3), np.float32) / 9)}
    cfg = dp.make_config("dpir", 4, noise_level=0.1, relax=[0.8, 1.2, 0.9, 0.7],
                         inertia=[0.0, 0.5, -0.3, 0.2], stop_tol=10.0, keep_images=False)
    out, tr = dp.restore(params, y, cfg)
    one = dp.make_config("dpir", 1, sigma=float(cfg.sigma[0]), mu=float(cfg.mu[0]), relax=0.8,
                         inertia=0.0, keep_images=False)
    ref, _ = dp.restore(params, y, one)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)
    assert not np.asarray(tr.active)[1:].any()
    moving, _ = dp.restore(params, y, cfg.with_values(tol=0.0))
    assert float(np.abs(np.asarray(moving) - np.asarray(out)).max()) > 1e-3
