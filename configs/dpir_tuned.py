"""DPIR deblurring schedules (per-iteration ``sigma`` and ``mu`` = rho) tuned by gradient through the
unrolled ``dpir`` loop with the FFDNet-gray prior, on ``shared/data/tune`` (DnCNN training images)
blurred with ``tune.training_kernels()``: the ``kernels_12.mat`` kernels except #9 and #10, which are
Levin's k8 and k7 -- never Set3G or a Levin kernel. One schedule per noise level (8-bit) and number
of iterations T, initialised from ``dpir_schedule(T, noise)``.

Produced by:

    python -m dynpnp_jax.tune --task dpir --noise 2.55 7.65 --iters 8 4 --steps 200 --crop 128 --batch 3 --val-every 50 --no-eval --write-config configs/dpir_tuned.py --out results/tune_dpir.json

Training: noise 2.55 T=8: 16.0 min, peak RSS 584 MiB, tune-val PSNR 28.33 -> 28.41, noise 2.55 T=4: 6.6 min, peak RSS 596 MiB, tune-val PSNR 28.02 -> 28.32, noise 7.65 T=8: 12.8 min, peak RSS 649 MiB, tune-val PSNR 26.16 -> 26.28, noise 7.65 T=4: 6.4 min, peak RSS 649 MiB, tune-val PSNR 25.99 -> 26.21.
"""
from __future__ import annotations

# (noise on the 8-bit scale, iterations) -> per-iteration values on the [0, 1] scale
TUNED = {
    (2.55, 8): {
        "sigma": [0.195031, 0.131157, 0.090919, 0.0589078, 0.0382761, 0.0235239, 0.0142999, 0.00667274],
        "mu": [0.000194943, 0.000751618, 0.00274576, 0.00695874, 0.0155167, 0.0386931, 0.0989653, 0.209923],
    },
    (2.55, 4): {
        "sigma": [0.177041, 0.0704693, 0.027883, 0.00779002],
        "mu": [0.000244708, 0.00357792, 0.0234056, 0.163475],
    },
    (7.65, 8): {
        "sigma": [0.212289, 0.15701, 0.118582, 0.0924371, 0.0735948, 0.0555861, 0.0392227, 0.0257176],
        "mu": [0.00386783, 0.00857233, 0.0147025, 0.0232359, 0.0389875, 0.0682845, 0.11994, 0.189932],
    },
    (7.65, 4): {
        "sigma": [0.211594, 0.107888, 0.0564269, 0.0261135],
        "mu": [0.00340242, 0.0154073, 0.0527655, 0.184599],
    },
}


def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: 2.55 or 7.65)
    and ``iters``: ``make_config(**get_config(7.65, 4))``."""
    from dynpnp_jax.tune import schedule_kwargs

    return schedule_kwargs(TUNED, noise, iters, ensemble)
