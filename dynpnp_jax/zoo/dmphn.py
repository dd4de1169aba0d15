"""DMPHN (Zhang et al., CVPR 2019, "Deep Stacked Hierarchical Multi-patch Network") in Flax.

Three networks, as released in HongguangZhang/DMPHN-cvpr19-master and run by its test scripts:

* :class:`DMPHN` with ``levels=3``: DMPHN 1-2-4 (``DMPHN_1_2_4_test.py``);
* :class:`DMPHN` with ``levels=4``: DMPHN 1-2-4-8 (``DMPHN_1_2_4_8_test.py``);
* :class:`StackDMPHN` with ``stacks=4``: Stack(4)-DMPHN, four stacks of 1-2-4 (``SDNet4_test.py``).

Building blocks (``models.py`` upstream; every convolution has a bias, there is no
normalisation layer):

* :class:`Encoder`: conv 3->32, 2 residual blocks (conv-ReLU-conv + skip) at full size; stride-2
  conv 32->64, 2 blocks; stride-2 conv 64->128, 2 blocks. Output: 128 channels at 1/4 size.
* :class:`Decoder`: 2 blocks at 128; transposed conv 128->64 (kernel 4, stride 2, padding 1);
  2 blocks; transposed conv 64->32 (same); 2 blocks; conv 32->3. Output: 3 channels at 4x size.

Multi-patch hierarchy (level ``k`` = 1 .. L, coarsest patches at level 1):

* the image (already shifted by ``-0.5``) is cut into a grid of equal patches per level:
  level 1 = 1x1 (whole image), level 2 = 2x1 (top / bottom halves), level 3 = 2x2 (quarters),
  level 4 = 4x2 (each quarter cut into a top and a bottom half);
* from the finest level L down to 1: every patch of level k is encoded on its own (its own zero
  padding at the patch border, as upstream) from ``image + residual_{k+1}`` (the residual is 0 at
  level L); the patch features are put back side by side into one map and the feature map of
  level k+1 is added; the result is decoded *per patch of level k-1* into ``residual_k``;
* level 1 decodes its features over the whole image: that is the network output (the released
  scripts do **not** add the input image back), and ``+0.5`` returns to [0, 1].

Stack(N)-DMPHN (stack ``s >= 2`` reads the previous stack's output ``P`` and features ``F'``,
exactly as ``SDNet4_test.py``, including its quirk that the level-2 residual of every later
stack is added to the output of stack **1**, not of the previous stack)::

    f3 = merge(enc3(split(P, 2x2))) + F'3           ;  r3 = dec3 per half(f3)
    f2 = merge(enc2(split(P + r3, 2x1))) + f3 + F'2  ;  r2 = dec2(f2) + out_1
    f1 = enc1(P + r2) + f2 + F'1                     ;  out_s = dec1(f1)

Stack 1 is DMPHN 1-2-4 (``F' = 0``, no ``+ out_1``); the output of the last stack is returned.

Sizes: the encoder maps a patch of size ``n`` to ``ceil(ceil(n/2)/2)`` and the decoder maps back
by ``x4``, so the hierarchy is only consistent when every finest-level patch is a multiple of 4:
height a multiple of ``4 * rows`` and width of ``4 * cols`` of the finest grid
(:func:`size_multiple`: (8, 8) for 1-2-4 and Stack(N), (16, 8) for 1-2-4-8). The released
scripts simply assume this (GoPro frames are 1280x720). Here
:class:`~dynpnp_jax.networks.Network` pads other sizes by reflection to a multiple of
``lcm(16, 8) = 16`` / ``8`` and crops back; note that this moves the patch borders relative to
the unpadded image, which the original code (that would crash or mis-align) never had to decide.
:func:`check_size` rejects sizes that cannot be run meaningfully.

Departures from upstream, all numerically neutral: NHWC layout instead of NCHW; the patches of one
level are run as one batch (``(B*rows*cols, h, w, C)``) instead of one call each, which gives the
same result because every patch is padded on its own either way; the transposed convolutions are
computed in phase (sub-pixel) form by :class:`ConvTranspose4x4s2` (same parameters, equal up to
float rounding, 2-3x faster on XLA's CPU backend); the ``-0.5`` / ``+0.5`` of the
test scripts is inside the module so that it maps [0, 1] images to [0, 1] images (kind
``'image'``). The output is not clipped (the authors clip only when saving, by truncation).

Fidelity (``tests/test_dmphn.py``): with random weights the port equals a PyTorch transcription
of the scripts to < 1e-5; with the released weights, GoPro frame 000001 truncated to 8 bits as the
authors saved it matches their published outputs at 93.5 dB (1-2-4, 2.9e-5 of the values differ
by one level) and 92.5 dB (Stack(4), 3.7e-5); with flax's ConvTranspose instead of the phase form
it was 93.2 / 92.9 dB in the same environment (which values sit exactly at a truncation boundary
depends on the summation order). DMPHN 1-2-4-8 matches at 56.2 dB only (15 % of the values one
level off). ``docs/results/gopro.md`` (the DMPHN ports against the authors' own frames) traces this: the released ``DMPHN_1_2_4_8_test.py`` run
step by step in PyTorch (CPU and CUDA, float32 / float64 / TF32 / float16) gives our output, and
none of rounding instead of truncation, another level-4 cut or decoding, float16 or bfloat16
arithmetic reproduces the authors' frames (8 of the 20 checked, 54-57 dB each); what separates
them is a smooth, channel-common difference of ~0.25 levels in float (not quantisation noise),
i.e. their frames were not made by the released checkpoint with the released code (most likely
another training snapshot). ``test_dmphn_1248_mismatch_is_a_smooth_field`` pins it.

Layer names follow the PyTorch ``state_dict`` keys so that the converter
(:func:`dmphn_from_files`, below) is a renaming: ``layer1``, ``layer2`` (a
:class:`ResBlock` with ``conv0`` = torch ``layer2.0`` and ``conv1`` = torch ``layer2.2``), ...,
``layer16`` / ``layer20`` (transposed convs), ``layer24``; the hierarchy's sub-modules are named
after the checkpoint files: ``encoder_lv1`` .. ``decoder_lv4`` and ``encoder_s1_lv1`` ..
``decoder_s4_lv3``.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Patch grid (rows, cols) of each level, level 1 first, as cut by the upstream test scripts.
GRIDS: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (2, 2), (4, 2))
DOWNSAMPLE = 4  # the encoder's total stride


class ResBlock(nn.Module):
    """``conv3x3 -> ReLU -> conv3x3`` plus the identity (upstream: ``layerN(x) + x``)."""

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name="conv0")(x)
        h = nn.relu(h)
        h = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name="conv1")(h)
        return h + x


def _conv(features: int, stride: int, name: str, dtype) -> nn.Conv:
    # PyTorch Conv2d(k=3, padding=1, stride=s): symmetric zero padding of 1 on both sides.
    return nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                   dtype=dtype, name=name)


# Phase (sub-pixel) form of ConvTranspose2d(k=4, stride=2, padding=1). Per axis, torch computes
# out[y] = sum_{i, k: y = 2 i - 1 + k} W[k] x[i], so with y = 2 m + r:
#   r = 0: out[2m]     = W[1] x[m]   + W[3] x[m-1]
#   r = 1: out[2m + 1] = W[0] x[m+1] + W[2] x[m]
# Both phases read a 2-tap window of x: rows (a - 1, a) with a = m for r = 0 and a = m + 1 for
# r = 1; tap t (0: row a - 1, 1: row a) of phase r is kernel index 3 - r - 2 t. So one stride-1
# 2x2 convolution of x zero-padded by 1 on every side gives, at window position a (0 .. n), all
# four phases (ry, rx) as 4 * Cout channels, and out[2m + ry, 2n + rx] = P[m + ry, n + rx, ry, rx].
# Same multiply-adds as the transposed convolution (16 taps per input pixel), none on zeros.
_PHASE_TAPS = ((3, 1), (2, 0))  # [r][t] -> kernel index


def phase_kernel(kernel: jax.Array) -> jax.Array:
    """The ``(2, 2, Cin, 4 * Cout)`` phase kernel of a 4x4 stride-2 padding-1 transposed conv.

    ``kernel`` is the Flax ``ConvTranspose(transpose_kernel=True)`` kernel ``(4, 4, Cout, Cin)``
    (= the torch weight ``(Cin, Cout, 4, 4)`` transposed); output channel ``(ry * 2 + rx) * Cout
    + co`` of the result is phase ``(ry, rx)``. Only a gather: no arithmetic on the weights.
    """
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"expected a (4, 4, Cout, Cin) kernel, got {kernel.shape}")
    cout, cin = kernel.shape[2:]
    taps = jnp.asarray(_PHASE_TAPS)
    g = kernel[taps[:, :, None, None], taps[None, None, :, :]]  # (ry, ty, rx, tx, co, ci)
    return g.transpose(1, 3, 5, 0, 2, 4).reshape(2, 2, cin, 4 * cout)


def depth_to_space_shifted(p: jax.Array, cout: int) -> jax.Array:
    """Interleave phase maps ``(B, m + 1, n + 1, 4 * cout)`` into ``(B, 2m, 2n, cout)`` with
    ``out[2i + ry, 2j + rx] = p[i + ry, j + rx, phase (ry, rx)]`` (see :func:`phase_kernel`)."""
    b, m1, n1, _ = p.shape
    m, n = m1 - 1, n1 - 1
    p = p.reshape(b, m1, n1, 2, 2, cout)
    rows = [jnp.stack([p[:, ry:ry + m, rx:rx + n, ry, rx] for rx in (0, 1)], axis=3)
            for ry in (0, 1)]  # each (B, m, n, 2 (rx), cout)
    return jnp.stack(rows, axis=2).reshape(b, 2 * m, 2 * n, cout)


class ConvTranspose4x4s2(nn.Module):
    """PyTorch ``ConvTranspose2d(k=4, stride=2, padding=1)``: ``(B, n, m, Cin) -> (B, 2n, 2m, Cout)``.

    Parameters exactly as ``nn.ConvTranspose(features, (4, 4), strides=(2, 2),
    padding=((2, 2), (2, 2)), transpose_kernel=True)`` (the layout the converter writes):
    ``kernel (4, 4, Cout, Cin)`` = torch weight transposed, ``bias (Cout,)``, same initialisers.
    Computed as one stride-1 2x2 convolution to ``4 * Cout`` phase channels + interleave
    (:func:`phase_kernel`), which XLA's CPU backend runs about 2x faster than its transposed
    convolution (that one convolves the zero-dilated input with the generic Eigen kernel: 3/4 of
    its multiply-adds are on zeros); equal to it up to float rounding (another summation order).
    """

    features: int
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (4, 4, self.features, cin),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        # padding (1, 1) in the conv: XLA:CPU runs this with Eigen, measured faster here than the
        # YNNPACK path a VALID conv on a pre-padded input would take (docs/results/gopro.md)
        p = jax.lax.conv_general_dilated(x, phase_kernel(kernel), (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        p = p + jnp.tile(bias, 4)
        return depth_to_space_shifted(p, self.features)


def _deconv(features: int, name: str, dtype) -> nn.Module:
    # PyTorch ConvTranspose2d(k=4, stride=2, padding=1, output_padding=0): n -> 2n, in the
    # parameter layout of nn.ConvTranspose(transpose_kernel=True): kernel (4, 4, out, in).
    return ConvTranspose4x4s2(features, dtype=dtype, name=name)


class Encoder(nn.Module):
    """DMPHN encoder: (B, h, w, 3) -> (B, ceil(ceil(h/2)/2), ..., 128). See the module docstring."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.dtype
        x = _conv(32, 1, "layer1", d)(x)
        x = ResBlock(32, d, name="layer2")(x)
        x = ResBlock(32, d, name="layer3")(x)
        x = _conv(64, 2, "layer5", d)(x)
        x = ResBlock(64, d, name="layer6")(x)
        x = ResBlock(64, d, name="layer7")(x)
        x = _conv(128, 2, "layer9", d)(x)
        x = ResBlock(128, d, name="layer10")(x)
        x = ResBlock(128, d, name="layer11")(x)
        return x


