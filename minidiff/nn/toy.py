"""A tiny MLP eps-model for 2-D data (lecture 1, demo): eps_theta(x_t, t) from [x_t, sinusoidal embedding of t]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import timestep_embedding


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
