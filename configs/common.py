"""Building blocks shared by the experiment configs (published numbers, method sets)."""
from __future__ import annotations

# The paper's Table 1 (PSNR dB, SSIM): DnCNN as published by Zhang et al., VDN (the prior the
# authors plugged in), and "Proposed" (their dynamic stacking on VDN).
TABLE1 = {
    "set12": {
        "DnCNN (published)": {15: (32.86, 0.903), 25: (30.44, 0.862), 50: (27.18, 0.783)},
        "VDN (paper)": {15: (33.33, 0.912), 25: (30.90, 0.875), 50: (28.00, 0.816)},
        "Proposed (paper)": {15: (33.44, 0.912), 25: (31.04, 0.875), 50: (28.27, 0.816)},
    },
    "bsd68": {
        "DnCNN (published)": {15: (31.73, 0.891), 25: (29.23, 0.828), 50: (26.23, 0.719)},
        "VDN (paper)": {15: (32.22, 0.917), 25: (30.03, 0.851), 50: (27.18, 0.754)},
        "Proposed (paper)": {15: (32.42, 0.918), 25: (30.17, 0.851), 50: (27.64, 0.754)},
    },
}

# The paper's Table 2 rows that the released DMPHN checkpoints cover (whole GoPro test set),
# by prior, then row, then condition (GoPro has one: the recorded blur).
TABLE2 = {
    "dmphn-1-2-4": {"DMPHN(1-2-4) (paper)": {"recorded": (30.21, 0.9345)},
                    "Proposed(DMPHN(1-2-4)) (paper)": {"recorded": (30.32, 0.9358)}},
    "dmphn-1-2-4-8": {"DMPHN(1-2-4-8) (paper)": {"recorded": (30.25, 0.9351)},
                      "Proposed(DMPHN(1-2-4-8)) (paper)": {"recorded": (30.40, 0.9400)}},
    "stack4-dmphn": {"Stack(4)-DMPHN (paper)": {"recorded": (31.20, 0.9453)},
                     "Proposed(Stack(4)-DMPHN) (paper)": {"recorded": (31.44, 0.9530)}},
}


def denoise_config(dataset: str, *, authors: dict, gradient: dict, iters: int = 2) -> dict:
    """A denoising experiment: every method of the paper's comparison on ``dataset``.

    ``authors``/``gradient`` are :func:`dynpnp_jax.make_config` keyword arguments; ``gradient``
    may map a sigma to its own keyword arguments.
    """
    return {
        "task": "denoise",
        "dataset": dataset,
        "protocol": "standard",
        "sigmas": [25],
        "prior": "dncnn-s{sigma}",   # DnCNN-S trained for that sigma
        "noise": None,               # g = the prior's own noise estimate
        "methods": {
            "prior": {"mode": "prior"},
            "static": {"mode": "static", "iters": iters},
            "hqs": {"mode": "hqs", "iters": iters, "mu": 1.0},
            "authors": {"mode": "authors", "iters": iters, **authors},
            "gradient": gradient,
        },
        "published": TABLE1.get(dataset, {}),
        "published_note": "published rows: the full set" if dataset in TABLE1 else "",
    }


def deblur_config(dataset: str, *, published: dict | None = None, published_note: str = "") -> dict:
    """A deblurring experiment (blur/sharp pairs, ``gopro`` protocol) with a DMPHN prior.

    ``authors``: the authors' HQS_DMPHN_124 notebook values (eta=0.1, delta=0.001, rho=1e-5,
    T=2), with the colour blind DnCNN as the noise estimator g.
    """
    cfg = {
        "task": "deblur",
        "dataset": dataset,
        "protocol": "gopro",
        "prior": "dmphn-1-2-4",
        "noise": "dncnn-b-color",
        "methods": {
            "input": {"mode": "input"},  # the blurred frame itself, for reference
            "prior": {"mode": "prior"},
            "static": {"mode": "static", "iters": 2},
            "authors": {"mode": "authors", "iters": 2, "mu": 0.1, "delta": 0.001, "alpha": 1e-5},
            # untuned (no GoPro training frames offline to tune on; test frames are off limits)
            "gradient": {"mode": "gradient", "iters": 2, "delta": 0.1, "mu": 1.0, "alpha": 1e-3},
        },
        "batch": 1,  # one 1280x720 frame per restore call keeps peak memory low
    }
    if published:
        cfg.update(published=published, published_by_prior=True, published_note=published_note)
    return cfg
