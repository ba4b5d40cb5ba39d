"""Homework 7: the DDPM noise space (lecture 7; Wu & De la Torre, "A latent space of stochastic diffusion models for
zero-shot image editing and guidance" (CycleDiffusion), ICCV 2023, eqs. 4-6; DDIM's q_sigma, Song et al. 2021,
eq. 7).

Write the body of each function where it says `raise NotImplementedError`. Provided: `sched`, a
`minidiff.schedule.Schedule` (`sched.T`; float64 tensors (T+1,), `sched.alpha_bar` with alpha_bar[0] = 1); an
eps-model eps_model(x_t, t) with t a (B,) integer tensor; `ddim_sigma` and `ddim_mean` below (homework 2's sigma
and the DDIM step without its noise). A stochastic sampler (eta > 0) is a deterministic map G from its noise
z = (x_T, z_S, ..., z_1) to x_0,

    x_{t_prev} = mu(x_t, t) + sigma_t z_t,    mu = sqrt(ab_prev) P_t(eps) + sqrt(1 - ab_prev - sigma_t^2) eps,

and the DPM-Encoder finds a z that G maps back to a given image.

Rules: keep the dtype of the tensor inputs; import only `torch`, `math` and `minidiff.schedule`. Check your work
with `python -m pytest -q test_public.py` (or the last cell of hw7_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule


def ddim_sigma(sched: Schedule, t: int, t_prev: int, eta: float) -> float:
    """sigma_t(eta) = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev) (DDIM eq. 16). Provided."""
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    return eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5


def ddim_mean(sched: Schedule, x_t: Tensor, eps: Tensor, t: int, t_prev: int, eta: float) -> Tensor:
    """mu(x_t, t): the DDIM step of eq. 12 without its noise term. Provided."""
    ab, ab_prev, s = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item(), ddim_sigma(sched, t, t_prev, eta)
    return ab_prev ** 0.5 * (x_t - (1 - ab) ** 0.5 * eps) / ab ** 0.5 + max(1 - ab_prev - s ** 2, 0.0) ** 0.5 * eps


def q_sigma_mean(sched: Schedule, x_t: Tensor, x0: Tensor, t: int, t_prev: int, eta: float) -> Tensor:
    """Q1 (3 points). The mean of DDIM's q_sigma(x_{t_prev} | x_t, x_0) (eq. 7): the DDIM step with the *true*
    noise of x_t, eps_true = (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t),

        mean = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev - sigma_t^2) (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t).

    Its standard deviation is sigma_t. x_t, x0: (B, ...); 0 <= t_prev < t <= T. Returns (B, ...)."""
    # BEGIN SOLUTION
    ab, ab_prev, s = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item(), ddim_sigma(sched, t, t_prev, eta)
    eps_true = (x_t - ab ** 0.5 * x0) / (1 - ab) ** 0.5
    return ab_prev ** 0.5 * x0 + max(1 - ab_prev - s ** 2, 0.0) ** 0.5 * eps_true
    # END SOLUTION


def dpm_encode(eps_model, sched: Schedule, x0: Tensor, grid: list[int], eta: float,
               draws: Tensor) -> tuple[Tensor, Tensor]:
    """Q2 (4 points). CycleDiffusion's DPM-Encoder on the descending grid [tau_S, ..., tau_1, 0]:

        x_T = sqrt(ab_{tau_S}) x_0 + sqrt(1 - ab_{tau_S}) draws[0]                    (a draw of q(x_T | x_0))
        for step i = 0..S-1 with (t, t_prev) = (grid[i], grid[i + 1]):
            x_{t_prev} = q_sigma_mean(x_t, x_0) + sigma_t draws[i + 1]               (a draw of q_sigma)
            mu = ddim_mean(x_t, eps_model(x_t, t));   z_i = (x_{t_prev} - mu) / sigma_t   (0 where sigma_t = 0)
            continue from mu + sigma_t z_i                  (equal to x_{t_prev}; where sigma_t = 0: mu)

    x0: (B, ...); draws: (S + 1, B, ...) standard normal; eta > 0. Returns (x_T, z) with z (S, B, ...)."""
    # BEGIN SOLUTION
    ab_T = sched.alpha_bar[grid[0]].item()
    x = x_T = ab_T ** 0.5 * x0 + (1 - ab_T) ** 0.5 * draws[0]
    zs = []
    for i, (t, t_prev) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        s = ddim_sigma(sched, t, t_prev, eta)
        mu = ddim_mean(sched, x, eps_model(x, torch.full((len(x),), t, dtype=torch.long)), t, t_prev, eta)
        target = q_sigma_mean(sched, x, x0, t, t_prev, eta) + s * draws[i + 1]
        z = (target - mu) / s if s > 0 else torch.zeros_like(x)
        zs.append(z)
        x = mu + s * z
    return x_T, torch.stack(zs)
    # END SOLUTION


def decode(eps_model, sched: Schedule, x_T: Tensor, z: Tensor, grid: list[int], eta: float) -> Tensor:
    """Q3 (3 points). G(z): the stochastic sampler with its noise given, x_{t_prev} = mu(x_t, t) + sigma_t z_i at
    step i of the grid, from x_T. x_T: (B, ...); z: (S, B, ...). Returns x_0, (B, ...). Decoding the encoder's z
    retraces the encoder's trajectory, so it ends at mu of the last step (x_0 up to what the last, noiseless step
    leaves), and with another eps-model (another prompt) it translates."""
    # BEGIN SOLUTION
    x = x_T
    for i, (t, t_prev) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        eps = eps_model(x, torch.full((len(x),), t, dtype=torch.long))
        x = ddim_mean(sched, x, eps, t, t_prev, eta) + ddim_sigma(sched, t, t_prev, eta) * z[i]
    return x
    # END SOLUTION
