"""Homework 2: DDIM, the sigma (eta) family and strided sampling (lecture 2; Song, Meng & Ermon, "Denoising
Diffusion Implicit Models", ICLR 2021, equations as numbered there).

Write the body of each function where it says `raise NotImplementedError`. Provided: `sched`, a
`minidiff.schedule.Schedule` (`sched.T`; float64 tensors (T+1,) indexed by t = 0..T: `sched.beta`, `sched.alpha`,
`sched.alpha_bar` with alpha_bar[0] = 1), and an eps-model: any callable eps_model(x_t, t) -> eps of x_t's shape,
t a (B,) integer tensor.

Rules: keep the dtype of the tensor inputs (schedule values are float64: cast them); import only `torch`, `math`
and `minidiff.schedule`. Check your work with `python -m pytest -q test_public.py` (or the last cell of
hw2_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule


def ddim_sigma(sched: Schedule, t: Tensor, t_prev: Tensor, eta: float) -> Tensor:
    """Q1 (4 points). The noise scale of the sigma family, eq. 16, with ab = alpha_bar:

        sigma_t(eta) = eta * sqrt((1 - ab_{t_prev}) / (1 - ab_t)) * sqrt(1 - ab_t / ab_{t_prev})

    eta = 0 is DDIM (deterministic); eta = 1 with t_prev = t - 1 is DDPM's posterior std sqrt(beta~_t).
    t, t_prev: (B,) integers with 0 <= t_prev < t <= T. Returns (B,) float64."""
    # BEGIN SOLUTION
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
    return eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()
    # END SOLUTION


def ddim_step(sched: Schedule, x_t: Tensor, eps: Tensor, t: int, t_prev: int, eta: float = 0.0,
              noise: Tensor | None = None) -> Tensor:
    """Q2 (4 points). One step of the family, eq. 12, in three parts:

        x_{t_prev} = sqrt(ab_{t_prev}) x0_pred                          "predicted x_0"
                   + sqrt(1 - ab_{t_prev} - sigma_t^2) eps               "direction pointing to x_t"
                   + sigma_t noise                                       "random noise"
        x0_pred    = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)

    x_t, eps, noise: (B, ...) (noise may be None when eta = 0); t, t_prev: ints, 0 <= t_prev < t <= T.
    Returns x_{t_prev}, (B, ...), in x_t's dtype. Use your ddim_sigma."""
    # BEGIN SOLUTION
    tt, tp = torch.tensor([t]), torch.tensor([t_prev])
    sigma = ddim_sigma(sched, tt, tp, eta).item()
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    x0_pred = (x_t - (1 - ab) ** 0.5 * eps) / ab ** 0.5
    x_prev = ab_prev ** 0.5 * x0_pred + max(1 - ab_prev - sigma ** 2, 0.0) ** 0.5 * eps
    return x_prev if sigma == 0 else x_prev + sigma * noise
    # END SOLUTION


def leading_grid(T: int, steps: int) -> Tensor:
    """Q3 (3 points). DDIM's strided sub-sequence ("leading" spacing): tau_i = 1 + (i - 1) * (T // steps) for
    i = 1..steps, returned in descending order with 0 appended (t = 0 is the data), so that a sampler walks the
    pairs (grid[k], grid[k + 1]). Returns a long tensor (steps + 1,); e.g. T = 10, steps = 3: [7, 4, 1, 0]."""
    # BEGIN SOLUTION
    tau = 1 + torch.arange(steps) * (T // steps)
    return torch.cat([tau.flip(0), torch.zeros(1, dtype=torch.long)])
    # END SOLUTION


def ddim_sample(eps_model, sched: Schedule, x_T: Tensor, steps: int, eta: float = 0.0,
                noise: Tensor | None = None) -> Tensor:
    """Q4 (3 points). Sampling: from x_T, one ddim_step per pair (grid[k], grid[k + 1]) of leading_grid(T, steps),
    eps = eps_model(x, t) with t a (B,) long tensor filled with grid[k]; the k-th step's noise is noise[k].

    x_T: (B, ...); noise: (steps, B, ...) or None when eta = 0. Returns x_0, (B, ...)."""
    # BEGIN SOLUTION
    grid, x = leading_grid(sched.T, steps), x_T
    for k in range(steps):
        t, t_prev = int(grid[k]), int(grid[k + 1])
        eps = eps_model(x, torch.full((len(x),), t, dtype=torch.long))
        x = ddim_step(sched, x, eps, t, t_prev, eta, None if noise is None else noise[k])
    return x
    # END SOLUTION
