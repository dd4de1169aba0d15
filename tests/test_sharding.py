"""Images spread over several devices give the same result as on one (2 fake CPU devices)."""
import subprocess
import sys
import textwrap

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
