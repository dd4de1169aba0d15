"""TFDS builders for the test sets: set12, bsd68, gopro, set3g, set3c, set5, cbsd68 and any
folder of images.

They work with ``tensorflow-datasets`` alone (TensorFlow not installed): images are stored as
``tfds.features.Tensor(shape=(None, None, C), dtype=np.uint8, encoding='zlib')`` rather than
``Image`` (whose PNG codec needs TF), files as ``array_record``, and they are read back with
``builder.as_data_source()`` (random access, numpy out). With TensorFlow installed,
``builder.as_dataset(split='test')`` works too.

Each builder has one split, ``test``, written in name order (``disable_shuffling``). Features:

* clean sets (set12, bsd68, set3g, set3c, set5, cbsd68, folder of images): ``image`` uint8 (H, W, C) and ``name`` (the
  file stem, e.g. '01'). Set12/BSD68/Set3G are gray, C = 1; Set3C/Set5/CBSD68 RGB, C = 3; a
  folder keeps each file's kind (C = 1 or 3). Files are read by ``sources.read_image`` (PNG/BMP/JPEG/TIFF, 8 or 16 bit: see
  ``sources.BIT_DEPTH_RULE``); a file that cannot be read stops the build with its path.
* paired sets (gopro, folder with ``blur/`` + ``sharp/``): ``blur`` uint8 (H, W, 3 or C),
  ``sharp`` of the same shape, ``has_sharp`` (bool) and ``name``. Where no sharp frame exists
  (offline GoPro has only frame 000001's) ``has_sharp`` is False and ``sharp`` is a zero-size
  (0, 0, C) placeholder, so every record has the same keys and no fake ground truth. There is
  no ``image`` key in paired sets: the clean image is ``sharp`` and only where ``has_sharp``.

Prepared data goes to ``paths.cache_dir()/tfds/<dataset>/src_<fingerprint>/<version>/``, where
the fingerprint (see ``sources.fingerprint``) changes with the source files, so a stale cache
is never read. Old fingerprints stay on disk; delete ``cache_dir()/tfds`` to reclaim space.

The classes use ``skip_registration=True``: they take a resolved ``Source`` rather than a
name, and registering generic names such as 'folder' in the global TFDS registry could clash
with other packages. Use ``get_builder(name)`` (or ``load_dataset``) instead of ``tfds.builder``.
"""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import numpy as np
from etils import epath
import tensorflow_datasets as tfds

from .. import paths
from . import sources

__all__ = ["Set12", "Bsd68", "Gopro", "Set3g", "Set3c", "Set5", "Cbsd68", "Folder", "BUILDERS",
           "get_builder"]


