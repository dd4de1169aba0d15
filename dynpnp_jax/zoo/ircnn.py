"""IRCNN (Zhang, Zuo, Gu & Zhang, "Learning Deep CNN Denoiser Prior for Image Restoration",
CVPR 2017) in Flax: the 25 denoisers of one release file in ONE network, and the converter from
KAIR's ``ircnn_gray.pth`` / ``ircnn_color.pth`` (github.com/cszn/KAIR releases v1.0).

One denoiser (KAIR ``models/network_dncnn.py`` ``IRCNN(in_nc=C, out_nc=C, nc=64)``): seven 3x3
convolutions with bias and dilations 1, 2, 3, 4, 3, 2, 1 (zero padding = dilation, so the size is
kept), ReLU between them, residual output ``x - f(x)``. Receptive radius 16 pixels.

The release file holds 25 such denoisers, trained for the noise levels 2, 4, ..., 50 (8-bit
units): ``torch.load`` gives ``{'0': state_dict, ..., '24': state_dict}`` with key ``str(i)`` for
level ``2 (i + 1)``, and every state dict has KAIR's keys ``model.{0,2,4,...,12}.{weight,bias}``.
KAIR's denoising demo (``main_test_ircnn_denoiser.py``) picks
``i = min(24, ceil(sigma255 / 2) - 1)``, DPIR's IRCNN variant (``main_dpir_*.py``)
``i = ceil(sigma * 255 / 2) - 1`` with sigma on the [0, 1] scale: the denoiser of the smallest
trained level >= the noise level, i.e. level ``ceil(sigma * 255 / 2) * 2``.
:meth:`IRCNN.level_index` computes the same, clipped to [0, 24] (levels 2..50; DPIR never asks
outside), with a 1e-4 tolerance so that a float32 sigma one rounding step above an even 8-bit
level (24/255 -> 23.9999 or 24.0001) picks that level, as float64 upstream does for exact
levels.

:class:`IRCNN` stores the 25 denoisers stacked (every parameter has a leading axis of 25) and
indexes them with a traced integer computed from ``sigma``, so under ``jax.jit`` a new sigma
never recompiles; each image of a batch gets its own denoiser. When the images of a batch share
one level (one schedule for all, the usual case) a ``lax.cond`` runs plain convolutions with that
level's kernels; mixed levels run per-image kernels (``vmap``, grouped convolutions), about 4x
slower on CPU (4 images of 256x256: 22 s vs 5.7 s on a busy 2-core machine). As a registered
:class:`~dynpnp_jax.networks.Network` it is noise-conditioned (``noise_input=True``): the loop
hands ``sigma`` per image (or a per-pixel map, whose per-image MEAN chooses the level: IRCNN has
no per-pixel input) and the network returns the denoised image (kind ``'image'``).

Flax layout: ``params/conv{i}/kernel`` (25, 3, 3, Cin, Cout) and ``params/conv{i}/bias``
(25, Cout), ``i = 0..6`` (torch ``model.{2i}``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..formats.torch import FormatError, conv_kernel
from ..weights import UNKNOWN, UpstreamFile, WeightSpec, register

__all__ = ["IRCNN", "DILATIONS", "LEVELS", "ircnn_from_state_dicts", "ircnn_from_pth",
           "load_ircnn_file", "level_index_np", "FILES", "RELEASE"]

#: Dilation of each of the seven convolutions.
DILATIONS = (1, 2, 3, 4, 3, 2, 1)
#: The noise levels (8-bit units) of the 25 denoisers, in file order (key ``str(i)``).
LEVELS = tuple(range(2, 51, 2))
RELEASE = "https://github.com/cszn/KAIR/releases/download/v1.0"
#: Upstream files (path relative to the upstream folder, sha256, url); no published sha256.
FILES = {
    "gray": ("ircnn/ircnn_gray.pth", UNKNOWN, f"{RELEASE}/ircnn_gray.pth"),
    "color": ("ircnn/ircnn_color.pth", UNKNOWN, f"{RELEASE}/ircnn_color.pth"),
}
_TOL = 1e-4  # in units of sigma * 255 / 2


def level_index_np(sigma: float, levels: int = len(LEVELS)) -> int:
    """The denoiser index for a concrete ``sigma`` (on the [0, 1] scale), as
    :meth:`IRCNN.level_index` computes it (float64; for tests and messages)."""
    i = math.ceil(float(sigma) * 255.0 / 2.0 - _TOL) - 1
    return int(min(max(i, 0), levels - 1))


class _StackedConv(nn.Module):
    """The ``levels`` 3x3 kernels ``(levels, 3, 3, cin, cout)`` and biases ``(levels, cout)`` of
    one layer (parameters only; :class:`IRCNN` applies them)."""

    cin: int
    cout: int
    levels: int

    @nn.compact
    def __call__(self):
        init = nn.initializers.lecun_normal(batch_axis=(0,))
        kernel = self.param("kernel", init, (self.levels, 3, 3, self.cin, self.cout), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.levels, self.cout),
                          jnp.float32)
        return kernel, bias


class IRCNN(nn.Module):
    """The ``levels`` IRCNN denoisers, stacked: ``__call__(x, sigma)`` -> the denoised image.

    Attributes:
      channels: image channels (1 gray, 3 colour).
      features: hidden width (64).
      levels: number of stacked denoisers (25: noise levels 2, 4, ..., 50).
      dtype: computation dtype.

    ``x``: (B, H, W, channels). ``sigma``: the noise level on the [0, 1] scale (sigma/255), shape
    () or (B,) or a map (B, H, W, 1) / (B, 1, 1, 1) (its per-image mean is used). Traced: a new
    sigma never recompiles. Concrete values are checked (finite, >= 0, <= 1).
    """

    channels: int = 1
    features: int = 64
    levels: int = len(LEVELS)
    dtype: Any = jnp.float32

    @staticmethod
    def level_index(sigma: jax.Array, levels: int = len(LEVELS)) -> jax.Array:
        """``clip(ceil(sigma * 255 / 2 - 1e-4) - 1, 0, levels - 1)`` as int32 (traceable)."""
        s = jnp.asarray(sigma, jnp.float32)
        i = jnp.ceil(s * 127.5 - _TOL).astype(jnp.int32) - 1
        return jnp.clip(i, 0, levels - 1)

    def _per_image_sigma(self, sigma, b: int) -> jax.Array:
        s = jnp.asarray(sigma, jnp.float32)
        if s.ndim == 0:
            return jnp.broadcast_to(s, (b,))
        if s.ndim == 1 and s.shape[0] in (1, b):
            return jnp.broadcast_to(s, (b,))
        if s.ndim == 4 and s.shape[0] in (1, b) and s.shape[-1] == 1:
            return jnp.broadcast_to(s.mean(axis=(1, 2, 3)), (b,))
        raise ValueError(f"IRCNN: `sigma` must have shape () or (B,) = ({b},) or be a map "
                         f"(B, H, W, 1), got shape {tuple(s.shape)}. Fix: pass sigma / 255 per "
                         f"image, e.g. jnp.full(({b},), 25 / 255).")

    @nn.compact
    def __call__(self, x: jax.Array, sigma) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"IRCNN: `x` must be NHWC (B, H, W, {self.channels}), got shape "
                             f"{tuple(x.shape)}. Fix: add the batch/channel axes.")
        b, h, w, c = x.shape
        if c != self.channels:
            raise ValueError(f"IRCNN: `x` has {c} channel(s) but this IRCNN takes "
                             f"{self.channels}. Fix: use ircnn-{'color' if c == 3 else 'gray'}, "
                             f"or convert the image to {self.channels} channel(s).")
        if not isinstance(sigma, jax.core.Tracer):
            s = np.asarray(sigma, np.float64)
            if s.size and (not np.all(np.isfinite(s)) or np.any(s < 0) or np.max(s) > 1):
                raise ValueError(f"IRCNN: `sigma` must be finite and in [0, 1] (sigma / 255), "
                                 f"got values in [{np.min(s)!r}, {np.max(s)!r}]. Fix: divide the "
                                 f"8-bit noise level by 255 (e.g. 25 -> 25 / 255).")
        idx = self.level_index(self._per_image_sigma(sigma, b), self.levels)  # (B,)
        widths = [c] + [self.features] * (len(DILATIONS) - 1) + [c]
        params = [_StackedConv(widths[i], widths[i + 1], self.levels, name=f"conv{i}")()
                  for i in range(len(DILATIONS))]

        def run(z, i):  # z (N, H, W, C) through the denoiser of (traced) index i
            z = z.astype(self.dtype)
            for j, (d, (k, bias)) in enumerate(zip(DILATIONS, params)):
                z = jax.lax.conv_general_dilated(
                    z, k[i].astype(self.dtype), (1, 1), ((d, d), (d, d)), rhs_dilation=(d, d),
                    dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias[i].astype(self.dtype)
                if j < len(DILATIONS) - 1:
                    z = nn.relu(z)
            return z

        def per_image(z):  # a denoiser per image: per-example kernels (grouped convs, slower)
            return jax.vmap(lambda img, i: run(img[None], i)[0])(z, idx)

        if b == 1:
            noise = run(x, idx[0])
        else:  # one level for the whole batch (the usual case: one schedule) runs ~5x faster
            noise = jax.lax.cond(jnp.all(idx == idx[0]), lambda z: run(z, idx[0]), per_image, x)
        return (x - noise.astype(x.dtype)).astype(x.dtype)


# ----------------------------------------------------------------------------- converter
_FIX = (f"Fix: pass KAIR's ircnn_gray.pth or ircnn_color.pth ({RELEASE}/): a dict of the 25 "
        "denoisers' state dicts, keys '0'..'24' (noise levels 2, 4, ..., 50).")


def _one_level(sd: Mapping[str, Any], where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    want = {f"model.{2 * i}.{p}" for i in range(len(DILATIONS)) for p in ("weight", "bias")}
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    missing, extra = sorted(want - set(sd)), sorted(set(sd) - want)
    if missing or extra:
        raise ValueError(f"{where}: not an IRCNN state dict (7 convs model.0, model.2, ..., "
                         f"model.12 with weight and bias): missing {missing[:6]}, unexpected "
                         f"{extra[:6]}. {_FIX}")
    return [(np.asarray(sd[f"model.{2 * i}.weight"], np.float32),
             np.asarray(sd[f"model.{2 * i}.bias"], np.float32)) for i in range(len(DILATIONS))]


def ircnn_from_state_dicts(sds: Mapping[str, Mapping[str, Any]],
                           channels: int | None = None) -> dict:
    """Flax :class:`IRCNN` variables (25 stacked denoisers) from KAIR's dict of state dicts.

    Args:
      sds: ``{'0': state_dict, ..., '24': state_dict}`` (keys may also be ints); key ``i`` is the
        denoiser for noise level ``2 (i + 1)``.
      channels: the image channels the caller expects (1 gray, 3 colour); ``None``: either.

    Raises ``ValueError`` naming the problem: fewer than 25 denoisers (the missing levels named),
    a state dict that is not an IRCNN, a file for the other channel count, inconsistent shapes.
    """
    if not isinstance(sds, Mapping) or not sds:
        raise ValueError(f"expected a dict of 25 IRCNN state dicts, got {type(sds).__name__}. "
                         f"{_FIX}")
    if any(isinstance(v, np.ndarray) or hasattr(v, "shape") for v in sds.values()):
        raise ValueError(f"this is a single state dict (keys {sorted(sds)[:4]} ...), not KAIR's "
                         f"dict of 25 IRCNN denoisers. {_FIX}")
    by_idx = {}
    for key, sd in sds.items():
        try:
            by_idx[int(key)] = sd
        except (TypeError, ValueError):
            raise ValueError(f"unexpected top-level key {key!r}: IRCNN files hold the denoisers "
                             f"under '0'..'24'. {_FIX}") from None
    n = len(LEVELS)
    missing = [i for i in range(n) if i not in by_idx]
    extra = sorted(i for i in by_idx if not 0 <= i < n)
    if missing or extra:
        raise ValueError(
            f"IRCNN file holds {len(by_idx)} denoiser(s), expected {n} (keys '0'..'{n - 1}' for "
            f"noise levels 2..50): missing keys {[str(i) for i in missing]} (levels "
            f"{[LEVELS[i] for i in missing]})"
            + (f", unexpected keys {[str(i) for i in extra]}" if extra else "") + f". {_FIX}")
    convs = [_one_level(by_idx[i], f"denoiser '{i}' (level {LEVELS[i]})") for i in range(n)]
    w0 = convs[0][0][0]
    c = int(w0.shape[1]) if w0.ndim == 4 else -1
    feats = int(w0.shape[0]) if w0.ndim == 4 else -1
    if c not in (1, 3):
        raise ValueError(f"model.0.weight has shape {w0.shape}, expected (64, C, 3, 3) with "
                         f"C = 1 or 3. {_FIX}")
    if channels is not None and c != channels:
        name = "ircnn-gray" if c == 1 else "ircnn-color"
        raise ValueError(f"this IRCNN file is for {c}-channel images but {channels} was expected. "
                         f"Fix: load it as {name!r}, or pass "
                         f"ircnn_{'gray' if channels == 1 else 'color'}.pth.")
    widths = [c] + [feats] * (len(DILATIONS) - 1) + [c]
    params = {}
    for j in range(len(DILATIONS)):
        want_w = (widths[j + 1], widths[j], 3, 3)
        for i in range(n):
            w, bias = convs[i][j]
            if w.shape != want_w or bias.shape != (want_w[0],):
                raise ValueError(f"denoiser '{i}' (level {LEVELS[i]}): model.{2 * j}.weight/bias "
                                 f"have shapes {w.shape}/{bias.shape}, expected {want_w}/"
                                 f"{(want_w[0],)}. {_FIX}")
        params[f"conv{j}"] = {
            "kernel": np.stack([conv_kernel(convs[i][j][0], f"model.{2 * j}.weight")
                                for i in range(n)]),
            "bias": np.stack([convs[i][j][1] for i in range(n)])}
    return {"params": params}


def load_ircnn_file(path: str | Path) -> dict:
    """``torch.load`` of an IRCNN release file (``weights_only``, CPU) as nested numpy dicts.

    Raises :class:`~dynpnp_jax.formats.torch.FormatError` naming the file when it is missing,
    unreadable or not a dict of state dicts."""
    path = Path(path).expanduser()
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading {path} (an IRCNN file) needs torch: pip install "
                          "'dynpnp_jax[convert]' (running converted weights needs no torch)"
                          ) from err
    if not path.is_file():
        raise FormatError(f"{path} does not exist; expected KAIR's ircnn_gray.pth / "
                          f"ircnn_color.pth. {_FIX}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        msg = str(err).splitlines()[0] if str(err) else ""
        raise FormatError(f"could not read {path} ({path.stat().st_size} bytes) as a torch.save "
                          f"file: {type(err).__name__}: {msg}. The file is truncated, corrupt or "
                          f"of another kind. {_FIX}") from err
    if not isinstance(obj, Mapping):
        raise FormatError(f"{path} holds a {type(obj).__name__}, expected a dict of 25 state "
                          f"dicts. {_FIX}")

    def to_np(v):
        if isinstance(v, Mapping):
            return {k: to_np(x) for k, x in v.items()}
        if hasattr(v, "detach"):
            return v.detach().cpu().numpy().astype(np.float32)
        raise FormatError(f"{path}: an entry is a {type(v).__name__}, expected tensors. {_FIX}")
    return {k: to_np(v) for k, v in obj.items()}


def ircnn_from_pth(path: str | Path, channels: int | None = None) -> dict:
    """Flax :class:`IRCNN` variables from KAIR's ``ircnn_gray.pth`` / ``ircnn_color.pth``."""
    sds = load_ircnn_file(path)
    try:
        return ircnn_from_state_dicts(sds, channels)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# ----------------------------------------------------------------------------- registry
