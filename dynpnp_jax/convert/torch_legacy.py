"""DMPHN checkpoints: legacy (pre-zip, PyTorch < 1.6) ``torch.save`` pickles -> Flax variables.

Each released ``*.pkl`` (HongguangZhang/DMPHN-cvpr19-master ``checkpoints/``) is the
``state_dict()`` (an ``OrderedDict`` of tensors, saved from CUDA) of one ``Encoder`` or
``Decoder`` of ``models.py``, not a whole pickled module. They are read with
``torch.load(map_location='cpu', weights_only=True)``: no code in the file runs, and the CUDA
storages are mapped to the CPU. Converting needs torch; running the converted network does not
(this module imports torch only inside :func:`load_legacy_state_dict`).

Key mapping (see :mod:`dynpnp_jax.models.dmphn`): ``layerN.weight`` -> ``layerN/kernel``;
``layerN.0.*`` / ``layerN.2.*`` (the two convs of a residual block, index 1 is the ReLU) ->
``layerN/conv0/*`` / ``layerN/conv1/*``. Conv weights (out, in, kH, kW) become HWIO; the
transposed convs ``layer16`` / ``layer20`` have torch weights (in, out, kH, kW), which become
(kH, kW, out, in) for ``nn.ConvTranspose(transpose_kernel=True)`` (the flip is done by lax).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..weights import WeightsError

_TRANSPOSED = ("layer16", "layer20")
_ENCODER_LAYERS = ("layer1", "layer2", "layer3", "layer5", "layer6", "layer7", "layer9",
                   "layer10", "layer11")
_DECODER_LAYERS = ("layer13", "layer14", "layer16", "layer17", "layer18", "layer20", "layer21",
                   "layer22", "layer24")
_SINGLE = {"layer1", "layer5", "layer9", "layer16", "layer20", "layer24"}


def _expected_keys(kind: str) -> set[str]:
    layers = _ENCODER_LAYERS if kind == "encoder" else _DECODER_LAYERS
    keys = set()
    for layer in layers:
        subs = [""] if layer in _SINGLE else [".0", ".2"]
        for sub in subs:
            keys |= {f"{layer}{sub}.weight", f"{layer}{sub}.bias"}
    return keys


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a (legacy or zip) ``torch.save`` state dict as float32 numpy arrays.

    Raises :class:`~dynpnp_jax.weights.WeightsError` naming the file when it is missing,
    truncated, corrupt, not a torch file, or holds something other than a state dict.
    """
    path = Path(path)
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "converting the DMPHN .pkl checkpoints needs torch: pip install 'dynpnp_jax[convert]' "
            "(converted weights are cached; running them needs no torch)") from err
    if not path.is_file():
        raise WeightsError(f"DMPHN checkpoint {path} does not exist; pass the folder holding the "
                           "released encoder_*.pkl / decoder_*.pkl files")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # EOFError, UnpicklingError, RuntimeError, ... from a bad file
        raise WeightsError(
            f"could not read {path} ({path.stat().st_size} bytes) as a torch.save checkpoint: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Expected a "
            "DMPHN encoder/decoder state dict (a released checkpoints/*.pkl file); the file is "
            "truncated, corrupt or of another kind. Fix: download it again from "
            "https://github.com/HongguangZhang/DMPHN-cvpr19-master/tree/master/checkpoints") from err
    if isinstance(sd, torch.nn.Module):  # pragma: no cover - weights_only never returns modules
        sd = sd.state_dict()
    if not isinstance(sd, Mapping):
        raise WeightsError(f"{path} holds a {type(sd).__name__}, expected a state dict "
                           "(OrderedDict of tensors) of a DMPHN Encoder or Decoder")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k  # nn.DataParallel prefix
        if not hasattr(v, "detach"):
            raise WeightsError(f"{path}: entry {k!r} is a {type(v).__name__}, expected a tensor")
        out[k] = v.detach().cpu().numpy().astype(np.float32)
    return out


def _kernel(w: np.ndarray, key: str) -> np.ndarray:
    if w.ndim != 4:
        raise ValueError(f"{key} has shape {w.shape}, expected a 4-d conv weight")
    # conv: (out, in, kH, kW) -> (kH, kW, in, out); transposed conv: (in, out, kH, kW) ->
    # (kH, kW, out, in), which the same transpose gives.
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def block_params(sd: Mapping[str, np.ndarray], kind: str, *, source: str = "state dict") -> dict:
    """Flax params of one :class:`~dynpnp_jax.models.dmphn.Encoder` (``kind='encoder'``) or
    :class:`~dynpnp_jax.models.dmphn.Decoder` (``kind='decoder'``) from its torch state dict."""
    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    want = _expected_keys(kind)
    got = set(sd)
    if got != want:
        other = "decoder" if kind == "encoder" else "encoder"
        hint = (f" (it looks like a DMPHN {other}: check the file name)"
                if got == _expected_keys(other) else "")
        raise WeightsError(
            f"{source} is not a DMPHN {kind} state dict{hint}: missing keys "
            f"{sorted(want - got)[:6]}, unexpected keys {sorted(got - want)[:6]}. Pass the "
            f"released {kind}_*.pkl file")
    params: dict = {}
    for key, value in sd.items():
        m = re.fullmatch(r"(layer\d+)(?:\.(\d))?\.(weight|bias)", key)
        layer, idx, what = m.group(1), m.group(2), m.group(3)
        node = params.setdefault(layer, {})
        if idx is not None:
            node = node.setdefault(f"conv{0 if idx == '0' else 1}", {})
        node["kernel" if what == "weight" else "bias"] = (
            _kernel(value, f"{source}:{key}") if what == "weight" else np.asarray(value))
    return params


def dmphn_from_files(files: Mapping[str, Path]) -> dict:
    """Flax variables of a DMPHN / Stack-DMPHN from its checkpoint files.

    ``files`` maps a name ending in ``<encoder|decoder>_lv<k>.pkl`` or
    ``<encoder|decoder>_s<s>_lv<k>.pkl`` (registry relpaths or plain file names) to a local file;
    each becomes the sub-module of the same stem (``encoder_lv1``, ``decoder_s2_lv3``, ...).
    """
    params = {}
    for rel, path in files.items():
        stem = Path(rel).stem
        m = re.fullmatch(r"(encoder|decoder)(_s\d+)?_lv\d+", stem)
        if m is None:
            raise WeightsError(f"{rel}: not a DMPHN checkpoint name; expected "
                               "encoder_lv<k>.pkl / decoder_s<s>_lv<k>.pkl")
        sd = load_legacy_state_dict(path)
        params[stem] = block_params(sd, m.group(1), source=str(path))
    return {"params": params}
