"""PyTorch references for the parity tests and the benchmark (torch: a test/bench dependency only).

Three things live here:

* :class:`TorchDnCNN` -- DnCNN (17 convs with bias, ReLU between, residual output: it returns the
  noise estimate) whose weights are copied from our converted Flax variables (kernels HWIO ->
  OIHW). A 1-channel network given a C-channel batch runs on each channel separately (channels
  folded into the batch), like :meth:`dynpnp_jax.Network.apply`.
* :func:`torch_restore` -- an eager PyTorch implementation of OUR loop (``dynpnp_jax.solver``) for
  the modes ``authors`` (row-mix A, authors x- and A-steps, ``x0 = A^T y``, ``v0 = 0``, ``g(y)``
  computed once) and ``gradient`` (gradient x-step, gain-map A, gradient A-step on ``A x``,
  ``x0 = v0 = A^T y``). Batched NCHW, ``torch.no_grad``, all on torch tensors.
* :func:`authors_notebook_loop` -- a port of the loop as the authors' notebook
  ``code/denoising/framework/state_of_the_art_HQS_vdn_set12.ipynb`` (WillDreamer/SND) runs it:
  the gray image as 3 identical channels; numpy matrix products on the host, channel by channel;
  numpy <-> torch round trips every iteration; ``g(y) = dncnn(INoisy)`` recomputed (on all 3
  channels) once per channel per iteration inside the A-update loop. Differences from the
  notebook, all forced by what we have: their noise estimator is a 3-channel DnCNN-S (BN, no
  bias) and their prior is VDN; here both are our gray DnCNN-S applied to each of the 3 channels
  (:class:`PerChannel`), and everything runs on the CPU instead of CUDA.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Number = Union[float, Sequence[float]]


# ------------------------------------------------------------------------------ the network
class TorchDnCNN(nn.Module):
    """DnCNN, bias in every conv: conv+ReLU, (conv+ReLU) x (depth-2), conv. Returns the noise."""

    def __init__(self, depth: int = 17, channels: int = 1, features: int = 64):
        super().__init__()
        self.channels = channels
        chans = [channels] + [features] * (depth - 1) + [channels]
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=True)
                                   for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if c != self.channels:
            if self.channels != 1:
                raise ValueError(f"network takes {self.channels} channels, got {c}")
            return self.forward(x.reshape(b * c, 1, h, w)).reshape(b, c, h, w)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x

    @classmethod
    def from_flax(cls, network) -> "TorchDnCNN":
        """Build from a :class:`dynpnp_jax.Network` (or its ``variables`` dict) of a DnCNN."""
        variables = getattr(network, "variables", network)
        params = variables["params"]
        depth = len([k for k in params if k.startswith("conv")])
        k0 = np.asarray(params["conv0"]["kernel"])
        net = cls(depth=depth, channels=k0.shape[2], features=k0.shape[3])
        with torch.no_grad():
            for i, conv in enumerate(net.convs):
                kernel = np.asarray(params[f"conv{i}"]["kernel"], np.float32)  # HWIO
                oihw = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
                conv.weight.copy_(torch.from_numpy(oihw))
                bias = np.asarray(params[f"conv{i}"]["bias"], np.float32)
                conv.bias.copy_(torch.from_numpy(bias))
        return net.eval()


class PerChannel(nn.Module):
    """A "3-channel" network realised as a 1-channel network applied to every channel."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.net(x.reshape(b * c, 1, h, w)).reshape(b, c, h, w)


# ------------------------------------------------------------------------------ our loop
def _per_iter(value: Number, iters: int) -> list[float]:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        arr = np.full((iters,), arr, np.float32)
    if arr.shape != (iters,):
        raise ValueError(f"expected a scalar or {iters} values, got shape {arr.shape}")
    return [float(a) for a in arr]


@torch.no_grad()
def torch_restore(net: nn.Module, y: torch.Tensor, mode: str = "authors", iters: int = 2,
                  delta: Number = 0.01, mu: Number = 0.1, alpha: Number = 1e-5) -> torch.Tensor:
    """Our loop (``dynpnp_jax.restore`` with ``make_config(mode, iters, ...)``) in eager PyTorch.

    Args:
      net: a residual denoiser (returns the noise), used as prior and as g.
      y: NCHW float32 batch in [0, 1].
      mode: ``'authors'`` or ``'gradient'`` (gain map, default steps).
      iters, delta, mu, alpha: as in :func:`dynpnp_jax.make_config`.

    Returns:
      the restored batch, NCHW, clipped to [0, 1].
    """
    if mode not in ("authors", "gradient"):
        raise ValueError(f"mode must be 'authors' or 'gradient', got {mode!r}")
    deltas, mus, alphas = (_per_iter(v, iters) for v in (delta, mu, alpha))
    b, c, h, w = y.shape
    g = net(y)  # computed once

    if mode == "authors":
        if w < h:
            raise ValueError("authors mode needs width >= height")
        m = torch.eye(h, dtype=y.dtype, device=y.device).expand(b, h, h).clone()  # A, (B, H, H)
        yhat = y - g
        x = torch.matmul(m.transpose(1, 2).unsqueeze(1), y)  # A^T y, per channel
        v = torch.zeros_like(y)
        for d, u, r in zip(deltas, mus, alphas):
            lam = 1.0 - d * (1.0 + u)
            aty = torch.matmul(m.transpose(1, 2).unsqueeze(1), y)
            x = lam * x + d * aty + d * v
            v = x - net(x)
            mv = torch.matmul(m.unsqueeze(1), v)  # (B, C, H, W)
            # (v_c^T M v_c)[:H, :H] = v_c[:, :H]^T (M v_c)[:, :H]
            quad = torch.matmul(v[..., :h].transpose(2, 3), mv[..., :h])  # (B, C, H, H)
            s = (yhat[..., :h] + quad).mean(dim=1)
            m = m - r * s
        return v.clamp(0.0, 1.0)

    a = torch.ones((b, 1, h, w), dtype=y.dtype, device=y.device)  # gain map
    x = a * y
    v = x
    for d, u, r in zip(deltas, mus, alphas):
        x = x - d * (a * (a * x - y) + u * (x - v))
        v = x - net(x)
        res = a * x + g - y
        a = a - r * (2.0 * (res * x).sum(dim=1, keepdim=True))
    return v.clamp(0.0, 1.0)


