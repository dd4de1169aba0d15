"""VDN (Yue et al., NeurIPS 2019, "Variational Denoising Network") in Flax.

The prior the paper plugs in for denoising. Architecture as released in zsyOAOA/VDNet
(``networks/VDN.py``, ``UNet.py``, ``DnCNN.py``) and as defined inline in the authors' HQS
notebook (WillDreamer/SND ``code/denoising/framework/state_of_the_art_HQS_vdn_set12.ipynb``),
``VDN(in_channels=3, wf=64, dep_S=5, dep_U=4, slope=0.2)``:

* ``DNet`` (:class:`UNet`, ``C -> 2C`` channels): ``depth`` down blocks, each two 3x3 convs
  (padding 1, bias) + LeakyReLU(0.2), with widths ``wf * 2**i``; a 2x2 average pool (stride 2)
  after every down block except the last. Up blocks (``depth - 1``, widths back down to ``wf``):
  ``ConvTranspose2d(kernel 2, stride 2, bias)`` halving the channels, centre crop of the skip
  ("bridge") to the upsampled size, concatenation ``[up, bridge]`` on channels, then a conv block.
  A last 3x3 conv gives ``phi_Z`` (``2C`` channels): ``phi_Z[:C]`` is the posterior mean of the
  noise ``y - z`` and ``phi_Z[C:]`` its log-variance.
* ``SNet`` (:class:`SigmaDnCNN`, ``C -> 2C``): ``dep_S`` 3x3 convs (64 filters, all with bias)
  with LeakyReLU(0.2) between them, no batch norm, no residual; ``phi_sigma`` holds
  ``log alpha`` (first ``C`` channels) and ``log beta`` (last ``C``) of the inverse-gamma
  posterior of the noise variance.

At test time (the authors' ``net(x, 'test')``, also in the paper's HQS notebook) only ``DNet``
runs and the denoised image is ``x - phi_Z[:, :C]``. :class:`VDN`'s ``__call__`` therefore
returns ``phi_Z[..., :C]``, the noise estimate, which makes it a ``kind='residual'``
:class:`~dynpnp_jax.networks.Network`. The full outputs are :meth:`VDN.outputs` (``'train'``
mode: ``phi_Z, phi_sigma``), :meth:`VDN.dnet` (``phi_Z``) and :meth:`VDN.snet` (``phi_sigma``);
:func:`vdn_outputs` runs them on a loaded network with the same padding as ``Network.apply``.

Sizes: the U-Net pools ``depth - 1 = 3`` times, so height and width must be multiples of
``2**(depth-1) = 8`` (:func:`check_size`). Upstream does not check: other sizes floor in the
pooling, the centre crop trims the skip connections and the output comes out smaller than the
input (the authors' demo scripts crop their test images to a multiple of 16 first). The
registered network uses ``multiple=8``: :class:`~dynpnp_jax.networks.Network` pads other sizes
by reflection and crops back. With valid sizes the centre crop is the identity; it is kept for
fidelity when :class:`UNet` is used on its own.

Departures from upstream, all numerically neutral: NHWC layout; PyTorch's
``ConvTranspose2d`` weight ``(in, out, kH, kW)`` is stored as ``(kH, kW, out, in)``, the layout of
``nn.ConvTranspose(transpose_kernel=True)`` (see the converter below); the up-sampling
is computed by :class:`ConvTranspose2x2s2` as a matrix product + depth-to-space (no arithmetic on
the zeros of a dilated input), equal to the transposed convolution up to float rounding.

Layer names (what the converter targets; torch key -> Flax path)::

    DNet.down_path.{i}.block.{0,2}          -> DNet/down{i}/conv{0,1}
    DNet.up_path.{j}.up                     -> DNet/up{j}/up          (ConvTranspose)
    DNet.up_path.{j}.conv_block.block.{0,2} -> DNet/up{j}/block/conv{0,1}
    DNet.last                               -> DNet/last
    SNet.conv1                              -> SNet/conv0
    SNet.mid_layer.{2k}                     -> SNet/conv{k+1}
    SNet.conv_last                          -> SNet/conv{dep_S-1}
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def size_multiple(depth: int = 4) -> int:
    """Height and width multiple a ``depth``-level U-Net needs: ``2**(depth-1)``."""
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int (VDN uses 4), got {depth!r}")
    return 2 ** (depth - 1)


def check_size(h: int, w: int, depth: int = 4, *, name: str = "VDN") -> None:
    """Raise ``ValueError`` unless an ``h`` x ``w`` image fits the U-Net (``DNet``) of VDN.

    Both must be positive multiples of :func:`size_multiple` (8 for the released ``depth=4``).
    The message names the offending argument and the fix.
    """
    m = size_multiple(depth)
    for arg, v in (("h", h), ("w", w)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{name}: image size {arg} must be an int, got {v!r} "
                             f"({type(v).__name__}); pass the image's height and width")
        if v < 1 or v % m:
            raise ValueError(
                f"{name}: image {arg}={v} is not a positive multiple of {m}: the U-Net of depth "
                f"{depth} halves the size {depth - 1} times (average pooling) and doubles it back, "
                f"so other sizes would not line up with the input. Fix: pad (or crop) the image "
                f"to a multiple of {m}; a Network with multiple={m} (as "
                "load_network('vdn-niidgauss') returns) pads by reflection and crops back")


def _leaky(x: jax.Array, slope: float) -> jax.Array:
    return nn.leaky_relu(x, negative_slope=slope)


def _conv3x3(features: int, dtype: Any, name: str) -> nn.Conv:
    return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=True, dtype=dtype,
                   name=name)


def center_crop(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Centre crop of NHWC ``x`` to ``size`` (``UNetUpBlock.center_crop``, floor offsets)."""
    h, w = x.shape[1:3]
    dy, dx = (h - size[0]) // 2, (w - size[1]) // 2
    return x[:, dy:dy + size[0], dx:dx + size[1], :]


