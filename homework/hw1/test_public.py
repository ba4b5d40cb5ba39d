"""Public tests of homework 1: small cases worked out by hand from first principles (run: pytest -q test_public.py)."""

import math

import hw1
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule, small enough to check by hand: beta_1..3 = 0.1, 0.2, 0.3.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))
ALPHA = [1.0, 0.9, 0.8, 0.7]
ALPHA_BAR = [1.0, 0.9, 0.72, 0.504]


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)  # one example, one pixel


@pytest.mark.question("q1", points=1)
def test_q1_forward_marginal_on_a_hand_computed_case():
    # t = 2: x_2 = sqrt(0.72) x_0 + sqrt(0.28) eps
    x = hw1.q_sample(SCHED, scalar(1.0), torch.tensor([2]), scalar(0.5))
    assert torch.allclose(x, scalar(math.sqrt(0.72) + math.sqrt(0.28) * 0.5))


@pytest.mark.question("q2", points=1)
def test_q2_posterior_on_a_hand_computed_case():
    # t = 2: coefficients sqrt(0.9) 0.2 / 0.28 on x_0, sqrt(0.8) 0.1 / 0.28 on x_t, variance 0.1 / 0.28 * 0.2
    mean, var = hw1.q_posterior(SCHED, scalar(1.0), scalar(2.0), torch.tensor([2]))
    assert torch.allclose(mean, scalar(math.sqrt(0.9) * 0.2 / 0.28 + math.sqrt(0.8) * 0.1 / 0.28 * 2.0))
    assert torch.allclose(var.reshape(()), torch.tensor(0.1 / 0.28 * 0.2, dtype=torch.float64))


@pytest.mark.question("q3", points=1)
def test_q3_eps_form_of_the_posterior_mean_on_a_hand_computed_case():
    # t = 3: (x_t - 0.3 / sqrt(0.496) eps) / sqrt(0.7)
    mu = hw1.posterior_mean_from_eps(SCHED, scalar(1.0), torch.tensor([3]), scalar(-1.0))
    assert torch.allclose(mu, scalar((1.0 + 0.3 / math.sqrt(1 - 0.504)) / math.sqrt(0.7)))


@pytest.mark.question("q4", points=1)
def test_q4_the_weight_with_sigma2_equal_to_beta():
    lam = hw1.lambda_t(SCHED, SCHED.beta.clone())
    # sigma_t^2 = beta_t: lambda_t = beta_t / (2 alpha_t (1 - alpha_bar_t)); t = 0 and 1 have no L_{t-1}
    expected = [0.0, 0.0, 0.2 / (2 * 0.8 * 0.28), 0.3 / (2 * 0.7 * 0.496)]
    assert torch.allclose(lam, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.question("q5", points=1)
def test_q5_prior_term_is_zero_mean_kl_for_x0_zero():
    # x_0 = 0: m = 0, v = 1 - 0.504 per pixel; two pixels
    kl = hw1.L_T(SCHED, torch.zeros(1, 2, dtype=torch.float64))
    v = 1 - 0.504
    assert torch.allclose(kl, torch.tensor([2 * 0.5 * (v - 1 - math.log(v))], dtype=torch.float64))
