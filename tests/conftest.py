"""Shared fixtures.

Tests that read ``../shared`` (data, upstream weights) FAIL when ``CI`` is set and the data is
missing, and skip otherwise (a developer machine without the shared folder).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dynpnp_jax import paths


def require_shared(*parts: str) -> Path:
    """Path to ``shared/<parts>``; fail under CI, skip elsewhere, when it is missing."""
    base = paths.shared_dir()
    target = base.joinpath(*parts) if base is not None else None
    if target is None or not target.exists():
        msg = f"shared data {'/'.join(parts)} not found (looked in {base}); set DYNPNP_SHARED"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return target


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared("data")


@pytest.fixture(scope="session")
def shared_upstream() -> Path:
    return require_shared("upstream")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache folder for the module ($DYNPNP_CACHE: converted weights and compiled
    programs reused across its tests), with the data and compile-cache overrides of the calling
    shell removed."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DYNPNP_CACHE", str(path))
        mp.delenv("DYNPNP_DATA", raising=False)
        mp.delenv("DYNPNP_NO_COMPILE_CACHE", raising=False)
        yield path


@pytest.fixture(scope="session")
def dncnn_s25(shared_upstream):
    from dynpnp_jax import load_network

    return load_network("dncnn-s25")


def load_gray(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
