"""Training the 2-D toy eps-model (lecture 1, demo): DDPM's Algorithm 1 with L_simple, verbatim."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..devices import num_threads
from ..elbo import L_simple
from ..nn.toy import ToyMLP
from ..schedule import Schedule


def train_toy(data: Tensor, sched: Schedule, steps: int = 4000, batch_size: int = 256, lr: float = 2e-2,
              seed: int = 0, progress: bool = True) -> tuple[ToyMLP, list[float]]:
    """Algorithm 1: repeat { x_0 ~ data, t ~ U{1..T}, eps ~ N(0,I), step on ||eps - eps_theta(x_t, t)||^2 }.

    Runs on one CPU thread (`devices.num_threads`): the MLP's ops take microseconds; a second thread buys 8%
    alone but makes it 4x slower beside a busy process (benchmarks/threads.py measures both)."""
    with num_threads(1):
        return _train_toy(data, sched, steps, batch_size, lr, seed, progress)


def _train_toy(data: Tensor, sched: Schedule, steps: int, batch_size: int, lr: float, seed: int,
               progress: bool) -> tuple[ToyMLP, list[float]]:
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
