"""DPIR deblurring schedules (per-iteration ``sigma`` and ``mu`` = rho) tuned by gradient through the
unrolled ``dpir`` loop with the FFDNet-gray prior, with the x8 self-ensemble, on ``shared/data/tune`` (DnCNN training images)
blurred with ``tune.training_kernels()``: the ``kernels_12.mat`` kernels except #9 and #10, which are
Levin's k8 and k7 -- never Set3G or a Levin kernel. One schedule per noise level (8-bit) and number
of iterations T, initialised from ``dpir_schedule(T, noise)``.

Produced by:

    python -m dynpnp_jax.tune --task dpir --ensemble --noise 2.55 7.65 --iters 8 4 --steps 200 --crop 128 --batch 3 --val-every 50 --no-eval --write-config configs/dpir_tuned_x8.py --out results/tune_dpir_x8.json

Training: noise 2.55 T=8: 13.4 min, peak RSS 743 MiB, tune-val PSNR 28.36 -> 28.44, noise 2.55 T=4: 7.0 min, peak RSS 763 MiB, tune-val PSNR 28.03 -> 28.33, noise 7.65 T=8: 13.2 min, peak RSS 829 MiB, tune-val PSNR 26.20 -> 26.31, noise 7.65 T=4: 6.5 min, peak RSS 829 MiB, tune-val PSNR 26.01 -> 26.23.
"""
from __future__ import annotations

# (noise on the 8-bit scale, iterations) -> per-iteration values on the [0, 1] scale
TUNED = {
    (2.55, 8): {
        "sigma": [0.193543, 0.130245, 0.0881188, 0.0572151, 0.0373238, 0.0226489, 0.0144487, 0.00707165],
        "mu": [0.000188729, 0.000774057, 0.00289225, 0.00718692, 0.0160256, 0.0404271, 0.0994572, 0.213465],
    },
    (2.55, 4): {
        "sigma": [0.175808, 0.0696547, 0.0277365, 0.00802098],
        "mu": [0.000246622, 0.00361819, 0.0239176, 0.160618],
    },
    (7.65, 8): {
        "sigma": [0.207266, 0.15143, 0.117214, 0.0913897, 0.0727689, 0.0544921, 0.0387932, 0.0262523],
        "mu": [0.0040425, 0.00878459, 0.014882, 0.0238583, 0.0401364, 0.0701067, 0.122365, 0.187261],
    },
    (7.65, 4): {
        "sigma": [0.211105, 0.107491, 0.0565076, 0.0265308],
        "mu": [0.00340507, 0.0154945, 0.052547, 0.181293],
    },
}


def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: 2.55 or 7.65)
    and ``iters``: ``make_config(**get_config(7.65, 4))``."""
    from dynpnp_jax.tune import schedule_kwargs

    return schedule_kwargs(TUNED, noise, iters, ensemble)
