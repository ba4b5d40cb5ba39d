"""Homework 4: EDICT, exact inversion by coupled transformations (lecture 4; Wallace, Gokul & Naik, "EDICT: Exact
Diffusion Inversion via Coupled Transformations", CVPR 2023, eqs. 8-14).

Write the body of each function where it says `raise NotImplementedError`. Provided: `sched`, a
`minidiff.schedule.Schedule` (`sched.T`; float64 tensors (T+1,) indexed by t = 0..T, `sched.alpha_bar` with
alpha_bar[0] = 1), and an eps-model: any callable eps_model(x_t, t) -> eps with t a (B,) integer tensor.

A deterministic DDIM step is affine in x_t for a given eps, x_{t-1} = a_t x_t + b_t eps, but eps is evaluated at
the point being updated. EDICT keeps two sequences x and y and updates each with eps evaluated at the other (an
affine coupling layer, invertible whatever the network), and mixes them with weight p to keep them close.

Rules: keep the dtype of the tensor inputs; import only `torch`, `math` and `minidiff.schedule`. Check your work
with `python -m pytest -q test_public.py` (or the last cell of hw4_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule


def edict_coefficients(sched: Schedule, t: int, t_prev: int) -> tuple[float, float]:
    """Q1 (2 points). The DDIM step (eta = 0) written as x_{t_prev} = a_t x_t + b_t eps (expand
    sqrt(ab_prev) (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) + sqrt(1 - ab_prev) eps, ab = alpha_bar):

        a_t = sqrt(ab_prev / ab_t),   b_t = sqrt(1 - ab_prev) - sqrt(ab_prev (1 - ab_t) / ab_t)

    t, t_prev: ints, 0 <= t_prev < t <= T. Returns (a_t, b_t) as Python floats."""
    # BEGIN SOLUTION
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    return (ab_prev / ab) ** 0.5, (1 - ab_prev) ** 0.5 - (ab_prev * (1 - ab) / ab) ** 0.5
    # END SOLUTION


def mix(x_inter: Tensor, y_inter: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Q2a (2 points). The mixing layers, eqs. 10-11, applied in this order (the second uses the first's output):

        x_{t-1} = p x_inter + (1 - p) y_inter
        y_{t-1} = p y_inter + (1 - p) x_{t-1}

    x_inter, y_inter: (B, ...); 0 < p <= 1. Returns (x_{t-1}, y_{t-1})."""
    # BEGIN SOLUTION
    x_prev = p * x_inter + (1 - p) * y_inter
    return x_prev, p * y_inter + (1 - p) * x_prev
    # END SOLUTION


def unmix(x_prev: Tensor, y_prev: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Q2b (2 points). The exact inverse of `mix`: solve the two lines for (x_inter, y_inter), undoing them in
    reverse order. Returns (x_inter, y_inter)."""
    # BEGIN SOLUTION
    y_inter = (y_prev - (1 - p) * x_prev) / p
    return (x_prev - (1 - p) * y_inter) / p, y_inter
    # END SOLUTION


def edict_step(eps_model, sched: Schedule, x: Tensor, y: Tensor, t: int, t_prev: int,
               p: float = 0.93) -> tuple[Tensor, Tensor]:
    """Q3 (4 points). One EDICT denoising step (x_t, y_t) -> (x_{t_prev}, y_{t_prev}), eqs. 8-11, x updated first:

        x_inter = a_t x_t + b_t eps(y_t, t)
        y_inter = a_t y_t + b_t eps(x_inter, t)
        (x_{t-1}, y_{t-1}) = mix(x_inter, y_inter, p)

    x, y: (B, ...); t, t_prev: ints; the model is called with t as a (B,) long tensor. Two model calls."""
    # BEGIN SOLUTION
    a, b = edict_coefficients(sched, t, t_prev)
    tb = torch.full((len(x),), t, dtype=torch.long)
    x_inter = a * x + b * eps_model(y, tb)
    y_inter = a * y + b * eps_model(x_inter, tb)
    return mix(x_inter, y_inter, p)
    # END SOLUTION


def edict_step_inverse(eps_model, sched: Schedule, x_prev: Tensor, y_prev: Tensor, t: int, t_prev: int,
                       p: float = 0.93) -> tuple[Tensor, Tensor]:
    """Q4 (4 points). The exact inverse of `edict_step` with the same (t, t_prev, p): (x_{t-1}, y_{t-1}) ->
    (x_t, y_t), eqs. 12-14. Undo the lines of Q3 in reverse order, each model call at the point the forward
    line used:

        (x_inter, y_inter) = unmix(x_{t-1}, y_{t-1}, p)
        y_t = (y_inter - b_t eps(x_inter, t)) / a_t
        x_t = (x_inter - b_t eps(y_t, t)) / a_t

    Returns (x_t, y_t)."""
    # BEGIN SOLUTION
    a, b = edict_coefficients(sched, t, t_prev)
    tb = torch.full((len(x_prev),), t, dtype=torch.long)
    x_inter, y_inter = unmix(x_prev, y_prev, p)
    y = (y_inter - b * eps_model(x_inter, tb)) / a
    return (x_inter - b * eps_model(y, tb)) / a, y
    # END SOLUTION
