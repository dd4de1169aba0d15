"""Built-in registry entries: which upstream file converts into which Flax network.

The weights table in README.md / weights/README.md is generated from these entries
(``python -m dynpnp_jax.weights_table``); keep URLs and sha256 here as the single source.
"""
from __future__ import annotations

from ..convert.matconvnet import dncnn_from_mat
from ..convert.torch_state import dncnn_from_pth
from ..networks import Network
from ..weights import UpstreamFile, WeightSpec, register
from .dncnn import DnCNN

_DNCNN_RAW = "https://github.com/cszn/DnCNN/raw/master/model"


def _dncnn(name: str, depth: int, channels: int):
    def make(variables) -> Network:
        return Network(module=DnCNN(depth=depth, channels=channels), variables=variables,
                       kind="residual", channels=channels, multiple=1, name=name)
    return make


def _single(fn):
    return lambda files: fn(next(iter(files.values())))


_DNCNN_S = {15: "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21",
            25: "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b",
            50: "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983"}
for _sigma, _sha in _DNCNN_S.items():
    register(WeightSpec(
        name=f"dncnn-s{_sigma}",
        files=(UpstreamFile(f"dncnn/sigma={_sigma}.mat", _sha,
                            f"{_DNCNN_RAW}/specifics/sigma={_sigma}.mat"),),
        convert=_single(dncnn_from_mat), network=_dncnn(f"dncnn-s{_sigma}", 17, 1),
        description=f"DnCNN-S, gray, sigma={_sigma} (17 convs, BN folded)",
        source="cszn/DnCNN model/specifics (MatConvNet v7.3)", licence="see cszn/DnCNN"))

register(WeightSpec(
    name="dncnn-s25-kair",
    files=(UpstreamFile("dncnn/kair_dncnn_25.pth",
                        "0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
                        "https://github.com/cszn/KAIR/releases/download/v1.0/dncnn_25.pth"),),
    convert=_single(dncnn_from_pth), network=_dncnn("dncnn-s25-kair", 17, 1),
    description="DnCNN-S, gray, sigma=25, PyTorch state dict (equals dncnn-s25)",
    source="cszn/KAIR model_zoo/dncnn_25.pth", licence="MIT (KAIR)", converter_needs_torch=True))

register(WeightSpec(
    name="dncnn-b-gray",
    files=(UpstreamFile("dncnn/GD_Gray_Blind.mat",
                        "37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0",
                        f"{_DNCNN_RAW}/GD_Gray_Blind.mat"),),
    convert=_single(dncnn_from_mat), network=_dncnn("dncnn-b-gray", 20, 1),
    description="DnCNN-B, gray, blind sigma 0..55 (20 convs)",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence="see cszn/DnCNN"))

register(WeightSpec(
    name="dncnn-b-color",
    files=(UpstreamFile("dncnn/GD_Color_Blind.mat",
                        "57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c",
                        f"{_DNCNN_RAW}/GD_Color_Blind.mat"),),
    convert=_single(dncnn_from_mat), network=_dncnn("dncnn-b-color", 20, 3),
    description="CDnCNN-B, colour, blind sigma 0..55 (20 convs); the paper's noise estimator g "
                "for deblurring",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence="see cszn/DnCNN"))
