"""FFDNet (Zhang, Zuo & Zhang, TIP 2018) in Flax, and its converter from the authors' MatConvNet
files (cszn/FFDNet ``models/FFDNet_gray.mat`` and ``models/FFDNet_color.mat``).

The network works at half resolution. The noisy image (B, H, W, C) is split into its four
2 x 2 polyphase sub-images (:func:`pack`), a noise-level map (sigma on the [0, 1] scale, i.e.
sigma/255) is appended as one more channel, and a plain conv + ReLU stack without batch norm or
skip connection maps these ``4C + 1`` channels to the ``4C`` clean sub-images, which
:func:`unpack` puts back. The module therefore returns the DENOISED IMAGE (registry kind
``'image'``), not a residual.

Layers, as stored in the ``.mat`` files (``net.layers``, MatConvNet simplenn)::

    SubP (scale 0.5)  concat (noise map)  conv relu ... conv relu  conv  SubP (scale 2)

gray: 15 convs, 64 wide (5 -> 64, 13 x 64 -> 64, 64 -> 4); colour: 12 convs, 96 wide
(13 -> 96, 10 x 96 -> 96, 96 -> 12). All convs are 3 x 3, stride 1, zero padding 1, with bias.
The SubP and concat layers carry no weights; here they are :func:`pack`, the noise map and
:func:`unpack`. Layer names ``conv0 .. conv{depth-1}`` are what :func:`ffdnet_from_mat` targets.

Odd heights/widths are handled as the authors' demos do: the last row / column is repeated
(replicate padding) to make the size even, and the output is cropped back.

Precision: like the other modules here, the convs use JAX's default precision. On CPU that is
float32; on NVIDIA GPUs float32 convs then run in TF32, which moves outputs by ~1e-3 (seen on an
H200: Set12 PSNR means by < 5e-4 dB). Wrap calls in ``jax.default_matmul_precision("highest")``
for float32 results there.
"""
from __future__ import annotations

import math
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..formats.matconvnet import read_simplenn
from ..weights import UpstreamFile, WeightSpec, register

__all__ = ["FFDNet", "pack", "unpack", "ffdnet_from_mat", "read_mat_layers", "infer_config",
           "FILES", "ARCH", "OFFSETS"]

#: (row, col) offset of sub-image ``i`` in MatConvNet ``vl_nnSubP`` order: ``i = row + 2 * col``
#: (MATLAB's column-major loop ``a = mod(i-1, 2)``, ``b = floor((i-1) / 2)``). PyTorch's
#: ``pixel_unshuffle`` uses ``i = 2 * row + col`` instead, i.e. swaps sub-images 1 and 2.
OFFSETS = ((0, 0), (1, 0), (0, 1), (1, 1))

_RAW = "https://github.com/cszn/FFDNet/raw/master/models"

#: Upstream files, relative to the upstream folder: (path, sha256, url).
FILES = {
    "gray": ("ffdnet/FFDNet_gray.mat",
             "14c231e87a444a9bd85b0b5e174e73b4f6ac50bf4050e75a0d3f4d69f77a2093",
             f"{_RAW}/FFDNet_gray.mat"),
    "color": ("ffdnet/FFDNet_color.mat",
              "a4b5a9da21294ab9ba6ed5c6cc459c46dff20c025eb7d3ab82e8e0bb00541793",
              f"{_RAW}/FFDNet_color.mat"),
}

#: Architecture of each released model (the fields of :class:`FFDNet`).
ARCH = {
    "gray": {"channels": 1, "features": 64, "depth": 15},
    "color": {"channels": 3, "features": 96, "depth": 12},
}


