"""2-D toy data and a tiny MLP eps-model: DDPM end to end in seconds on a CPU (lecture 1, demo).

The data are point clouds in R^2, scaled to roughly [-1, 1]; the eps-model is an MLP
on (x_t, sinusoidal embedding of t). Training is Algorithm 1 with L_simple, verbatim.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .elbo import L_simple
from .nn.layers import timestep_embedding
from .schedule import Schedule


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


class ToyMLP(nn.Module):
    """eps_theta(x_t, t) for 2-D data: [x_t, emb(t)] -> 3 hidden SiLU layers -> eps."""

    def __init__(self, dim: int = 2, hidden: int = 128, t_dim: int = 32):
        super().__init__()
        self.t_dim = t_dim
        self.net = nn.Sequential(
            nn.Linear(dim + t_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        emb = timestep_embedding(t, self.t_dim).to(x_t.dtype)  # (B, t_dim)
        return self.net(torch.cat([x_t, emb], dim=1))  # (B, dim)


def train_toy(data: Tensor, sched: Schedule, steps: int = 4000, batch_size: int = 256, lr: float = 2e-2,
              seed: int = 0, progress: bool = True) -> tuple[ToyMLP, list[float]]:
    """Algorithm 1: repeat { x_0 ~ data, t ~ U{1..T}, eps ~ N(0,I), step on ||eps - eps_theta(x_t, t)||^2 }."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ToyMLP(dim=data.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched_lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="train toy"):
        x0 = data[torch.randint(0, len(data), (batch_size,), generator=g)]
        loss = L_simple(model, sched, x0, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched_lr.step()
        losses.append(loss.item())
    return model.eval(), losses
