"""Spread a batch of images over this process's devices (a 1-D ``batch`` mesh).

``restore`` is one jitted program; given a batch sharded along its first axis, XLA partitions
the whole loop (network, x-step, A-step) image-wise across devices, with no communication
because every image has its own operator. On one device these functions are no-ops.

The mesh spans the *local* devices (``jax.local_devices()``): in a multi-process job
(:mod:`dynpnp_jax.distributed`) every process restores its own batches on its own devices, and
the processes exchange results, not arrays. Multi-host: call :func:`initialize` (or
``dynpnp_jax.distributed.initialize``) first on every host.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .distributed import initialize as _initialize


def initialize(**kwargs):
    """Joins the multi-process job when the environment (or ``kwargs``) describes one; a no-op
    on one process. Returns the :class:`dynpnp_jax.distributed.Cluster`."""
    return _initialize(**kwargs)


def batch_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``batch`` over ``devices`` (default: this process's devices)."""
    devices = jax.local_devices() if devices is None else devices
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


def pad_leaves(tree, batch: int, pad: int):
    """``tree`` (e.g. per-image operators) with every array leaf whose first axis is ``batch``
    padded as :func:`shard_batch` pads the images (its last entry repeated ``pad`` times); other
    leaves (shared by the batch, e.g. one kernel of batch 1) are left alone."""
    if not pad:
        return tree

    def one(leaf):
        if np.ndim(leaf) and np.shape(leaf)[0] == batch:
            leaf = np.asarray(leaf)
            return np.concatenate([leaf, np.repeat(leaf[-1:], pad, axis=0)], axis=0)
        return leaf

    return jax.tree_util.tree_map(one, tree)


def unshard(x, pad: int) -> np.ndarray:
    """Gather to host numpy and drop the padding of :func:`shard_batch`."""
    x = np.asarray(x)
    return x[: x.shape[0] - pad] if pad else x
