"""DPIR deblurring schedules of the larger family: per-iteration ``sigma``, ``mu`` (rho), ``relax``
(the prior step ``v_t = x_t + relax_t (D(x_t) - x_t)``) and ``inertia`` (the x-step's prior term
``v_{t-1} + inertia_t (v_{t-1} - v_{t-2})``), tuned by gradient through the unrolled loop with
FFDNet-gray on ``shared/data/tune`` crops blurred with ``tune.training_kernels(40)`` (the
``kernels_12.mat`` kernels that are not Levin's, plus 40 synthetic camera-shake kernels) -- never
Set3G or a Levin kernel. Initialised from DPIR's loop (``relax = 1``, ``inertia = 0``).

Produced by (one run each, about 15 min at T=8 and 7 min at T=4 on 2 cores):

    python bench/schedule_families.py --family relax --shake-kernels 40 --noise 2.55 --iters 8
    python bench/schedule_families.py --family relax --shake-kernels 40 --noise 2.55 --iters 4
    python bench/schedule_families.py --family relax --shake-kernels 40 --noise 7.65 --iters 8
    python bench/schedule_families.py --family relax --shake-kernels 40 --noise 7.65 --iters 4
    python bench/schedule_families.py --render configs/dpir_tuned_relax.py --shake-kernels 40

Set3G, Levin k1..k8, x8, mean PSNR (dB) (the same runs; method ``dpir-tuned-relax``):

    | noise | T | DPIR | tuned relax | held-out crops: DPIR -> tuned |
    |---|---|---|---|---|
    | 2.55 | 8 | 33.66 | 33.72 | 28.63 -> 28.71 |
    | 2.55 | 4 | 33.24 | 33.66 | 28.26 -> 28.70 |
    | 7.65 | 8 | 30.10 | 30.20 | 25.25 -> 25.42 |
    | 7.65 | 4 | 29.83 | 30.17 | 25.12 -> 25.43 |
"""
from __future__ import annotations

# (noise on the 8-bit scale, iterations) -> per-iteration values ([0, 1] scale for sigma)
TUNED = {
    (2.55, 8): {
        "sigma": [0.202733, 0.123879, 0.0861522, 0.0546988, 0.0388503, 0.0229528, 0.0141865, 0.0072333],
        "mu": [0.000441362, 0.00133383, 0.00338381, 0.00677647, 0.0164881, 0.0373544, 0.0977122, 0.241485],
        "relax": [0.93983, 1.14163, 0.983512, 1.02226, 0.982929, 1.07433, 0.886742, 0.673199],
        "inertia": [0, 0.24991, 0.281109, 0.218817, 0.0314872, -0.321501, -0.629979, -0.789065],
    },
    (2.55, 4): {
        "sigma": [0.162277, 0.065279, 0.0267135, 0.00782909],
        "mu": [0.000582546, 0.00411468, 0.0254199, 0.175231],
        "relax": [1.03156, 1.04626, 1.11703, 0.698516],
        "inertia": [0, 0.168129, 0.169404, 0.150672],
    },
    (7.65, 8): {
        "sigma": [0.200911, 0.148329, 0.122032, 0.0964458, 0.0701316, 0.0531825, 0.0405555, 0.0281063],
        "mu": [0.00424446, 0.00811275, 0.0149356, 0.026437, 0.0427062, 0.0706548, 0.126619, 0.218213],
        "relax": [1.02933, 1.02022, 1.0133, 0.929245, 0.910518, 0.929765, 0.893868, 0.901479],
        "inertia": [0, 0.42544, 0.221785, 0.0115575, -0.104847, -0.257556, -0.442866, -0.770266],
    },
    (7.65, 4): {
        "sigma": [0.194403, 0.104496, 0.056249, 0.0273015],
        "mu": [0.00417899, 0.0171776, 0.0574734, 0.200347],
        "relax": [1.06217, 0.997493, 1.00105, 0.895398],
        "inertia": [0, 0.300842, 0.192175, 0.206202],
    },
}


def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: 2.55 or 7.65)
    and ``iters`` (8 or 4): ``make_config(**get_config(2.55, 4))``."""
    from dynpnp_jax.tune import schedule_kwargs

    return schedule_kwargs(TUNED, noise, iters, ensemble)
