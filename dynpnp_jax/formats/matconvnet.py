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
    """The layers of a simplenn ``.mat`` file as dicts.

    Each dict has ``type`` and ``name``; ``weights`` (float32 arrays as h5py gives them; empty for
    weightless layers, whose ``{}`` cell HDF5 stores as a uint64 array of its dimensions, not as
    references: FFDNet's SubP / concat / relu layers); and the numeric fields present among
    ``pad``, ``stride``, ``dilate``, ``leak``, ``scale`` as lists of floats.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a MATLAB v7.3 (HDF5) file: {err}") from err
    with f:
        if "net" not in f or "layers" not in f["net"]:
            raise ValueError(f"{path} holds no MatConvNet simplenn network (no net.layers)")
        layers = []
        for ref in np.asarray(f["net"]["layers"]).ravel():
            g = f[ref]
            layer = {"type": _string(g["type"]), "name": _string(g["name"]), "weights": []}
            if "weights" in g:
                ds = g["weights"]
                if ds.dtype == h5py.ref_dtype or ds.dtype.kind == "O":
                    layer["weights"] = [np.asarray(f[r], dtype=np.float32)
                                        for r in np.asarray(ds).ravel()]
            for key in ("pad", "stride", "dilate", "leak", "scale"):
                if key in g:
                    layer[key] = np.asarray(g[key], dtype=np.float64).ravel().tolist()
            layers.append(layer)
    return layers
