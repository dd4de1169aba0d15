"""PyTorch ``torch.save`` state dicts (zip or legacy pre-1.6 pickle), read as numpy arrays.

The one place that loads torch files. Loading uses ``weights_only=True`` (no code in the file
runs) and maps CUDA storages to the CPU. Conv weights are ``(out, in, kH, kW)`` (OIHW) -> Flax
HWIO via ``transpose(2, 3, 1, 0)``; transposed convs ``(in, out, kH, kW)`` take the same transpose
for ``nn.ConvTranspose(transpose_kernel=True)``. Reading needs torch (the ``convert`` extra);
running converted networks does not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


class FormatError(ValueError):
    """A file that cannot be read as the expected format (missing, truncated, corrupt, other)."""


def load_state_dict(path: str | Path, *, what: str = "a PyTorch state dict",
                    fix: str = "download the file again") -> dict[str, np.ndarray]:
    """The state dict in ``path`` as float32 numpy arrays, ``module.`` prefixes stripped.

    Args:
      path: a ``torch.save`` file (zip or legacy format).
      what: what the file should hold, for messages (e.g. ``'a DMPHN encoder state dict'``).
      fix: how to get a good copy, for messages.

    Raises:
      FormatError: naming the file, when it is missing, truncated, corrupt, not a torch file, or
        holds something other than a state dict (a dict of tensors, or ``{'state_dict': ...}``).
      ImportError: when torch is not installed.
    """
    path = Path(path).expanduser()
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading {path} ({what}) needs torch: pip install 'dynpnp_jax[convert]' "
                          "(converted weights are cached; running them needs no torch)") from err
    if not path.is_file():
        raise FormatError(f"{path} does not exist; expected {what}. Fix: {fix}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # EOFError, UnpicklingError, RuntimeError, ... from a bad file
        msg = str(err).splitlines()[0] if str(err) else ""
        raise FormatError(
            f"could not read {path} ({path.stat().st_size} bytes) as a torch.save file: "
            f"{type(err).__name__}: {msg}. Expected {what}; the file is truncated, corrupt or of "
            f"another kind (a Git LFS pointer or an HTML page instead of the file?). Fix: {fix}"
        ) from err
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise FormatError(f"{path} holds a {type(sd).__name__}, expected {what} (a dict of "
                          f"tensors). Fix: {fix}")
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k  # nn.DataParallel prefix
        if not hasattr(v, "detach"):
            raise FormatError(f"{path}: entry {k!r} is a {type(v).__name__}, expected a tensor "
                              f"({what})")
        out[k] = v.detach().cpu().numpy().astype(np.float32)
    return out


def conv_kernel(w: np.ndarray, key: str = "weight") -> np.ndarray:
    """A torch conv weight OIHW (or a transposed conv's IOHW) -> Flax HWIO (HWOI)."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise FormatError(f"{key} has shape {w.shape}, expected a 4-D conv weight")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
