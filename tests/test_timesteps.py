"""Strided timestep grids: every grid is strictly decreasing and ends at t = 0 (alpha_bar = 1)."""

import pytest
import torch

from minidiff.schedule import SPACINGS, Schedule, timesteps


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
