"""x-steps and A-steps against their defining equations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynpnp_jax import operators as ops
from dynpnp_jax import steps

SHAPE = (2, 10, 14, 3)


def _data(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x, y, v = (jax.random.uniform(kk, SHAPE) for kk in k[:3])
    op = ops.make_operator("gain", SHAPE)
    op = ops.GainMap(a=op.a + 0.2 * jax.random.normal(k[3], op.a.shape))
    return op, x, y, v


def _energy(op, x, y, v, mu):
    # Eq. (4) with the 1/2 of Eq. (3): 0.5 ||y - A x||^2 + mu/2 ||x - v||^2
    return 0.5 * jnp.sum((op(x) - y) ** 2) + 0.5 * mu * jnp.sum((x - v) ** 2)


def test_gradient_step_is_gradient_descent_on_eq4():
    op, x, y, v = _data()
    delta, mu = 0.1, 0.7
    got = steps.x_gradient(op, x, y, v, delta, mu)
    want = x - delta * jax.grad(_energy, argnums=1)(op, x, y, v, mu)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gradient_step_decreases_energy():
    op, x, y, v = _data(1)
    x1 = steps.x_gradient(op, x, y, v, 0.05, 0.5)
    assert _energy(op, x1, y, v, 0.5) < _energy(op, x, y, v, 0.5)


@pytest.mark.parametrize("name", sorted(ops.OPERATORS))
def test_exact_step_is_the_minimiser(name):
    _, x, y, v = _data(2)
    op = ops.make_operator(name, SHAPE, kernel_size=3)
    leaves, tree = jax.tree_util.tree_flatten(op)
    op = jax.tree_util.tree_unflatten(tree, [l + 0.1 for l in leaves])
    mu = 0.3
    xs = steps.x_exact(op, x, y, v, 0.0, mu)
    grad = jax.grad(_energy, argnums=1)(op, xs, y, v, mu)
    assert float(jnp.max(jnp.abs(grad))) < 1e-3


def test_cg_converges_to_exact():
    _, x, y, v = _data(3)
    op = ops.Convolution.init(SHAPE, 3)
    op = ops.Convolution(k=op.k + 0.05)
    exact = steps.x_exact(op, x, y, v, 0.0, 0.2)
    few = steps.x_cg(op, x, y, v, 0.0, 0.2, cg_iters=2)
    many = steps.x_cg(op, x, y, v, 0.0, 0.2, cg_iters=30)
    err_few = float(jnp.max(jnp.abs(few - exact)))
    err_many = float(jnp.max(jnp.abs(many - exact)))
    assert err_many < 1e-3 and err_many < err_few


def test_fft_step_needs_convolution():
    op, x, y, v = _data()
    with pytest.raises(ValueError, match="operator='conv'"):
        steps.x_fft(op, x, y, v, 0.1, 0.1)
    conv = ops.Convolution.init(SHAPE, 3)
    np.testing.assert_allclose(steps.x_fft(conv, x, y, v, 0.1, 0.4),
                               (y + 0.4 * v) / 1.4, atol=1e-5)


def test_authors_x_step_formula():
    _, x, y, v = _data(4)
    op = ops.RowMix.init(SHAPE)
    op = ops.RowMix(m=op.m + 0.01)
    delta, eta = 0.01, 0.1
    lam = 1 - delta * (1 + eta)
    xn, yn, vn, m = (np.asarray(a) for a in (x, y, v, op.m))
    want = np.stack([np.stack([lam * xn[b, ..., c] + delta * m[b].T @ yn[b, ..., c]
                               + delta * vn[b, ..., c] for c in range(3)], -1) for b in range(2)])
    np.testing.assert_allclose(steps.x_authors(op, x, y, v, delta, eta), want, rtol=1e-5, atol=1e-6)


def test_authors_a_step_matches_notebook_algebra():
    """Literal per-channel numpy version of the notebooks' A update (docs/algorithm.md, ``authors``)."""
    _, x, y, v = _data(5)
    g = 0.05 * y
    op = ops.RowMix.init(SHAPE)
    op = ops.RowMix(m=op.m + 0.01)
    rho = 1e-3
    new = steps.a_authors(op, x, v, y, g, rho)
    h = SHAPE[1]
    for b in range(SHAPE[0]):
        a = np.asarray(op.m[b], np.float64)
        space = []
        for c in range(SHAPE[3]):
            vc = np.asarray(v[b, ..., c], np.float64)
            yhat = np.asarray(y[b, ..., c] - g[b, ..., c], np.float64)
            s = yhat + ((vc.T @ a) @ vc)[:h, :]
            space.append(rho * s)
        want = a - np.mean(space, axis=0)[:, :h]
        np.testing.assert_allclose(new.m[b], want, rtol=1e-5, atol=1e-6)


def test_authors_a_step_needs_landscape():
    shape = (1, 12, 8, 1)
    op = ops.RowMix.init(shape)
    z = jnp.zeros(shape)
    with pytest.raises(ValueError, match="width >= height"):
        steps.a_authors(op, z, z, z, z, 1e-5)


@pytest.mark.parametrize("name", ["gain", "conv", "rowmix"])
def test_gradient_a_step_lowers_a_loss(name):
    _, x, y, v = _data(6)
    g = 0.1 * (y - x)
    op = ops.make_operator(name, SHAPE, kernel_size=3)
    before = steps.a_loss(op, x, y, g)
    after = steps.a_loss(steps.a_gradient(op, x, v, y, g, 1e-3), x, y, g)
    assert np.all(np.asarray(after) < np.asarray(before))
