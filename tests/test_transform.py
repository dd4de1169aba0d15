"""restore() is transformable (jit, grad, vmap over the config's numbers), refuses numbers outside
their domain and bad layouts, never returns a non-finite result, and has a per-image stopping rule
and the DPIR mode (schedule, operator as data, noise-conditioned prior, x8 ensemble)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynpnp_jax as dp
from dynpnp_jax.solver import augment, augment_inverse
from dynpnp_jax.zoo import DnCNN


def tiny_net(channels=1, seed=0):
    module = DnCNN(depth=3, channels=channels, features=8)
    variables = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, channels)))
    variables = jax.tree_util.tree_map(lambda a: 0.3 * a, variables)
    return dp.Network(module=module, variables=variables, kind="residual", channels=channels,
                      name="tiny")


class SigmaNet(nn.Module):
    """A tiny noise-conditioned 'image' network: conv(x, sigma map) -> image."""

    @nn.compact
    def __call__(self, x, sigma):
        h = jnp.concatenate([x, sigma], -1)
        h = nn.relu(nn.Conv(8, (3, 3), name="conv0")(h))
        return x - 0.1 * nn.Conv(x.shape[-1], (3, 3), name="conv1")(h) * sigma


def sigma_net():
    module = SigmaNet()
    variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 8, 8, 1)))
    return dp.Network(module=module, variables=variables, kind="image", channels=1,
                      noise_input=True, name="sigma-net")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    clean = rng.uniform(0.2, 0.8, (2, 16, 24, 1)).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    return noisy, clean


def test_grad_jit_vmap_through_restore(data):
    y, clean = data
    net = tiny_net()
    base = dp.make_config("gradient", iters=2, mu=1.0, alpha=1e-3)

    def loss(delta, mu):
        out, _ = dp.restore({"prior": net}, y, base.with_values(delta=delta, mu=mu))
        return jnp.mean((out - clean) ** 2)

    d0, m0 = jnp.float32(0.3), jnp.float32(1.0)
    gd, gm = jax.grad(loss, argnums=(0, 1))(d0, m0)
    eps = 1e-2
    np.testing.assert_allclose(gd, (loss(d0 + eps, m0) - loss(d0 - eps, m0)) / (2 * eps),
                               rtol=5e-2, atol=1e-6)
    np.testing.assert_allclose(gm, (loss(d0, m0 + eps) - loss(d0, m0 - eps)) / (2 * eps),
                               rtol=5e-2, atol=1e-6)
    # jit over the whole call, with the config as an argument
    jitted = jax.jit(lambda cfg: dp.restore({"prior": net}, y, cfg)[0])
    np.testing.assert_allclose(jitted(base.with_values(delta=0.2)),
                               dp.restore({"prior": net}, y, base.with_values(delta=0.2))[0],
                               atol=1e-6)
    # vmap over alpha (authors mode): one batched program equals the separate calls
    auth = dp.make_config("authors", iters=2)
    alphas = jnp.asarray([1e-5, 1e-3, 1e-2], jnp.float32)
    outs = jax.vmap(lambda a: dp.restore({"prior": net}, y, auth.with_values(alpha=a))[0])(alphas)
    for i, a in enumerate(np.asarray(alphas)):
        np.testing.assert_allclose(outs[i], dp.restore({"prior": net}, y,
                                                       auth.with_values(alpha=float(a)))[0],
                                   atol=2e-6)


def test_compile_count_uses_jax_cache(data):
    y, _ = data
    net = tiny_net()
    dp.restore({"prior": net}, y, dp.make_config("hqs", iters=2, mu=0.5))
    n = dp.compile_count()
    for mu in (0.1, [0.2, 0.7]):
        dp.restore({"prior": net}, y, dp.make_config("hqs", iters=2, mu=mu))
    assert dp.compile_count() == n
    dp.restore({"prior": net}, y, dp.make_config("hqs", iters=4, mu=0.5))
    assert dp.compile_count() == n + 1


@pytest.mark.parametrize("kw,match", [
    (dict(mode="hqs", mu=-1.0), "mu=.*domain"),
    (dict(mode="authors", delta=-0.01), "delta.*> 0"),
    (dict(mode="gradient", delta=1.5, mu=1.0), "diverges"),
    (dict(mode="gradient", alpha=-1e-3), "alpha"),
    (dict(mode="prior", sigma=25.0), "255"),
    (dict(mode="dpir"), "noise_level"),
    (dict(mode="dpir", noise_level=-0.01), "noise_level"),
    (dict(mode="authors", stop_tol=-1.0), "stop_tol"),
    (dict(mode="authors", iters=0), "iters"),
])
def test_numbers_outside_their_domain(kw, match):
    with pytest.raises(ValueError, match=match):
        dp.make_config(**kw)


def test_bad_numbers_set_later_are_caught(data):
    y, _ = data
    cfg = dp.make_config("hqs", iters=2, mu=0.5)
    with pytest.raises(ValueError, match="mu"):
        cfg.with_values(mu=-1.0)
    with pytest.raises(ValueError, match="mu"):  # .replace() bypasses with_values: restore checks
        dp.restore({"prior": tiny_net()}, y, cfg.replace(mu=jnp.asarray([-1.0, -1.0])))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((1, 1, 32, 64), np.float32), "channels-first"),
    (np.zeros((0, 16, 16, 1), np.float32), "empty"),
    (np.zeros((1, 0, 16, 1), np.float32), "zero-sized"),
    (np.random.RandomState(0).uniform(-1, 1, (1, 16, 16, 1)).astype(np.float32), r"\[-1, 1\]"),
    (np.random.RandomState(0).uniform(0, 2, (1, 16, 16, 1)).astype(np.float32), "127.5"),
])
def test_bad_layouts_and_scalings(bad, match):
    with pytest.raises(ValueError, match=match):
        dp.restore({"prior": tiny_net()}, bad, dp.make_config("prior"))


def test_non_finite_result_raises(data):
    y, _ = data
    # an operator whose gain is NaN makes the x-step NaN: never returned as a result
    op = dp.GainMap(a=jnp.full((2, 16, 24, 1), jnp.nan))
    with pytest.raises(FloatingPointError, match="not finite"):
        dp.restore({"prior": tiny_net(), "A": op}, y, dp.make_config("gradient", iters=2))


def test_stopping_rule_freezes_finished_images(data):
    y, clean = data
    net = tiny_net()
    full = dp.make_config("hqs", iters=6, mu=0.5)
    out_full, traj_full = dp.restore({"prior": net}, y, full)
    rel = np.asarray(traj_full.rel_change)
    tol = float(np.sort(rel[:, 0])[2]) * 1.0001  # image 0 stops after a few iterations
    cfg = dp.make_config("hqs", iters=6, mu=0.5, stop_tol=tol)
    out, traj = dp.restore({"prior": net}, y, cfg)
    active = np.asarray(traj.active)
    assert active[0].all() and not active[:, 0].all()  # image 0 stopped at some point
    stop = int(np.argmin(active[:, 0]))  # first iteration where image 0 was frozen
    # up to its stop, image 0 follows the unstopped run exactly; then it stays put
    np.testing.assert_allclose(traj.v[stop - 1, 0], traj_full.v[stop - 1, 0], atol=1e-6)
    np.testing.assert_allclose(out[0], np.clip(traj_full.v[stop - 1, 0], 0, 1), atol=1e-6)
    # the stopped run's final result equals the run truncated at that iteration
    short, _ = dp.restore({"prior": net}, y[:1], dp.make_config("hqs", iters=stop, mu=0.5))
    np.testing.assert_allclose(out[0], short[0], atol=1e-6)


def test_dpir_schedule_matches_dpir_formula():
    sigma, rho = dp.dpir_schedule(8, 2.55 / 255)
    np.testing.assert_allclose(sigma[0], 49 / 255)
    np.testing.assert_allclose(sigma[-1], 2.55 / 255)
    np.testing.assert_allclose(sigma[1:] / sigma[:-1], (2.55 / 49) ** (1 / 7), rtol=1e-10)
    np.testing.assert_allclose(rho, 0.23 * (2.55 / 255) ** 2 / sigma ** 2, rtol=1e-10)
    s0, _ = dp.dpir_schedule(4, 0.0)  # noise 0 ends at 0.255/255
    np.testing.assert_allclose(s0[-1], 0.255 / 255)


def test_dpir_mode_by_hand(data):
    """dpir with A = I and a noise-conditioned prior: x = (y + rho v)/(1 + rho), v = f(x, s)."""
    y, _ = data
    net = sigma_net()
    cfg = dp.make_config("dpir", iters=3, noise_level=10 / 255)
    out, traj = dp.restore({"prior": net}, y, cfg)
    sig, rho = dp.dpir_schedule(3, 10 / 255)
    v = jnp.asarray(y)
    for t in range(3):
        x = (y + rho[t] * v) / (1 + rho[t])
        v = net.prior(x, jnp.full((2,), sig[t], jnp.float32))
        np.testing.assert_allclose(traj.v[t], v, atol=2e-5)
    # a noise-conditioned prior without a sigma is refused, with the fix
    with pytest.raises(ValueError, match="noise level"):
        dp.restore({"prior": net}, y, dp.make_config("hqs", iters=2))
    out2, _ = dp.restore({"prior": net}, y, dp.make_config("hqs", iters=2, sigma=10 / 255))
    assert np.all(np.isfinite(out2))


def test_ensemble_transforms_and_undoes(data):
    y, _ = data
    x = jnp.asarray(np.random.RandomState(3).rand(1, 5, 7, 1))
    for m in range(8):
        np.testing.assert_allclose(augment(augment(x, m), augment_inverse(m)), x)
    net = sigma_net()
    cfg = dp.make_config("dpir", iters=3, noise_level=10 / 255, ensemble=True)
    out, traj = dp.restore({"prior": net}, y, cfg)
    sig, rho = dp.dpir_schedule(3, 10 / 255)
    v = jnp.asarray(y)
    for t in range(3):
        x = (y + rho[t] * v) / (1 + rho[t])
        v = augment(net.prior(augment(x, t), jnp.full((2,), sig[t], jnp.float32)),
                    augment_inverse(t))
        np.testing.assert_allclose(traj.v[t], v, atol=2e-5)
