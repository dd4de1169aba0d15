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
* :class:`TorchFFDNet` -- FFDNet (``dynpnp_jax.zoo.ffdnet``): MatConvNet ``vl_nnSubP`` packing,
  a constant noise-level channel, conv+ReLU stack, unpacking; odd sizes replicate-padded and
  cropped back. Weights copied from the converted Flax variables.
* :func:`torch_dpir` -- the ``dpir`` mode of ``restore`` (known blur) in eager PyTorch: the exact
  FFT x-step ``(K^T K + rho I)^{-1} (K^T y + rho v)`` with ``torch.fft`` and the kernel centred at
  ``(kh // 2, kw // 2)`` (``Blur.normal_solve``), the prior ``FFDNet(x, sigma_t)``, DPIR's
  sigma/rho schedule (``dynpnp_jax.dpir_schedule``), optional x8 self-ensemble (iteration t sees
  the (t mod 8)-th flip/rotation).
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
    images; for W > H the slicing of docs/algorithm.md (``authors``) is applied (identical when H == W).
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


# ------------------------------------------------------------------------------ FFDNet + DPIR
def ffdnet_pack(x: torch.Tensor) -> torch.Tensor:
    """NCHW (even H, W) -> (B, 4C, H/2, W/2) in MatConvNet ``vl_nnSubP`` order: channel
    ``4c + i`` holds pixels ``(2y + r, 2x + q)`` with ``i = r + 2q`` (row offset fastest; NOT
    ``pixel_unshuffle``'s order)."""
    b, c, h, w = x.shape
    z = x.reshape(b, c, h // 2, 2, w // 2, 2)  # (b, c, y, r, x, q)
    return z.permute(0, 1, 5, 3, 2, 4).reshape(b, 4 * c, h // 2, w // 2)  # (b, c, q, r, y, x)


def ffdnet_unpack(z: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`ffdnet_pack`: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    b, c4, h, w = z.shape
    c = c4 // 4
    x = z.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 3, 5, 2)  # (b, c, y, r, x, q)
    return x.reshape(b, c, 2 * h, 2 * w)


class TorchFFDNet(nn.Module):
    """FFDNet: ``forward(x, sigma)`` -> the denoised image (NCHW), ``sigma`` on the [0, 1] scale,
    a scalar or one value per image. A 1-channel network given C channels runs on each channel
    (channels folded into the batch, the image's sigma repeated), like ``Network.apply``."""

    def __init__(self, channels: int = 1, features: int = 64, depth: int = 15):
        super().__init__()
        self.channels = channels
        chans = [4 * channels + 1] + [features] * (depth - 1) + [4 * channels]
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=True)
                                   for i in range(depth))

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        b, c, h, w = x.shape
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if s.numel() not in (1, b):
            raise ValueError(f"sigma: expected a scalar or {b} values, got {s.numel()}")
        s = s.expand(b)
        if c != self.channels:
            if self.channels != 1:
                raise ValueError(f"network takes {self.channels} channels, got {c}")
            out = self.forward(x.reshape(b * c, 1, h, w), s.repeat_interleave(c))
            return out.reshape(b, c, h, w)
        hp, wp = h + h % 2, w + w % 2
        if (hp, wp) != (h, w):  # replicate the last row / column, as the authors' demos
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        smap = s.reshape(b, 1, 1, 1).expand(b, 1, hp // 2, wp // 2)
        z = torch.cat([ffdnet_pack(x), smap], dim=1)
        for i, conv in enumerate(self.convs):
            z = conv(z)
            if i < len(self.convs) - 1:
                z = F.relu(z)
        return ffdnet_unpack(z)[:, :, :h, :w]

    @classmethod
    def from_flax(cls, network) -> "TorchFFDNet":
        """Build from a :class:`dynpnp_jax.Network` of an FFDNet (or its ``variables``)."""
        variables = getattr(network, "variables", network)
        params = variables["params"]
        depth = len([k for k in params if k.startswith("conv")])
        k0 = np.asarray(params["conv0"]["kernel"])  # HWIO
        net = cls(channels=(k0.shape[2] - 1) // 4, features=k0.shape[3], depth=depth)
        with torch.no_grad():
            for i, conv in enumerate(net.convs):
                kernel = np.asarray(params[f"conv{i}"]["kernel"], np.float32)
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(np.asarray(params[f"conv{i}"]["bias"], np.float32)))
        return net.eval()


def augment_nchw(x: torch.Tensor, mode: int) -> torch.Tensor:
    """DPIR's ``augment_img_tensor4``: the ``mode``-th (0..7) flip/rotation of an NCHW batch."""
    if mode == 0:
        return x
    if mode == 2:
        return x.flip([2])
    k = {1: 1, 3: 3, 4: 2, 5: 1, 6: 2, 7: 3}[mode]
    out = x.rot90(k, [2, 3])
    return out.flip([2]) if mode in (1, 4, 7) else out


def augment_nchw_inverse(mode: int) -> int:
    """The mode undoing :func:`augment_nchw`'s ``mode``."""
    return {3: 5, 5: 3}.get(mode, mode)


def psf2otf(k: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """rfft2 transfer function (B, 1, H, W//2+1) of the circular convolution with ``k`` (B, kh,
    kw), the kernel centre ``(kh // 2, kw // 2)`` moved to the origin (``Blur``'s convention)."""
    b, kh, kw = k.shape
    big = torch.zeros((b, h, w), dtype=k.dtype, device=k.device)
    big[:, :kh, :kw] = k
    big = torch.roll(big, (-(kh // 2), -(kw // 2)), dims=(1, 2))
    return torch.fft.rfft2(big)[:, None]


@torch.no_grad()
def torch_dpir(net: nn.Module, y: torch.Tensor, k, iters: int = 8, noise_level: float | None = None,
               *, sigmas: Sequence[float] | None = None, rhos: Sequence[float] | None = None,
               ensemble: bool = False) -> torch.Tensor:
    """``restore(params, y, make_config('dpir', iters, noise_level=...))`` with
    ``params = {'prior': FFDNet, 'A': Blur.from_kernel(k, ...)}``, in eager PyTorch.

    Args:
      net: a :class:`TorchFFDNet` (any ``net(x, sigma)`` returning the denoised image).
      y: blurred noisy NCHW batch, float32.
      k: blur kernel(s), ``(kh, kw)`` or ``(B, kh, kw)`` (numpy or torch).
      iters: number of iterations.
      noise_level: noise std of ``y`` on the [0, 1] scale; builds the schedule with
        ``dynpnp_jax.dpir_schedule`` unless ``sigmas`` and ``rhos`` are given (a bench worker
        passes them so that it need not import JAX).
      ensemble: x8 self-ensemble, iteration t on the (t mod 8)-th flip/rotation.

    Returns:
      the restored batch, NCHW, clipped to [0, 1].

    Per iteration: ``x = irfft2(rfft2(K^T y + rho v) / (|K|^2 + rho))`` (``K^T y`` computed once,
    in the image domain, as ``Blur.adjoint``), ``v = net(x, sigma_t)``; ``x_0 = v_0 = y``.
    """
    if sigmas is None or rhos is None:
        if noise_level is None:
            raise ValueError("give noise_level, or both sigmas and rhos")
        from dynpnp_jax import dpir_schedule

        sigmas, rhos = dpir_schedule(int(iters), noise_level)
    sigmas = [float(np.float32(s)) for s in sigmas]  # restore's numbers are float32
    rhos = [float(np.float32(r)) for r in rhos]
    if len(sigmas) != iters or len(rhos) != iters:
        raise ValueError(f"expected {iters} sigmas and rhos, got {len(sigmas)} and {len(rhos)}")
    b, c, h, w = y.shape
    kt = torch.as_tensor(np.asarray(k, np.float32), device=y.device)
    if kt.ndim == 2:
        kt = kt[None]
    otf = psf2otf(kt, h, w)  # (1 or B, 1, H, W//2+1)
    den = otf.real ** 2 + otf.imag ** 2
    aty = torch.fft.irfft2(torch.fft.rfft2(y) * otf.conj(), s=(h, w))  # K^T y
    x = v = y
    for t, (sigma, rho) in enumerate(zip(sigmas, rhos)):
        x = torch.fft.irfft2(torch.fft.rfft2(aty + rho * v) / (den + rho), s=(h, w))
        if ensemble:
            m = t % 8
            v = augment_nchw(net(augment_nchw(x, m), sigma), augment_nchw_inverse(m))
        else:
            v = net(x, sigma)
    return v.clamp(0.0, 1.0)
