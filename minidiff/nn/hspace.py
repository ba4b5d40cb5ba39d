"""Asyrp's implicit function f_t(h_t) -> delta h_t (lecture 8; `hspace`): a small network on the UNet's bottleneck."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import group_norm, timestep_embedding, zero_module


class ImplicitDelta(nn.Module):
    """delta h_t = f_t(h_t) (Asyrp sec. 3.3; the official DeltaBlock reduced to its parts): a 1x1 convolution of h,
    GroupNorm, plus a projection of the sinusoidal embedding of t, SiLU, and a 1x1 convolution back to h's channels,
    initialised to zero so that an untrained f gives delta h = 0 (plain DDIM). h: (B, C, H, W), t: (B,)."""

    def __init__(self, channels: int, hidden: int = 128, t_dim: int = 64, groups: int = 8):
        super().__init__()
        self.t_dim = t_dim
        self.conv_in = nn.Conv2d(channels, hidden, 1)
        self.norm = group_norm(hidden, groups)
        self.time = nn.Linear(t_dim, hidden)
        self.conv_out = zero_module(nn.Conv2d(hidden, channels, 1))

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        emb = self.time(timestep_embedding(t, self.t_dim).to(h.dtype))  # (B, hidden)
        u = self.norm(self.conv_in(h)) + emb[:, :, None, None]  # (B, hidden, H, W)
        return self.conv_out(F.silu(u))  # (B, C, H, W)

