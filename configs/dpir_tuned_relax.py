"""DPIR deblurring schedules (per-iteration ``sigma``, ``mu`` = rho, ``relax``, ``inertia``) tuned by
gradient through the unrolled ``dpir`` loop with the FFDNet-gray prior,
on ``shared/data/tune`` (DnCNN training images)
blurred with ``tune.training_kernels()``: the ``kernels_12.mat`` kernels except #9 and #10, which are
Levin's k8 and k7 -- never Set3G or a Levin kernel. One schedule per noise level (8-bit) and number
of iterations T, initialised from ``dpir_schedule(T, noise)``.
Plus 40 synthetic camera-shake kernels (``kernels.camera_shake``, ``tune.training_kernels(shake)``).
``relax``: the prior step ``v_t = x_t + relax_t (D(x_t) - x_t)``; ``inertia``: the x-step's prior term
``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})``; initialised at DPIR's loop (1 and 0).

Produced by:

    python -m dynpnp_jax.tune --task dpir --family relax --shake-kernels 40 --noise 2.55 7.65 --iters 8 4 --write-config configs/dpir_tuned_relax.py --out results/tune_relax.json

Training: noise 2.55 T=8: 11.9 min, peak RSS 569 MiB, tune-val PSNR 28.63 -> 28.71, noise 2.55 T=4: 5.9 min, peak RSS 597 MiB, tune-val PSNR 28.26 -> 28.70, noise 7.65 T=8: 11.3 min, peak RSS 661 MiB, tune-val PSNR 25.25 -> 25.42, noise 7.65 T=4: 6.4 min, peak RSS 661 MiB, tune-val PSNR 25.12 -> 25.43.

Set3G, Levin k1..k8, DPIR protocol (``dynpnp_jax.tune.evaluate_set3g``), mean PSNR (dB) over 3 images x 8 kernels:

    | noise | T | x8 ensemble | DPIR schedule | tuned | gain | reference (DPIR, T=8, x8) |
    |---|---|---|---|---|---|---|
    | 2.55 | 8 | no | 33.57 | 33.66 | +0.09 |  |
    | 2.55 | 8 | yes | 33.66 | 33.72 | +0.06 | 33.66 |
    | 2.55 | 4 | no | 33.22 | 33.63 | +0.41 |  |
    | 2.55 | 4 | yes | 33.24 | 33.66 | +0.42 |  |
    | 7.65 | 8 | no | 30.03 | 30.14 | +0.11 |  |
    | 7.65 | 8 | yes | 30.10 | 30.20 | +0.10 | 30.10 |
    | 7.65 | 4 | no | 29.79 | 30.12 | +0.34 |  |
    | 7.65 | 4 | yes | 29.83 | 30.17 | +0.34 |  |
"""
from __future__ import annotations

# (noise on the 8-bit scale, iterations) -> per-iteration values on the [0, 1] scale
TUNED = {
    (2.55, 8): {
        "sigma": [0.201054, 0.126441, 0.0855925, 0.055071, 0.0389523, 0.0229076, 0.0141601, 0.00727194],
        "mu": [0.000444711, 0.00137283, 0.00331895, 0.0067403, 0.0164852, 0.0374003, 0.0976143, 0.240663],
        "relax": [0.97523, 1.12884, 0.978823, 1.02804, 0.985107, 1.07112, 0.888325, 0.675603],
        "inertia": [0, 0.223921, 0.264191, 0.246146, 0.0587859, -0.308136, -0.628597, -0.776275],
    },
    (2.55, 4): {
        "sigma": [0.162383, 0.0653236, 0.026648, 0.00785147],
        "mu": [0.000582928, 0.00411642, 0.0254923, 0.175299],
        "relax": [1.03021, 1.04752, 1.11545, 0.699064],
        "inertia": [0, 0.169843, 0.171403, 0.153026],
    },
    (7.65, 8): {
        "sigma": [0.200555, 0.148727, 0.122155, 0.0962311, 0.0700519, 0.0532283, 0.0405645, 0.0280429],
        "mu": [0.00423286, 0.00812888, 0.0149657, 0.0264259, 0.0426839, 0.0707141, 0.126659, 0.218421],
        "relax": [1.02974, 1.02223, 1.01274, 0.92915, 0.910787, 0.930305, 0.893661, 0.900893],
        "inertia": [0, 0.428181, 0.227994, 0.0161178, -0.102057, -0.253766, -0.442854, -0.773711],
    },
    (7.65, 4): {
        "sigma": [0.194347, 0.104504, 0.0562672, 0.0272599],
        "mu": [0.00418093, 0.0171841, 0.0575075, 0.200519],
        "relax": [1.0628, 0.997184, 1.0015, 0.894463],
        "inertia": [0, 0.301308, 0.194486, 0.207662],
    },
}


def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: 2.55 or 7.65)
    and ``iters``: ``make_config(**get_config(7.65, 4))``."""
    from dynpnp_jax.tune import schedule_kwargs

    return schedule_kwargs(TUNED, noise, iters, ensemble)
