"""Images spread over several devices give the same result as on one (2 fake CPU devices)."""
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, jax.numpy as jnp, numpy as np
    import dynpnp_jax as dp
    from dynpnp_jax.zoo import DnCNN
    from dynpnp_jax.sharding import shard_batch, unshard
    assert len(jax.devices()) == 2, jax.devices()
    m = DnCNN(depth=3, channels=1, features=8)
    v = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
    net = dp.Network(module=m, variables=v, kind="residual", channels=1, name="tiny")
    y = np.random.RandomState(0).uniform(0, 1, (3, 16, 24, 1)).astype(np.float32)
    cfg = dp.make_config("authors", iters=2, alpha=1e-3)
    ref, _ = dp.restore({"prior": net}, y, cfg)
    ys, pad = shard_batch(y)
    assert pad == 1 and len(ys.sharding.device_set) == 2
    out, traj = dp.restore({"prior": net}, ys, cfg)
    assert len(out.sharding.device_set) == 2, out.sharding
    np.testing.assert_allclose(unshard(out, pad), ref, atol=1e-5)
    print("OK")
""")


def test_sharded_batch_matches_single_device():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


OPERATORS = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    import dynpnp_jax as dp
    from dynpnp_jax import eval as ev
    from dynpnp_jax.data.protocols import Problem
    from dynpnp_jax.operators import Blur
    from dynpnp_jax.zoo import DnCNN
    m = DnCNN(depth=3, channels=1, features=8)
    v = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
    net = dp.Network(module=m, variables=v, kind="residual", channels=1, name="tiny")
    rs = np.random.RandomState(0)
    probs = []
    for i in range(3):  # one kernel per image, 3 images on 4 devices: padded with image 2's
        k = np.zeros((5, 5), np.float32)
        k[2, 1 + i] = 1.0
        probs.append(Problem(f"p{i}", rs.uniform(0, 1, (16, 24, 1)).astype(np.float32), None,
                             {}, {"A": Blur.from_kernel(k, 1)}))
    cfg = dp.make_config("dpir", iters=2, sigma=0.05, mu=0.1, keep_images=False)
    outs, curves, errors = ev._restore_chunk(dp, {"prior": net}, probs, [0, 1, 2], cfg, False)
    assert len(outs) == 3 and errors == [None] * 3
    for p, out in zip(probs, outs):
        ref, _ = dp.restore({"prior": net, **p.params_extra}, p.y[None], cfg)
        np.testing.assert_allclose(out, np.asarray(ref)[0], atol=1e-5)
    print("OK")
""")


def test_per_image_operators_are_padded_with_the_batch():
    """A deblurring batch (one kernel per image) on 4 devices: the operators are padded as the
    images are, and each image is restored as alone on one device."""
    res = subprocess.run([sys.executable, "-c", OPERATORS], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]
