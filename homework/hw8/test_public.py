"""Public tests of homework 8: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw8
import pytest
import torch

from minidiff.schedule import Schedule

# A three-step schedule: beta_1..3 = 0.1, 0.2, 0.3, so alpha_bar_1..3 = 0.9, 0.72, 0.504.
SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))


def scalar(v):
    return torch.tensor([[v]], dtype=torch.float64)


@pytest.mark.question("q1", points=1)
def test_q1_on_a_hand_computed_case():
    assert torch.allclose(hw8.P_t(SCHED, scalar(1.0), scalar(0.5), 2), scalar((1 - math.sqrt(0.28) * 0.5)
                                                                                  / math.sqrt(0.72)))


@pytest.mark.question("q2", points=1)
def test_q2_shifts_only_the_predicted_x0_term():
    x, eps = scalar(1.0), scalar(0.5)
    same = hw8.asyrp_step(SCHED, x, eps, eps, 3, 1)
    x0 = (1 - math.sqrt(0.496) * 0.5) / math.sqrt(0.504)
    assert torch.allclose(same, scalar(math.sqrt(0.9) * x0 + math.sqrt(0.1) * 0.5))
    # eps_edit = eps + 1 moves x_1 by -sqrt(0.9) sqrt(0.496) / sqrt(0.504) and nothing else
    moved = hw8.asyrp_step(SCHED, x, eps, eps + 1, 3, 1) - same
    assert torch.allclose(moved, scalar(-math.sqrt(0.9) * math.sqrt(0.496) / math.sqrt(0.504)))


@pytest.mark.question("q3", points=1)
def test_q3_aligned_opposite_and_orthogonal_edits():
    src = torch.zeros(3, 2, dtype=torch.float64)
    edit = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    loss = hw8.direction_loss(edit, src, torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(loss, torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64))


@pytest.mark.question("q4", points=1)
def test_q4_a_diagonal_linear_map():
    # f(x) = diag(3, 1, 0.5) x: sigma_1 = 3, v = +-e_1
    d = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    v, s = hw8.top_singular_vector(lambda x: d * x, torch.ones(3, dtype=torch.float64))
    assert math.isclose(s, 3.0, rel_tol=1e-8) and torch.allclose(v.abs(), torch.tensor([1.0, 0, 0],
                                                                                        dtype=torch.float64), atol=1e-6)
