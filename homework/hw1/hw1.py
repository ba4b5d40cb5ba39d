"""Homework 1: DDPM as a hierarchical VAE (lecture 1; Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models",
NeurIPS 2020, equations as numbered there).

Write the body of each function where it says `raise NotImplementedError`. Provided:

- `sched`, a `minidiff.schedule.Schedule`: `sched.T`, and float64 tensors of shape (T+1,) indexed by t = 0..T:
  `sched.beta` (beta[0] = 0), `sched.alpha` = 1 - beta, `sched.alpha_bar` (alpha_bar[0] = 1).
- `at(v, t, like)` below: v[t] for a batch of integer timesteps t (B,), shaped (B, 1, ..., 1) to broadcast against
  `like` (B, ...) and cast to its dtype.

Rules: every function must work for any batch shape (B, ...) and keep the dtype of its tensor inputs; import only
`torch`, `math` and `minidiff.schedule` (the library's own implementations are off limits). Check your work with
`python -m pytest -q test_public.py` (or the last cell of hw1_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minidiff.schedule import Schedule


def at(v: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """v[t] for integer timesteps t (B,), shaped (B, 1, ..., 1) like `like` (B, ...), in its dtype. Provided."""
    return v[t.long().cpu()].to(like).view(-1, *([1] * (like.ndim - 1)))


def q_sample(sched: Schedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Q1 (3 points). The forward marginal, eq. 4: q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),
    written with the noise eps ~ N(0, I):

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps

    x0, eps: (B, ...); t: (B,) integers in 1..T. Returns x_t, (B, ...)."""
    # BEGIN SOLUTION
    ab = at(sched.alpha_bar, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    # END SOLUTION


def q_posterior(sched: Schedule, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Q2 (4 points). The forward process posterior, eqs. 6-7: q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),

        mu~_t   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) /
                  (1 - alpha_bar_t) x_t
        beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

    (Bayes' rule on q(x_t | x_{t-1}) q(x_{t-1} | x_0).) x0, x_t: (B, ...); t: (B,) in 1..T. Returns (mean (B, ...),
    variance (B, 1, ..., 1))."""
    # BEGIN SOLUTION
    ab, ab_prev = at(sched.alpha_bar, t, x_t), at(sched.alpha_bar, t - 1, x_t)
    beta, alpha = at(sched.beta, t, x_t), at(sched.alpha, t, x_t)
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    return mean, (1 - ab_prev) / (1 - ab) * beta
    # END SOLUTION


def posterior_mean_from_eps(sched: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Q3 (3 points). The posterior mean in terms of the noise, eq. 11 (x_0 eliminated with eq. 4):

        mu~_t(x_t, eps) = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)

    With eps = eps_theta(x_t, t) this is the reverse process's mean mu_theta. x_t, eps: (B, ...); t: (B,) in 1..T.
    Returns (B, ...)."""
    # BEGIN SOLUTION
    beta, alpha, ab = at(sched.beta, t, x_t), at(sched.alpha, t, x_t), at(sched.alpha_bar, t, x_t)
    return (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    # END SOLUTION


def lambda_t(sched: Schedule, sigma2: Tensor) -> Tensor:
    """Q4 (3 points). The weight of L_{t-1} as an eps-MSE, eq. 12: with p_theta(x_{t-1} | x_t) = N(mu_theta,
    sigma_t^2 I),

        L_{t-1} - C = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) ||eps - eps_theta(x_t, t)||^2.

    sigma2: (T+1,) the reverse variances sigma_t^2. Returns the weights (T+1,) for t = 0..T, with lambda_0 =
    lambda_1 = 0 (t = 1 is the decoder term L_0, not an L_{t-1})."""
    # BEGIN SOLUTION
    lam = sched.beta ** 2 / (2 * sigma2 * sched.alpha * (1 - sched.alpha_bar))
    lam[:2] = 0
    return lam
    # END SOLUTION


def L_T(sched: Schedule, x0: Tensor) -> Tensor:
    """Q5 (3 points). The prior term of the ELBO, eq. 5, per example in nats:

        L_T = KL(q(x_T | x_0) || N(0, I)) = sum over pixels of 1/2 (v + m^2 - 1 - log v),
        m = sqrt(alpha_bar_T) x_0, v = 1 - alpha_bar_T.

    x0: (B, ...). Returns (B,)."""
    # BEGIN SOLUTION
    ab = sched.alpha_bar[sched.T].to(x0.dtype)
    m2, v = ab * x0 ** 2, 1 - ab
    return (0.5 * (v + m2 - 1 - torch.log(v))).flatten(1).sum(1)
    # END SOLUTION
