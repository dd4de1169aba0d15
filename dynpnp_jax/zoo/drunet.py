"""DRUNet (Zhang, Li, Zuo, Zhang, Van Gool & Timofte, "Plug-and-Play Image Restoration with Deep
Denoiser Prior", TPAMI 2021) in Flax, and its converter from KAIR's released state dicts
(github.com/cszn/KAIR releases v1.0: ``drunet_gray.pth``, ``drunet_color.pth``).

DRUNet is the denoiser DPIR plugs into its half-quadratic-splitting loop. It is KAIR's
``UNetRes(in_nc=C+1, out_nc=C, nc=[64, 128, 256, 512], nb=4, act_mode='R',
downsample_mode='strideconv', upsample_mode='convtranspose')`` with every convolution bias-free
(DPIR's ``models/network_unet.py``):

* input: the image (C = 1 or 3 channels) and a constant noise-level map (sigma on the [0, 1]
  scale, i.e. sigma/255) as one more channel;
* ``m_head``: 3x3 conv, C+1 -> 64;
* ``m_down1..3``: ``nb`` residual blocks ``x + conv3x3(relu(conv3x3(x)))`` at the current width,
  then a 2x2 stride-2 conv that halves the size and doubles the width (64 -> 128 -> 256 -> 512);
* ``m_body``: ``nb`` residual blocks at 512;
* ``m_up3..1``: a 2x2 stride-2 transposed conv (width halved), then ``nb`` residual blocks; the
  input of each is the previous output plus the skip of the same scale
  (``up3(body + x4)``, ``up2(. + x3)``, ``up1(. + x2)``, ``tail(. + x1)``);
* ``m_tail``: 3x3 conv, 64 -> C. The output is the denoised image (registry kind ``'image'``).

Sizes: three stride-2 levels need H and W multiples of 8. Other sizes are padded at the bottom
and right by repeating the last row/column (``ReplicationPad2d``, as DPIR's ``test_pad`` /
``test_split`` do) and the output is cropped back; the padding is done here, in the module, so
that it matches DPIR's and not the reflection padding of
:func:`dynpnp_jax.networks.pad_to_multiple` (the registered :class:`~dynpnp_jax.networks.Network`
therefore has ``multiple=1``). DPIR's scripts also run images larger than 256x256 as four
overlapping quadrants (``test_split``/``test_onesplit``, a memory device of their GPU code); here
the whole image runs at once (use ``Network.tiled`` to bound memory).

KAIR's state-dict keys (what :func:`drunet_from_state_dict` reads; nb = 4) -> Flax path::

    m_head.weight                         -> m_head/kernel
    m_down{k}.{i}.res.{0,2}.weight  i<nb  -> m_down{k}/res{i}/conv{0,1}/kernel
    m_down{k}.{nb}.weight                 -> m_down{k}/down/kernel      (2x2 stride-2 conv)
    m_body.{i}.res.{0,2}.weight           -> m_body/res{i}/conv{0,1}/kernel
    m_up{k}.0.weight                      -> m_up{k}/up/kernel          (2x2 stride-2 transposed)
    m_up{k}.{i+1}.res.{0,2}.weight        -> m_up{k}/res{i}/conv{0,1}/kernel
    m_tail.weight                         -> m_tail/kernel

The stride-2 conv and the transposed conv are computed as a space-to-depth + matrix product and
a matrix product + depth-to-space (kernel = stride: the 2x2 blocks do not overlap), equal to the
convolutions up to float rounding.

Precision: JAX's default; on NVIDIA GPUs float32 convs run in TF32 unless wrapped in
``jax.default_matmul_precision("highest")`` (see :mod:`dynpnp_jax.zoo.ffdnet`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..formats.torch import conv_kernel, load_state_dict
from ..weights import UNKNOWN, UpstreamFile, WeightSpec, register

__all__ = ["DRUNet", "drunet_from_state_dict", "drunet_from_pth", "infer_config", "ARCH",
           "FILES", "MULTIPLE", "RELEASE"]

#: Height and width multiple the three stride-2 levels need.
MULTIPLE = 8
#: Where KAIR publishes the files (also DPIR's ``main_download_pretrained_models.py``).
RELEASE = "https://github.com/cszn/KAIR/releases/download/v1.0"
#: Upstream files: (path relative to the upstream folder, sha256, url). No sha256 is published
#: and the files could not be fetched here: UNKNOWN (accepted as found, with a warning).
FILES = {
    "gray": ("drunet/drunet_gray.pth", UNKNOWN, f"{RELEASE}/drunet_gray.pth"),
    "color": ("drunet/drunet_color.pth", UNKNOWN, f"{RELEASE}/drunet_color.pth"),
}
#: The released architecture (fields of :class:`DRUNet`).
ARCH = {
    "gray": {"channels": 1, "features": (64, 128, 256, 512), "blocks": 4},
    "color": {"channels": 3, "features": (64, 128, 256, 512), "blocks": 4},
}


# ----------------------------------------------------------------------------- layers
def _conv3x3(features: int, dtype: Any, name: str) -> nn.Conv:
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=dtype,
                   name=name)


class ResBlock(nn.Module):
    """``x + conv1(relu(conv0(x)))``, 3x3 convs without bias (KAIR ``ResBlock``, mode ``'CRC'``)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        r = nn.relu(_conv3x3(self.features, self.dtype, "conv0")(x))
        return x + _conv3x3(self.features, self.dtype, "conv1")(r)


