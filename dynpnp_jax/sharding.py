"""Spread a batch of images over the available devices (a 1-D ``batch`` mesh).

``restore`` is one jitted program; given a batch sharded along its first axis, XLA partitions
the whole loop (network, x-step, A-step) image-wise across devices, with no communication
because every image has its own operator. On one device these functions are no-ops.

Multi-host (TPU pods): call :func:`initialize` first on every host.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def initialize() -> None:
    """``jax.distributed.initialize()`` when running on several hosts (no-op on one)."""
    if int(os.environ.get("JAX_PROCESS_COUNT", "1")) > 1 or os.environ.get("TPU_WORKER_HOSTNAMES"):
        jax.distributed.initialize()


def batch_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``batch`` over ``devices`` (default: all)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("batch",))


def shard_batch(x, mesh: Mesh | None = None):
    """Place ``x`` (B, ...) across the mesh along B, padding B to a multiple of the device count
    by repeating the last image. Returns ``(sharded, pad)``; undo with :func:`unshard`."""
    if x is None:
        return None, 0
    mesh = mesh or batch_mesh()
    n = mesh.devices.size
    if n == 1:
        return x, 0
    pad = (-x.shape[0]) % n
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)], axis=0)
    return jax.device_put(x, NamedSharding(mesh, P("batch"))), pad


def unshard(x, pad: int) -> np.ndarray:
    """Gather to host numpy and drop the padding of :func:`shard_batch`."""
    x = np.asarray(x)
    return x[: x.shape[0] - pad] if pad else x