# No sha256 is published for KAIR's release files and they could not be fetched where this port
# was written: sha256=UNKNOWN. Record the hash here from the first verified download.
_LICENCE = ("MIT (cszn/KAIR); weights downloaded from the KAIR v1.0 release, never "
            "redistributed")
for _variant, (_rel, _sha, _url) in FILES.items():
    _c = 1 if _variant == "gray" else 3
    register(WeightSpec(
        name=f"ircnn-{_variant}",
        files=(UpstreamFile(_rel, _sha, _url),),
        convert=(lambda c: lambda files: ircnn_from_pth(next(iter(files.values())), c))(_c),
        module=IRCNN(channels=_c), kind="image", channels=_c, multiple=1, noise_input=True,
        receptive_field=sum(DILATIONS), tiling_exact=True,
        description=(f"IRCNN {'gray' if _c == 1 else 'colour'}: 25 denoisers (levels 2..50, "
                     f"7 dilated convs, residual) in one network, the one for "
                     f"ceil(sigma*255/2)*2 chosen per image inside jit; IRCNN's and DPIR's "
                     f"IRCNN prior"),
        source=f"cszn/KAIR release v1.0 {Path(_rel).name} (dict of 25 torch state dicts)",
        licence=_LICENCE, converter_needs_torch=True))
