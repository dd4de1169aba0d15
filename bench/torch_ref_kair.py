"""PyTorch references of KAIR's DRUNet (``UNetRes``, bias-free, as DPIR builds it) and IRCNN, for
the parity tests (``tests/test_drunet.py``, ``tests/test_ircnn.py``) and ``bench/bench_drunet.py``.

Written from the architecture (KAIR ``models/network_unet.py``, ``models/basicblock.py``,
``models/network_dncnn.py``), with the module names KAIR's ``state_dict()`` has, so that a random
:class:`TorchDRUNet` / :class:`TorchIRCNN` saved with ``torch.save(net.state_dict())`` is a file
in the released format:

* :class:`TorchDRUNet`: ``m_head`` (Conv2d), ``m_down{1,2,3}`` = Sequential(``nb`` x ResBlock,
  Conv2d 2x2 stride 2), ``m_body`` = Sequential(``nb`` x ResBlock), ``m_up{3,2,1}`` =
  Sequential(ConvTranspose2d 2x2 stride 2, ``nb`` x ResBlock), ``m_tail`` (Conv2d); a ResBlock's
  ``res`` = Sequential(Conv2d, ReLU, Conv2d). No biases. :func:`drunet_denoise` adds the constant
  noise-level channel and pads to a multiple of 8 by edge replication (DPIR's ``test_pad``).
* :class:`TorchIRCNN`: ``model`` = Sequential of seven 3x3 convs (bias, dilation 1 2 3 4 3 2 1)
  with ReLU between; ``forward`` returns ``x - model(x)``. :func:`save_ircnn_file` writes 25 of
  them as KAIR does: ``{'0': state_dict, ..., '24': state_dict}``.
* :func:`random_drunet` / :func:`random_ircnn`: seeded random weights scaled so that the outputs
  stay O(1) through the deep residual stacks (a parity test on outputs of size 1e3 would test
  float32 rounding, not the port).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DILATIONS = (1, 2, 3, 4, 3, 2, 1)


class TorchResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.res = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=1, bias=False))

    def forward(self, x):
        return x + self.res(x)


class TorchDRUNet(nn.Module):
    """DRUNet = KAIR ``UNetRes(in_nc=channels+1, out_nc=channels, nc=features, nb=blocks,
    act_mode='R', 'strideconv', 'convtranspose')`` without biases. ``forward(z)`` takes the
    image with the noise map already concatenated, H and W multiples of 8."""

    def __init__(self, channels: int = 1, features: Sequence[int] = (64, 128, 256, 512),
                 blocks: int = 4):
        super().__init__()
        f = list(features)
        self.channels = channels
        self.m_head = nn.Conv2d(channels + 1, f[0], 3, padding=1, bias=False)
        for k in (1, 2, 3):
            setattr(self, f"m_down{k}", nn.Sequential(
                *[TorchResBlock(f[k - 1]) for _ in range(blocks)],
                nn.Conv2d(f[k - 1], f[k], 2, stride=2, padding=0, bias=False)))
        self.m_body = nn.Sequential(*[TorchResBlock(f[3]) for _ in range(blocks)])
        for k in (3, 2, 1):
            setattr(self, f"m_up{k}", nn.Sequential(
                nn.ConvTranspose2d(f[k], f[k - 1], 2, stride=2, padding=0, bias=False),
                *[TorchResBlock(f[k - 1]) for _ in range(blocks)]))
        self.m_tail = nn.Conv2d(f[0], channels, 3, padding=1, bias=False)

    def forward(self, z):
        x1 = self.m_head(z)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        return self.m_tail(x + x1)


def drunet_denoise(net: TorchDRUNet, x: torch.Tensor, sigma: float | Sequence[float]):
    """DPIR's use of DRUNet on NCHW ``x``: append the constant map ``sigma`` (per image, [0, 1]
    scale), replicate-pad bottom/right to a multiple of 8, run, crop."""
    b, _, h, w = x.shape
    s = torch.as_tensor(np.broadcast_to(np.asarray(sigma, np.float32), (b,)).copy())
    z = torch.cat([x, s.view(b, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)], dim=1)
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        z = F.pad(z, (0, pw, 0, ph), mode="replicate")
    return net(z)[..., :h, :w]


class TorchIRCNN(nn.Module):
    """One IRCNN denoiser (KAIR ``IRCNN(in_nc=C, out_nc=C, nc=64)``): returns ``x - model(x)``."""

    def __init__(self, channels: int = 1, features: int = 64):
        super().__init__()
        widths = [channels] + [features] * (len(DILATIONS) - 1) + [channels]
        layers: list[nn.Module] = []
        for i, d in enumerate(DILATIONS):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=d, dilation=d, bias=True))
            if i < len(DILATIONS) - 1:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.model(x)


def _scale_(net: nn.Module, seed: int, gain: float) -> nn.Module:
    """Seeded N(0, gain^2 / fan_in) weights (and small biases) in place (numpy's generator: the
    same numbers on every platform); eval mode."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.from_numpy(0.01 * rng.standard_normal(p.shape, np.float32)))
                continue
            if isinstance(_owner(net, name), nn.ConvTranspose2d):
                fan_in = p.shape[0]  # (in, out, kH, kW): each output sums `in` inputs
            else:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            w = rng.standard_normal(p.shape, np.float32) * np.float32(gain / np.sqrt(fan_in))
            p.copy_(torch.from_numpy(w))
    return net.eval()


def _owner(net: nn.Module, param_name: str) -> nn.Module:
    mod = net
    for part in param_name.split(".")[:-1]:
        mod = getattr(mod, part)
    return mod


def random_drunet(channels: int = 1, features: Sequence[int] = (64, 128, 256, 512),
                  blocks: int = 4, seed: int = 0) -> TorchDRUNet:
    """A :class:`TorchDRUNet` with seeded random weights (gain 0.5: residual stacks stay O(1))."""
    return _scale_(TorchDRUNet(channels, features, blocks), seed, 0.5)


def random_ircnn(channels: int = 1, seed: int = 0, gain: float = 1.4) -> TorchIRCNN:
    """A :class:`TorchIRCNN` with seeded random weights (per-layer gain ``gain``: at 1.4, about
    He's sqrt(2), the predicted noise is of the image's size; smaller gains give a gentler
    denoiser)."""
    return _scale_(TorchIRCNN(channels), seed, gain)


def save_ircnn_file(path: str | Path, nets: Sequence[TorchIRCNN]) -> Path:
    """Write ``nets`` as KAIR's IRCNN release file: ``{'0': state_dict, '1': ...}``."""
    path = Path(path)
    torch.save({str(i): n.state_dict() for i, n in enumerate(nets)}, path)
    return path