class StrideConv2x2(nn.Module):
    """PyTorch ``Conv2d(kernel 2, stride 2, padding 0, bias=False)``: ``(B, H, W, Cin) ->
    (B, H/2, W/2, Cout)`` (H, W even). Kernel ``(2, 2, Cin, Cout)`` (HWIO, as ``nn.Conv``), computed
    as space-to-depth + one matrix product."""

    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, cin = x.shape
        kernel = self.param("kernel", self.kernel_init, (2, 2, cin, self.features), jnp.float32)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        z = x.reshape(b, h // 2, 2, w // 2, 2, cin).transpose(0, 1, 3, 2, 4, 5)  # (b,i,j,ry,rx,c)
        z = z.reshape(b * (h // 2) * (w // 2), 4 * cin)
        out = jnp.dot(z, kernel.reshape(4 * cin, self.features))
        return out.reshape(b, h // 2, w // 2, self.features)


class ConvTranspose2x2(nn.Module):
    """PyTorch ``ConvTranspose2d(kernel 2, stride 2, padding 0, bias=False)``: ``(B, h, w, Cin) ->
    (B, 2h, 2w, Cout)``. Kernel ``(2, 2, Cout, Cin)``: the torch weight ``(Cin, Cout, 2, 2)``
    transposed ``(2, 3, 1, 0)`` (the ``nn.ConvTranspose(transpose_kernel=True)`` layout).
    ``out[2i + ry, 2j + rx] = x[i, j] @ W[:, :, ry, rx]``: one matrix product to ``4 Cout``
    channels and a depth-to-space."""

    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, cin = x.shape
        co = self.features
        kernel = self.param("kernel", self.kernel_init, (2, 2, co, cin), jnp.float32)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        k = kernel.transpose(3, 0, 1, 2).reshape(cin, 4 * co)  # [ci, (ry, rx, co)]
        p = jnp.dot(x.reshape(b * h * w, cin), k)
        p = p.reshape(b, h, w, 2, 2, co).transpose(0, 1, 3, 2, 4, 5)  # (b, h, ry, w, rx, co)
        return p.reshape(b, 2 * h, 2 * w, co)


class _Down(nn.Module):
    features: int
    out_features: int
    blocks: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(self.blocks):
            x = ResBlock(self.features, self.dtype, name=f"res{i}")(x)
        return StrideConv2x2(self.out_features, self.dtype, name="down")(x)


class _Body(nn.Module):
    features: int
    blocks: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(self.blocks):
            x = ResBlock(self.features, self.dtype, name=f"res{i}")(x)
        return x


class _Up(nn.Module):
    features: int
    blocks: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = ConvTranspose2x2(self.features, self.dtype, name="up")(x)
        for i in range(self.blocks):
            x = ResBlock(self.features, self.dtype, name=f"res{i}")(x)
        return x


# ----------------------------------------------------------------------------- module
def _noise_map(sigma, b: int, h: int, w: int, dtype) -> jax.Array:
    """sigma (scalar, (B,), or (B, H, W, 1)) as a (B, H, W, 1) map."""
    s = jnp.asarray(sigma, dtype)
    if s.ndim == 0:
        s = jnp.broadcast_to(s, (b,))
    if s.ndim == 1 and s.shape[0] in (1, b):
        return jnp.broadcast_to(s.reshape(-1, 1, 1, 1), (b, h, w, 1))
    if s.ndim == 4 and s.shape[0] in (1, b) and s.shape[1:] in ((1, 1, 1), (h, w, 1)):
        return jnp.broadcast_to(s, (b, h, w, 1))
    raise ValueError(f"DRUNet: `sigma` must have shape () or (B,) = ({b},) (one noise level per "
                     f"image) or be a map (B, H, W, 1) = ({b}, {h}, {w}, 1), got shape "
                     f"{tuple(s.shape)}. Fix: pass sigma / 255 per image, e.g. "
                     f"jnp.full(({b},), 25 / 255).")


def _check_sigma_values(sigma) -> None:
    if isinstance(sigma, jax.core.Tracer):
        return
    s = np.asarray(sigma, np.float64)
    if s.size and (not np.all(np.isfinite(s)) or np.any(s < 0)):
        raise ValueError("DRUNet: `sigma` must be finite and >= 0 on the [0, 1] image scale "
                         "(e.g. 25 / 255). Fix: pass the noise standard deviation / 255.")
    if s.size and np.max(s) > 1.0:
        raise ValueError(f"DRUNet: `sigma` is on the [0, 1] image scale (sigma / 255; DRUNet was "
                         f"trained for 0 .. 50/255), got {np.max(s)!r}. Fix: divide the 8-bit "
                         f"noise level by 255 (e.g. 25 -> 25 / 255).")


class DRUNet(nn.Module):
    """DRUNet (KAIR ``UNetRes``, bias-free): ``__call__(x, sigma)`` -> the denoised image.

    Attributes:
      channels: image channels (1 gray, 3 colour); the first conv takes ``channels + 1``.
      features: widths of the four scales (64, 128, 256, 512 in the released models).
      blocks: residual blocks per scale (``nb``, 4 in the released models).
      dtype: computation dtype.

    ``x``: (B, H, W, channels) float in [0, 1], any H, W >= 1 (padded to a multiple of 8 by edge
    replication and cropped back). ``sigma``: the noise level on the [0, 1] scale (sigma/255):
    shape () or (B,) (a constant map per image, as DPIR uses it) or a per-pixel map
    (B, H, W, 1). A traced argument: a new value never recompiles. Concrete values are checked
    (finite, >= 0, <= 1).
    """

    channels: int = 1
    features: Sequence[int] = (64, 128, 256, 512)
    blocks: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, sigma) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"DRUNet: `x` must be NHWC (B, H, W, {self.channels}), got shape "
                             f"{tuple(x.shape)}. Fix: add the batch/channel axes "
                             f"(x[None, ..., None] for one gray image).")
        b, h, w, c = x.shape
        if c != self.channels:
            raise ValueError(f"DRUNet: `x` has {c} channel(s) but this DRUNet takes "
                             f"{self.channels}. Fix: use drunet-{'color' if c == 3 else 'gray'}, "
                             f"or convert the image to {self.channels} channel(s).")
        if len(self.features) != 4:
            raise ValueError(f"DRUNet: `features` must give the 4 scale widths, got "
                             f"{self.features!r}")
        _check_sigma_values(sigma)
        z = jnp.concatenate([x.astype(self.dtype),
                             _noise_map(sigma, b, h, w, self.dtype)], axis=-1)
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        if ph or pw:  # DPIR's ReplicationPad2d((0, right, 0, bottom))
            z = jnp.pad(z, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        f, nb, dt = tuple(self.features), self.blocks, self.dtype
        x1 = nn.Conv(f[0], (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=dt,
                     name="m_head")(z)
        x2 = _Down(f[0], f[1], nb, dt, name="m_down1")(x1)
        x3 = _Down(f[1], f[2], nb, dt, name="m_down2")(x2)
        x4 = _Down(f[2], f[3], nb, dt, name="m_down3")(x3)
        y = _Body(f[3], nb, dt, name="m_body")(x4)
        y = _Up(f[2], nb, dt, name="m_up3")(y + x4)
        y = _Up(f[1], nb, dt, name="m_up2")(y + x3)
        y = _Up(f[0], nb, dt, name="m_up1")(y + x2)
        y = nn.Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=dt,
                    name="m_tail")(y + x1)
        return y[:, :h, :w, :].astype(x.dtype)


# ----------------------------------------------------------------------------- converter
_FIX = (f"Fix: pass KAIR's drunet_gray.pth or drunet_color.pth ({RELEASE}/), or a state dict of "
        "UNetRes(in_nc=C+1, out_nc=C, nc=[64, 128, 256, 512], nb=4, bias-free) as DPIR saves it.")


def _indices(sd: Mapping[str, Any], prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def infer_config(sd: Mapping[str, Any]) -> dict:
    """``{'channels', 'features', 'blocks'}`` of the :class:`DRUNet` a KAIR state dict is for
    (from ``m_head.weight``, the ``m_down{k}.{nb}.weight`` convs and the ``m_body`` blocks)."""
    if "m_head.weight" not in sd or "m_tail.weight" not in sd:
        missing = [k for k in ("m_head.weight", "m_tail.weight") if k not in sd]
        raise ValueError(f"not a DRUNet state dict: missing {missing} (keys start with "
                         f"{sorted(sd)[:4]}). {_FIX}")
    head, tail = np.shape(sd["m_head.weight"]), np.shape(sd["m_tail.weight"])
    if len(head) != 4 or len(tail) != 4:
        raise ValueError(f"m_head.weight {head} / m_tail.weight {tail} are not 4-D conv weights. "
                         f"{_FIX}")
    channels = int(tail[0])
    if head[1] != channels + 1:
        raise ValueError(f"m_head.weight takes {head[1]} channels but m_tail.weight gives "
                         f"{channels}: DRUNet takes the image plus one noise-level channel "
                         f"(C + 1 -> C). {_FIX}")
    blocks = len(_indices(sd, "m_body"))
    if blocks < 1:
        raise ValueError(f"no 'm_body.N.res.0.weight' keys: not a DRUNet (UNetRes) state dict. "
                         f"{_FIX}")
    features = [int(head[0])]
    for k in (1, 2, 3):
        key = f"m_down{k}.{blocks}.weight"
        if key not in sd:
            raise ValueError(f"missing key {key!r} (the stride-2 conv after {blocks} residual "
                             f"blocks of m_down{k}). {_FIX}")
        features.append(int(np.shape(sd[key])[0]))
    return {"channels": channels, "features": tuple(features), "blocks": blocks}


def _expected_keys(cfg: dict) -> dict[str, tuple]:
    """Every KAIR key of a DRUNet with config ``cfg`` -> its torch shape."""
    c, f, nb = cfg["channels"], cfg["features"], cfg["blocks"]
    keys = {"m_head.weight": (f[0], c + 1, 3, 3), "m_tail.weight": (c, f[0], 3, 3)}

    def res(prefix, width, first):
        for i in range(nb):
            for j in (0, 2):
                keys[f"{prefix}.{i + first}.res.{j}.weight"] = (width, width, 3, 3)
    for k in (1, 2, 3):
        res(f"m_down{k}", f[k - 1], 0)
        keys[f"m_down{k}.{nb}.weight"] = (f[k], f[k - 1], 2, 2)
        keys[f"m_up{k}.0.weight"] = (f[k], f[k - 1], 2, 2)  # ConvTranspose2d: (in, out, kH, kW)
        res(f"m_up{k}", f[k - 1], 1)
    res("m_body", f[3], 0)
    return keys


def drunet_from_state_dict(sd: Mapping[str, Any], channels: int | None = None) -> dict:
    """Flax variables ``{'params': ...}`` of :class:`DRUNet` from a KAIR ``UNetRes`` state dict.

    Args:
      sd: ``{key: array}`` as KAIR saves it (``m_head.weight``, ``m_down1.0.res.0.weight``, ...,
        ``m_tail.weight``; a ``module.`` prefix already stripped).
      channels: the image channels the caller expects (1 for ``drunet-gray``, 3 for
        ``drunet-color``); ``None`` accepts either.

    Raises ``ValueError`` naming the problem: a file for the other channel count, missing keys
    (named), unexpected keys (e.g. biases: the released DRUNet has none), wrong shapes.
    """
    sd = {(k[len("module."):] if k.startswith("module.") else k): np.asarray(v, np.float32)
          for k, v in sd.items()}
    cfg = infer_config(sd)
    if channels is not None and cfg["channels"] != channels:
        kind = {1: "gray", 3: "colour"}
        got = kind.get(cfg["channels"], f"{cfg['channels']}-channel")
        want_name = "drunet-gray" if cfg["channels"] == 1 else "drunet-color"
        raise ValueError(
            f"this is a {got} DRUNet (m_head.weight takes {cfg['channels']} + 1 channels), but a "
            f"{kind.get(channels, channels)} one ({channels} + 1) was expected. Fix: load it as "
            f"{want_name!r}, or pass drunet_{'gray' if channels == 1 else 'color'}.pth.")
    want = _expected_keys(cfg)
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing or extra:
        hint = (" (biases: the released DRUNet is bias-free)"
                if any(k.endswith(".bias") for k in extra) else "")
        raise ValueError(f"DRUNet state dict does not match UNetRes(channels={cfg['channels']}, "
                         f"nc={list(cfg['features'])}, nb={cfg['blocks']}): missing keys "
                         f"{missing[:8]}{' ...' if len(missing) > 8 else ''}, unexpected keys "
                         f"{extra[:8]}{' ...' if len(extra) > 8 else ''}{hint}. {_FIX}")
    wrong = [(k, tuple(sd[k].shape), s) for k, s in want.items() if tuple(sd[k].shape) != s]
    if wrong:
        raise ValueError(f"DRUNet state dict has wrong shapes (key, got, expected): {wrong[:5]}. "
                         f"{_FIX}")

    def k(key):
        return {"kernel": conv_kernel(sd[key], key)}

    def res_blocks(prefix, first):
        return {f"res{i}": {f"conv{j // 2}": k(f"{prefix}.{i + first}.res.{j}.weight")
                            for j in (0, 2)} for i in range(cfg["blocks"])}
    nb = cfg["blocks"]
    params: dict = {"m_head": k("m_head.weight"), "m_tail": k("m_tail.weight"),
                    "m_body": res_blocks("m_body", 0)}
    for lvl in (1, 2, 3):
        params[f"m_down{lvl}"] = {**res_blocks(f"m_down{lvl}", 0),
                                  "down": k(f"m_down{lvl}.{nb}.weight")}
        # ConvTranspose2d (in, out, 2, 2) -> (2, 2, out, in), the transpose_kernel layout
        params[f"m_up{lvl}"] = {"up": k(f"m_up{lvl}.0.weight"), **res_blocks(f"m_up{lvl}", 1)}
    return {"params": params}


def drunet_from_pth(path: str | Path, channels: int | None = None) -> dict:
    """Flax :class:`DRUNet` variables from a KAIR ``drunet_*.pth`` file (needs torch)."""
    sd = load_state_dict(path, what="a KAIR DRUNet state dict (drunet_gray.pth / "
                                    "drunet_color.pth)", fix=f"download it from {RELEASE}/")
    try:
        return drunet_from_state_dict(sd, channels)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# ----------------------------------------------------------------------------- registry
# No sha256 is published for KAIR's release files and they could not be fetched where this port
# was written: sha256=UNKNOWN (dynpnp_jax.download) accepts a file as found, warns with its
# sha256 and caches it under that hash. Record the hash here from the first verified download.
_LICENCE = ("MIT (cszn/KAIR and cszn/DPIR); weights downloaded from the KAIR v1.0 release, "
            "never redistributed")
for _variant, (_rel, _sha, _url) in FILES.items():
    _c = ARCH[_variant]["channels"]
    register(WeightSpec(
        name=f"drunet-{_variant}",
        files=(UpstreamFile(_rel, _sha, _url),),
        convert=(lambda c: lambda files: drunet_from_pth(next(iter(files.values())), c))(_c),
        module=DRUNet(**ARCH[_variant]), kind="image", channels=_c, multiple=1,
        noise_input=True, receptive_field=64, tiling_exact=False,
        description=(f"DRUNet {'gray' if _c == 1 else 'colour'} (DPIR's denoiser: bias-free "
                     f"residual U-Net, 4 scales 64-512, 4 res-blocks each, noise level map as an "
                     f"input channel); sizes padded to a multiple of 8 by edge replication"),
        source=f"cszn/KAIR release v1.0 {Path(_rel).name} (torch state dict of UNetRes)",
        licence=_LICENCE, converter_needs_torch=True))
