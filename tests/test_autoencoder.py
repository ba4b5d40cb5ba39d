"""Compact KL autoencoder: shapes, the KL formula, the latent scale factor, and that it trains."""

import math

import torch

from minidiff.nn.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    DiagonalGaussian,
    ae_loss,
    estimate_scale_factor,
)


def tiny_ae(seed: int = 0, **kw) -> Autoencoder:
    torch.manual_seed(seed)
    cfg = dict(base_channels=8, channel_mults=(1, 2, 4), num_res_blocks=1, norm_groups=4)
    return Autoencoder(AutoencoderConfig(**{**cfg, **kw}))


def test_shapes_pixels_to_latents_and_back():
    ae = tiny_ae()
    for size, latent in [(32, 8), (64, 16)]:
        x = torch.rand(2, 3, size, size) * 2 - 1
        posterior = ae.encode(x)
        assert posterior.mean.shape == posterior.logvar.shape == (2, 4, latent, latent)
        assert ae.decode(posterior.sample()).shape == x.shape
        assert ae.from_latent(ae.to_latent(x)).shape == x.shape


def _numerical_kl(mu: float, logvar: float) -> float:
    """KL(N(mu, s^2) || N(0, 1)) = int q log(q/p) dz by the trapezoid rule on a fine grid."""
    s = math.exp(0.5 * logvar)
    z = torch.linspace(mu - 12 * s, mu + 12 * s, 200001, dtype=torch.float64)
    log_q = -0.5 * ((z - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    return torch.trapezoid(log_q.exp() * (log_q - log_p), z).item()


def test_kl_matches_numerical_integration():
    mu = torch.tensor([0.0, 1.5, -0.7, 0.3], dtype=torch.float64)
    logvar = torch.tensor([0.0, -1.0, 0.8, -3.0], dtype=torch.float64)
    kl = DiagonalGaussian(mu.view(1, 4, 1, 1), logvar.view(1, 4, 1, 1)).kl()
    pairs = zip(mu.tolist(), logvar.tolist(), strict=True)
    reference = sum(_numerical_kl(m, lv) for m, lv in pairs)
    assert kl.shape == (1,)
    assert abs(kl.item() - reference) < 1e-8
    assert DiagonalGaussian(torch.zeros(3, 4, 2, 2), torch.zeros(3, 4, 2, 2)).kl().abs().max() == 0


def test_sample_uses_generator_and_has_posterior_moments():
    shape = (1, 4, 64, 64)
    q = DiagonalGaussian(torch.full(shape, 2.0), torch.full(shape, math.log(0.25)))
    a = q.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, q.sample(torch.Generator().manual_seed(3)))
    assert abs(a.mean().item() - 2.0) < 0.02 and abs(a.std().item() - 0.5) < 0.02
    assert torch.equal(q.mode(), q.mean)


def test_encode_mean_is_deterministic():
    ae = tiny_ae()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(ae.encode_mean(x), ae.encode_mean(x))


def test_scale_factor_gives_unit_std_latents():
    ae = tiny_ae()
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    s = estimate_scale_factor(ae, x)
    ae.scale_factor.fill_(s)
    with torch.no_grad():
        z = ae.to_latent(x)
        assert abs(z.std().item() - 1.0) < 1e-6
        assert torch.allclose(ae.from_latent(z), ae.decode(ae.encode_mean(x)), atol=1e-5)
    assert "scale_factor" in ae.state_dict()


def test_training_reduces_reconstruction_loss():
    torch.manual_seed(0)
    ae = tiny_ae(base_channels=16, kl_weight=1e-6)
    # smooth images: random 4x4 colour grids upsampled, a learnable target for 300 steps
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4) * 2 - 1, size=16, mode="bilinear")
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    first = ae_loss(ae, x)[1]["rec"]
    for _ in range(300):
        loss, stats = ae_loss(ae, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stats["kl"] > 0 and abs(stats["loss"] - stats["rec"] - 1e-6 * stats["kl"]) < 1e-6
    assert first / stats["rec"] > 10  # measured: about 20x
