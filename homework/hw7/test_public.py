"""Public tests of homework 7: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw7
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule: beta_1..3 = 0.1, 0.2, 0.3, so alpha_bar_1..3 = 0.9, 0.72, 0.504.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))
GRID = [3, 2, 1, 0]


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)


@pytest.mark.question("q1", points=1)
def test_q1_eta_0_on_a_hand_computed_case():
    # eta = 0: sqrt(0.72) x_0 + sqrt(0.28) (x_t - sqrt(0.504) x_0) / sqrt(0.496)
    m = hw7.q_sigma_mean(SCHED, scalar(1.0), scalar(0.5), 3, 2, 0.0)
    assert torch.allclose(m, scalar(math.sqrt(0.72) * 0.5 + math.sqrt(0.28) * (1 - math.sqrt(0.504) * 0.5)
                                    / math.sqrt(0.496)))


@pytest.mark.question("q2", points=2)
def test_q2_with_a_zero_model_worked_out_step_by_step():
    """x_T = sqrt(0.504) x_0 (draws[0] = 0); each later draw is 0.5. With eps = 0 the model's mean is
    sqrt(ab_prev / ab_t) x_t, so z_i = (q_sigma_mean + sigma_i 0.5 - mu) / sigma_i, worked out here step by step;
    the last step has sigma = 0 and z = 0."""
    x0, eta = scalar(1.0), 1.0
    draws = torch.tensor([0.0, 0.5, 0.5, 0.5], dtype=torch.float64).view(4, 1, 1)
    x_T, z = hw7.dpm_encode(lambda x, t: torch.zeros_like(x), SCHED, x0, GRID, eta, draws)
    assert torch.allclose(x_T, scalar(math.sqrt(0.504))) and z.shape == (3, 1, 1) and z[-1].item() == 0.0
    x, ab = math.sqrt(0.504), [1.0, 0.9, 0.72, 0.504]
    for i, (t, tp) in enumerate([(3, 2), (2, 1)]):
        s = math.sqrt((1 - ab[tp]) / (1 - ab[t]) * (1 - ab[t] / ab[tp]))
        eps_true = (x - math.sqrt(ab[t])) / math.sqrt(1 - ab[t])
        target = math.sqrt(ab[tp]) + math.sqrt(1 - ab[tp] - s * s) * eps_true + s * 0.5
        mu = math.sqrt(ab[tp] / ab[t]) * x
        assert math.isclose(z[i].item(), (target - mu) / s, rel_tol=1e-9, abs_tol=1e-12), i
        x = target


@pytest.mark.question("q3", points=1)
def test_q3_a_zero_model_and_zero_noise_only_rescale():
    x = hw7.decode(lambda x, t: torch.zeros_like(x), SCHED, scalar(2.0), torch.zeros(3, 1, 1, dtype=torch.float64),
                   GRID, 1.0)
    assert torch.allclose(x, scalar(2.0 / math.sqrt(0.504)))
