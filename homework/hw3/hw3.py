"""Homework 3: editing by inversion and guidance (lecture 3): DDIM inversion (Song et al. 2021, eq. 12 run upwards),
SDEdit (Meng et al., ICLR 2022), classifier-free guidance (Ho & Salimans 2021) and classifier guidance (Dhariwal &
Nichol, NeurIPS 2021, eq. 14).

Write the body of each function where it says `raise NotImplementedError`. Provided: `sched`, a
`minidiff.schedule.Schedule` (`sched.T`; float64 tensors (T+1,) indexed by t = 0..T: `sched.beta`, `sched.alpha`,
`sched.alpha_bar` with alpha_bar[0] = 1); `minidiff.schedule.timesteps(T, steps)`, DDIM's descending grid
[tau_S, ..., tau_1, 0]; an eps-model: any callable eps_model(x_t, t) -> eps with t a (B,) integer tensor; and
`ddim_step` below, the deterministic DDIM step of homework 2.

Rules: keep the dtype of the tensor inputs; import only `torch`, `math` and `minidiff.schedule`. Check your work
with `python -m pytest -q test_public.py` (or the last cell of hw3_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule, timesteps


def ddim_step(sched: Schedule, x_t: Tensor, eps: Tensor, t: int, t_prev: int) -> Tensor:
    """The deterministic DDIM step t -> t_prev < t (eta = 0). Provided.

        x_{t_prev} = sqrt(ab_prev) (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) + sqrt(1 - ab_prev) eps"""
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    return ab_prev ** 0.5 * (x_t - (1 - ab) ** 0.5 * eps) / ab ** 0.5 + (1 - ab_prev) ** 0.5 * eps


def ddim_invert_step(sched: Schedule, x_prev: Tensor, eps: Tensor, t_prev: int, t: int) -> Tensor:
    """Q1 (3 points). The DDIM step taken upwards, from t_prev to t > t_prev, for a given eps:

        x0_pred = (x_{t_prev} - sqrt(1 - ab_prev) eps) / sqrt(ab_prev)
        x_t     = sqrt(ab_t) x0_pred + sqrt(1 - ab_t) eps

    It must be the exact inverse of ddim_step(sched, x_t, eps, t, t_prev) for the same eps.
    x_prev, eps: (B, ...); t_prev, t: ints, 0 <= t_prev < t <= T. Returns x_t, (B, ...)."""
    # BEGIN SOLUTION
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    x0_pred = (x_prev - (1 - ab_prev) ** 0.5 * eps) / ab_prev ** 0.5
    return ab ** 0.5 * x0_pred + (1 - ab) ** 0.5 * eps
    # END SOLUTION


def ddim_invert(eps_model, sched: Schedule, x0: Tensor, steps: int) -> Tensor:
    """Q2 (3 points). DDIM inversion x_0 -> x_T: walk the grid timesteps(T, steps) upwards, through the pairs
    (0, tau_1), (tau_1, tau_2), ..., (tau_{S-1}, tau_S); at each pair (t_prev, t) evaluate the model at the
    *target* t on the current x (eps(x_{t_prev}, t) stands in for the unknown eps(x_t, t)) and take
    ddim_invert_step. x0: (B, ...). Returns x_T at t = tau_S, (B, ...)."""
    # BEGIN SOLUTION
    grid, x = timesteps(sched.T, steps).flip(0).tolist(), x0
    for t_prev, t in zip(grid[:-1], grid[1:], strict=True):
        eps = eps_model(x, torch.full((len(x),), t, dtype=torch.long))
        x = ddim_invert_step(sched, x, eps, t_prev, t)
    return x
    # END SOLUTION


def sdedit(eps_model, sched: Schedule, x0: Tensor, t0: int, steps: int, eps: Tensor) -> Tensor:
    """Q3 (3 points). SDEdit with a deterministic DDIM sampler: noise the input to t0 with the given eps,

        x_{t0} = sqrt(ab_{t0}) x_0 + sqrt(1 - ab_{t0}) eps,

    then denoise it with ddim_step over the grid [t0, then every tau of timesteps(T, steps) below t0] (ending at
    0), the model evaluated at each step's upper t. x0, eps: (B, ...); 1 <= t0 <= T. Returns x_0', (B, ...)."""
    # BEGIN SOLUTION
    ab = sched.alpha_bar[t0].item()
    x = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
    full = timesteps(sched.T, steps)
    grid = [t0] + full[full < t0].tolist()
    for t, t_prev in zip(grid[:-1], grid[1:], strict=True):
        x = ddim_step(sched, x, eps_model(x, torch.full((len(x),), t, dtype=torch.long)), t, t_prev)
    return x
    # END SOLUTION


def cfg_eps(eps_u: Tensor, eps_c: Tensor, w: float) -> Tensor:
    """Q4 (2 points). Classifier-free guidance in eps form, with w = 1 the conditional model and w = 0 the
    unconditional one (Imagen's and diffusers' convention):

        eps~ = eps_u + w (eps_c - eps_u)

    (Ho & Salimans write (1 + w') eps_c - w' eps_u, i.e. w = 1 + w'.) eps_u, eps_c: (B, ...). Returns (B, ...)."""
    # BEGIN SOLUTION
    return eps_u + w * (eps_c - eps_u)
    # END SOLUTION


def classifier_guided_eps(eps_model, classifier, sched: Schedule, x_t: Tensor, t: Tensor, y: Tensor,
                          s: float) -> Tensor:
    """Q5 (4 points). Classifier guidance, eq. 14: with a classifier of noisy images, classifier(x_t, t) -> logits
    (B, K),

        eps~ = eps(x_t, t) - s sqrt(1 - ab_t) grad_{x_t} log p(y | x_t, t)

    (eps = -sqrt(1 - ab_t) grad log p_t(x_t), so this samples p_t(x) p(y | x)^s). Compute the gradient with
    torch.autograd (log_softmax of the logits, the entry of each example's class y). x_t: (B, ...); t, y: (B,)
    integers. Returns eps~, (B, ...), without a graph attached."""
    # BEGIN SOLUTION
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = torch.log_softmax(classifier(x, t), dim=-1)
        grad = torch.autograd.grad(log_p.gather(1, y.view(-1, 1)).sum(), x)[0]
    ab = sched.alpha_bar[t].to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
    return (eps_model(x_t, t) - s * (1 - ab).sqrt() * grad).detach()
    # END SOLUTION
