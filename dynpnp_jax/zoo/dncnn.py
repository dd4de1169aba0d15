"""DnCNN (Zhang et al., TIP 2017) in Flax: conv+ReLU, (conv+BN+ReLU) x (depth-2), conv.

The released models have their batch-norm folded into the convolutions, so every conv here has
a bias and there is no normalisation layer. The network predicts the noise residual; the
denoised image is ``x - DnCNN(x)`` (see :class:`~dynpnp_jax.networks.Network`).

Layer names ``conv0 .. conv{depth-1}`` are what the converters target. This module holds the
family: the Flax module, its converters (MatConvNet ``.mat`` and KAIR ``.pth``) and its registry
entries (``dncnn-s15/25/50``, ``dncnn-s25-kair``, ``dncnn-b-gray``, ``dncnn-b-color``).
"""
from __future__ import annotations

import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..formats.matconvnet import read_simplenn
from ..formats.torch import conv_kernel, load_state_dict
from ..weights import UpstreamFile, WeightSpec, register


class DnCNN(nn.Module):
    """DnCNN-S (``depth=17``) or DnCNN-B (``depth=20``).

    Attributes:
      depth: number of convolutions.
      channels: image channels (1 gray, 3 colour).
      features: width of the hidden layers.
      dtype: computation dtype (``jnp.bfloat16`` trades accuracy for speed on TPU).
    """

    depth: int = 17
    channels: int = 1
    features: int = 64
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(self.dtype)
        for i in range(self.depth):
            last = i == self.depth - 1
            h = nn.Conv(self.channels if last else self.features, (3, 3), padding="SAME",
                        use_bias=True, dtype=self.dtype, name=f"conv{i}")(h)
            if not last:
                h = nn.relu(h)
        return h.astype(x.dtype)


# ------------------------------------------------------------------------------ converters
def dncnn_from_mat(path: str | Path) -> dict:
    """Flax variables of :class:`DnCNN` from a cszn/DnCNN MatConvNet ``.mat`` model."""
    layers = read_simplenn(path)
    convs = [layer for layer in layers if layer["type"] == "conv"]
    other = {layer["type"] for layer in layers} - {"conv", "relu"}
    if other:
        raise ValueError(f"{path}: unexpected layer types {sorted(other)} (expected folded "
                         "batch-norm: conv and relu only)")
    params = {}
    for i, layer in enumerate(convs):
        w, b = layer["weights"]
        if w.ndim == 3:  # MATLAB drops a trailing singleton 'out' axis (1-channel last conv)
            w = w[None]
        if layer.get("pad", [1])[0] != 1 or layer.get("stride", [1])[0] != 1 or w.shape[2:] != (3, 3):
            raise ValueError(f"{path}: layer {layer['name']} is not a 3x3/pad 1/stride 1 conv")
        params[f"conv{i}"] = {"kernel": np.ascontiguousarray(w.transpose(3, 2, 1, 0)),
                              "bias": b.reshape(-1)}
    return {"params": params}


def dncnn_from_state_dict(sd: dict) -> dict:
    """Flax DnCNN variables from a KAIR-style state dict (``model.{2i}.weight/bias``)."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.weight$", k))})
    if not idx:
        raise ValueError("no 'model.N.weight' keys: not a KAIR DnCNN state dict")
    params = {}
    for i, j in enumerate(idx):
        w = sd[f"model.{j}.weight"]
        if w.ndim != 4:
            raise ValueError(f"model.{j}.weight has shape {w.shape}: batch-norm not folded?")
        params[f"conv{i}"] = {"kernel": conv_kernel(w, f"model.{j}.weight"),
                              "bias": sd[f"model.{j}.bias"]}
    return {"params": params}


def dncnn_from_pth(path: str | Path) -> dict:
    """Flax DnCNN variables from a KAIR ``dncnn_*.pth`` file."""
    return dncnn_from_state_dict(load_state_dict(
        path, what="a KAIR DnCNN state dict",
        fix="download it again from https://github.com/cszn/KAIR/releases/tag/v1.0"))


# ------------------------------------------------------------------------------ registry
_RAW = "https://github.com/cszn/DnCNN/raw/master/model"
_LICENCE = ("no licence file in cszn/DnCNN (research release; fetched from the authors' "
            "repository, never redistributed)")
_MAT_SOURCE = "cszn/DnCNN model/{} (MatConvNet v7.3)"


def _single(fn):
    return lambda files: fn(next(iter(files.values())))


_S_SHA = {15: "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21",
          25: "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b",
          50: "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983"}
for _sigma, _sha in _S_SHA.items():
    register(WeightSpec(
        name=f"dncnn-s{_sigma}",
        files=(UpstreamFile(f"dncnn/sigma={_sigma}.mat", _sha, f"{_RAW}/specifics/sigma={_sigma}.mat"),),
        convert=_single(dncnn_from_mat), module=DnCNN(depth=17, channels=1), receptive_field=17,
        description=f"DnCNN-S, gray, sigma={_sigma} (17 convs, BN folded)",
        source=_MAT_SOURCE.format("specifics"), licence=_LICENCE))

register(WeightSpec(
    name="dncnn-s25-kair",
    files=(UpstreamFile("dncnn/kair_dncnn_25.pth",
                        "0451a70de9b672ae037270498fbb1c17a1c1c4403785df586ff65df5b858e5b0",
                        "https://github.com/cszn/KAIR/releases/download/v1.0/dncnn_25.pth"),),
    convert=_single(dncnn_from_pth), module=DnCNN(depth=17, channels=1), receptive_field=17,
    description="DnCNN-S, gray, sigma=25, PyTorch state dict (equals dncnn-s25)",
    source="cszn/KAIR model_zoo/dncnn_25.pth", licence="MIT (KAIR)", converter_needs_torch=True))

register(WeightSpec(
    name="dncnn-b-gray",
    files=(UpstreamFile("dncnn/GD_Gray_Blind.mat",
                        "37f76da0b71dd2b2789ce91848fe2f184ab486203c9af9ac1b98199b60ea02b0",
                        f"{_RAW}/GD_Gray_Blind.mat"),),
    convert=_single(dncnn_from_mat), module=DnCNN(depth=20, channels=1), receptive_field=20,
    description="DnCNN-B, gray, blind sigma 0..55 (20 convs)",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence=_LICENCE))

register(WeightSpec(
    name="dncnn-b-color",
    files=(UpstreamFile("dncnn/GD_Color_Blind.mat",
                        "57db5437a44037e7675a99042fe7b14d3dcdf1c333d3ec665855566e8a59795c",
                        f"{_RAW}/GD_Color_Blind.mat"),),
    convert=_single(dncnn_from_mat), module=DnCNN(depth=20, channels=3), channels=3, receptive_field=20,
    description="CDnCNN-B, colour, blind sigma 0..55 (20 convs); the paper's noise estimator g "
                "for deblurring",
    source="cszn/DnCNN model/ (MatConvNet v7.3)", licence=_LICENCE))
