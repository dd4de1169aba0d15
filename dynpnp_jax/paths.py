"""Where things live: the user cache, the shared data/upstream folders.

Nothing here is written into the repository: converted weights and downloads go to the cache
(``$DYNPNP_CACHE`` or ``~/.cache/dynpnp_jax``); the read-only ``shared/`` folder beside a
checkout is only read.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The writable cache root (``$DYNPNP_CACHE``, else ``~/.cache/dynpnp_jax``)."""
    root = os.environ.get("DYNPNP_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "dynpnp_jax"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_dir() -> Path | None:
    """The read-only ``shared/`` folder: ``$DYNPNP_SHARED``, else ``../shared`` beside the checkout
    (or beside the working directory). ``None`` when there is none."""
    env = os.environ.get("DYNPNP_SHARED")
    if env:
        return Path(env).expanduser()
    for cand in (_PKG_ROOT.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if (cand / "data").is_dir() or (cand / "upstream").is_dir():
            return cand
    return None


def upstream_dir() -> Path | None:
    """Folder of the original (unconverted) weight files: ``$DYNPNP_UPSTREAM`` or ``shared/upstream``."""
    env = os.environ.get("DYNPNP_UPSTREAM")
    if env:
        return Path(env).expanduser()
    shared = shared_dir()
    return shared / "upstream" if shared is not None and (shared / "upstream").is_dir() else None


def data_dir() -> Path | None:
    """Folder of test images: ``$DYNPNP_DATA`` or ``shared/data``."""
    env = os.environ.get("DYNPNP_DATA")
    if env:
        return Path(env).expanduser()
    shared = shared_dir()
    return shared / "data" if shared is not None and (shared / "data").is_dir() else None
