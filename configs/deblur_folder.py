"""Deblurring any folder of ``blur/`` (+ optional ``sharp/``) image pairs with a DMPHN prior.

    python -m dynpnp_jax.eval --dataset folder --data-dir path/to/pairs

Picked by ``--dataset folder`` when the folder holds ``blur/``: the GoPro experiment's methods and
values (``configs/deblur_gopro.py``), scored by the ``gopro`` protocol where a sharp twin exists;
no published rows (custom data).
"""
from dynpnp_jax.configs.common import deblur_config


def get_config() -> dict:
    return deblur_config("folder")
