"""Gaussian denoising on CBSD68 (colour BSD68) with CDnCNN-B: ``configs/denoise_color.py``.

    python -m dynpnp_jax.eval --dataset cbsd68 --sigma 15 25 50
"""
from dynpnp_jax.configs.denoise_color import get_config as _color


def get_config() -> dict:
    return _color("cbsd68")
