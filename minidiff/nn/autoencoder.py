"""Compact KL-regularised autoencoder (latent diffusion's "KL-f4", Rombach et al. 2022).

    x (B, 3, H, W) --encode--> q(z|x) = N(mean, diag(exp(logvar)))   mean: (B, 4, H/4, W/4)
    z              --decode--> x_hat (B, 3, H, W)

The diffusion model works on scaled latents `to_latent(x) = scale_factor * mean`
and images are recovered with `from_latent(z) = decode(z / scale_factor)`.
Training loss: reconstruction + kl_weight * KL (see `ae_loss`). No attention
layers (as LDM's f4 model), no GAN or LPIPS terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_images
from .layers import Downsample, ResBlock, Upsample, group_norm


@dataclass
class AutoencoderConfig:
    """Downsampling factor is 2^(len(channel_mults) - 1): (1, 2, 4) gives 4 (32x32 -> 8x8).

    kl_weight multiplies the per-pixel KL in `ae_loss`; 1e-6 as LDM's KL-f4, so
    the KL only keeps the latent scale from drifting (scale_factor fixes the rest).
    """

    in_channels: int = 3
    latent_channels: int = 4
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    norm_groups: int = 8
    kl_weight: float = 1e-6

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


class DiagonalGaussian:
    """q(z|x) = N(mean, diag(exp(logvar))), tensors of shape (B, C, h, w)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)  # as LDM: keeps exp(logvar) finite
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * e, e ~ N(0, I) (reparameterisation trick)."""
        e = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                        dtype=self.mean.dtype)
        return self.mean + self.std * e

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, 1)) summed over latent dims, per example (B,):

            KL = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2)    (Kingma & Welling 2014, app. B)
        """
        kl = 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar)  # (B, C, h, w)
        return kl.flatten(1).sum(dim=1)


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch, g = cfg.base_channels, cfg.norm_groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, ch, 3, padding=1)]
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(ch, cfg.base_channels * mult, groups=g))
                ch = cfg.base_channels * mult
            if level < len(cfg.channel_mults) - 1:
                layers.append(Downsample(ch))
        layers += [ResBlock(ch, ch, groups=g), group_norm(ch, g), nn.SiLU(),
                   nn.Conv2d(ch, 2 * cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 2 * latent_channels, H/f, W/f): mean and logvar stacked."""
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch, g = cfg.base_channels * cfg.channel_mults[-1], cfg.norm_groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch, 3, padding=1),
                                   ResBlock(ch, ch, groups=g)]
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResBlock(ch, cfg.base_channels * mult, groups=g))
                ch = cfg.base_channels * mult
            if level > 0:
                layers.append(Upsample(ch))
        layers += [group_norm(ch, g), nn.SiLU(), nn.Conv2d(ch, cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_channels, h, w) -> (B, C, h*f, w*f)."""
        return self.net(z)


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, x: torch.Tensor, channels: int, what: str) -> None:
        f = self.cfg.factor if what == "x" else 1
        if x.ndim != 4 or x.shape[1] != channels or x.shape[2] % f or x.shape[3] % f:
            rule = f" with H, W divisible by {f}" if f > 1 else ""
            raise ValueError(
                f"{what} must have shape (B, {channels}, H, W){rule}, got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, C, H, W) in [-1, 1] -> q(z|x), mean/logvar (B, latent_channels, H/f, W/f)."""
        self._check(x, self.cfg.in_channels, "x")
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # (B, latent, h, w) each
        return DiagonalGaussian(mean, logvar)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic encoding: the posterior mean (used for inversion)."""
        return self.encode(x).mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_channels, h, w) -> x_hat (B, C, h*f, w*f)."""
        self._check(z, self.cfg.latent_channels, "z")
        return self.decoder(z)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion-space latent: scale_factor * mean, of images x in [-1, 1] (checked)."""
        check_images(x, "x")
        return self.scale_factor * self.encode_mean(x)

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_latent` up to reconstruction error: decode(z / scale_factor)."""
        return self.decode(z / self.scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean, of images x in [-1, 1] (checked)."""
        check_images(x, "x")
        return self.decode(self.encode_mean(x))


@torch.no_grad()
def estimate_scale_factor(ae: Autoencoder, images: torch.Tensor) -> float:
    """1 / std of the latent means over `images`, so scaled latents have unit variance.

    The diffusion forward process q(x_t|x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    assumes data of roughly unit scale: the schedule's signal-to-noise ratio
    alpha_bar_t / (1 - alpha_bar_t) is only meaningful then, and x_T is only close
    to N(0, I) if x_0 is not much larger. A KL autoencoder with a tiny kl_weight
    produces latents of arbitrary scale, so LDM rescales them by a constant
    (0.18215 for Stable Diffusion, 1 / std of a batch of latents). Set it with
    `ae.scale_factor.fill_(estimate_scale_factor(ae, images))`.
    """
    z = ae.encode_mean(images)  # (N, latent, h, w)
    return 1.0 / z.double().std().item()


def ae_loss(ae: Autoencoder, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """loss = mean |x - decode(z)| + kl_weight * KL(q(z|x) || N(0, I)) / (C H W),  z ~ q(z|x).

    Both terms are per-pixel means: L1 reconstruction averaged over all pixels
    (L1 as LDM, it blurs less than MSE) and the per-example KL divided by the
    number of image values. LDM adds a patch-GAN and LPIPS perceptual loss; both
    need pretrained networks or long adversarial training, so they are left out.
    """
    posterior = ae.encode(x)
    x_hat = ae.decode(posterior.sample())  # (B, C, H, W)
    rec = (x - x_hat).abs().mean()
    kl = posterior.kl().mean() / x[0].numel()
    loss = rec + ae.cfg.kl_weight * kl
    return loss, {"loss": loss.item(), "rec": rec.item(), "kl": kl.item()}