class Decoder(nn.Module):
    """DMPHN decoder: (B, h, w, 128) -> (B, 4h, 4w, 3). See the module docstring."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.dtype
        x = ResBlock(128, d, name="layer13")(x)
        x = ResBlock(128, d, name="layer14")(x)
        x = _deconv(64, "layer16", d)(x)
        x = ResBlock(64, d, name="layer17")(x)
        x = ResBlock(64, d, name="layer18")(x)
        x = _deconv(32, "layer20", d)(x)
        x = ResBlock(32, d, name="layer21")(x)
        x = ResBlock(32, d, name="layer22")(x)
        x = _conv(3, 1, "layer24", d)(x)
        return x


# ----------------------------------------------------------------------------- patch grids
def split(x: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Cut NHWC ``x`` into a ``rows x cols`` grid of equal patches, stacked along the batch.

    Patch ``(i, j)`` of image ``b`` goes to batch index ``(b * rows + i) * cols + j``; the sizes
    must divide exactly (as :func:`check_size` and ``Network``'s padding ensure).
    """
    r, c = grid
    if r == 1 and c == 1:
        return x
    b, h, w, ch = x.shape
    if h % r or w % c:
        raise ValueError(f"cannot cut an image of {h}x{w} into {r}x{c} equal patches")
    x = x.reshape(b, r, h // r, c, w // c, ch).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b * r * c, h // r, w // c, ch)


def merge(x: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Inverse of :func:`split`: put the patches back side by side."""
    r, c = grid
    if r == 1 and c == 1:
        return x
    n, h, w, ch = x.shape
    b = n // (r * c)
    x = x.reshape(b, r, c, h, w, ch).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, r * h, c * w, ch)


def size_multiple(levels: int) -> tuple[int, int]:
    """(height, width) multiples a ``levels``-level hierarchy needs: 4 x its finest grid."""
    if levels not in (1, 2, 3, 4):
        raise ValueError(f"levels must be 1, 2, 3 or 4 (DMPHN 1 .. 1-2-4-8), got {levels!r}")
    r, c = GRIDS[levels - 1]
    return DOWNSAMPLE * r, DOWNSAMPLE * c


def network_multiple(levels: int) -> int:
    """The single multiple for :class:`~dynpnp_jax.networks.Network` (lcm of both axes)."""
    mh, mw = size_multiple(levels)
    return math.lcm(mh, mw)


def check_size(h: int, w: int, levels: int = 3, *, name: str = "DMPHN") -> None:
    """Raise ``ValueError`` if an ``h`` x ``w`` image cannot be run by a ``levels``-level DMPHN.

    Sizes that are not a multiple of :func:`network_multiple` are accepted (``Network.apply``
    pads them by reflection and crops back). Rejected: non-positive or non-integer sizes, and
    sizes below one multiple (8 for 1-2-4 and Stack(N), 16 for 1-2-4-8): there the finest patches
    would consist mostly of padding, and reflection padding (which needs ``pad < size``) is not
    possible, so the output would not be a meaningful deblurring of the input.
    """
    m = network_multiple(levels)
    for arg, v in (("h", h), ("w", w)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise ValueError(f"{name}: image size {arg} must be an int, got {v!r} "
                             f"({type(v).__name__}); pass the image's height and width")
        if v < m:
            raise ValueError(
                f"{name}: image {arg}={v} is too small; expected at least {m} pixels (the "
                f"{levels}-level hierarchy cuts the image into patches of at least 4x4 pixels, "
                f"needs a multiple of {size_multiple(levels)} (h, w) and pads other sizes by "
                f"reflection). Fix: upsample or pad the image to at least {m}x{m}, or use a "
                "network meant for small images")


# ----------------------------------------------------------------------------- hierarchy
def _hierarchy(encoders: Sequence[nn.Module], decoders: Sequence[nn.Module], x: jax.Array, *,
               prev: dict | None = None, lv2_extra: jax.Array | None = None
               ) -> tuple[jax.Array, dict]:
    """One DMPHN with ``len(encoders)`` levels on ``x`` (already shifted to [-0.5, 0.5]).

    ``encoders[k - 1]`` / ``decoders[k - 1]`` belong to level ``k``. ``prev`` (stacks only): the
    previous stack's full-layout feature maps ``{level: map}``, added to this stack's features of
    the same level. ``lv2_extra`` (stacks only): added to the level-2 residual (stack 1's output).
    Returns the network output (in the shifted range) and this stack's feature maps.
    """
    n = len(encoders)
    feats: dict[int, jax.Array] = {}
    residual = None
    out = None
    for k in range(n, 0, -1):
        inp = x if residual is None else x + residual
        f = merge(encoders[k - 1](split(inp, GRIDS[k - 1])), GRIDS[k - 1])
        if k < n:
            f = f + feats[k + 1]
        if prev is not None:
            f = f + prev[k]
        feats[k] = f
        if k > 1:
            parent = GRIDS[k - 2]
            residual = merge(decoders[k - 1](split(f, parent)), parent)
            if k == 2 and lv2_extra is not None:
                residual = residual + lv2_extra
        else:
            out = decoders[0](f)
    return out, feats


class DMPHN(nn.Module):
    """DMPHN 1-2-4 (``levels=3``) or 1-2-4-8 (``levels=4``); NHWC [0, 1] in, [0, 1] out.

    Attributes:
      levels: number of hierarchy levels (1 .. 4; the released models use 3 and 4).
      dtype: computation dtype.

    Sub-modules ``encoder_lv{k}`` / ``decoder_lv{k}``, k = 1 .. levels (the checkpoint names).
    Height must be a multiple of ``size_multiple(levels)[0]`` and width of ``[1]`` (use it through
    :class:`~dynpnp_jax.networks.Network`, which pads other sizes).
    """

    levels: int = 3
    dtype: jnp.dtype = jnp.float32

    @nn.nowrap
    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` when this network can never take an ``h`` x ``w`` image."""
        check_size(h, w, self.levels)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        size_multiple(self.levels)  # validates levels
        enc = [Encoder(self.dtype, name=f"encoder_lv{k}") for k in range(1, self.levels + 1)]
        dec = [Decoder(self.dtype, name=f"decoder_lv{k}") for k in range(1, self.levels + 1)]
        h = x.astype(self.dtype) - 0.5
        out, _ = _hierarchy(enc, dec, h)
        return (out + 0.5).astype(x.dtype)


class StackDMPHN(nn.Module):
    """Stack(N)-DMPHN: ``stacks`` DMPHN 1-2-4 wired as ``SDNet4_test.py`` (see module docstring).

    Attributes:
      stacks: number of stacks N (released: 2, 3, 4; this project ships weights for 4).
      dtype: computation dtype.

    Sub-modules ``encoder_s{s}_lv{k}`` / ``decoder_s{s}_lv{k}``, s = 1 .. N, k = 1 .. 3.
    """

    stacks: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.nowrap
    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` when this network can never take an ``h`` x ``w`` image."""
        check_size(h, w, 3, name=f"Stack({self.stacks})-DMPHN")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.stacks < 1:
            raise ValueError(f"stacks must be >= 1, got {self.stacks!r}")
        h = x.astype(self.dtype) - 0.5
        first = None
        prev_feats = None
        inp = h
        for s in range(1, self.stacks + 1):
            enc = [Encoder(self.dtype, name=f"encoder_s{s}_lv{k}") for k in (1, 2, 3)]
            dec = [Decoder(self.dtype, name=f"decoder_s{s}_lv{k}") for k in (1, 2, 3)]
            out, prev_feats = _hierarchy(enc, dec, inp, prev=prev_feats, lv2_extra=first)
            if first is None:
                first = out
            inp = out
        return (inp + 0.5).astype(x.dtype)


# ============================================================================ converter
# Each released ``*.pkl`` is the ``state_dict()`` (legacy pre-1.6 torch.save, saved from CUDA) of
# one Encoder or Decoder. Key mapping: ``layerN.weight`` -> ``layerN/kernel``; ``layerN.0.*`` /
# ``layerN.2.*`` (the two convs of a residual block; index 1 is the ReLU) -> ``layerN/conv0/*`` /
# ``layerN/conv1/*``. Conv weights (out, in, kH, kW) become HWIO; the transposed convs
# ``layer16`` / ``layer20`` have torch weights (in, out, kH, kW), which the same transpose turns
# into (kH, kW, out, in) for ``nn.ConvTranspose(transpose_kernel=True)``.
import re as _re  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import Mapping as _Mapping  # noqa: E402

import numpy as _np  # noqa: E402

from ..formats.torch import conv_kernel as _conv_kernel  # noqa: E402
from ..formats.torch import load_state_dict as _load_state_dict  # noqa: E402
from ..weights import UpstreamFile, WeightsError, WeightSpec, register  # noqa: E402

_REPO = "https://github.com/HongguangZhang/DMPHN-cvpr19-master"
_ENCODER_LAYERS = ("layer1", "layer2", "layer3", "layer5", "layer6", "layer7", "layer9",
                   "layer10", "layer11")
_DECODER_LAYERS = ("layer13", "layer14", "layer16", "layer17", "layer18", "layer20", "layer21",
                   "layer22", "layer24")
_SINGLE = {"layer1", "layer5", "layer9", "layer16", "layer20", "layer24"}


def _expected_keys(kind: str) -> set[str]:
    layers = _ENCODER_LAYERS if kind == "encoder" else _DECODER_LAYERS
    keys = set()
    for layer in layers:
        for sub in ([""] if layer in _SINGLE else [".0", ".2"]):
            keys |= {f"{layer}{sub}.weight", f"{layer}{sub}.bias"}
    return keys


def load_checkpoint(path) -> dict:
    """One released DMPHN ``encoder_*.pkl`` / ``decoder_*.pkl`` state dict as numpy arrays.

    Raises :class:`~dynpnp_jax.weights.WeightsError` naming the file when it is missing,
    truncated, corrupt, or not a state dict.
    """
    try:
        return _load_state_dict(path, what="a DMPHN encoder/decoder state dict (a released "
                                "checkpoints/*.pkl file)",
                                fix=f"download it again from {_REPO}/tree/master/checkpoints")
    except ValueError as err:
        raise WeightsError(str(err)) from err


def block_params(sd: _Mapping, kind: str, *, source: str = "state dict") -> dict:
    """Flax params of one :class:`Encoder` (``kind='encoder'``) or :class:`Decoder`
    (``kind='decoder'``) from its torch state dict."""
    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    want, got = _expected_keys(kind), set(sd)
    if got != want:
        other = "decoder" if kind == "encoder" else "encoder"
        hint = (f" (it looks like a DMPHN {other}: check the file name)"
                if got == _expected_keys(other) else "")
        raise WeightsError(
            f"{source} is not a DMPHN {kind} state dict{hint}: missing keys "
            f"{sorted(want - got)[:6]}, unexpected keys {sorted(got - want)[:6]}. Pass the "
            f"released {kind}_*.pkl file")
    params: dict = {}
    for key, value in sd.items():
        m = _re.fullmatch(r"(layer\d+)(?:\.(\d))?\.(weight|bias)", key)
        layer, idx, what = m.group(1), m.group(2), m.group(3)
        node = params.setdefault(layer, {})
        if idx is not None:
            node = node.setdefault(f"conv{0 if idx == '0' else 1}", {})
        node["kernel" if what == "weight" else "bias"] = (
            _conv_kernel(value, f"{source}:{key}") if what == "weight" else _np.asarray(value))
    return params


def dmphn_from_files(files: _Mapping) -> dict:
    """Flax variables of a DMPHN / Stack-DMPHN from its checkpoint files.

    ``files`` maps a name ending in ``<encoder|decoder>_lv<k>.pkl`` or
    ``<encoder|decoder>_s<s>_lv<k>.pkl`` (registry relpaths or plain file names) to a local file;
    each becomes the sub-module of the same stem (``encoder_lv1``, ``decoder_s2_lv3``, ...).
    """
    params = {}
    for rel, path in files.items():
        stem = _Path(rel).stem
        m = _re.fullmatch(r"(encoder|decoder)(_s\d+)?_lv\d+", stem)
        if m is None:
            raise WeightsError(f"{rel}: not a DMPHN checkpoint name; expected "
                               "encoder_lv<k>.pkl / decoder_s<s>_lv<k>.pkl")
        params[stem] = block_params(load_checkpoint(path), m.group(1), source=str(path))
    return {"params": params}


# ============================================================================ registry
_RAW = f"{_REPO}/raw/master/checkpoints"
_SOURCE = ("HongguangZhang/DMPHN-cvpr19-master checkpoints/{folder} (legacy torch.save state "
           "dicts); architecture models.py, wiring {script}")
_LICENCE = ("no licence file in HongguangZhang/DMPHN-cvpr19-master: all rights reserved by the "
            "authors; the weights are downloaded from the authors' repository, not redistributed")

_SHA = {
    "DMPHN_1_2_4/decoder_lv1.pkl": "923fe68db2a9fb97c45082984e4371768f8d7d27824febcdd95615c3841e9824",
    "DMPHN_1_2_4/decoder_lv2.pkl": "d324a23f676c624f68ed20cad13d5bca5fa3281922ab20383c4c4713138233d2",
    "DMPHN_1_2_4/decoder_lv3.pkl": "652c12753b2eb15523cfdb0f1f280d0dd258aceb3464d9da637d2b6b5b1aa5bb",
    "DMPHN_1_2_4/encoder_lv1.pkl": "64b21c627f67382b20d472689a4766c6426d1f3b11763e73cde0cd13270064e1",
    "DMPHN_1_2_4/encoder_lv2.pkl": "816cdef4165ef81438da0c2226491b1a820ebbc1a3c3d175f56338111da7546d",
    "DMPHN_1_2_4/encoder_lv3.pkl": "898f79b659fd4a4ea1b098d186d42345e6d5fd12ad1ea22eb785c3484f93aab2",
    "DMPHN_1_2_4_8/decoder_lv1.pkl": "387a0ee8dd945052d069cdce6e6322ec9c93173896a28a72ac2be211bb0a78b2",
    "DMPHN_1_2_4_8/decoder_lv2.pkl": "9ec171ef8513eb85598af0c150904dee1aafe2674416a1878a3f093752721c08",
    "DMPHN_1_2_4_8/decoder_lv3.pkl": "aff3d672b9c81bc9067fe8e111f1901d9e78269fdb103c3f56d7690bec1aa740",
    "DMPHN_1_2_4_8/decoder_lv4.pkl": "5f88c7117f902ce7087ba18fc2b4ec395680d2ad2e6ddc0931284c8e4f1c25e5",
    "DMPHN_1_2_4_8/encoder_lv1.pkl": "938651e29071b661d59909b68d1772d590c3a7a7191cebee22b521dd78af84c0",
    "DMPHN_1_2_4_8/encoder_lv2.pkl": "1357fd72cec9da556864bf3d1156879d154f40efb1b806547b713c4bf3877fa2",
    "DMPHN_1_2_4_8/encoder_lv3.pkl": "c9864598889dca34503211e94978e056135d6ad9e8b7e297bf076665997a55ef",
    "DMPHN_1_2_4_8/encoder_lv4.pkl": "01de21b48fc6b216c737acb3fe854ed085f68d93b498f7f0862872606e99f632",
    "SDNet4/decoder_s1_lv1.pkl": "742090cc26b80cb7e490632bc2a39a8a307d80bf4a1238d70d719d9b23a215f2",
    "SDNet4/decoder_s1_lv2.pkl": "6b54f3a75747d78446457943f5d315ba265950d86454e0056dba9a83bce97556",
    "SDNet4/decoder_s1_lv3.pkl": "d016d669a015edf6242e089082d1c55b885c53daba4b85118539dc741f2860e0",
    "SDNet4/decoder_s2_lv1.pkl": "f41d84bb03d5ddee44c9e31d073d499c10892ebd2d3e50c14a4651556f2b890b",
    "SDNet4/decoder_s2_lv2.pkl": "987694789a7c7de31835c9e60a32eb26d369d0036520a4d718710982d9ef4331",
    "SDNet4/decoder_s2_lv3.pkl": "2d5f8419144d4fb4c32350e400a1c2daa94025109b45c56f1331a534606bd433",
    "SDNet4/decoder_s3_lv1.pkl": "d1266e04a2a4e591e8cfa9975c054748eb2b0b9a059ffcc980882b3b803380cc",
    "SDNet4/decoder_s3_lv2.pkl": "27c8d2d1dd45973fffda2b14c5143549b08e11b822535acd9530414e5e52a576",
    "SDNet4/decoder_s3_lv3.pkl": "6c49f544d97bf4c2a9842e29605ec033b8409405be36956df350b2480aef9466",
    "SDNet4/decoder_s4_lv1.pkl": "3c80b9565eb568ef799637c2e3e20cb6f4da063ad121da9ebdf77a9cd97aced5",
    "SDNet4/decoder_s4_lv2.pkl": "a314cefb4f78803305cca94a5771c6ac61b826cdefbb52d9f2a7cb729e5297d8",
    "SDNet4/decoder_s4_lv3.pkl": "0686bb91604e93325da35ce324936b40e2e23524549f02bf76f9613e87b21117",
    "SDNet4/encoder_s1_lv1.pkl": "276842e365a2497ad4ad9861d55596490843c96dff5b0d6b629d1d01f20aa2d8",
    "SDNet4/encoder_s1_lv2.pkl": "cffbbdd5856970bde6c26c8867344074edb535844f45ec71c64ec2c7c65d5841",
    "SDNet4/encoder_s1_lv3.pkl": "985ec1ec43b6796aec17e9bcccf273a9ab16cece2db08df862edc103f56f0674",
    "SDNet4/encoder_s2_lv1.pkl": "548ba90ba30e9652ae6ec690ed0c381a185f1f1e0c1f1f72e0dbf635b1910955",
    "SDNet4/encoder_s2_lv2.pkl": "61aa3debb355872da328b22d3827ad2d81bd4baeb4b5deb90aefa01069913e36",
    "SDNet4/encoder_s2_lv3.pkl": "8ba77263cfee954fc43d9f056f5bc682ae935d2b01e9cdebf6451f156bb83cbe",
    "SDNet4/encoder_s3_lv1.pkl": "1bcf967ed2d504ed7f7575acafeaca8e817a831d00731a83d0694240760cf052",
    "SDNet4/encoder_s3_lv2.pkl": "84ac41f13ae51914dfd4e27de5431484b4641340a9bd95fe4cf46afa6f38fa6d",
    "SDNet4/encoder_s3_lv3.pkl": "58ba75c47591ceed26bf15a91a9be4a336e0d43c0e0c5a07fa777fe5a47f19a0",
    "SDNet4/encoder_s4_lv1.pkl": "c99b84bd6ba701417bafd7e4307525930847eb9a78f9e3eb820514cc6589708b",
    "SDNet4/encoder_s4_lv2.pkl": "4ae847b3d116b60d2e02129df57252a1d31751ec359fc498f24ef481eda49fa4",
    "SDNet4/encoder_s4_lv3.pkl": "9cef6d621cdb977a622bbc8813ef4b7a038761975800bf3422ec11cd6a6e41ad",
}


def _files(folder: str) -> tuple[UpstreamFile, ...]:
    return tuple(UpstreamFile(f"dmphn/{rel}", sha, f"{_RAW}/{rel}")
                 for rel, sha in sorted(_SHA.items()) if rel.startswith(folder + "/"))


for _name, _folder, _script, _module, _levels, _desc in (
        ("dmphn-1-2-4", "DMPHN_1_2_4", "DMPHN_1_2_4_test.py", DMPHN(levels=3), 3,
         "DMPHN 1-2-4 deblurring (GoPro), colour, image in [0, 1] -> deblurred image; sizes "
         "padded to a multiple of 8"),
        ("dmphn-1-2-4-8", "DMPHN_1_2_4_8", "DMPHN_1_2_4_8_test.py", DMPHN(levels=4), 4,
         "DMPHN 1-2-4-8 deblurring (GoPro), colour; sizes padded to a multiple of 16"),
        ("stack4-dmphn", "SDNet4", "SDNet4_test.py", StackDMPHN(stacks=4), 3,
         "Stack(4)-DMPHN (SDNet4: 4 stacks of 1-2-4) deblurring (GoPro), colour; sizes padded to "
         "a multiple of 8")):
    register(WeightSpec(
        name=_name, files=_files(_folder), convert=dmphn_from_files, module=_module,
        kind="image", channels=3, multiple=network_multiple(_levels), description=_desc,
        receptive_field=32, tiling_exact=False,  # effective: patches depend on the whole image
        source=_SOURCE.format(folder=_folder, script=_script), licence=_LICENCE,
        converter_needs_torch=True))
