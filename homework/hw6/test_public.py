"""Public tests of homework 6: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw6
import pytest
import torch


def t(*v):
    return torch.tensor(v, dtype=torch.float64).view(1, len(v), 1, 1)


@pytest.mark.question("q1", points=1)
def test_q1_on_a_hand_computed_case():
    z = hw6.reparameterize(t(1.0, -1.0), t(math.log(4.0), 0.0), t(0.5, 2.0))
    assert torch.allclose(z, t(1.0 + 2.0 * 0.5, -1.0 + 2.0))


@pytest.mark.question("q2", points=1)
def test_q2_zero_for_the_prior_and_a_hand_computed_case():
    assert torch.allclose(hw6.kl_to_standard_normal(t(0.0, 0.0), t(0.0, 0.0)), torch.zeros(1, dtype=torch.float64))
    kl = hw6.kl_to_standard_normal(t(1.0), t(math.log(2.0)))
    assert torch.allclose(kl, torch.tensor([0.5 * (1 + 2 - 1 - math.log(2.0))], dtype=torch.float64))


@pytest.mark.question("q3", points=1)
def test_q3_reconstruction_only_when_kl_weight_is_zero():
    x, x_hat = torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    loss = hw6.autoencoder_loss(x, x_hat, t(3.0), t(1.0), 0.0)
    assert torch.allclose(loss, torch.tensor(0.5, dtype=torch.float64))


@pytest.mark.question("q4", points=1)
def test_q4_unit_variance_after_scaling():
    z = torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64).view(1, 1, 2, 2)
    s = hw6.scale_factor(z)
    assert isinstance(s, float) and math.isclose(s, 1 / z.std().item())
