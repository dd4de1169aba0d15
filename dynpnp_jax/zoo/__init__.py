"""The network families, one module each: the Flax module, its converter and its registry
entries side by side (:mod:`.dncnn`, :mod:`.dmphn`, :mod:`.vdn`, :mod:`.ffdnet`,
:mod:`.drunet`, :mod:`.ircnn`).

Importing this package registers every entry in :data:`dynpnp_jax.weights.REGISTRY`
(``import dynpnp_jax`` does it).
"""
from . import dmphn, dncnn, drunet, ffdnet, ircnn, vdn  # noqa: F401  (registers the entries)
from .dmphn import DMPHN, StackDMPHN
from .dncnn import DnCNN
from .drunet import DRUNet
from .ffdnet import FFDNet
from .ircnn import IRCNN
from .vdn import VDN

__all__ = ["DMPHN", "DRUNet", "DnCNN", "FFDNet", "IRCNN", "StackDMPHN", "VDN"]
