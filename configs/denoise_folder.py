"""Gaussian denoising on any folder of PNGs (clean images; noise added by the protocol).

    python -m dynpnp_jax.eval --dataset folder --data-dir path/to/pngs --sigma 25

Uses the Set12 values of the authors' notebooks and the tuned gradient-mode values.
"""
from dynpnp_jax.configs.common import denoise_config
from dynpnp_jax.configs.gradient_tuned import GRADIENT_DENOISE


def get_config() -> dict:
    return denoise_config("folder", authors=dict(mu=0.1, delta=0.01, alpha=1e-5),
                          gradient=GRADIENT_DENOISE)
