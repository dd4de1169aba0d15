"""Gaussian denoising on BSD68 (the paper's Table 1, lower half).

    python -m dynpnp_jax.eval --dataset bsd68 --sigma 15 25 50

``authors``: the authors' BSD68 notebook values (eta=0.6, delta=0.01, rho=1e-5, T=2). Their
row-mix A needs width >= height: under ``--protocol authors`` portrait images are rotated; under
``standard`` the ``authors`` method rotates portrait images itself and rotates the result back.
``gradient``: tuned on ``shared/data/tune`` only (``configs/gradient_tuned.py``).
"""
from dynpnp_jax.configs.common import denoise_config
from dynpnp_jax.configs.gradient_tuned import GRADIENT_DENOISE


def get_config() -> dict:
    return denoise_config("bsd68", authors=dict(mu=0.6, delta=0.01, alpha=1e-5),
                          gradient=GRADIENT_DENOISE)
