# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Homework 4: EDICT exact inversion
#
# Write the functions in `hw4.py`, then run this notebook: it inverts points of two 2-D Gaussians (whose optimal
# $\varepsilon$ is known in closed form, `minidiff.oracles`) with your EDICT and with DDIM inversion, and samples
# them back; the last cell runs the public tests.
#
# DDIM inversion approximates $\varepsilon(x_t, t)$ by $\varepsilon(x_{t-1}, t)$, so its round trip is not exact
# for a model that depends on $x$. EDICT's coupled updates (**Q3**) evaluate $\varepsilon$ at the *other*
# sequence, so each line can be undone exactly (**Q4**), whatever the network; the mixing layers (**Q2**) keep the
# two sequences close and are themselves invertible.

# %%
import importlib

import hw4
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff import oracles
from minidiff.homework.notebook import attempt
from minidiff.inversion import ddim_invert
from minidiff.samplers import ddim_sample
from minidiff.schedule import Schedule, timesteps

hw4 = importlib.reload(hw4)  # after editing hw4.py, rerun from here
sched = Schedule.cosine(200)
model = oracles.two_gaussians_eps(sched, torch.tensor([2.0, 1.0], dtype=torch.float64), 0.4)
x0 = torch.tensor([2.0, 1.0], dtype=torch.float64) + 0.4 * torch.randn(200, 2, generator=torch.Generator()
                                                                           .manual_seed(0), dtype=torch.float64)


def edict_round_trip(steps, p=0.93):
    """Your EDICT: invert x0 = y0 up the grid, then sample back down; the error of x and of y."""
    grid = timesteps(sched.T, steps).tolist()
    x, y = x0.clone(), x0.clone()
    for t, t_prev in reversed(list(zip(grid[:-1], grid[1:], strict=True))):
        x, y = hw4.edict_step_inverse(model, sched, x, y, t, t_prev, p)
    for t, t_prev in zip(grid[:-1], grid[1:], strict=True):
        x, y = hw4.edict_step(model, sched, x, y, t, t_prev, p)
    return (x - x0).norm(dim=1).max().item(), (y - x0).norm(dim=1).max().item()


# %% [markdown]
# ## Round trips: EDICT against DDIM inversion

# %%
rows = []
for steps in (5, 10, 20, 50):
    ddim = (ddim_sample(model, sched, ddim_invert(model, sched, x0, steps), steps) - x0).norm(dim=1).max().item()
    ed = attempt(edict_round_trip, steps)
    if ed is None:
        break
    rows.append((steps, ddim, ed[0]))
    print(f"{steps:>3} steps: DDIM inversion round trip {ddim:.1e}, your EDICT {ed[0]:.1e} (x), {ed[1]:.1e} (y)")
if rows:
    s, d, e = zip(*rows, strict=True)
    plt.semilogy(s, d, "o-", label="DDIM inversion")
    plt.semilogy(s, [max(v, 1e-17) for v in e], "o-", label="your EDICT")
    plt.xlabel("steps")
    plt.ylabel("max round-trip error")
    plt.legend()
    plt.show()

# %% [markdown]
# ## Check your work
#
# The public tests (`test_public.py`): small cases worked out by hand.

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
