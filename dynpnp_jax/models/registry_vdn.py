"""Registry entry for VDN (Yue et al., NeurIPS 2019), the paper's denoising prior.

Imported by :mod:`dynpnp_jax.models.registry`. The released checkpoint is not in the offline
mirror (over its size limit), so its sha256 is not recorded: ``sha256=UNKNOWN`` means the
file is accepted as found (with a warning) and cached under its own hash (see
:mod:`dynpnp_jax.weights`). Record the hash here once someone has the released file.
"""
from __future__ import annotations

from ..convert.vdn import vdn_from_file
from ..networks import Network
from ..weights import UNKNOWN, UpstreamFile, WeightSpec, register
from .vdn import VDN, size_multiple

_VDN_RAW = "https://github.com/zsyOAOA/VDNet/raw/master/model_state"
_VDN_LICENCE = ("no licence file in zsyOAOA/VDNet (checked at 599c153, 2021-06-29): all rights "
                "reserved by the authors; the weights are downloaded from the authors' repository, "
                "not redistributed")


def _vdn_network(name: str, channels: int):
    def make(variables) -> Network:
        return Network(module=VDN(channels=channels), variables=variables, kind="residual",
                       channels=channels, multiple=size_multiple(4), name=name)
    return make


register(WeightSpec(
    name="vdn-niidgauss",
    files=(UpstreamFile("vdn/model_state_niidgauss", UNKNOWN,
                        f"{_VDN_RAW}/model_state_niidgauss"),),
    convert=lambda files: vdn_from_file(next(iter(files.values()))),
    network=_vdn_network("vdn-niidgauss", 3),
    description="VDN (DNet U-Net depth 4 + SNet 5 convs), colour, blind denoiser trained on "
                "simulated non-i.i.d. Gaussian noise; the paper's denoising prior: "
                "prior(x) = x - DNet(x)[:3]; sizes padded to a multiple of 8",
    source="zsyOAOA/VDNet model_state/model_state_niidgauss (torch state dict of "
           "nn.DataParallel(VDN(3))); architecture networks/VDN.py, UNet.py, DnCNN.py",
    licence=_VDN_LICENCE, converter_needs_torch=True))
