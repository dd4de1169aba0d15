"""Motion deblurring on GoPro frames with DMPHN priors (the paper's Table 2).

    python -m dynpnp_jax.eval --dataset gopro --prior dmphn-1-2-4

``authors``: the authors' HQS_DMPHN_124 notebook (eta=0.1, delta=0.001, rho=1e-5, T=2), with the
colour blind DnCNN (``GD_Color_Blind.mat``) as noise estimator g. Offline, only frame 000001 of
the 20 shared frames has its sharp ground truth, so the PSNR/SSIM rows are one frame.
"""
from dynpnp_jax.configs.common import TABLE2, deblur_config


def get_config() -> dict:
    return deblur_config("gopro", published=TABLE2,
                         published_note="paper Table 2: the whole GoPro test set, 1111 frames")
