"""The network families, one module each: the Flax module, its converter and its registry
entries side by side (:mod:`.dncnn`, :mod:`.dmphn`, :mod:`.vdn`, :mod:`.ffdnet`).

Importing this package registers every entry in :data:`dynpnp_jax.weights.REGISTRY`
(``import dynpnp_jax`` does it).
"""
from . import dmphn, dncnn, ffdnet, vdn  # noqa: F401  (registers the entries)
from .dmphn import DMPHN, StackDMPHN
from .dncnn import DnCNN
from .ffdnet import FFDNet
from .vdn import VDN

__all__ = ["DMPHN", "DnCNN", "FFDNet", "StackDMPHN", "VDN"]
