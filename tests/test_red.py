"""RED (dynpnp_jax/algorithms/red.py): its own property beside the shared algorithm tests
(tests/test_algorithms.py runs its fixed point, operators, gradient and recompilation checks)."""
import jax.numpy as jnp
import numpy as np

import dynpnp_jax as dp
from dynpnp_jax.operators import Blur
from test_algorithms import image, linear_net


def test_red_returns_its_iterate_and_steps_along_the_red_gradient():
    """One RED step from x_0 = y: x_1 = y - delta / (1 + mu) [A^T (A y - y) + mu (y - D(y))], and
    the result is x (v is the denoiser's output)."""
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    op = Blur.from_kernel(k, 1)
    y = np.asarray(op(jnp.asarray(image())))
    mu, delta = 0.5, 0.8
    out, traj = dp.restore({"prior": linear_net(), "A": op}, y,
                           dp.make_config("red", 1, sigma=0.05, mu=mu, delta=delta,
                                          clip_output=False))
    grad = np.asarray(op.adjoint(op(jnp.asarray(y)) - y)) + mu * (y - 0.8 * y)
    np.testing.assert_allclose(np.asarray(out), y - delta / (1 + mu) * grad, atol=1e-6)
    np.testing.assert_allclose(np.asarray(traj.v[0]), 0.8 * y, atol=1e-6)
