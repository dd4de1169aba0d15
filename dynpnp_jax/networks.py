"""A pretrained network as a pytree: static module + variables, with the prior semantics.

``Network`` is what ``restore`` receives in ``params``. Its module is static (part of the
jit cache key), its variables are traced leaves, so two networks of the same architecture
share one compilation.

Two kinds of network exist in this library:

* ``residual``: the module predicts the noise (DnCNN); ``prior(x) = x - f(x)`` and
  ``noise(x) = f(x)``.
* ``image``: the module returns the restored image directly (DMPHN, wrapped with its
  ``-0.5``/``+0.5``; FFDNet); ``prior(x) = f(x)`` and ``noise(x) = x - f(x)``.

A noise-conditioned network (``noise_input=True``, FFDNet) takes the noise level as a second
input: ``prior(x, sigma)`` with ``sigma`` a scalar, one value per image ``(B,)`` or a per-pixel map
``(B, H, W, 1)``, on the [0, 1] scale (``sigma / 255``); a traced value, so a new sigma never
recompiles. Networks without a noise input ignore ``sigma``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from .tiling import apply_tiled


@struct.dataclass
class Network:
    """A Flax module bound to converted variables.

    Attributes:
      module: the linen module (static).
      variables: its variables, ``{'params': ...}``.
      kind: ``'residual'`` or ``'image'`` (static).
      channels: channels the module takes (static). A 1-channel network applied to a C-channel
        image runs on each channel separately (the channels are folded into the batch).
      multiple: height and width must be multiples of this (static); other sizes are padded by
        reflection and cropped back (``pad_to_multiple``) when ``pad`` is true.
      name: registry name, for messages and result files (static).
      noise_input: the module takes the noise level as a second input (static).
      receptive_field: how many pixels around an output pixel the module sees (its receptive
        radius; for DMPHN/VDN an effective value, their output also depends on the whole image).
      tiling_exact: whether tiling with a halo of ``receptive_field`` reproduces the untiled
        output exactly (plain CNNs) or only closely (DMPHN, VDN).
      tile, tile_overlap: when ``tile > 0``, images larger than ``tile`` run through the module
        on overlapping tiles (:func:`dynpnp_jax.tiling.apply_tiled`; overlap defaults to
        ``tile // 4``) to bound memory; see :meth:`tiled`.
    """

    module: nn.Module = struct.field(pytree_node=False)
    variables: Any
    kind: str = struct.field(pytree_node=False, default="residual")
    channels: int = struct.field(pytree_node=False, default=1)
    multiple: int = struct.field(pytree_node=False, default=1)
    name: str = struct.field(pytree_node=False, default="network")
    tile: int = struct.field(pytree_node=False, default=0)
    tile_overlap: int = struct.field(pytree_node=False, default=0)
    noise_input: bool = struct.field(pytree_node=False, default=False)
    receptive_field: int = struct.field(pytree_node=False, default=0)
    tiling_exact: bool = struct.field(pytree_node=False, default=True)
    tile_halo: int = struct.field(pytree_node=False, default=0)

    def tiled(self, tile: int, overlap: int | None = None, halo: int | None = None) -> "Network":
        """This network run on ``tile`` x ``tile`` tiles that overlap by ``overlap`` pixels and
        drop ``halo`` pixels next to each neighbouring tile (``tile=0`` turns tiling off).

        ``halo`` defaults to the network's receptive field and may not be smaller; ``overlap``
        defaults to ``max(tile // 4, 2 * halo + 2)``. With those, a plain CNN's tiled output equals
        the untiled one (up to float rounding); DMPHN and VDN are close, not equal."""
        if not tile:
            return self.replace(tile=0, tile_overlap=0, tile_halo=0)
        rf = self.receptive_field
        halo = rf if halo is None else int(halo)
        if halo < rf:
            raise ValueError(f"halo={halo} is smaller than the receptive field of {self.name!r} "
                             f"({rf} pixels): tiles would see their own border and the result "
                             f"would be wrong; use halo >= {rf} (the default)")
        overlap = max(int(tile) // 4, 2 * halo + 2) if overlap is None else int(overlap)
        if overlap < 2 * halo + 1:
            raise ValueError(f"overlap={overlap} must be at least 2 * halo + 1 = {2 * halo + 1} "
                             f"for {self.name!r} (receptive field {rf}); leave it out for the "
                             "default")
        smallest = overlap + 1 + (-(overlap + 1)) % self.multiple
        if tile % self.multiple or tile < max(smallest, 2 * self.multiple):
            raise ValueError(f"tile={tile} is too small or not a multiple of {self.multiple} for "
                             f"{self.name!r}: tiles must be larger than their overlap "
                             f"({overlap} = 2 x receptive field {rf} + 2); use tile >= "
                             f"{max(smallest, 2 * self.multiple)} (a multiple of {self.multiple})")
        return self.replace(tile=int(tile), tile_overlap=overlap, tile_halo=halo)

    # ---------------------------------------------------------------- raw forward
    def sigma_map(self, x: jax.Array, sigma) -> jax.Array:
        """``sigma`` (scalar, ``(B,)`` or ``(B, H, W, 1)``) as a ``(B, H, W, 1)`` map for ``x``."""
        if sigma is None:
            raise ValueError(f"network {self.name!r} takes the noise level as an input: pass "
                             "sigma (on the [0, 1] scale, e.g. 25 / 255); in restore, give "
                             "make_config(..., sigma=...) or use the 'dpir' mode")
        b, h, w, _ = x.shape
        s = jnp.asarray(sigma, x.dtype)
        if s.ndim == 0:
            s = jnp.broadcast_to(s, (b,))
        if s.ndim == 1:
            if s.shape[0] != b:
                raise ValueError(f"sigma has {s.shape[0]} values for a batch of {b} images")
            return jnp.broadcast_to(s[:, None, None, None], (b, h, w, 1))
        if s.shape != (b, h, w, 1):
            raise ValueError(f"a sigma map must have shape {(b, h, w, 1)} (B, H, W, 1), got "
                             f"{tuple(s.shape)}")
        return s

    def apply(self, x: jax.Array, sigma=None) -> jax.Array:
        """The module's own output on NHWC ``x`` (channel folding, tiling, padding handled).

        ``sigma`` is the noise level of a noise-conditioned network (ignored otherwise)."""
        b, h, w, c = x.shape
        if c != self.channels and self.channels != 1:
            raise ValueError(
                f"network {self.name!r} takes {self.channels}-channel images, got {c} channels; "
                "convert the input (e.g. repeat a gray image to 3 channels) or choose a network "
                f"with {c} channel(s)")
        z = x
        if self.noise_input:  # the map rides along as one more channel through fold/tile/pad
            z = jnp.concatenate([x, self.sigma_map(x, sigma)], axis=-1)
        if c != self.channels:  # a 1-channel network on each channel: fold channels into batch
            extra = z[..., c:]
            z = jnp.transpose(x, (0, 3, 1, 2)).reshape(b * c, h, w, 1)
            if self.noise_input:
                z = jnp.concatenate([z, jnp.repeat(extra, c, axis=0)], axis=-1)
            out = self._forward(z)
            return jnp.transpose(out.reshape(b, c, h, w), (0, 2, 3, 1))
        return self._forward(z)

    def _forward(self, z: jax.Array) -> jax.Array:
        h, w = z.shape[1:3]
        if self.tile and (h > self.tile or w > self.tile):
            return apply_tiled(self.replace(tile=0)._forward, z, tile=self.tile,
                               overlap=self.tile_overlap, halo=self.tile_halo,
                               multiple=self.multiple)
        z = pad_to_multiple(z, self.multiple)
        if self.noise_input:
            out = self.module.apply(self.variables, z[..., :-1], z[..., -1:])
        else:
            out = self.module.apply(self.variables, z)
        return out[:, :h, :w, :]

    def prior(self, x: jax.Array, sigma=None) -> jax.Array:
        """The prior step ``v = prior(x)`` (Eq. 7): the network's restored image."""
        out = self.apply(x, sigma)
        return x - out if self.kind == "residual" else out

    def noise(self, x: jax.Array, sigma=None) -> jax.Array:
        """``g(x)``: the network's estimate of the noise in ``x`` (Eq. 9)."""
        out = self.apply(x, sigma)
        return out if self.kind == "residual" else x - out

    def check_input(self, x_shape, argname: str = "y") -> None:
        """Raise a clear ``ValueError`` when this network cannot take an image of ``x_shape``."""
        if len(x_shape) != 4:
            raise ValueError(f"{argname} must be NHWC (rank 4), got shape {tuple(x_shape)}")
        c = x_shape[-1]
        if c != self.channels and self.channels != 1:
            raise ValueError(
                f"{argname} has {c} channel(s) but network {self.name!r} takes {self.channels}; "
                f"give a {self.channels}-channel image (e.g. np.repeat(y, {self.channels}, -1) for "
                "gray input) or choose a network with matching channels")


def pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
    """Pad NHWC ``x`` at the bottom/right so that H and W are multiples of ``multiple``: by
    reflection where the image is large enough, else by repeating the edge. The one owner of this
    rule (networks, tiling and the size checks use it); crop with ``out[:, :h, :w]``."""
    h, w = x.shape[1:3]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if (ph < h and pw < w) else "edge"
    return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


def num_params(net: Network) -> int:
    """Number of scalar parameters in ``net``."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(net.variables)))


def _check_structure(self: Network) -> None:
    """Assert that ``variables`` match ``module.init`` in tree structure and shapes."""
    side = max(32, 2 * self.multiple)
    x = jax.ShapeDtypeStruct((1, side, side, self.channels), jnp.float32)
    args = (x, jax.ShapeDtypeStruct((1, side, side, 1), jnp.float32)) if self.noise_input else (x,)
    want = jax.eval_shape(self.module.init, jax.random.PRNGKey(0), *args)
    want_flat = {jax.tree_util.keystr(k): v.shape
                 for k, v in jax.tree_util.tree_leaves_with_path(want)}
    got_flat = {jax.tree_util.keystr(k): np.shape(v)
                for k, v in jax.tree_util.tree_leaves_with_path(self.variables)}
    missing = sorted(set(want_flat) - set(got_flat))
    extra = sorted(set(got_flat) - set(want_flat))
    wrong = sorted(k for k in set(want_flat) & set(got_flat) if want_flat[k] != got_flat[k])
    if missing or extra or wrong:
        raise ValueError(
            f"converted variables of {self.name!r} do not fit the module: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, wrong shapes "
            f"{[(k, got_flat[k], want_flat[k]) for k in wrong[:5]]}")


Network.check_structure = _check_structure
