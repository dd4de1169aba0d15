"""MatConvNet ``simplenn`` networks saved as MATLAB v7.3 (HDF5) files, read with h5py.

MATLAB stores a conv filter as ``(kH, kW, in, out)`` in column-major order; h5py reverses the
axes, so it arrives as ``(out, in, kW, kH)`` and ``transpose(3, 2, 1, 0)`` gives Flax's HWIO.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _string(ds) -> str:
    return "".join(chr(c) for c in np.asarray(ds).ravel())


def read_simplenn(path: str | Path) -> list[dict]:
    """The layers of a simplenn ``.mat`` file as dicts (``type``, ``name``, ``weights``, ...)."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a MATLAB v7.3 (HDF5) file: {err}") from err
    with f:
        if "net" not in f or "layers" not in f["net"]:
            raise ValueError(f"{path} holds no MatConvNet simplenn network (no net.layers)")
        refs = np.asarray(f["net"]["layers"]).ravel()
        layers = []
        for ref in refs:
            g = f[ref]
            layer = {"type": _string(g["type"]), "name": _string(g["name"])}
            if "weights" in g:
                layer["weights"] = [np.asarray(f[r], dtype=np.float32)
                                    for r in np.asarray(g["weights"]).ravel()]
            for key in ("pad", "stride", "leak"):
                if key in g:
                    layer[key] = np.asarray(g[key]).ravel().tolist()
            layers.append(layer)
    return layers
