"""Homework 6: the latent autoencoder of latent diffusion (lecture 6; Rombach et al., "High-Resolution Image
Synthesis with Latent Diffusion Models", CVPR 2022, sec. 3.1 and appendix G; Kingma & Welling, "Auto-Encoding
Variational Bayes", ICLR 2014, appendix B).

Write the body of each function where it says `raise NotImplementedError`. The encoder outputs a diagonal Gaussian
q(z | x) = N(mean, exp(logvar)) per latent entry; the diffusion model then works on scale_factor * z.

Rules: keep the dtype of the tensor inputs; import only `torch` and `math`. Check your work with
`python -m pytest -q test_public.py` (or the last cell of hw6_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
from torch import Tensor


def reparameterize(mean: Tensor, logvar: Tensor, noise: Tensor) -> Tensor:
    """Q1 (2 points). A draw z ~ q(z | x) = N(mean, exp(logvar)) written with noise ~ N(0, I) (the
    reparameterisation trick, differentiable in mean and logvar): z = mean + exp(logvar / 2) noise.
    All (B, C, h, w). Returns z."""
    # BEGIN SOLUTION
    return mean + torch.exp(0.5 * logvar) * noise
    # END SOLUTION


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """Q2 (3 points). KL(q(z | x) || N(0, I)) per example, summed over the latent entries (VAE appendix B):

        KL = 1/2 sum (mean^2 + exp(logvar) - 1 - logvar)

    mean, logvar: (B, C, h, w). Returns (B,)."""
    # BEGIN SOLUTION
    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    # END SOLUTION


def autoencoder_loss(x: Tensor, x_hat: Tensor, mean: Tensor, logvar: Tensor, kl_weight: float) -> Tensor:
    """Q3 (3 points). The training loss of the KL autoencoder (LDM without its GAN and perceptual terms), both
    terms per-pixel means:

        loss = mean |x - x_hat| + kl_weight * mean_over_batch(KL) / (C H W)

    with KL of Q2 and C H W the number of values of one image x[0]. x, x_hat: (B, C, H, W). Returns a scalar."""
    # BEGIN SOLUTION
    return (x - x_hat).abs().mean() + kl_weight * kl_to_standard_normal(mean, logvar).mean() / x[0].numel()
    # END SOLUTION


def scale_factor(latents: Tensor) -> float:
    """Q4 (2 points). LDM's latent scale: with a tiny kl_weight the latent means have an arbitrary scale, and the
    diffusion schedule assumes data of unit variance, so latents are multiplied by 1 / std of the latent means over
    a batch (all entries together; 0.18215 for Stable Diffusion). latents: (N, C, h, w) means. Returns the factor
    as a Python float (computed in float64)."""
    # BEGIN SOLUTION
    return 1.0 / latents.double().std().item()
    # END SOLUTION
