"""Public tests of homework 4: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw4
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule: beta_1..3 = 0.1, 0.2, 0.3, so alpha_bar_1..3 = 0.9, 0.72, 0.504.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)


@pytest.mark.question("q1", points=1)
def test_q1_coefficients_on_a_hand_computed_case():
    a, b = hw4.edict_coefficients(SCHED, 3, 1)
    assert math.isclose(a, math.sqrt(0.9 / 0.504)) and math.isclose(b, math.sqrt(0.1) - math.sqrt(0.9 * 0.496 / 0.504))


@pytest.mark.question("q2", points=1)
def test_q2_mixing_on_a_hand_computed_case():
    x, y = hw4.mix(scalar(1.0), scalar(0.0), 0.9)
    assert torch.allclose(x, scalar(0.9)) and torch.allclose(y, scalar(0.1 * 0.9))


@pytest.mark.question("q2", points=1)
def test_q2_unmix_undoes_mix():
    x, y = hw4.unmix(*hw4.mix(scalar(1.0), scalar(-2.0), 0.93), 0.93)
    assert torch.allclose(x, scalar(1.0)) and torch.allclose(y, scalar(-2.0))


@pytest.mark.question("q3", points=1)
def test_q3_with_a_zero_model_both_sequences_only_rescale_and_mix():
    a = math.sqrt(0.72 / 0.504)  # t = 3 -> 2
    x, y = hw4.edict_step(lambda x, t: torch.zeros_like(x), SCHED, scalar(1.0), scalar(3.0), 3, 2, 0.5)
    x_exp = 0.5 * a + 0.5 * 3 * a
    assert torch.allclose(x, scalar(x_exp)) and torch.allclose(y, scalar(0.5 * 3 * a + 0.5 * x_exp))


@pytest.mark.question("q4", points=2)
def test_q4_undoes_a_step_for_a_model_that_depends_on_x():
    """The forward step written out here (x first, then the two mixing lines), undone by your inverse."""
    model = lambda x, t: torch.sin(3 * x) + t.view(-1, 1) / 10  # noqa: E731
    a, b, p, tb = math.sqrt(0.9 / 0.504), math.sqrt(0.1) - math.sqrt(0.9 * 0.496 / 0.504), 0.93, torch.tensor([3])
    x, y = scalar(0.4), scalar(-0.3)
    xi = a * x + b * model(y, tb)
    yi = a * y + b * model(xi, tb)
    x1 = p * xi + (1 - p) * yi
    y1 = p * yi + (1 - p) * x1
    xb, yb = hw4.edict_step_inverse(model, SCHED, x1, y1, 3, 1, p)
    assert torch.allclose(xb, x, atol=1e-12) and torch.allclose(yb, y, atol=1e-12)
