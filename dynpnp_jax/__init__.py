"""dynpnp_jax: plug-and-play image restoration with dynamically stacked pretrained networks.

A JAX/Flax reimplementation of Wang et al., "Stacking Networks Dynamically for Image Restoration
Based on the Plug-and-Play Framework" (ECCV 2020). Data contract: float32 NHWC images in [0, 1].
"""
from .networks import Network
from .noise_estimation import estimate_noise_level
from .operators import Convolution, GainMap, Identity, RowMix, make_operator
from .solver import (Config, Trajectory, compile_count, dpir_schedule, make_config, restore,
                     trace_count)
from .weights import WeightsError, available, load_network
from . import zoo  # noqa: E402,F401  (registers the network families)

__version__ = "0.1.0"

__all__ = [
    "Config", "Convolution", "GainMap", "Identity", "Network", "RowMix", "Trajectory",
    "WeightsError", "available", "load_network", "make_config", "make_operator", "restore",
    "trace_count", "compile_count", "dpir_schedule", "estimate_noise_level", "__version__",
]
