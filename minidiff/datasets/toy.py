"""2-D toy data: point clouds in R^2, scaled to roughly [-1, 1] (lecture 1, demo).

With `nn.toy.ToyMLP` and `training.toy.train_toy` (Algorithm 1 with L_simple, verbatim) DDPM runs end to end
in seconds on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """n points (n, 2) on two interleaved half circles, centred and scaled to about [-1, 1]."""
    u = torch.rand(n, generator=generator) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(u), 1 - torch.cos(u))
    y = torch.where(upper, torch.sin(u), 0.5 - torch.sin(u))
    pts = torch.stack([x - 0.5, y - 0.25], 1) / 1.1  # (n, 2)
    return pts + noise * torch.randn(n, 2, generator=generator)


def gaussian_mixture(n: int, generator: torch.Generator | None = None, k: int = 8, radius: float = 0.8,
                     std: float = 0.05) -> Tensor:
    """n points (n, 2) from k equal Gaussians on a circle."""
    j = torch.randint(0, k, (n,), generator=generator)
    centres = radius * torch.stack([torch.cos(2 * math.pi * j / k), torch.sin(2 * math.pi * j / k)], 1)
    return centres + std * torch.randn(n, 2, generator=generator)
