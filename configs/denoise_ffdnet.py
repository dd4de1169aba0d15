"""Gaussian denoising with FFDNet (Zhang, Zuo, Zhang, TIP 2018) as the prior: Set12 and BSD68
with ``ffdnet-gray``, CBSD68 (and other colour sets) with ``ffdnet-color``.

    python -m dynpnp_jax.eval --config configs/denoise_ffdnet.py --dataset set12 --sigma 15 25 50
    python -m dynpnp_jax.eval --config configs/denoise_ffdnet.py --dataset cbsd68 --sigma 15 25 50

FFDNet takes the noise level as an input: every method is given the true noise level sigma/255
(as the FFDNet paper evaluates; ``--noise-level`` or a ``noise_level`` key here overrides it).
``prior`` is FFDNet alone; ``static``, ``hqs`` and ``authors`` the dynamic loop's methods with
the authors' Set12 values (eta=0.1, delta=0.01, rho=1e-5, T=2), g = FFDNet itself.
``published``: the FFDNet paper's Tables (PSNR; SSIM not published there), shown only for the
data set they belong to.
"""
from dynpnp_jax.configs.common import denoise_config

# FFDNet paper (TIP 2018), Tables III and VI: PSNR (dB), sigma 15 / 25 / 50
FFDNET_PUBLISHED = {
    "set12": {15: (32.75, None), 25: (30.43, None), 50: (27.32, None)},
    "bsd68": {15: (31.63, None), 25: (29.19, None), 50: (26.29, None)},
    "cbsd68": {15: (33.87, None), 25: (31.21, None), 50: (27.96, None)},
}


def get_config() -> dict:
    cfg = denoise_config("set12", authors=dict(mu=0.1, delta=0.01, alpha=1e-5), gradient={})
    del cfg["methods"]["gradient"]  # its values were tuned for DnCNN-S
    published = {ds: {"FFDNet (published)": rows} for ds, rows in FFDNET_PUBLISHED.items()}
    cfg.update(prior="ffdnet-{color}", sigmas=[15, 25, 50], published=published,
               published_by_dataset=True, published_note="published rows: the full set, PSNR "
               "only (FFDNet paper, Tables III and VI)")
    return cfg
