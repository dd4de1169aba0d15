"""PyTorch state dicts (zip or legacy pickle ``torch.save`` files).

Conv weights are ``(out, in, kH, kW)`` (OIHW) -> Flax HWIO via ``transpose(2, 3, 1, 0)``;
transposed convs are ``(in, out, kH, kW)``. Reading needs torch (the ``convert`` extra); running
the converted network does not.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A state dict as numpy arrays (``weights_only`` loading: no code in the file runs)."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("converting PyTorch weights needs torch: pip install 'dynpnp_jax[convert]'"
                          " (the converted weights are cached; running them needs no torch)") from err
    sd = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k  # nn.DataParallel prefix
        out[k] = v.detach().cpu().numpy().astype(np.float32)
    return out


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """OIHW -> HWIO."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def dncnn_from_state_dict(sd: dict[str, np.ndarray]) -> dict:
    """Flax DnCNN variables from a KAIR-style state dict (``model.{2i}.weight/bias``)."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.weight$", k))})
    if not idx:
        raise ValueError("no 'model.N.weight' keys: not a KAIR DnCNN state dict")
    params = {}
    for i, j in enumerate(idx):
        w = sd[f"model.{j}.weight"]
        if w.ndim != 4:
            raise ValueError(f"model.{j}.weight has shape {w.shape}: batch-norm not folded?")
        params[f"conv{i}"] = {"kernel": conv_kernel(w), "bias": sd[f"model.{j}.bias"]}
    return {"params": params}


def dncnn_from_pth(path: str | Path) -> dict:
    return dncnn_from_state_dict(load_state_dict(path))
