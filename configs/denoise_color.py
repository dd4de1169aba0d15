"""Gaussian denoising of colour images (Set3C, Set5, CBSD68 or a folder) with the colour blind
DnCNN (CDnCNN-B, sigma 0..55) as the prior.

    python -m dynpnp_jax.eval --dataset cbsd68 --sigma 15 25 50

``authors``: the Set12 values of the authors' notebooks (eta=0.1, delta=0.01, rho=1e-5, T=2);
their row-mix A-step runs on portrait images rotated to landscape. ``gradient`` is left out:
its values were tuned for DnCNN-S on gray images. No published rows are printed.
"""
from dynpnp_jax.configs.common import denoise_config


def get_config(dataset: str = "set3c") -> dict:
    cfg = denoise_config(dataset, authors=dict(mu=0.1, delta=0.01, alpha=1e-5), gradient={})
    del cfg["methods"]["gradient"]
    cfg.update(prior="dncnn-b-color", published={}, published_note="")
    return cfg
