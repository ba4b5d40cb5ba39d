"""Hidden tests of homework 6: the library's autoencoder pieces on random inputs and dtypes."""

import hw6
import pytest
import torch

from minidiff.nn.autoencoder import Autoencoder, AutoencoderConfig, DiagonalGaussian, ae_loss, estimate_scale_factor


def latents(seed, dtype=torch.float64, shape=(3, 4, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))


@pytest.mark.question("q1", points=1)
def test_q1_has_the_right_mean_and_std_and_dtype():
    mean, logvar, noise = latents(0, torch.float32)
    z = hw6.reparameterize(mean, logvar, noise)
    assert z.dtype == torch.float32 and torch.allclose((z - mean) / noise, (0.5 * logvar).exp(), rtol=1e-4)


@pytest.mark.question("q2", points=2)
def test_q2_matches_the_library_posterior():
    for seed in (1, 2):
        mean, logvar, _ = latents(seed)
        ref = DiagonalGaussian(mean, logvar).kl()
        assert torch.allclose(hw6.kl_to_standard_normal(mean, logvar), ref.reshape(-1), atol=1e-10)


@pytest.mark.question("q3", points=1)
@pytest.mark.parametrize("kl_weight", [1e-6, 0.5])
def test_q3_matches_the_library_loss_with_the_same_draw(kl_weight):
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(base_channels=8, channel_mults=(1, 2), norm_groups=4,
                                       kl_weight=kl_weight)).double()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    torch.manual_seed(1)
    ref, _ = ae_loss(ae, x)
    torch.manual_seed(1)
    post = ae.encode(x)
    x_hat = ae.decode(post.sample())
    assert torch.allclose(hw6.autoencoder_loss(x, x_hat, post.mean, post.logvar, kl_weight), ref, atol=1e-10)


@pytest.mark.question("q4", points=1)
def test_q4_matches_the_library_estimate():
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(base_channels=8, channel_mults=(1, 2), norm_groups=4)).double()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        assert abs(hw6.scale_factor(ae.encode_mean(x)) - estimate_scale_factor(ae, x)) < 1e-12
    m = 5 * latents(3, torch.float32)[0]
    assert abs(hw6.scale_factor(m) - 1 / m.double().std().item()) < 1e-12
