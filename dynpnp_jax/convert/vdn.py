"""VDN checkpoints (zsyOAOA/VDNet ``model_state/model_state_*``) -> Flax variables.

The released files are ``torch.save(net.state_dict())`` of an ``nn.DataParallel(VDN(3))``, so every
key starts with ``module.`` (stripped here). Key mapping (see :mod:`dynpnp_jax.models.vdn`)::

    DNet.down_path.{i}.block.{0,2}.*           -> DNet/down{i}/conv{0,1}/*
    DNet.up_path.{j}.up.*                      -> DNet/up{j}/up/*
    DNet.up_path.{j}.conv_block.block.{0,2}.*  -> DNet/up{j}/block/conv{0,1}/*
    DNet.last.*                                -> DNet/last/*
    SNet.conv1.*                               -> SNet/conv0/*
    SNet.mid_layer.{2k}.*                      -> SNet/conv{k+1}/*
    SNet.conv_last.*                           -> SNet/conv{n_mid+1}/*

Conv weights ``(out, in, kH, kW)`` become HWIO. The transposed convs ``ConvTranspose2d`` have
torch weights ``(in, out, kH, kW)``; Flax ``nn.ConvTranspose(transpose_kernel=True)`` takes the
kernel of the *forward* conv whose gradient it is, ``(kH, kW, out, in)`` in HWIO terms, and flips
it spatially itself, so the same ``transpose(2, 3, 1, 0)`` as a conv applies, with no flip
(checked against PyTorch in ``tests/test_vdn.py``). Reading needs torch; running does not.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..weights import WeightsError
from .torch_state import conv_kernel, load_state_dict

_URL = "https://github.com/zsyOAOA/VDNet/tree/master/model_state"


def _strip(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {(k[len("module."):] if k.startswith("module.") else k): np.asarray(v, np.float32)
            for k, v in sd.items()}


def _indices(sd, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))})


def vdn_hparams(sd: Mapping[str, np.ndarray]) -> dict:
    """``VDN(**hparams)`` fitting state dict ``sd``: channels, features, depth_u, depth_s,
    snet_features (read from the weight shapes)."""
    sd = _strip(sd)
    downs = _indices(sd, r"DNet\.down_path\.(\d+)\.block\.0\.weight")
    mids = _indices(sd, r"SNet\.mid_layer\.(\d+)\.weight")
    if not downs or "SNet.conv1.weight" not in sd:
        raise ValueError("no 'DNet.down_path.N.block.0.weight' / 'SNet.conv1.weight' keys: not a "
                         "VDN (zsyOAOA/VDNet) state dict")
    w0 = sd["DNet.down_path.0.block.0.weight"]
    return {"channels": int(w0.shape[1]), "features": int(w0.shape[0]),
            "depth_u": len(downs), "depth_s": len(mids) + 2,
            "snet_features": int(sd["SNet.conv1.weight"].shape[0])}


def _conv(sd: dict, key: str, used: set) -> dict:
    w, b = sd.get(f"{key}.weight"), sd.get(f"{key}.bias")
    if w is None or b is None:
        raise ValueError(f"VDN state dict lacks {key}.weight / {key}.bias")
    if w.ndim != 4:
        raise ValueError(f"{key}.weight has shape {w.shape}, expected a 4-D conv weight")
    used.update({f"{key}.weight", f"{key}.bias"})
    return {"kernel": conv_kernel(w), "bias": b}


def vdn_from_state_dict(sd: Mapping[str, np.ndarray]) -> dict:
    """Flax :class:`~dynpnp_jax.models.vdn.VDN` variables from a VDNet state dict.

    Accepts keys with or without the ``module.`` prefix of ``nn.DataParallel``. Raises
    ``ValueError`` on missing or unexpected keys.
    """
    sd = _strip(sd)
    hp = vdn_hparams(sd)
    used: set[str] = set()
    depth = hp["depth_u"]
    dnet: dict = {}
    for i in range(depth):
        dnet[f"down{i}"] = {f"conv{c}": _conv(sd, f"DNet.down_path.{i}.block.{2 * c}", used)
                            for c in range(2)}
    for j in range(depth - 1):
        pre = f"DNet.up_path.{j}"
        dnet[f"up{j}"] = {
            # ConvTranspose2d (in, out, kH, kW) -> (kH, kW, out, in): transpose_kernel=True layout
            "up": _conv(sd, f"{pre}.up", used),
            "block": {f"conv{c}": _conv(sd, f"{pre}.conv_block.block.{2 * c}", used)
                      for c in range(2)},
        }
    dnet["last"] = _conv(sd, "DNet.last", used)

    mids = _indices(sd, r"SNet\.mid_layer\.(\d+)\.weight")
    if mids != list(range(0, 2 * len(mids), 2)):
        raise ValueError(f"SNet.mid_layer conv indices {mids} are not 0, 2, 4, ...")
    snet = {"conv0": _conv(sd, "SNet.conv1", used)}
    for k, m in enumerate(mids):
        snet[f"conv{k + 1}"] = _conv(sd, f"SNet.mid_layer.{m}", used)
    snet[f"conv{len(mids) + 1}"] = _conv(sd, "SNet.conv_last", used)

    extra = sorted(set(sd) - used)
    if extra:
        raise ValueError(f"unexpected keys in VDN state dict: {extra[:8]}"
                         f"{' ...' if len(extra) > 8 else ''}")
    return {"params": {"DNet": dnet, "SNet": snet}}


def vdn_from_file(path: str | Path) -> dict:
    """Flax VDN variables from a VDNet checkpoint file (e.g. ``model_state_niidgauss``).

    Raises :class:`~dynpnp_jax.weights.WeightsError` naming the file when it cannot be read or is
    not a VDN state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"VDN checkpoint {path} does not exist; pass the released "
                           f"model_state_niidgauss (from {_URL}) or your own VDN state dict")
    try:
        sd = load_state_dict(path)
    except ImportError:
        raise
    except Exception as err:  # EOFError, UnpicklingError, RuntimeError, ... from a bad file
        msg = str(err).splitlines()[0] if str(err) else ""
        raise WeightsError(
            f"could not read {path} ({path.stat().st_size} bytes) as a torch.save state dict: "
            f"{type(err).__name__}: {msg}. Expected a VDN checkpoint such as "
            f"model_state_niidgauss from {_URL}; the file is truncated, corrupt or of another "
            "kind (a Git LFS / HTML page instead of the file?)") from err
    try:
        return vdn_from_state_dict(sd)
    except ValueError as err:
        raise WeightsError(f"{path} is not a VDN state dict: {err}") from err
