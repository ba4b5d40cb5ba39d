"""Gaussian maths of DDPM: the forward process, its posterior, KLs and the L_0 likelihood.

Equation numbers refer to Ho, Jain & Abbeel (2020), "Denoising Diffusion
Probabilistic Models". All functions work on any shape (B, ...) with t a long
tensor of shape (B,); schedule values are gathered with `Schedule.at`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedule import Schedule


def q_step(sched: Schedule, x_prev: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """One forward transition, eq. 2: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps  ~ q(x_t | x_{t-1})."""
    return sched.at("alpha", t, x_prev).sqrt() * x_prev + sched.at("beta", t, x_prev).sqrt() * eps


def q_sample(sched: Schedule, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """The marginal, eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  ~ q(x_t | x_0)."""
    ab = sched.at("alpha_bar", t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def predict_x0(sched: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Invert eq. 4 for x_0: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    ab = sched.at("alpha_bar", t, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def predict_eps(sched: Schedule, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """Invert eq. 4 for eps: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    ab = sched.at("alpha_bar", t, x_t)
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


def q_posterior(sched: Schedule, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0), eqs. 6-7 (the beta~ form).

        mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
              + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

    Valid for t >= 1 (at t = 1 it returns mean x_0 and variance 0). Returns (mean, var),
    var shaped (B, 1, ...) to broadcast.
    """
    ab, ab_prev = sched.at("alpha_bar", t, x_t), sched.at("alpha_bar", t - 1, x_t)
    beta, alpha = sched.at("beta", t, x_t), sched.at("alpha", t, x_t)
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    return mean, sched.at("beta_tilde", t, x_t)


def posterior_mean_from_eps(sched: Schedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """The mu~ form, eq. 11: mu~_t(x_t, eps) = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t).

    Equals `q_posterior(x0 = predict_x0(x_t, eps))[0]`; an eps-model plugged in gives mu_theta.
    """
    beta, alpha, ab = (sched.at(n, t, x_t) for n in ("beta", "alpha", "alpha_bar"))
    return (x_t - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()


DECODER_VARS = ("beta_1", "beta_tilde_2")


def sigma2(sched: Schedule, kind: str = "beta", decoder_var: str | None = None) -> Tensor:
    """The reverse-process variance sigma_t^2 of DDPM sec. 3.2, shape (T+1,).

    kind: "beta" (sigma_t^2 = beta_t, optimal for x_0 ~ N(0, I)) or "beta_tilde"
    (sigma_t^2 = beta~_t, optimal for a deterministic x_0).

    Entry t = 1 is the variance of the L_0 decoder p_theta(x_0 | x_1) (eq. 12); nothing else
    reads it (sampling adds no noise at t = 1, L_{t-1} starts at t = 2). `decoder_var` sets it:

    - None (default): the paper's sigma_1^2 of `kind`. For "beta" that is beta_1 (sec. 3.2
      uses sigma_t^2 = beta_t at every t, and lecture 1 derives the bound for that model).
      For "beta_tilde", beta~_1 = 0 would make the decoder a point mass, so beta~_2 is used,
      as in Ho et al.'s code ("fixedsmall", clipped).
    - "beta_1" or "beta_tilde_2": that value, whatever `kind`. Ho et al.'s code
      (diffusion_utils_2.py, kept by improved-diffusion) pairs "beta_tilde_2" with "beta"
      ("fixedlarge": [beta~_2, beta_2, ..., beta_T]), aiming at a better decoder likelihood;
      whether it gets one depends on the model (see `elbo.L_0`).
    """
    if kind == "beta":
        s2 = sched.beta.clone()
    elif kind == "beta_tilde":
        s2 = sched.beta_tilde.clone()
        s2[1] = s2[2] if sched.T >= 2 else sched.beta[1]
    else:
        raise ValueError(f"unknown sigma2 kind {kind!r}; expected 'beta' or 'beta_tilde'")
    if decoder_var == "beta_1":
        s2[1] = sched.beta[1]
    elif decoder_var == "beta_tilde_2":
        if sched.T < 2:
            raise ValueError(f"decoder_var='beta_tilde_2' needs beta~_2, i.e. T >= 2; got T = {sched.T}")
        s2[1] = sched.beta_tilde[2]
    elif decoder_var is not None:
        raise ValueError(f"unknown decoder_var {decoder_var!r}; expected None (the default of kind), "
                         f"{' or '.join(map(repr, DECODER_VARS))}")
    return s2


def gaussian_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise KL( N(mean1, var1) || N(mean2, var2) ) in nats:

        0.5 * ( log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1 ).
    """
    var1, var2 = torch.as_tensor(var1, dtype=mean1.dtype), torch.as_tensor(var2, dtype=mean1.dtype)
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def gaussian_log_prob(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Elementwise log N(x; mean, var) in nats (a continuous density)."""
    var = torch.as_tensor(var, dtype=x.dtype)
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def discretized_gaussian_log_likelihood(x0: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Elementwise log p(x_0 | x_1) of DDPM eq. 13 for 8-bit data scaled to [-1, 1].

    Each value x owns the bin [x - 1/255, x + 1/255]; the two extreme bins extend to
    -inf (x = -1) and +inf (x = 1). The probability is Phi(upper) - Phi(lower) of the
    standardised edges, computed on the side of the Gaussian where it does not cancel.
    """
    if bool(((x0 < -1 - 1e-6) | (x0 > 1 + 1e-6)).any()):
        raise ValueError("x0 must lie in [-1, 1] (8-bit data scaled to [-1, 1])")
    std = torch.as_tensor(std, dtype=mean.dtype)
    lo = (x0 - mean - 1 / 255) / std
    hi = (x0 - mean + 1 / 255) / std
    # Phi(hi) - Phi(lo) == Phi(-lo) - Phi(-hi): use the form whose terms are small.
    right = (lo + hi) > 0
    p = torch.where(right, torch.special.ndtr(-lo) - torch.special.ndtr(-hi),
                    torch.special.ndtr(hi) - torch.special.ndtr(lo))
    logp = torch.log(p.clamp(min=1e-300))
    logp = torch.where(x0 <= -1 + 1e-6, torch.special.log_ndtr(hi), logp)
    return torch.where(x0 >= 1 - 1e-6, torch.special.log_ndtr(-lo), logp)
