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
level off). ``docs/dmphn_notes.md`` traces this: the released ``DMPHN_1_2_4_8_test.py`` run
step by step in PyTorch (CPU and CUDA, float32 / float64 / TF32 / float16) gives our output, and
none of rounding instead of truncation, another level-4 cut or decoding, float16 or bfloat16
arithmetic reproduces the authors' frames (8 of the 20 checked, 54-57 dB each); what separates
them is a smooth, channel-common difference of ~0.25 levels in float (not quantisation noise),
i.e. their frames were not made by the released checkpoint with the released code (most likely
another training snapshot). ``test_dmphn_1248_mismatch_is_a_smooth_field`` pins it.

Layer names follow the PyTorch ``state_dict`` keys so that the converter
(:mod:`dynpnp_jax.convert.torch_legacy`) is a renaming: ``layer1``, ``layer2`` (a
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
        # YNNPACK path a VALID conv on a pre-padded input would take (docs/dmphn_notes.md, 1.2)
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
