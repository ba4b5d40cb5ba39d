"""Public tests of homework 3: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw3
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule: beta_1..3 = 0.1, 0.2, 0.3, so alpha_bar_1..3 = 0.9, 0.72, 0.504.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)


@pytest.mark.question("q1", points=1)
def test_q1_the_upward_step_undoes_the_provided_ddim_step():
    x = hw3.ddim_invert_step(SCHED, scalar(0.3), scalar(-0.5), 1, 3)
    x0_pred = (0.3 + math.sqrt(0.1) * 0.5) / math.sqrt(0.9)
    assert torch.allclose(x, scalar(math.sqrt(0.504) * x0_pred - math.sqrt(0.496) * 0.5))
    assert torch.allclose(hw3.ddim_step(SCHED, x, scalar(-0.5), 3, 1), scalar(0.3))


@pytest.mark.question("q2", points=1)
def test_q2_round_trip_is_exact_for_a_model_that_ignores_x():
    model = lambda x, t: torch.full_like(x, 0.25) * t.view(-1, 1)  # eps depends on t only  # noqa: E731
    x0 = torch.tensor([[0.5], [-1.0]], dtype=torch.float64)
    x = hw3.ddim_invert(model, SCHED, x0, 3)
    for t, t_prev in [(3, 2), (2, 1), (1, 0)]:
        x = hw3.ddim_step(SCHED, x, model(x, torch.full((2,), t)), t, t_prev)
    assert torch.allclose(x, x0)


@pytest.mark.question("q3", points=1)
def test_q3_with_a_zero_model_sdedit_only_rescales():
    # eps_model = 0: every step multiplies by sqrt(ab_prev / ab_t), so x_0' = x_{t0} / sqrt(ab_{t0})
    x = hw3.sdedit(lambda x, t: torch.zeros_like(x), SCHED, scalar(1.0), 2, 3, scalar(0.5))
    assert torch.allclose(x, scalar(1.0 + math.sqrt(0.28 / 0.72) * 0.5))


@pytest.mark.question("q4", points=1)
def test_q4_w_0_1_and_3():
    u, c = scalar(1.0), scalar(3.0)
    assert [hw3.cfg_eps(u, c, w).item() for w in (0.0, 1.0, 3.0)] == [1.0, 3.0, 7.0]


@pytest.mark.question("q5", points=1)
def test_q5_a_linear_classifier_at_x_0():
    # logits = x W: at x = 0 both classes have p = 1/2, so grad log p(y | x) = W[:, y] - (W[:, 0] + W[:, 1]) / 2
    W = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64)
    x = torch.zeros(1, 2, dtype=torch.float64)
    t, y = torch.tensor([2]), torch.tensor([1])
    got = hw3.classifier_guided_eps(lambda x, t: torch.zeros_like(x), lambda x, t: x @ W, SCHED, x, t, y, 2.0)
    assert torch.allclose(got, -2.0 * math.sqrt(0.28) * torch.tensor([[-1.0, 0.75]], dtype=torch.float64))