# ------------------------------------------------------------------------------ their loop
def _np_to_torch(arr: np.ndarray) -> torch.Tensor:  # their utils.np_to_torch
    return torch.from_numpy(arr)[None, :]


def _torch_to_np(t: torch.Tensor) -> np.ndarray:  # their utils.torch_to_np
    return t.detach().cpu().numpy()[0]


def authors_notebook_loop(net: nn.Module, y_gray: np.ndarray, iters: int = 2, eta: float = 0.1,
                          delta: float = 0.01, rho: float = 1e-5) -> np.ndarray:
    """The authors' loop, step for step as their Set12 notebook runs it (see the module docstring).

    Args:
      net: the gray residual DnCNN (:class:`TorchDnCNN`); it stands for both their 3-channel
        DnCNN-S (the g of the A-update) and their prior (VDN's noise estimate), applied to each of
        the 3 channels.
      y_gray: the noisy gray image, ``(H, W)`` float32 (their ``img_noisy_np`` channel).
      iters, eta, delta, rho: their ``iters``, ``yita``, ``delta``, ``rou``.

    Returns:
      ``v_next``, ``(3, H, W)`` float32, before their luminance conversion (the 3 channels are
      identical; see :func:`notebook_luminance` for the final 8-bit step).

    The notebook adds ``A_temp`` (H x W) and ``x_temp`` (W x W), which only works for square
    images; for W > H the slicing of ALGORITHM.md section 1 is applied (identical when H == W).
    """
    net3 = PerChannel(net)
    img_noisy_np = np.repeat(np.asarray(y_gray, np.float32)[None], 3, axis=0)  # [3, H, W]
    INoisy = _np_to_torch(img_noisy_np)
    shape = img_noisy_np.shape
    hh, ww = shape[1], shape[2]
    if ww < hh:
        raise ValueError("the authors' loop needs width >= height (they rotate portrait images)")

    yita, rou = eta, rho
    lam = 1 - delta * (1 + yita)
    A_ = np.eye(hh) * lam
    A_T = np.eye(hh)
    A = A_T
    y = _torch_to_np(INoisy)
    v_0 = np.zeros(shape)
    x_0 = np.zeros(shape)
    for i in range(y.shape[0]):
        y_ = np.squeeze(y[i, :, :])
        x_0[i, :, :] = np.dot(A_T, y_)
    x_next = x_0
    v_next = v_0
    space = np.zeros((3, hh, hh))
    with torch.no_grad():
        for _ in range(iters):
            for i in range(x_next.shape[0]):
                x_next_ = x_next[i, :, :]
                y_ = y[i, :, :]
                v_next_ = v_next[i, :, :]
                x_next[i, :, :] = A_.dot(x_next_) + delta * A_T.dot(y_) + delta * v_next_
            x_next = _np_to_torch(x_next).float()
            err = net3(x_next).cpu().numpy()  # their prior: phi_Z = vdn(x_next, 'test')
            im_noisy = x_next.cpu().numpy()
            im_denoise = im_noisy - err[:, :3, ]
            im_denoise = im_denoise.squeeze()
            v_next = _np_to_torch(im_denoise)
            x_next = _torch_to_np(x_next)
            v_next = _torch_to_np(v_next)
            for j in range(x_next.shape[0]):
                A_temp = _torch_to_np(INoisy - net3(INoisy))[j, :, :]  # g(y) again, every j
                x_temp = ((v_next[j, :, :].T).dot(A)).dot(v_next[j, :, :])
                space[j, :, :] = (rou * (A_temp + x_temp[:hh, :]))[:, :hh]
            t = ((space[0, :, :] + space[1, :, :] + space[2, :, :]) / 3)
            A = (A - t)
            A_T = A.T
    return v_next


def notebook_luminance(v_next: np.ndarray) -> np.ndarray:
    """Their last step: ``pil_to_np(np_to_pil(v_next).convert('L'))`` -> ``(H, W)`` in [0, 1]."""
    from PIL import Image

    ar = np.clip(v_next * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.asarray(Image.fromarray(ar).convert("L"), np.float32) / 255.0
