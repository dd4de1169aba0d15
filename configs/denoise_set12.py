"""Gaussian denoising on Set12 (the paper's Table 1, upper half).

    python -m dynpnp_jax.eval --dataset set12 --sigma 15 25 50
    python -m dynpnp_jax.eval --config configs/denoise_set12.py --protocol authors

``authors``: the hyper-parameters of the authors' Set12 notebook (eta=0.1, delta=0.01, rho=1e-5,
T=2), with DnCNN-S of the same sigma as prior and as noise estimator g (their VDN prior's
weights are not obtainable offline). ``gradient``: docs/algorithm.md (``gradient``) with the values tuned
on ``shared/data/tune`` (DnCNN training images, disjoint from Set12 and BSD68; never on a test
set) by ``python -m dynpnp_jax.tune`` -- see ``configs/gradient_tuned.py``.
"""
from dynpnp_jax.configs.common import denoise_config
from dynpnp_jax.configs.gradient_tuned import GRADIENT_DENOISE


def get_config() -> dict:
    return denoise_config("set12", authors=dict(mu=0.1, delta=0.01, alpha=1e-5),
                          gradient=GRADIENT_DENOISE)
