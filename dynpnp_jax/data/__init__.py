"""Test data: TFDS builders for Set12, BSD68, GoPro, Set3G, Set3C, Set5, CBSD68 and any folder
of images, and the evaluation protocols (noise, crops, metrics) that turn a dataset example into a scored
restoration problem.

Quick use::

    from dynpnp_jax import data
    images = data.load_dataset("set12")            # 12 dicts: image uint8 (H, W, 1), name '01'..
    proto = data.get_protocol("standard")
    prob = proto.problem(images[0], 25)            # Problem(name, y, clean, meta, params_extra)
    restored, _ = dynpnp_jax.restore(params, prob.y[None], cfg)
    scores = proto.evaluate(restored[0], prob.meta)   # {'psnr': ..., 'ssim': ...}

Where the source images come from (explicit ``data_dir``, ``$DYNPNP_DATA``, ``shared/data``, or a
download) is described in ``sources``; how they are stored (TFDS array_record records under
``paths.cache_dir()/'tfds'``, rebuilt when the files change) in ``builders``.
"""
from __future__ import annotations

import os

import numpy as np

from . import builders, degradations, protocols, sources
from .builders import BUILDERS, get_builder
from .degradations import Dpir, ImresizeSR
from .protocols import PROTOCOLS, NonFiniteOutput, Problem, Protocol, get_protocol
from .sources import ImageReadError, read_image, reference_status, to_channels

__all__ = ["DATASETS", "load_dataset", "resolve_source", "get_builder", "Protocol", "Problem",
           "NonFiniteOutput", "PROTOCOLS", "get_protocol", "ImageReadError", "read_image",
           "reference_status", "to_channels", "builders", "degradations", "protocols", "sources"]

PROTOCOLS.setdefault("dpir", Dpir())  # the known-degradation protocol (data.degradations)
PROTOCOLS.setdefault("imresize", ImresizeSR())  # SR by MATLAB imresize (data.degradations)
DATASETS: tuple[str, ...] = tuple(BUILDERS)


def _to_numpy(example: dict) -> dict:
    out = {}
    for key, value in example.items():
        if key == "name":
            out[key] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        elif key == "has_sharp":
            out[key] = bool(value)
        else:
            out[key] = np.asarray(value)
    return out


def resolve_source(name: str, data_dir: str | os.PathLike | None = None) -> sources.Source:
    """The files of dataset ``name`` (nothing read or prepared yet): e.g. ``.paired`` says
    whether a folder holds blur/sharp pairs, :func:`reference_status` whether it is the
    published set. Raises as :func:`load_dataset` does."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset `name`={name!r}; valid names: {list(DATASETS)}. "
                         f"Fix: use one of those, or name='folder' with data_dir=<a folder of "
                         f"images>.")
    return sources.resolve(name, data_dir)


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None,
                 limit: int | None = None, source: sources.Source | None = None) -> list[dict]:
    """Loads a test set as a list of numpy examples, sorted by name (deterministic).

    The first call for a given set of files prepares TFDS records in the cache (seconds);
    later calls read them back.

    Args:
      name: one of ``DATASETS``: 'set12', 'bsd68', 'gopro' or 'folder'.
      data_dir: a data root holding ``<name>/`` (or the dataset folder itself); for 'folder',
        the folder of images (or with ``blur/`` + ``sharp/``), required. Default: ``$DYNPNP_DATA``,
        else ``shared/data``, else a download (Set12/BSD68 only).
      limit: return only the first ``limit`` examples (in name order); None for all.
      source: an already resolved :func:`resolve_source` (then ``data_dir`` is not used).

    Returns:
      A list of dicts. Clean sets: ``image`` uint8 (H, W, C), ``name`` str. Paired sets (gopro,
      folder with blur/): ``blur``, ``sharp`` uint8 (H, W, C), ``has_sharp`` bool, ``name``;
      ``sharp`` is a (0, 0, C) placeholder where ``has_sharp`` is False.

    Raises:
      ValueError: unknown ``name`` (the message lists the valid ones) or a bad ``limit``.
      FileNotFoundError: no images where they were looked for (the message names the path and
        the fix; for GoPro, how to download it).
      ImageReadError: a file that cannot be decoded (truncated, corrupt), named.
    """
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown dataset `name`={name!r}; valid names: "
                         f"{list(DATASETS)}. Fix: use one of those, or name='folder' with "
                         f"data_dir=<a folder of images>.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit < 1):
        raise ValueError(f"load_dataset: `limit` must be None or a positive int, got {limit!r}. "
                         f"Fix: pass e.g. limit=2, or leave it out for the whole set.")
    if source is not None and source.name != name:
        raise ValueError(f"load_dataset: `source` is of dataset {source.name!r}, not {name!r}. "
                         f"Fix: pass the source resolved for the same name.")
    builder = (BUILDERS[name](source=source) if source is not None
               else get_builder(name, data_dir=data_dir))
    builder.download_and_prepare()
    split = builder.as_data_source()["test"]
    count = len(split) if limit is None else min(limit, len(split))
    examples = [_to_numpy(split[i]) for i in range(count)]
    names = [ex["name"] for ex in examples]
    if names != sorted(names):  # records are written in name order (disable_shuffling)
        raise RuntimeError(f"load_dataset({name!r}): the prepared records under "
                           f"{builder.data_dir} are not in name order. Fix: delete that folder "
                           f"so that it is rebuilt.")
    return examples
