"""Public tests of homework 2: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw2
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule: beta_1..3 = 0.1, 0.2, 0.3, so alpha_bar_1..3 = 0.9, 0.72, 0.504.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)


@pytest.mark.question("q1", points=1)
def test_q1_sigma_on_a_hand_computed_case():
    s = hw2.ddim_sigma(SCHED, torch.tensor([2, 3]), torch.tensor([1, 1]), 1.0)
    expected = [math.sqrt(0.1 / 0.28) * math.sqrt(1 - 0.72 / 0.9), math.sqrt(0.1 / 0.496) * math.sqrt(1 - 0.504 / 0.9)]
    assert torch.allclose(s, torch.tensor(expected, dtype=torch.float64))
    assert torch.equal(hw2.ddim_sigma(SCHED, torch.tensor([2]), torch.tensor([1]), 0.0), torch.zeros(1,
                                                                                                      dtype=torch.float64))


@pytest.mark.question("q2", points=1)
def test_q2_deterministic_step_on_a_hand_computed_case():
    # t = 3 -> 1, eta = 0: x0_pred = (1 - sqrt(0.496) 0.5) / sqrt(0.504); x_1 = sqrt(0.9) x0_pred + sqrt(0.1) 0.5
    x = hw2.ddim_step(SCHED, scalar(1.0), scalar(0.5), 3, 1)
    x0_pred = (1 - math.sqrt(0.496) * 0.5) / math.sqrt(0.504)
    assert torch.allclose(x, scalar(math.sqrt(0.9) * x0_pred + math.sqrt(0.1) * 0.5))


@pytest.mark.question("q3", points=1)
def test_q3_the_grid_of_the_docstring_and_of_ddim():
    assert hw2.leading_grid(10, 3).tolist() == [7, 4, 1, 0]
    g = hw2.leading_grid(1000, 50)
    assert g[0] == 981 and g[-2] == 1 and g[-1] == 0 and len(g) == 51


@pytest.mark.question("q4", points=1)
def test_q4_a_zero_eps_model_only_rescales():
    # eps = 0: each step maps x to sqrt(ab_prev / ab_t) x, so x_0 = x_T / sqrt(ab_{grid[0]})
    x = hw2.ddim_sample(lambda x, t: torch.zeros_like(x), SCHED, scalar(2.0), steps=3)
    assert torch.allclose(x, scalar(2.0 / math.sqrt(0.504)))
