"""Strided timestep grids: every grid is strictly decreasing and ends at t = 0 (alpha_bar = 1)."""

import pytest
import torch

from minidiff.schedule import SPACINGS, Schedule, inversion_pairs, per_row, resolve_grid, step_pairs, t_batch, timesteps


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("T,steps", [(1000, 1), (1000, 10), (1000, 50), (1000, 999), (1000, 1000), (7, 3)])
def test_every_grid_is_strictly_decreasing_in_range_and_ends_at_zero(spacing, T, steps):
    g = timesteps(T, steps, spacing)
    assert len(g) == steps + 1 and g.dtype == torch.long
    assert g[-1] == 0 and bool((g[:-1] > g[1:]).all())
    assert 1 <= g[-2] and g[0] <= T
    assert Schedule.linear(T, 1e-3, 0.2).alpha_bar[g[-1]] == 1.0
    if steps == T:  # the full grid is every timestep
        assert torch.equal(g, torch.arange(T, -1, -1))


def test_spacings_follow_their_definitions():
    assert timesteps(1000, 10, "leading")[:-1].flip(0).tolist() == list(range(1, 1000, 100))
    assert timesteps(1000, 10, "trailing")[:-1].flip(0).tolist() == list(range(100, 1001, 100))
    lin = timesteps(1000, 10, "linspace")
    assert lin[0] == 1000 and lin[-2] == 1


@pytest.mark.parametrize("steps", [0, -3, 1001])
def test_impossible_step_counts_are_rejected_with_a_clear_error(steps):
    with pytest.raises(ValueError, match="steps"):
        timesteps(1000, steps)


def test_unknown_spacing_is_rejected():
    with pytest.raises(ValueError, match="leading"):
        timesteps(1000, 10, "uniform")


def test_step_pairs_walk_the_grid_down_and_inversion_pairs_walk_it_back_up():
    grid = torch.tensor([1000, 700, 300, 299, 1, 0])
    assert step_pairs(grid) == [(1000, 700), (700, 300), (300, 299), (299, 1), (1, 0)]
    assert inversion_pairs(grid) == [(0, 1), (1, 299), (299, 300), (300, 700), (700, 1000)]
    assert inversion_pairs(grid) == [(t_prev, t) for t, t_prev in reversed(step_pairs(grid))]


def test_resolve_grid_is_timesteps_or_the_checked_custom_grid():
    assert torch.equal(resolve_grid(1000, 10, "trailing"), timesteps(1000, 10, "trailing"))
    custom = torch.tensor([900, 10, 0])
    assert torch.equal(resolve_grid(1000, 10, "trailing", custom), custom)  # steps and spacing ignored
    with pytest.raises(ValueError, match="strictly decreasing"):
        resolve_grid(1000, grid=torch.tensor([10, 900, 0]))
    with pytest.raises(ValueError, match="at most T = 500"):
        resolve_grid(500, grid=torch.tensor([900, 0]))


def test_t_batch_and_per_row_follow_the_tensor_they_are_for():
    x = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    t = t_batch(7, x)
    assert t.dtype == torch.long and t.tolist() == [7, 7, 7] and t.device == x.device
    c = per_row(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), x.float())
    assert c.shape == (3, 1, 1, 1) and c.dtype == torch.float32
    assert torch.equal((c * x.float())[:, 0, 0, 0], torch.zeros(3))
