"""Public tests of homework 5: small cases worked out by hand (run: pytest -q test_public.py)."""

import math

import hw5
import pytest
import torch

from minidiff.schedule import Schedule

SCHED = Schedule(torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64))


def maps(rows):
    return torch.tensor(rows, dtype=torch.float64).view(1, 1, len(rows), len(rows[0]))


@pytest.mark.question("q1", points=1)
def test_q1_open_window_takes_the_source():
    M, Mt = maps([[0.7, 0.2, 0.1]]), maps([[0.1, 0.1, 0.8]])
    out = hw5.word_swap(M, Mt, torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(out, maps([[0.7, 0.1, 0.1]]))


@pytest.mark.question("q2", points=1)
def test_q2_aligned_tokens_move_added_ones_stay():
    # source "a cat", target "a big cat": target token 2 ("cat") takes source token 1; "big" (1) is new
    M, Mt = maps([[0.6, 0.4, 0.0]]), maps([[0.2, 0.5, 0.3]])
    out = hw5.refine(M, Mt, torch.tensor([[0, 0, 1]]), torch.tensor([[1, 0, 1]]))
    assert torch.allclose(out, maps([[0.6, 0.5, 0.4]]))


@pytest.mark.question("q3", points=1)
def test_q3_scales_one_column():
    out = hw5.reweight(maps([[0.5, 0.5]]), torch.tensor([[1.0, 3.0]], dtype=torch.float64))
    assert torch.allclose(out, maps([[0.5, 1.5]]))


@pytest.mark.question("q4", points=1)
def test_q4_a_single_hot_pixel_grows_to_its_3x3_neighbourhood():
    m = torch.zeros(1, 5, 5, 2, dtype=torch.float64)
    m[0, 2, 2, 1] = 1.0  # token 1 attends to the centre pixel only
    mask = hw5.local_blend_mask(m, torch.tensor([[0.0, 1.0]], dtype=torch.float64), (5, 5), 0.5)
    expected = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    expected[0, 0, 1:4, 1:4] = 1.0
    assert torch.equal(mask, expected)


@pytest.mark.question("q5", points=1)
def test_q5_zero_when_the_guided_step_hits_the_target():
    # eps ignores everything: eps_u = 0, eps_c = 0 -> the step only rescales x_t by sqrt(0.72 / 0.504)
    x = torch.ones(1, 2, dtype=torch.float64)
    null = torch.zeros(1, 1, 1, dtype=torch.float64, requires_grad=True)
    model = lambda x, t, c: torch.zeros_like(x) + 0 * c.sum()  # noqa: E731
    loss = hw5.null_text_loss(model, SCHED, x, 3, 2, null, torch.zeros_like(x), x * math.sqrt(0.72 / 0.504), 7.5)
    assert loss.shape == (1,) and loss.item() < 1e-24
    off = hw5.null_text_loss(model, SCHED, x, 3, 2, null, torch.zeros_like(x), torch.zeros_like(x), 7.5)
    assert math.isclose(off.item(), 0.72 / 0.504)
