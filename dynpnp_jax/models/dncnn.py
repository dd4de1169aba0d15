"""DnCNN (Zhang et al., TIP 2017) in Flax: conv+ReLU, (conv+BN+ReLU) x (depth-2), conv.

The released models have their batch-norm folded into the convolutions, so every conv here has
a bias and there is no normalisation layer. The network predicts the noise residual; the
denoised image is ``x - DnCNN(x)`` (see :class:`~dynpnp_jax.networks.Network`).

Layer names ``conv0 .. conv{depth-1}`` are what the converters target.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class DnCNN(nn.Module):
    """DnCNN-S (``depth=17``) or DnCNN-B (``depth=20``).

    Attributes:
      depth: number of convolutions.
      channels: image channels (1 gray, 3 colour).
      features: width of the hidden layers.
      dtype: computation dtype (``jnp.bfloat16`` trades accuracy for speed on TPU).
    """

    depth: int = 17
    channels: int = 1
    features: int = 64
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(self.dtype)
        for i in range(self.depth):
            last = i == self.depth - 1
            h = nn.Conv(self.channels if last else self.features, (3, 3), padding="SAME",
                        use_bias=True, dtype=self.dtype, name=f"conv{i}")(h)
            if not last:
                h = nn.relu(h)
        return h.astype(x.dtype)