class _QuietCustomConfig(logging.Filter):
    """Drops TFDS's 'Using custom data configuration' warning: our configs are always custom
    (one per source fingerprint), so the warning says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Using custom data configuration" not in str(record.msg)


logging.getLogger("absl").addFilter(_QuietCustomConfig())


def _tensor(channels: int | None) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=(None, None, channels), dtype=np.uint8, encoding="zlib")


class _PngBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery: one 'test' split generated from a resolved ``sources.Source``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: uint8 zlib tensors in array_record files."}
    CHANNELS: int | None = None  # fixed channel count, or None to keep each file's own
    HOMEPAGE = ""

    def __init__(self, *, source: sources.Source, data_dir: str | os.PathLike | None = None):
        self._source = source
        if source.paired != self._paired():
            raise ValueError(f"{type(self).__name__}: `source` is "
                             f"{'paired' if source.paired else 'clean'}, this builder expects "
                             f"{'paired' if self._paired() else 'clean'} images. Fix: build the "
                             f"source with sources.resolve() for the same dataset name.")
        config = tfds.core.BuilderConfig(
            name=f"src_{source.fingerprint}", description=f"image files under {source.root}")
        data_dir = Path(data_dir) if data_dir is not None else paths.cache_dir() / "tfds"
        super().__init__(data_dir=str(data_dir), config=config, file_format="array_record")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's default probes `importlib_resources`, which is not installed on Python >= 3.9
        # (TFDS only requires it below 3.9) and fails for builders inside a package.
        return epath.Path(inspect.getfile(cls))

    def _paired(self) -> bool:
        return False

    @property
    def source(self) -> sources.Source:
        return self._source

    def _features(self) -> dict:
        if self._paired():
            return {"blur": _tensor(self.CHANNELS), "sharp": _tensor(self.CHANNELS),
                    "has_sharp": tfds.features.Scalar(dtype=np.bool_), "name": tfds.features.Text()}
        return {"image": _tensor(self.CHANNELS), "name": tfds.features.Text()}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=(type(self).__doc__ or "").strip(),
            features=tfds.features.FeaturesDict(self._features()),
            homepage=self.HOMEPAGE or None, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        del dl_manager  # the files are local (sources.resolve did any download)
        return {"test": self._generate_examples()}

    def _generate_examples(self):
        for item in self._source.items:
            if self._paired():
                blur = sources.read_image(item.blur, self.CHANNELS)
                if item.sharp is not None:
                    sharp = sources.read_image(item.sharp, blur.shape[-1])
                    if sharp.shape != blur.shape:
                        raise ValueError(
                            f"{self.name}: sharp image {item.sharp} has shape {sharp.shape}, its "
                            f"blur twin {item.blur} has {blur.shape}; expected equal shapes. "
                            f"Fix: pair files of the same size (same name in blur/ and sharp/).")
                else:
                    sharp = np.zeros((0, 0, blur.shape[-1]), np.uint8)
                yield item.name, {"blur": blur, "sharp": sharp,
                                  "has_sharp": item.sharp is not None, "name": item.name}
            else:
                yield item.name, {"image": sources.read_image(item.image, self.CHANNELS),
                                  "name": item.name}


class Set12(_PngBuilder, skip_registration=True):
    """Set12: 12 gray test images (256x256 and 512x512), 01.png .. 12.png.

    Source: github.com/cszn/DnCNN ``testsets/Set12``; downloaded automatically (SHA-256 checked)
    when not found under ``data_dir`` / ``$DYNPNP_DATA`` / ``shared/data``.
    """
    CHANNELS = 1
    HOMEPAGE = "https://github.com/cszn/DnCNN/tree/master/testsets/Set12"


class Bsd68(_PngBuilder, skip_registration=True):
    """BSD68: 68 gray test images (481x321 / 321x481), test001.png .. test068.png.

    Source: github.com/cszn/DnCNN ``testsets/BSD68``; downloaded automatically (SHA-256 checked)
    when not found under ``data_dir`` / ``$DYNPNP_DATA`` / ``shared/data``.
    """
    CHANNELS = 1
    HOMEPAGE = "https://github.com/cszn/DnCNN/tree/master/testsets/BSD68"


class Gopro(_PngBuilder, skip_registration=True):
    """GoPro deblurring test frames (1280x720 RGB): ``blur`` + ``sharp`` where available.

    Layouts: ``<root>/gopro/blur/*.png`` (+ ``gopro/sharp/``), names = file stems (the offline
    sample: 20 frames of GOPR0384_11_00, sharp only for 000001); or the full
    ``<root>/GOPRO_Large/test/<sequence>/{blur,sharp}/*.png`` (1111 pairs), names
    '<sequence>/<stem>'. ``blur`` (not ``blur_gamma``) is used, as DMPHN does.
    """
    CHANNELS = 3
    HOMEPAGE = sources.GOPRO_PAGE
    MANUAL_DOWNLOAD_INSTRUCTIONS = sources.GOPRO_INSTRUCTIONS

    def _paired(self) -> bool:
        return True


class Set3g(_PngBuilder, skip_registration=True):
    """Set3G: cameraman, house, lena256 (256x256 gray), the IRCNN/DPIR deblurring test images."""
    CHANNELS = 1
    HOMEPAGE = "https://github.com/cszn/IRCNN/tree/master/testsets/Set3G"


class Set3c(_PngBuilder, skip_registration=True):
    """Set3C as DPIR uses it: butterfly, leaves, starfish (256x256 RGB)."""
    CHANNELS = 3
    HOMEPAGE = "https://github.com/cszn/DPIR/tree/master/testsets/set3c"


class Set5(_PngBuilder, skip_registration=True):
    """Set5 ground truths (baby, bird, butterfly, head, woman; RGB), the SR test set."""
    CHANNELS = 3
    HOMEPAGE = "https://github.com/cszn/DPIR/tree/master/testsets/set5"


class Cbsd68(_PngBuilder, skip_registration=True):
    """CBSD68: the colour BSD68 images (68 RGB, 481x321 / 321x481), colour denoising."""
    CHANNELS = 3
    HOMEPAGE = "https://github.com/cszn/FFDNet/tree/master/testsets/CBSD68"


class Folder(_PngBuilder, skip_registration=True):
    """Any folder of images (PNG, BMP, JPEG, TIFF; 8 or 16 bit): clean images (``image``), or
    ``blur/`` + optional ``sharp/`` pairs matched by name. Gray files stay 1-channel, all others
    become RGB."""

    def _paired(self) -> bool:
        return self._source.paired


BUILDERS = {"set12": Set12, "bsd68": Bsd68, "gopro": Gopro, "set3g": Set3g, "set3c": Set3c,
            "set5": Set5, "cbsd68": Cbsd68, "folder": Folder}


def get_builder(name: str, *, data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> _PngBuilder:
    """The TFDS builder of dataset ``name`` for the files found (not yet prepared).

    Args:
      name: one of ``BUILDERS``.
      data_dir: where the source PNGs are (see ``sources.resolve``), None for the defaults.
      cache_dir: where the TFDS records go; default ``paths.cache_dir()/'tfds'``.

    Returns:
      A builder; call ``download_and_prepare()`` then ``as_data_source()['test']``.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset `name`={name!r}; valid names: {sorted(BUILDERS)}. "
                         f"Fix: use one of those (or 'folder' with data_dir=<your folder>).")
    return BUILDERS[name](source=sources.resolve(name, data_dir), data_dir=cache_dir)
