"""FISTA (dynpnp_jax/algorithms/fista.py): its momentum beside the shared algorithm tests."""
import jax.numpy as jnp
import numpy as np

import dynpnp_jax as dp
from dynpnp_jax.operators import Blur
from test_algorithms import image, linear_net


def test_fista_extrapolates_with_the_momentum_sequence():
    """Two FISTA steps by hand: s_1 = (1 + sqrt 5) / 2, w_1 = v_1 + (s_0 - 1) / s_1 (v_1 - v_0) = v_1
    (s_0 = 1), so iteration 2 is PGD from v_1; iteration 3 extrapolates with (s_1 - 1) / s_2."""
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
    op = Blur.from_kernel(k, 1)
    y = jnp.asarray(np.asarray(op(jnp.asarray(image()))))
    d = 0.9
    _, traj = dp.restore({"prior": linear_net(), "A": op}, np.asarray(y),
                         dp.make_config("fista", 3, sigma=0.05, delta=d, clip_output=False))

    def pgd(w):
        return 0.8 * (w - d * op.adjoint(op(w) - y))

    v1 = pgd(y)
    v2 = pgd(v1)
    s1 = (1 + np.sqrt(5)) / 2
    s2 = (1 + np.sqrt(1 + 4 * s1 ** 2)) / 2
    v3 = pgd(v2 + (s1 - 1) / s2 * (v2 - v1))
    for t, ref in enumerate((v1, v2, v3)):
        np.testing.assert_allclose(np.asarray(traj.v[t]), np.asarray(ref), atol=1e-5)
