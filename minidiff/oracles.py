"""Closed-form oracles: Bayes-optimal eps-models and exact noisy classifiers for Gaussian data.

For data whose noisy marginals p_t are known in closed form, the best eps-model (the minimiser
of L_simple) is E[eps | x_t] = -sqrt(1 - ab_t) grad log p_t(x_t) (Tweedie), with ab = alpha_bar.
Samplers, inversions and guidance can then be checked against exact answers, with no training.
Every function returns a callable with the library's signatures: eps_model(x_t, t, context) and
classifier(x_t, t) -> logits. x_t is (B, D); computations follow x_t's dtype (use float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .protocols import EpsModel
from .schedule import Schedule


def gaussian_eps(sched: Schedule, mean: Tensor, cov: Tensor) -> EpsModel:
    """Optimal eps for x_0 ~ N(mean, cov): x_t ~ N(sqrt(ab) mean, ab cov + (1 - ab) I), so

        E[eps | x_t] = sqrt(1 - ab) (ab cov + (1 - ab) I)^{-1} (x_t - sqrt(ab) mean).

    mean: (D,); cov: (D, D) symmetric positive definite. Linear in x_t.
    """
    lam, U = torch.linalg.eigh(cov.to(torch.float64))  # cov = U diag(lam) U^T

    def eps_model(x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        ab = sched.at("alpha_bar", t, x_t)  # (B, 1)
        r = (x_t - ab.sqrt() * mean.to(x_t)) @ U.to(x_t)  # (B, D) in the eigenbasis
        return (1 - ab).sqrt() * (r / (ab * lam.to(x_t) + 1 - ab)) @ U.to(x_t).T
    return eps_model


def two_gaussians_eps(sched: Schedule, mu: Tensor, s: float = 1.0, label: int | None = None) -> EpsModel:
    """Optimal eps for x_0 ~ 1/2 N(+mu, s^2 I) + 1/2 N(-mu, s^2 I), or for one class y (label 0: +mu, 1: -mu).

    With v = ab s^2 + 1 - ab and r = sqrt(ab):
        class y:      E[eps | x_t, y] = sqrt(1 - ab) (x_t - y r mu) / v
        mixture:      E[eps | x_t]    = sqrt(1 - ab) (x_t - r mu tanh(r mu.x_t / v)) / v
    (the mixture's E[y | x_t] = tanh(r mu.x_t / v) weights the two class means). Nonlinear in x_t.
    """
    if label not in (None, 0, 1):
        raise ValueError(f"label must be None (the mixture), 0 (+mu) or 1 (-mu), got {label!r}")

    def eps_model(x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        ab = sched.at("alpha_bar", t, x_t)  # (B, 1)
        v, r, m = ab * s**2 + 1 - ab, ab.sqrt(), mu.to(x_t)
        y = torch.tanh(r * (x_t @ m)[:, None] / v) if label is None else 1.0 - 2.0 * label  # (B, 1) or +-1
        return (1 - ab).sqrt() * (x_t - y * r * m) / v
    return eps_model


def two_gaussians_logits(sched: Schedule, mu: Tensor, s: float = 1.0):
    """The exact noisy classifier log p(y | x_t) of `two_gaussians_eps` (equal priors), as logits (B, 2):

        logit_y = y r mu.x_t / v,   y = +1 (label 0), -1 (label 1)

    (the class-independent parts of log N(x_t; y r mu, v I) cancel in the softmax).
    """
    def classifier(x_t: Tensor, t: Tensor) -> Tensor:
        ab = sched.at("alpha_bar", t, x_t)  # (B, 1)
        a = ab.sqrt() * (x_t @ mu.to(x_t))[:, None] / (ab * s**2 + 1 - ab)  # (B, 1)
        return torch.cat([a, -a], dim=1)  # (B, 2)
    return classifier
