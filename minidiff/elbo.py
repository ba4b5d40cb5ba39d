"""The DDPM variational bound (Ho et al. 2020, eq. 5) and L_simple (eq. 14).

    -log p(x_0) <= L = L_T + sum_{t=2}^T L_{t-1} + L_0
    L_T     = KL( q(x_T | x_0) || N(0, I) )
    L_{t-1} = E_q KL( q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t) ),   t = 2..T
    L_0     = -E_q log p_theta(x_0 | x_1)

All terms are per example (summed over pixels), in nats. `eps_model(x_t, t, context)`
is any epsilon-model callable (README.md, Notation). L_0's decoder variance sigma_1^2 is the paper's
(beta_1 for var="beta") unless `decoder_var` picks another (see `gaussian.sigma2`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .gaussian import (
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    gaussian_log_prob,
    posterior_mean_from_eps,
    q_posterior,
    q_sample,
    sigma2,
)
from .protocols import EpsModel
from .schedule import Schedule, standard_normal, t_batch


def _sum(x: Tensor) -> Tensor:
    """Sum over every dimension but the batch: (B, ...) -> (B,)."""
    return x.flatten(1).sum(1)


def L_T(sched: Schedule, x0: Tensor) -> Tensor:
    """Prior term: KL( N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I) || N(0, I) ), shape (B,)."""
    t = t_batch(sched.T, x0)
    ab = sched.at("alpha_bar", t, x0)
    return _sum(gaussian_kl(ab.sqrt() * x0, (1 - ab).expand_as(x0), torch.zeros_like(x0), torch.ones_like(x0)))


def L_t_minus_1(eps_model: EpsModel, sched: Schedule, x0: Tensor, t: Tensor, eps: Tensor,
                context: Tensor | None = None, var: str = "beta") -> Tensor:
    """Denoising term at step t >= 2 (eq. 5), with x_t = q_sample(x0, t, eps), shape (B,).

    p_theta(x_{t-1} | x_t) = N( mu~_t(x_t, eps_theta(x_t, t)), sigma_t^2 I ), eq. 11.
    """
    if bool((t < 2).any()):
        raise ValueError("L_{t-1} is defined for t >= 2; t = 1 is the decoder term L_0")
    x_t = q_sample(sched, x0, t, eps)
    mean_q, var_q = q_posterior(sched, x0, x_t, t)
    mean_p = posterior_mean_from_eps(sched, x_t, t, eps_model(x_t, t, context))
    var_p = sigma2(sched, var)[t].to(x0).view_as(var_q)
    return _sum(gaussian_kl(mean_q, var_q.expand_as(x0), mean_p, var_p.expand_as(x0)))


def L_0(eps_model: EpsModel, sched: Schedule, x0: Tensor, eps: Tensor,
        context: Tensor | None = None, var: str = "beta", discrete: bool = True,
        *, decoder_var: str | None = None) -> Tensor:
    """Decoder term -log p_theta(x_0 | x_1), x_1 = q_sample(x0, 1, eps), shape (B,).

    p_theta(x_0 | x_1) has mean mu_theta(x_1, 1) and variance sigma_1^2 = sigma2(sched, var,
    decoder_var)[1]. The default decoder_var=None is the paper's sigma_1^2 (beta_1 for
    var="beta"): the model whose bound eq. 5 derives. decoder_var="beta_tilde_2" is Ho et al.'s
    code's choice, beta~_2 (~beta_1 / 2 for the linear schedule). A Gaussian decoder does best
    when its variance matches E(x_0 - mu_theta)^2, so which is lower depends on the model: on the
    shipped `shapes` model (16 test images, 8-bit) L_0 is 2.37 bits/dim with beta_1 and 2.47
    with beta~_2.

    discrete=True: the discretised Gaussian of eq. 13 for 8-bit data (a probability, so
    the bound is on -log P(x_0) in nats). discrete=False: the Gaussian density, for
    continuous data (the bound is on -log p(x_0), a density).
    """
    t = t_batch(1, x0)
    x1 = q_sample(sched, x0, t, eps)
    mean = posterior_mean_from_eps(sched, x1, t, eps_model(x1, t, context))
    s2 = sigma2(sched, var, decoder_var)[1].to(x0)
    if discrete:
        return -_sum(discretized_gaussian_log_likelihood(x0, mean, s2.sqrt()))
    return -_sum(gaussian_log_prob(x0, mean, s2))


def elbo_terms(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor | None = None,
               var: str = "beta", discrete: bool = True, generator: torch.Generator | None = None,
               *, decoder_var: str | None = None) -> dict:
    """Every term of the bound, exactly summed over t = 2..T (T model calls), per example.

    Returns a dict of tensors: "L_T" (B,), "L_t" (B, T-1) with column t-2 holding L_{t-1},
    "L_0" (B,), "nats" (B,) their sum, and "bits_per_dim" (B,) = nats / (D ln 2).
    Each term draws its own eps ~ N(0, I) from `generator`. `decoder_var` only changes L_0
    (see `L_0`; the default is the paper's sigma_1^2).
    """
    noise = lambda: standard_normal(x0.shape, x0, generator)
    terms = [L_t_minus_1(eps_model, sched, x0, t_batch(t, x0), noise(), context, var)
             for t in range(2, sched.T + 1)]
    L_t = torch.stack(terms, dim=1) if terms else x0.new_zeros(x0.shape[0], 0)  # (B, T-1)
    L0 = L_0(eps_model, sched, x0, noise(), context, var, discrete, decoder_var=decoder_var)
    out = {"L_T": L_T(sched, x0), "L_t": L_t, "L_0": L0}
    out["nats"] = out["L_T"] + L_t.sum(1) + out["L_0"]
    out["bits_per_dim"] = out["nats"] / (x0[0].numel() * math.log(2))
    return out


def elbo_estimate(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor | None = None,
                  var: str = "beta", discrete: bool = True, generator: torch.Generator | None = None,
                  *, decoder_var: str | None = None) -> Tensor:
    """Unbiased one-sample estimate of the bound in nats, shape (B,) (two model calls):

        L ~= L_T + (T - 1) * L_{t-1}  +  L_0,    t ~ Uniform{2..T} per example.

    `decoder_var` only changes L_0 (see `L_0`).
    """
    noise = lambda: standard_normal(x0.shape, x0, generator)
    t = torch.randint(2, sched.T + 1, (x0.shape[0],), generator=generator).to(x0.device)
    middle = (sched.T - 1) * L_t_minus_1(eps_model, sched, x0, t, noise(), context, var)
    return L_T(sched, x0) + middle + L_0(eps_model, sched, x0, noise(), context, var, discrete,
                                         decoder_var=decoder_var)


def lambda_t(sched: Schedule, var: str = "beta") -> Tensor:
    """Weight relating L_{t-1} to the eps-MSE (eq. 12), shape (T+1,), lambda[0] = lambda[1] = 0:

        L_{t-1} - C_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) * ||eps - eps_theta(x_t, t)||^2,

    where C_t = KL of the variances alone, which is 0 when sigma_t^2 = beta~_t.
    """
    s2 = sigma2(sched, var)
    lam = sched.beta**2 / (2 * s2 * sched.alpha * (1 - sched.alpha_bar))
    lam[:2] = 0
    return lam


def L_simple(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor | None = None,
             t: Tensor | None = None, eps: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Eq. 14, per example (B,): || eps - eps_theta( sqrt(alpha_bar_t) x_0 + sqrt(1-alpha_bar_t) eps, t ) ||^2,
    averaged over pixels, with t ~ Uniform{1..T} and eps ~ N(0, I) unless given (Algorithm 1)."""
    if t is None:
        t = torch.randint(1, sched.T + 1, (x0.shape[0],), generator=generator).to(x0.device)
    if eps is None:
        eps = standard_normal(x0.shape, x0, generator)
    x_t = q_sample(sched, x0, t, eps)
    return (eps - eps_model(x_t, t, context)).pow(2).flatten(1).mean(1)


def snr(sched: Schedule) -> Tensor:
    """The signal-to-noise ratio of q(x_t | x_0), SNR(t) = alpha_bar_t / (1 - alpha_bar_t), shape (T+1,) float64
    (SNR[0] = inf: t = 0 is the data)."""
    return sched.alpha_bar / (1 - sched.alpha_bar)


def min_snr_weight(sched: Schedule, t: Tensor, gamma: float = 5.0) -> Tensor:
    """Min-SNR-gamma loss weight for eps-prediction (Hang et al., "Efficient Diffusion Training via Min-SNR
    Weighting Strategy", ICCV 2023, eq. 8 with the eps-loss conversion of sec. 3.4), per example (B,) float64:

        w_t = min(SNR(t), gamma) / SNR(t)

    so that w_t * ||eps - eps_theta||^2 = min(SNR(t), gamma) * ||x_0 - x0_pred||^2: the low-noise steps (SNR > gamma),
    whose x_0-errors dominate L_simple's gradients otherwise, are weighted down; steps with SNR(t) <= gamma keep 1.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"the min-SNR gamma must be a finite number > 0 (5 in the paper), got {gamma}")
    s = snr(sched)[t.to(torch.long).cpu()]  # (B,)
    return s.clamp(max=gamma) / s
