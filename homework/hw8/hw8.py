"""Homework 8: h-space and the asymmetric reverse process (lecture 8; Kwon, Jeong & Uh, "Diffusion models already
have a semantic latent space", ICLR 2023, eqs. 4-6; Park et al., "Unsupervised discovery of semantic latent
directions in diffusion models", NeurIPS 2023).

Write the body of each function where it says `raise NotImplementedError`. Provided: `sched`, a
`minidiff.schedule.Schedule` (`sched.T`; float64 tensors (T+1,) indexed by t = 0..T, `sched.alpha_bar` with
alpha_bar[0] = 1). DDIM's step (Song et al. 2021, eq. 12) has three parts,

    x_{t_prev} = sqrt(ab_prev) P_t(eps) + D_t(eps) + sigma_t z,
    P_t(eps) = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t),   D_t(eps) = sqrt(1 - ab_prev - sigma_t^2) eps.

Rules: keep the dtype of the tensor inputs; import only `torch`, `math` and `minidiff.schedule`. Check your work
with `python -m pytest -q test_public.py` (or the last cell of hw8_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule


def P_t(sched: Schedule, x_t: Tensor, eps: Tensor, t: int) -> Tensor:
    """Q1 (3 points). The predicted x_0, P_t(eps) = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t). x_t, eps: (B, ...);
    t: int in 1..T. Returns (B, ...)."""
    # BEGIN SOLUTION
    ab = sched.alpha_bar[t].item()
    return (x_t - (1 - ab) ** 0.5 * eps) / ab ** 0.5
    # END SOLUTION


def asyrp_step(sched: Schedule, x_t: Tensor, eps: Tensor, eps_edit: Tensor, t: int, t_prev: int) -> Tensor:
    """Q2 (3 points). The asymmetric reverse step (Asyrp eq. 4, eta = 0): the shifted prediction
    eps_edit = eps_theta(x_t | h_t + delta h_t) goes into P_t only, the original eps into D_t,

        x_{t_prev} = sqrt(ab_prev) P_t(eps_edit) + sqrt(1 - ab_prev) eps.

    With eps_edit = eps it is the DDIM step. x_t, eps, eps_edit: (B, ...); 0 <= t_prev < t <= T."""
    # BEGIN SOLUTION
    ab_prev = sched.alpha_bar[t_prev].item()
    return ab_prev ** 0.5 * P_t(sched, x_t, eps_edit, t) + (1 - ab_prev) ** 0.5 * eps
    # END SOLUTION


def direction_loss(f_edit: Tensor, f_source: Tensor, delta_T: Tensor) -> Tensor:
    """Q3 (3 points). Asyrp's directional loss (eq. 6, from StyleGAN-NADA) in any feature space:

        L_direction = 1 - cos(Delta I, Delta T),   Delta I = f_edit - f_source

    f_edit, f_source: (B, D) features of the edited and the source images; delta_T: (D,) the target direction
    (CLIP's text direction in the paper; here any direction). Returns (B,)."""
    # BEGIN SOLUTION
    return 1 - torch.nn.functional.cosine_similarity(f_edit - f_source, delta_T.expand_as(f_edit), dim=1)
    # END SOLUTION


def top_singular_vector(f, x: Tensor, iters: int = 50, seed: int = 0) -> tuple[Tensor, float]:
    """Q4 (4 points). The top right singular vector v of the Jacobian J = df/dx at x and its singular value, by
    power iteration on J^T J without forming J (Park et al.): start from a random unit v (torch.Generator seeded
    with `seed`), then repeat: u = J v (torch.func.jvp), w = J^T u (torch.func.vjp), v = w / |w|.

    f: a function of one tensor; x: its input (any shape). Returns (v with x's shape and unit norm, sigma_1 =
    |J v|). The sign of v is arbitrary."""
    # BEGIN SOLUTION
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    v = v / v.norm()
    _, pullback = torch.func.vjp(f, x)
    for _ in range(iters):
        u = torch.func.jvp(f, (x,), (v,))[1]
        w = pullback(u)[0]
        v = w / w.norm()
    return v, torch.func.jvp(f, (x,), (v,))[1].norm().item()
    # END SOLUTION
