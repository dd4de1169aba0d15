"""Hyper-parameters of ``gradient`` mode, tuned on ``shared/data/tune`` (never on a test set).

Regenerate with ``python -m dynpnp_jax.tune`` (the command prints this dictionary).
Until tuned, these are hand-set starting values: see the docstring of ``dynpnp_jax.tune``.
"""

# sigma -> make_config keyword arguments
GRADIENT_DENOISE = {
    15: {"mode": "gradient", "iters": 2, "delta": 0.5, "mu": 1.0, "alpha": 1e-3},
    25: {"mode": "gradient", "iters": 2, "delta": 0.5, "mu": 1.0, "alpha": 1e-3},
    50: {"mode": "gradient", "iters": 2, "delta": 0.5, "mu": 1.0, "alpha": 1e-3},
}