# ----------------------------------------------------------------------------- packing
def pack(x: jax.Array) -> jax.Array:
    """Space-to-depth by 2 in MatConvNet ``vl_nnSubP`` (scale 1/2) order.

    ``x``: (B, H, W, C) with H and W even. Returns (B, H/2, W/2, 4C) with, for colour channel
    ``c`` and sub-image ``i`` (offsets :data:`OFFSETS`: (0,0), (1,0), (0,1), (1,1))::

        z[b, y, x, 4 * c + i] = x[b, 2 * y + row_i, 2 * x + col_i, c]

    i.e. channel-major blocks of four, the row offset varying fastest. This is NOT PyTorch's
    ``pixel_unshuffle`` order (there the column offset varies fastest). Inverse: :func:`unpack`.
    """
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"pack: `x` must have even height and width, got shape {x.shape}. "
                         "Fix: pad the last row/column (FFDNet.__call__ does this).")
    # x[b, 2y + r, 2x + q, c] -> axes (b, y, r, x, q, c) -> (b, y, x, c, q, r)
    z = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 4, 2)
    return z.reshape(b, h // 2, w // 2, 4 * c)  # index c * 4 + q * 2 + r = 4c + i


def unpack(z: jax.Array) -> jax.Array:
    """Depth-to-space by 2, the inverse of :func:`pack` (``vl_nnSubP`` with scale 2).

    ``z``: (B, h, w, 4C) -> (B, 2h, 2w, C) with ``out[b, 2y + row_i, 2x + col_i, c] =
    z[b, y, x, 4c + i]`` (offsets :data:`OFFSETS`).
    """
    b, h, w, c4 = z.shape
    if c4 % 4:
        raise ValueError(f"unpack: `z` must have a multiple of 4 channels, got shape {z.shape}. "
                         "Fix: pass the output of pack() or of the network's last conv.")
    c = c4 // 4
    x = z.reshape(b, h, w, c, 2, 2).transpose(0, 1, 5, 2, 4, 3)  # (b, y, r, x, q, c)
    return x.reshape(b, 2 * h, 2 * w, c)


# ----------------------------------------------------------------------------- module
def _is_tracer(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def _check_sigma_values(sigma) -> None:
    """Value checks on a concrete sigma (skipped under tracing, where values are unknown)."""
    if _is_tracer(sigma):
        return
    s = np.asarray(sigma, dtype=np.float64)
    if s.size and (not np.all(np.isfinite(s)) or np.any(s < 0)):
        bad = s[~np.isfinite(s) | (s < 0)].ravel()[0]
        raise ValueError(f"FFDNet: `sigma` must be finite and >= 0 on the [0, 1] image scale "
                         f"(e.g. 25 / 255), got a value {bad!r}. Fix: pass the noise standard "
                         f"deviation divided by 255, not NaN or negative.")
    if s.size and np.max(s) > 1.0:
        raise ValueError(f"FFDNet: `sigma` is on the [0, 1] image scale (sigma / 255, trained "
                         f"for 0 .. 75/255), got {np.max(s)!r}. Fix: divide the 8-bit noise "
                         f"level by 255 (e.g. 25 -> 25 / 255).")


def _half_res_map(sigma, b: int, h: int, w: int, hp: int, wp: int) -> jax.Array:
    """The (B, hp/2, wp/2, 1) noise map at half resolution, float32."""
    sigma = jnp.asarray(sigma, dtype=jnp.float32)
    if sigma.ndim == 0:
        sigma = jnp.broadcast_to(sigma, (b,))
    if sigma.ndim == 1 and sigma.shape[0] in (1, b):
        return jnp.broadcast_to(sigma.reshape(-1, 1, 1, 1), (b, hp // 2, wp // 2, 1))
    if sigma.ndim == 4 and sigma.shape[0] in (1, b) and sigma.shape[1:] == (1, 1, 1):
        return jnp.broadcast_to(sigma, (b, hp // 2, wp // 2, 1))
    if sigma.ndim == 4 and sigma.shape[0] in (1, b) and sigma.shape[1:] == (h, w, 1):
        m = jnp.pad(sigma, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
        m = m.reshape(m.shape[0], hp // 2, 2, wp // 2, 2, 1).mean(axis=(2, 4))
        return jnp.broadcast_to(m, (b, hp // 2, wp // 2, 1))
    raise ValueError(f"FFDNet: `sigma` must have shape () or (B,) = ({b},) (one noise std per "
                     f"image) or be a full-resolution map (B, H, W, 1) = ({b}, {h}, {w}, 1), got "
                     f"shape {tuple(sigma.shape)}. Fix: pass jnp.full((B,), s) or a per-pixel map "
                     f"the size of the image, on the [0, 1] scale (sigma / 255).")


class FFDNet(nn.Module):
    """FFDNet: ``__call__(x, sigma)`` -> the denoised image.

    Attributes:
      channels: image channels (1 gray, 3 colour).
      features: width of the hidden layers (64 gray, 96 colour).
      depth: number of convolutions (15 gray, 12 colour).
      dtype: computation dtype (``jnp.bfloat16`` trades accuracy for speed on TPU).

    ``x``: (B, H, W, channels) float in [0, 1], any H, W >= 1 (odd sizes are replicate-padded
    and cropped back). ``sigma``: the noise standard deviation on the [0, 1] scale (sigma/255),
    either one value per image, shape (B,) (or () for all), or a per-pixel map at full
    resolution, shape (B, H, W, 1), which is reduced to the network's half resolution by the
    mean of each 2 x 2 block (after the same replicate padding as ``x``). The authors' MATLAB
    code instead takes the half-resolution map from the user (their spatially variant demo
    makes it with ``imresize(map, 1/2, 'bicubic')``); for a constant map all of these agree
    exactly. ``sigma`` is an array argument, so under ``jax.jit`` a new value never recompiles.
    Values are checked (finite, >= 0, <= 1) only when they are concrete, not under tracing.
    """

    channels: int = 1
    features: int = 64
    depth: int = 15
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, sigma) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"FFDNet: `x` must be NHWC (B, H, W, {self.channels}), got shape "
                             f"{tuple(x.shape)}. Fix: add the batch/channel axes "
                             f"(x[None, ..., None] for one gray image).")
        b, h, w, c = x.shape
        if c != self.channels:
            raise ValueError(f"FFDNet: `x` has {c} channel(s) but this FFDNet takes "
                             f"{self.channels}. Fix: use the {'colour' if c == 3 else 'gray'} "
                             f"model, or convert the image to {self.channels} channel(s).")
        _check_sigma_values(sigma)
        hp, wp = h + h % 2, w + w % 2
        m = _half_res_map(sigma, b, h, w, hp, wp)
        xp = x if (hp, wp) == (h, w) else jnp.pad(
            x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
        z = jnp.concatenate([pack(xp.astype(self.dtype)), m.astype(self.dtype)], axis=-1)
        for i in range(self.depth):
            last = i == self.depth - 1
            z = nn.Conv(4 * self.channels if last else self.features, (3, 3), padding="SAME",
                        use_bias=True, dtype=self.dtype, name=f"conv{i}")(z)
            if not last:
                z = nn.relu(z)
        return unpack(z)[:, :h, :w, :].astype(x.dtype)


# ----------------------------------------------------------------------------- converter
def read_mat_layers(path: str | Path) -> list[dict]:
    """The layers of an FFDNet ``.mat`` file (:func:`dynpnp_jax.formats.matconvnet.read_simplenn`
    with FFDNet's fix in the message)."""
    try:
        return read_simplenn(path)
    except ValueError as err:
        raise ValueError(f"ffdnet_from_mat: `path`={str(path)!r}: {err}. Fix: pass cszn/FFDNet "
                         "models/FFDNet_gray.mat or FFDNet_color.mat as released.") from err


def ffdnet_from_mat(path: str | Path) -> dict:
    """Flax variables ``{'params': {'conv0': {'kernel', 'bias'}, ...}}`` of :class:`FFDNet` from
    a cszn/FFDNet MatConvNet model (``FFDNet_gray.mat``, ``FFDNet_color.mat``).

    The layer sequence must be ``SubP(0.5), concat, (conv, relu) x (depth-1), conv, SubP(2)``
    with 3 x 3 / pad 1 / stride 1 convs, the first taking ``4C + 1`` channels and the last giving
    ``4C`` (C = 1 or 3); anything else raises ``ValueError``. Use :func:`infer_config` on the
    result for ``channels``, ``features`` and ``depth``.
    """
    layers = read_mat_layers(path)
    types = [l["type"] for l in layers]
    fix = ("Fix: pass cszn/FFDNet models/FFDNet_gray.mat or FFDNet_color.mat (not DnCNN or the "
           "residual 'model_gray.mat' / 'model_color.mat').")
    n_conv = types.count("conv")
    want = ["SubP", "concat"] + ["conv", "relu"] * (n_conv - 1) + ["conv", "SubP"]
    if n_conv < 2 or types != want:
        raise ValueError(f"ffdnet_from_mat: {path} is not an FFDNet network: layer types "
                         f"{types}; expected SubP, concat, (conv, relu) x N, conv, SubP. {fix}")
    if layers[0].get("scale") != [0.5] or layers[-1].get("scale") != [2.0]:
        raise ValueError(f"ffdnet_from_mat: {path}: SubP scales {layers[0].get('scale')} / "
                         f"{layers[-1].get('scale')}, expected [0.5] / [2.0]. {fix}")
    for l in layers:
        if l["type"] == "relu" and l.get("leak", [0.0]) != [0.0]:
            raise ValueError(f"ffdnet_from_mat: {path}: layer {l['name']} is a leaky ReLU "
                             f"(leak {l['leak']}), expected a plain ReLU. {fix}")
    convs = [l for l in layers if l["type"] == "conv"]
    params = {}
    for i, l in enumerate(convs):
        if len(l["weights"]) != 2:
            raise ValueError(f"ffdnet_from_mat: {path}: conv {l['name']} has "
                             f"{len(l['weights'])} weight arrays, expected 2 (filter, bias). {fix}")
        w, bias = l["weights"]
        if w.ndim == 3:  # MATLAB drops a trailing singleton 'out' axis
            w = w[None]
        geometry = (l.get("pad", [1.0]), l.get("stride", [1.0]), l.get("dilate", [1.0]))
        if w.ndim != 4 or w.shape[2:] != (3, 3) or any(set(v) != {1.0} for v in geometry):
            raise ValueError(f"ffdnet_from_mat: {path}: conv {l['name']} has filter "
                             f"{w.shape} (out, in, kW, kH), pad/stride/dilate {geometry}; "
                             f"expected a 3x3, pad 1, stride 1 conv. {fix}")
        if bias.size != w.shape[0]:
            raise ValueError(f"ffdnet_from_mat: {path}: conv {l['name']} has {bias.size} "
                             f"biases for {w.shape[0]} outputs. {fix}")
        params[f"conv{i}"] = {"kernel": np.ascontiguousarray(w.transpose(3, 2, 1, 0)),
                              "bias": np.ascontiguousarray(bias.reshape(-1))}
    variables = {"params": params}
    try:
        infer_config(variables)
    except ValueError as err:
        raise ValueError(f"ffdnet_from_mat: {path}: {err} {fix}") from None
    return variables


def infer_config(variables: dict) -> dict:
    """``{'channels', 'features', 'depth'}`` of the :class:`FFDNet` these variables fit."""
    p = variables["params"]
    depth = len(p)
    if depth < 2 or sorted(p) != sorted(f"conv{i}" for i in range(depth)):
        raise ValueError(f"FFDNet variables must be conv0 .. conv{{depth-1}}, got {sorted(p)}.")
    shapes = [tuple(p[f"conv{i}"]["kernel"].shape) for i in range(depth)]
    cin, features = shapes[0][2], shapes[0][3]
    cout = shapes[-1][3]
    channels = (cin - 1) // 4
    if channels not in (1, 3) or cin != 4 * channels + 1 or cout != 4 * channels:
        raise ValueError(f"FFDNet takes 4C + 1 channels and gives 4C (C = 1 or 3); the convs "
                         f"take {cin} and give {cout}.")
    for i, s in enumerate(shapes):
        want = (3, 3, cin if i == 0 else features, cout if i == depth - 1 else features)
        if s != want:
            raise ValueError(f"conv{i} kernel has shape {s}, expected {want} (HWIO).")
    return {"channels": int(channels), "features": int(features), "depth": int(depth)}


# ----------------------------------------------------------------------------- registry
_LICENCE = ("no licence file in cszn/FFDNet (research release; fetched from the authors' "
            "repository, never redistributed)")
for _variant, (_rel, _sha, _url) in FILES.items():
    _arch = ARCH[_variant]
    register(WeightSpec(
        name=f"ffdnet-{_variant}",
        files=(UpstreamFile(_rel, _sha, _url),),
        convert=lambda files: ffdnet_from_mat(next(iter(files.values()))),
        module=FFDNet(**_arch), kind="image", channels=_arch["channels"], multiple=1,
        noise_input=True, receptive_field=2 * _arch["depth"] + 2,
        description=(f"FFDNet {'gray' if _variant == 'gray' else 'colour'}, non-blind: the noise "
                     f"level (sigma/255, scalar or per-pixel map) is an input ({_arch['depth']} "
                     f"convs {_arch['features']} wide at half resolution); the DPIR prior"),
        source="cszn/FFDNet models/ (MatConvNet v7.3)", licence=_LICENCE))
