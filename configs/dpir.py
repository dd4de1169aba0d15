r"""Known degradations, the DPIR way: deblurring, super-resolution and inpainting with FFDNet as
the plug-and-play prior (``dpir`` protocol and solver mode; docs/algorithm.md).

    python -m dynpnp_jax.eval --task deblur --dataset set3c --kernel levin --noise 2.55 7.65
    python -m dynpnp_jax.eval --task sr --dataset set5 --scale 2 3 4        # imresize protocol
    python -m dynpnp_jax.eval --task sr --dataset set5 --scale 2 3 4 --protocol dpir \
        --kernel bicubic:{scale}
    python -m dynpnp_jax.eval --task inpaint --dataset set3g --mask random:0.5 --noise 0
    python -m dynpnp_jax.eval --task demosaic --dataset cbsd68 --method dpir mhc bilinear

``dpir``: the solver's ``dpir`` mode with the known operator fixed (``params['A']``): DPIR's
schedule (sigma from 49/255 down to the noise level, rho_t), T = 8 for deblurring and
inpainting, 24 for SR, 40 for demosaicing (started from Malvar-He-Cutler), with the x8
self-ensemble as DPIR's scripts run it. ``dpir-tuned``
(deblurring, only when named): the same with the schedule of ``configs/dpir_tuned.py``, tuned on
training crops for noise 2.55 / 7.65 and T = 8 / 4::

    python -m dynpnp_jax.eval --task deblur --dataset set3g --kernel levin --noise 2.55 7.65 \
        --method dpir dpir-tuned --iters 4

``admm``, ``drs``, ``pgd``, ``fista``, ``red`` (only when named, every task): the other
plug-and-play algorithms of ``dynpnp_jax.algorithms`` with the same schedule, T and x8::

    python -m dynpnp_jax.eval --task deblur --dataset set3g --kernel levin --noise 2.55 7.65 \
        --method dpir admm drs pgd fista red

The prior is FFDNet (gray or colour after the data): DPIR's own DRUNet weights are not used
here. Baselines: the degraded input, Wiener deconvolution (deblur), bicubic up-sampling (SR),
linear interpolation (inpainting), Malvar-He-Cutler and bilinear interpolation (demosaicing).
"""


def get_config() -> dict:
    return {
        "tasks": ["deblur", "sr", "inpaint", "demosaic"],
        # no "protocol": dpir for every task, except --task sr on the standard SR sets (Set5,
        # ...), which get the SR literature's imresize protocol (--protocol dpir for DPIR's)
        "prior": "ffdnet-{color}",
        "methods": {
            "input": {"mode": "input"},
            "wiener": {"mode": "wiener"},
            "bicubic": {"mode": "bicubic"},
            "interp": {"mode": "interp"},
            "mhc": {"mode": "mhc"},
            "bilinear": {"mode": "bilinear"},
            "dpir": {"mode": "dpir", "ensemble": True},
            # deblurring only: the kernel re-chosen inside the loop (--kernel-given: what the
            # solver is told; dynpnp_jax.calibration)
            "calibrated": {"mode": "calibrated", "ensemble": True},
            # deblurring only, run when named (--method dpir-tuned): the same loop with the
            # per-iteration sigma and rho tuned by gradient on training crops
            # (configs/dpir_tuned.py, made by python -m dynpnp_jax.tune --task dpir), picked for
            # the condition's noise level and T (--iters); other (noise, T) pairs are refused
            "dpir-tuned": {"mode": "dpir", "ensemble": True, "schedule": "dpir_tuned"},
            # the same, with the schedules tuned WITH the x8 self-ensemble in the training loss
            # (configs/dpir_tuned_x8.py, python -m dynpnp_jax.tune --task dpir --ensemble)
            "dpir-tuned-x8": {"mode": "dpir", "ensemble": True, "schedule": "dpir_tuned_x8"},
            # the larger family: per-iteration sigma, rho, a relaxation of the prior step and an
            # extrapolation of the x-step's prior term (configs/dpir_tuned_relax.py, made by
            # python -m dynpnp_jax.tune --task dpir --family relax --shake-kernels 40)
            "dpir-tuned-relax": {"mode": "dpir", "ensemble": True, "schedule": "dpir_tuned_relax"},
            # deblurring, run when named: the loop told the blur is circular whatever the data
            # (--boundary unknown: what ignoring the frame's edges costs)
            "dpir-circular": {"mode": "dpir", "ensemble": True, "boundary": "circular",
                              "when_named": True},
            # the other plug-and-play splittings in the same compiled loop, run when named
            # (--method admm drs pgd fista red): DPIR's sigma schedule, the same T and x8, each
            # with its default rho scale / step (dynpnp_jax/algorithms; docs/results/algorithms.md)
            **{name: {"mode": name, "ensemble": True, "when_named": True}
               for name in ("admm", "drs", "pgd", "fista", "red")},
        },
        "batch": 4,
    }
