"""Operators: adjointness, hand-written A-loss gradients vs jax.grad, exact normal solves."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynpnp_jax import operators as ops

SHAPE = (2, 12, 16, 3)


def _random_op(name, key):
    op = ops.make_operator(name, SHAPE, kernel_size=5)
    # perturb away from the identity so the tests see a generic operator
    leaves, tree = jax.tree_util.tree_flatten(op)
    keys = jax.random.split(key, max(len(leaves), 1))
    leaves = [l + 0.3 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


@pytest.mark.parametrize("name", sorted(ops.OPERATORS))
def test_adjoint(name):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    op = _random_op(name, k1)
    x = jax.random.normal(k2, SHAPE)
    w = jax.random.normal(k3, SHAPE)
    lhs = jnp.vdot(op(x), w)
    rhs = jnp.vdot(x, op.adjoint(w))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(ops.OPERATORS))
def test_loss_grad_matches_autodiff(name):
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(1), 4)
    op = _random_op(name, k1)
    x = jax.random.normal(k2, SHAPE)
    g = 0.1 * jax.random.normal(k3, SHAPE)
    y = jax.random.normal(k4, SHAPE)

    def loss(o):
        return jnp.sum((o(x) + g - y) ** 2)

    auto = jax.grad(loss)(op)
    hand = op.loss_grad(x, op(x) + g - y)
    for a, h in zip(jax.tree_util.tree_leaves(auto), jax.tree_util.tree_leaves(hand)):
        np.testing.assert_allclose(h, a, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name", sorted(ops.OPERATORS))
def test_normal_solve(name):
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    op = _random_op(name, k1)
    rhs = jax.random.normal(k2, SHAPE)
    mu = jnp.array([0.5, 2.0])  # one per image
    x = op.normal_solve(rhs, mu)
    back = op.adjoint(op(x)) + mu[:, None, None, None] * x
    np.testing.assert_allclose(back, rhs, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", sorted(ops.OPERATORS))
def test_initial_operator_is_identity(name):
    op = ops.make_operator(name, SHAPE, kernel_size=3)
    x = jax.random.normal(jax.random.PRNGKey(3), SHAPE)
    np.testing.assert_allclose(op(x), x, atol=1e-5)
    np.testing.assert_allclose(op.adjoint(x), x, atol=1e-5)
    np.testing.assert_allclose(np.broadcast_to(op.deviation(), (2,)), 0.0, atol=1e-7)


def test_convolution_is_circular_convolution():
    op = _random_op("conv", jax.random.PRNGKey(4))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(5), SHAPE))
    k = np.asarray(op.k)
    p = k.shape[-1] // 2
    want = np.zeros_like(x)
    for i in range(k.shape[1]):
        for j in range(k.shape[2]):
            shifted = np.roll(x, (i - p, j - p), axis=(1, 2))
            want += k[:, i, j][:, None, None, None] * shifted
    np.testing.assert_allclose(op(x), want, rtol=1e-4, atol=1e-4)


def test_descend_is_a_gradient_step():
    op = ops.make_operator("gain", SHAPE)
    grad = ops.GainMap(a=jnp.ones_like(op.a))
    new = op.descend(grad, jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(new.a[0], 0.9, atol=1e-6)
    np.testing.assert_allclose(new.a[1], 0.8, atol=1e-6)


def test_unknown_operator():
    with pytest.raises(ValueError, match="unknown operator"):
        ops.make_operator("blur", SHAPE)
    with pytest.raises(ValueError, match="odd"):
        ops.make_operator("conv", SHAPE, kernel_size=4)
