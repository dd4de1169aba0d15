"""Hyper-parameters of ``gradient`` mode, tuned on ``shared/data/tune`` (never on a test set).

Produced by (2-core CPU, ~95 s per sigma; 20 Adam steps on 8 random 64x64 crops of the 20 tune
images per step, standard-protocol noise):

    python -m dynpnp_jax.tune --sigma 15 25 50 --steps 20 --crop 64

What the tuning found (tune-set mean PSNR, standard protocol, full 180x180 images):

    sigma   network alone   tuned gradient mode
    15      31.586          31.585
    25      29.005          29.003
    50      25.782          25.785

The optimiser drives the second iteration's x-step towards ``x = y`` (``delta*mu`` from 0.09 to
0.0065 and still falling), i.e. towards the network alone: with a DnCNN-S trained for the
exact noise level, a second application of the prior to a partly denoised image only loses.
The first iteration's ``delta`` and ``mu`` stay at their initial 0.3 because with ``x0 = v0 = y``
and ``A = I`` they do not change the result (zero gradient).
"""

# sigma -> make_config keyword arguments
GRADIENT_DENOISE = {
    15: {"mode": "gradient", "iters": 2, "operator": "gain", "alpha": [3.54e-3, 1.0e-3],
         "delta": [0.3, 0.0823], "mu": [0.3, 0.0822]},
    25: {"mode": "gradient", "iters": 2, "operator": "gain", "alpha": [4.38e-3, 1.0e-3],
         "delta": [0.3, 0.0810], "mu": [0.3, 0.0809]},
    50: {"mode": "gradient", "iters": 2, "operator": "gain", "alpha": [4.37e-3, 1.0e-3],
         "delta": [0.3, 0.0800], "mu": [0.3, 0.0799]},
}