class ConvBlock(nn.Module):
    """``UNetConvBlock``: (3x3 conv + LeakyReLU) x 2, named ``conv0``, ``conv1``."""

    features: int
    slope: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = _leaky(_conv3x3(self.features, self.dtype, "conv0")(x), self.slope)
        return _leaky(_conv3x3(self.features, self.dtype, "conv1")(x), self.slope)


class ConvTranspose2x2s2(nn.Module):
    """PyTorch ``ConvTranspose2d(kernel 2, stride 2, bias)``: ``(B, h, w, Cin) -> (B, 2h, 2w, Cout)``.

    Parameters exactly as ``nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="VALID",
    transpose_kernel=True)`` (the converter's layout): ``kernel (2, 2, Cout, Cin)`` = the torch
    weight ``(Cin, Cout, 2, 2)`` transposed, ``bias (Cout,)``, same initialisers. With kernel =
    stride the 2x2 output block of every input pixel does not overlap any other:
    ``out[2i + ry, 2j + rx] = x[i, j] @ W[:, :, ry, rx] + b``. So it is computed as one matrix
    product to ``4 * Cout`` channels (one per phase ``(ry, rx)``) and a depth-to-space; XLA's
    transposed convolution instead convolves the zero-dilated input (3/4 of its multiply-adds on
    zeros). Equal up to float rounding.
    """

    features: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, cin = x.shape
        co = self.features
        kernel = self.param("kernel", self.kernel_init, (2, 2, co, cin), self.param_dtype)
        bias = self.param("bias", self.bias_init, (co,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        k = kernel.transpose(3, 0, 1, 2).reshape(cin, 4 * co)  # [ci, (ry, rx, co)]
        p = jnp.dot(x.reshape(b * h * w, cin), k) + jnp.tile(bias, 4)
        p = p.reshape(b, h, w, 2, 2, co).transpose(0, 1, 3, 2, 4, 5)  # (b, h, ry, w, rx, co)
        return p.reshape(b, 2 * h, 2 * w, co)


class UpBlock(nn.Module):
    """``UNetUpBlock``: 2x2 stride-2 transposed conv ``up``, crop + concat ``[up, bridge]``,
    conv ``block``."""

    features: int
    slope: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, bridge: jax.Array) -> jax.Array:
        up = ConvTranspose2x2s2(self.features, dtype=self.dtype, name="up")(x)
        bridge = center_crop(bridge, up.shape[1:3])
        h = jnp.concatenate([up, bridge.astype(up.dtype)], axis=-1)
        return ConvBlock(self.features, self.slope, self.dtype, name="block")(h)


class UNet(nn.Module):
    """VDN's ``DNet``: U-Net with average pooling and transposed-conv upsampling.

    Attributes:
      out_channels: output channels (``2C`` in VDN).
      depth: number of down blocks (``dep_U``, 4 released).
      features: width of the first level (``wf``, 64); level ``i`` has ``features * 2**i``.
      slope: LeakyReLU negative slope.
    """

    out_channels: int = 6
    depth: int = 4
    features: int = 64
    slope: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        skips = []
        for i in range(self.depth):
            x = ConvBlock(self.features * 2 ** i, self.slope, self.dtype, name=f"down{i}")(x)
            if i != self.depth - 1:
                skips.append(x)
                x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        for j in range(self.depth - 1):  # up_path.j works at level depth-2-j
            level = self.depth - 2 - j
            x = UpBlock(self.features * 2 ** level, self.slope, self.dtype,
                        name=f"up{j}")(x, skips[level])
        return _conv3x3(self.out_channels, self.dtype, "last")(x)


class SigmaDnCNN(nn.Module):
    """VDN's ``SNet``: ``depth`` 3x3 convs with bias, LeakyReLU between, no BN, no residual."""

    out_channels: int = 6
    depth: int = 5
    features: int = 64
    slope: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            last = i == self.depth - 1
            x = _conv3x3(self.out_channels if last else self.features, self.dtype, f"conv{i}")(x)
            if not last:
                x = _leaky(x, self.slope)
        return x


class VDN(nn.Module):
    """VDN: ``DNet`` (:class:`UNet`) and ``SNet`` (:class:`SigmaDnCNN`), NHWC.

    ``__call__(x)`` returns the noise estimate ``phi_Z[..., :C]`` (the denoised image is
    ``x - VDN(x)``); ``x`` must be ``(B, H, W, channels)`` with ``H, W`` multiples of
    ``2**(depth_u-1)`` (:func:`check_size`). Both sub-networks are created by ``init`` so the
    variables hold all released weights, but only ``DNet`` runs in ``__call__``.

    Attributes:
      channels: image channels ``C`` (3 for the released colour models).
      features: ``wf``, width of the U-Net's first level (64).
      depth_u: ``dep_U``, U-Net depth (4).
      depth_s: ``dep_S``, number of convs of ``SNet`` (5).
      snet_features: width of ``SNet`` (64, fixed upstream).
      slope: LeakyReLU negative slope (0.2).
      dtype: computation dtype.
    """

    channels: int = 3
    features: int = 64
    depth_u: int = 4
    depth_s: int = 5
    snet_features: int = 64
    slope: float = 0.2
    dtype: Any = jnp.float32

    def setup(self):
        self.DNet = UNet(2 * self.channels, self.depth_u, self.features, self.slope, self.dtype)
        self.SNet = SigmaDnCNN(2 * self.channels, self.depth_s, self.snet_features, self.slope,
                               self.dtype)

    @property
    def multiple(self) -> int:
        return size_multiple(self.depth_u)

    @nn.nowrap
    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` when this network can never take an ``h`` x ``w`` image, after
        the reflect padding to a multiple of 8 that ``Network.apply`` does."""
        m = size_multiple(self.depth_u)
        check_size(h + (-h) % m, w + (-w) % m, self.depth_u)

    def _check(self, x: jax.Array) -> None:
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"VDN: x must be NHWC with {self.channels} channel(s), got shape "
                             f"{tuple(x.shape)}")
        check_size(int(x.shape[1]), int(x.shape[2]), self.depth_u)

    def dnet(self, x: jax.Array) -> jax.Array:
        """``phi_Z`` (``2C`` channels): noise mean ``[..., :C]``, its log-variance ``[..., C:]``."""
        self._check(x)
        return self.DNet(x.astype(self.dtype)).astype(x.dtype)

    def snet(self, x: jax.Array) -> jax.Array:
        """``phi_sigma`` (``2C`` channels): ``log alpha`` ``[..., :C]``, ``log beta`` after."""
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"VDN: x must be NHWC with {self.channels} channel(s), got shape "
                             f"{tuple(x.shape)}")
        return self.SNet(x.astype(self.dtype)).astype(x.dtype)

    def outputs(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Upstream ``'train'`` mode: ``(phi_Z, phi_sigma)``."""
        return self.dnet(x), self.snet(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        phi_z = self.dnet(x)
        if self.is_initializing():  # create SNet's parameters too (they are in the weights)
            self.snet(x)
        return phi_z[..., :self.channels]


def vdn_outputs(net, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(phi_Z, phi_sigma)`` of a loaded VDN :class:`~dynpnp_jax.networks.Network` on NHWC ``x``.

    Sizes that are not a multiple of ``net.multiple`` are padded by reflection and cropped back,
    as ``Network.apply`` does for ``__call__``.
    """
    if not isinstance(net.module, VDN):
        raise ValueError(f"vdn_outputs needs a VDN network, got {type(net.module).__name__} "
                         f"({net.name!r})")
    net.check_input(x.shape, "x")
    if x.shape[-1] != net.channels:
        raise ValueError(f"x has {x.shape[-1]} channel(s) but {net.name!r} takes {net.channels}")
    h, w = x.shape[1:3]
    ph, pw = (-h) % net.multiple, (-w) % net.multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "edge"
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
    phi_z, phi_sigma = net.module.apply(net.variables, x, method=VDN.outputs)
    return phi_z[:, :h, :w, :], phi_sigma[:, :h, :w, :]


# ============================================================================ converter
# zsyOAOA/VDNet ``model_state/model_state_*`` -> Flax variables.
# VDN checkpoints (zsyOAOA/VDNet ``model_state/model_state_*``) -> Flax variables.
#
# The released files are ``torch.save(net.state_dict())`` of an ``nn.DataParallel(VDN(3))``, so every
# key starts with ``module.`` (stripped here). Key mapping (see :mod:`dynpnp_jax.zoo.vdn`)::
#
#     DNet.down_path.{i}.block.{0,2}.*           -> DNet/down{i}/conv{0,1}/*
#     DNet.up_path.{j}.up.*                      -> DNet/up{j}/up/*
#     DNet.up_path.{j}.conv_block.block.{0,2}.*  -> DNet/up{j}/block/conv{0,1}/*
#     DNet.last.*                                -> DNet/last/*
#     SNet.conv1.*                               -> SNet/conv0/*
#     SNet.mid_layer.{2k}.*                      -> SNet/conv{k+1}/*
#     SNet.conv_last.*                           -> SNet/conv{n_mid+1}/*
#
# Conv weights ``(out, in, kH, kW)`` become HWIO. The transposed convs ``ConvTranspose2d`` have
# torch weights ``(in, out, kH, kW)``; Flax ``nn.ConvTranspose(transpose_kernel=True)`` takes the
# kernel of the *forward* conv whose gradient it is, ``(kH, kW, out, in)`` in HWIO terms, and flips
# it spatially itself, so the same ``transpose(2, 3, 1, 0)`` as a conv applies, with no flip
# (checked against PyTorch in ``tests/test_vdn.py``). Reading needs torch; running does not.
import re as _re  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import Mapping as _Mapping  # noqa: E402

import numpy as _np  # noqa: E402

from ..formats.torch import conv_kernel as _conv_kernel  # noqa: E402
from ..formats.torch import load_state_dict as _torch_load  # noqa: E402
from ..weights import UNKNOWN, UpstreamFile, WeightsError, WeightSpec, register  # noqa: E402


def _load_state_dict(path):
    return _torch_load(path, what="a VDN checkpoint such as model_state_niidgauss",
                       fix=f"download it from {_URL}")


_URL = "https://github.com/zsyOAOA/VDNet/tree/master/model_state"


def _strip(sd: _Mapping[str, _np.ndarray]) -> dict[str, _np.ndarray]:
    return {(k[len("module."):] if k.startswith("module.") else k): _np.asarray(v, _np.float32)
            for k, v in sd.items()}


def _indices(sd, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := _re.fullmatch(pattern, k))})


def vdn_hparams(sd: _Mapping[str, _np.ndarray]) -> dict:
    """``VDN(**hparams)`` fitting state dict ``sd``: channels, features, depth_u, depth_s,
    snet_features (read from the weight shapes)."""
    sd = _strip(sd)
    downs = _indices(sd, r"DNet\.down_path\.(\d+)\.block\.0\.weight")
    mids = _indices(sd, r"SNet\.mid_layer\.(\d+)\.weight")
    if not downs or "SNet.conv1.weight" not in sd:
        raise ValueError("no 'DNet.down_path.N.block.0.weight' / 'SNet.conv1.weight' keys: not a "
                         "VDN (zsyOAOA/VDNet) state dict")
    w0 = sd["DNet.down_path.0.block.0.weight"]
    return {"channels": int(w0.shape[1]), "features": int(w0.shape[0]),
            "depth_u": len(downs), "depth_s": len(mids) + 2,
            "snet_features": int(sd["SNet.conv1.weight"].shape[0])}


def _conv(sd: dict, key: str, used: set) -> dict:
    w, b = sd.get(f"{key}.weight"), sd.get(f"{key}.bias")
    if w is None or b is None:
        raise ValueError(f"VDN state dict lacks {key}.weight / {key}.bias")
    if w.ndim != 4:
        raise ValueError(f"{key}.weight has shape {w.shape}, expected a 4-D conv weight")
    used.update({f"{key}.weight", f"{key}.bias"})
    return {"kernel": _conv_kernel(w), "bias": b}


def vdn_from_state_dict(sd: _Mapping[str, _np.ndarray]) -> dict:
    """Flax :class:`~dynpnp_jax.zoo.vdn.VDN` variables from a VDNet state dict.

    Accepts keys with or without the ``module.`` prefix of ``nn.DataParallel``. Raises
    ``ValueError`` on missing or unexpected keys.
    """
    sd = _strip(sd)
    hp = vdn_hparams(sd)
    used: set[str] = set()
    depth = hp["depth_u"]
    dnet: dict = {}
    for i in range(depth):
        dnet[f"down{i}"] = {f"conv{c}": _conv(sd, f"DNet.down_path.{i}.block.{2 * c}", used)
                            for c in range(2)}
    for j in range(depth - 1):
        pre = f"DNet.up_path.{j}"
        dnet[f"up{j}"] = {
            # ConvTranspose2d (in, out, kH, kW) -> (kH, kW, out, in): transpose_kernel=True layout
            "up": _conv(sd, f"{pre}.up", used),
            "block": {f"conv{c}": _conv(sd, f"{pre}.conv_block.block.{2 * c}", used)
                      for c in range(2)},
        }
    dnet["last"] = _conv(sd, "DNet.last", used)

    mids = _indices(sd, r"SNet\.mid_layer\.(\d+)\.weight")
    if mids != list(range(0, 2 * len(mids), 2)):
        raise ValueError(f"SNet.mid_layer conv indices {mids} are not 0, 2, 4, ...")
    snet = {"conv0": _conv(sd, "SNet.conv1", used)}
    for k, m in enumerate(mids):
        snet[f"conv{k + 1}"] = _conv(sd, f"SNet.mid_layer.{m}", used)
    snet[f"conv{len(mids) + 1}"] = _conv(sd, "SNet.conv_last", used)

    extra = sorted(set(sd) - used)
    if extra:
        raise ValueError(f"unexpected keys in VDN state dict: {extra[:8]}"
                         f"{' ...' if len(extra) > 8 else ''}")
    return {"params": {"DNet": dnet, "SNet": snet}}


def vdn_from_file(path: str | _Path) -> dict:
    """Flax VDN variables from a VDNet checkpoint file (e.g. ``model_state_niidgauss``).

    Raises :class:`~dynpnp_jax.weights.WeightsError` naming the file when it cannot be read or is
    not a VDN state dict.
    """
    path = _Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"VDN checkpoint {path} does not exist; pass the released "
                           f"model_state_niidgauss (from {_URL}) or your own VDN state dict")
    try:
        sd = _load_state_dict(path)
    except ValueError as err:  # formats.torch.FormatError: truncated, corrupt, not a torch file
        raise WeightsError(str(err)) from err
    try:
        return vdn_from_state_dict(sd)
    except ValueError as err:
        raise WeightsError(f"{path} is not a VDN state dict: {err}") from err


# ============================================================================ registry
# The released checkpoint is not in the offline mirror (over its size limit), so its sha256 is not
# recorded: ``sha256=UNKNOWN`` means the file is accepted as found (with a warning) and cached
# under its own hash (see dynpnp_jax.weights). Record the hash here once someone has the file.
register(WeightSpec(
    name="vdn-niidgauss",
    files=(UpstreamFile("vdn/model_state_niidgauss", UNKNOWN,
                        "https://github.com/zsyOAOA/VDNet/raw/master/model_state/"
                        "model_state_niidgauss"),),
    convert=lambda files: vdn_from_file(next(iter(files.values()))),
    module=VDN(channels=3), kind="residual", channels=3, multiple=size_multiple(4),
    receptive_field=32, tiling_exact=False,  # effective: a depth-4 U-Net sees far
    description="VDN (DNet U-Net depth 4 + SNet 5 convs), colour, blind denoiser trained on "
                "simulated non-i.i.d. Gaussian noise; the paper's denoising prior: "
                "prior(x) = x - DNet(x)[:3]; sizes padded to a multiple of 8",
    source="zsyOAOA/VDNet model_state/model_state_niidgauss (torch state dict of "
           "nn.DataParallel(VDN(3))); architecture networks/VDN.py, UNet.py, DnCNN.py",
    licence="no licence file in zsyOAOA/VDNet (checked at 599c153, 2021-06-29): all rights "
            "reserved by the authors; the weights are downloaded from the authors' repository, "
            "not redistributed",
    converter_needs_torch=True))
