"""DPIR deblurring schedules (per-iteration ``sigma`` and ``mu`` = rho) tuned by gradient through the
unrolled ``dpir`` loop with the FFDNet-gray prior, on ``shared/data/tune`` (DnCNN training images)
blurred with the ``kernels_12.mat`` kernels -- never on Set3G or the Levin kernels. One schedule per
noise level (8-bit) and number of iterations T, initialised from ``dpir_schedule(T, noise)``.

Produced by:

    python -m dynpnp_jax.tune --task dpir --noise 2.55 7.65 --iters 8 4 --steps 200 --crop 128 --batch 3 --val-every 50 --write-config configs/dpir_tuned.py --out results/tune_dpir.json

(run in two parts: the first three schedules by that command, stopped during 7.65 T=4; then that
one alone with the same settings, ``... --noise 7.65 --iters 4 --steps 200 --crop 128 --batch 3
--val-every 50 --no-eval``; every (noise, T) run seeds its own generator, so the parts equal one
run of the command. Tuning is without the x8 self-ensemble; the CLI method ``dpir-tuned`` of
``configs/dpir.py`` runs these schedules with it.)

Training: noise 2.55 T=8: 31.6 min, peak RSS 604 MiB, tune-val PSNR 27.43 -> 27.53, noise 2.55 T=4: 16.4 min, peak RSS 604 MiB, tune-val PSNR 27.18 -> 27.56, noise 7.65 T=8: 30.8 min, peak RSS 642 MiB, tune-val PSNR 25.12 -> 25.22, noise 7.65 T=4: 20.0 min, peak RSS 556 MiB, tune-val PSNR 25.05 -> 25.28.
"""
from __future__ import annotations

# (noise on the 8-bit scale, iterations) -> per-iteration values on the [0, 1] scale
TUNED = {
    (2.55, 8): {
        "sigma": [0.198104, 0.138143, 0.0904854, 0.0585378, 0.0386603, 0.0234405, 0.0145776, 0.00660587],
        "mu": [0.00016177, 0.000958152, 0.0028453, 0.00627407, 0.0155228, 0.0384478, 0.0980683, 0.201303],
    },
    (2.55, 4): {
        "sigma": [0.173804, 0.0677416, 0.027832, 0.00805514],
        "mu": [0.000239863, 0.00389232, 0.0240641, 0.156267],
    },
    (7.65, 8): {
        "sigma": [0.25124, 0.155701, 0.124108, 0.0925103, 0.0728667, 0.0536387, 0.0387808, 0.0244277],
        "mu": [0.00343577, 0.00829048, 0.0149402, 0.0225271, 0.037578, 0.0674158, 0.123744, 0.196086],
    },
    (7.65, 4): {
        "sigma": [0.220546, 0.106077, 0.0569741, 0.0251346],
        "mu": [0.00292216, 0.0158573, 0.0508938, 0.193196],
    },
}


def get_config(noise: float = 2.55, iters: int = 8, ensemble: bool = False) -> dict:
    """``make_config`` keyword arguments of the tuned schedule for ``noise`` (8-bit: 2.55 or 7.65)
    and ``iters``: ``make_config(**get_config(7.65, 4))``."""
    key = (float(noise), int(iters))
    if key not in TUNED:
        raise KeyError(f"no tuned schedule for noise={noise}, iters={iters}; have {sorted(TUNED)}")
    vals = TUNED[key]
    return {"mode": "dpir", "iters": int(iters), "noise_level": float(noise) / 255,
            "sigma": list(vals["sigma"]), "mu": list(vals["mu"]), "ensemble": bool(ensemble)}
