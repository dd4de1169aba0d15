"""Motion deblurring on GoPro frames with DMPHN priors (the paper's Table 2).

    python -m dynpnp_jax.eval --dataset gopro --prior dmphn-1-2-4

``authors``: the authors' HQS_DMPHN_124 notebook (eta=0.1, delta=0.001, rho=1e-5, T=2), with the
colour blind DnCNN (``GD_Color_Blind.mat``) as noise estimator g. Offline, only frame 000001 of
the 20 shared frames has its sharp ground truth, so the PSNR/SSIM rows are one frame.
"""
from dynpnp_jax.configs.common import TABLE2


def get_config() -> dict:
    return {
        "task": "deblur",
        "dataset": "gopro",
        "protocol": "gopro",
        "sigmas": [0],
        "prior": "dmphn-1-2-4",
        "noise": "dncnn-b-color",
        "methods": {
            "prior": {"mode": "prior"},
            "static": {"mode": "static", "iters": 2},
            "authors": {"mode": "authors", "iters": 2, "mu": 0.1, "delta": 0.001, "alpha": 1e-5},
            # untuned (no GoPro training frames offline to tune on; test frames are off limits)
            "gradient": {"mode": "gradient", "iters": 2, "delta": 0.1, "mu": 1.0, "alpha": 1e-3},
        },
        "published": TABLE2,
        "batch": 1,  # one 1280x720 frame per restore call keeps peak memory low
    }
