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
# # Homework 8: h-space and the asymmetric reverse process
#
# Write the functions in `hw8.py`, then run this notebook: it measures why Asyrp shifts only $P_t$ (the
# symmetric shift nearly cancels, their Theorem 1), and runs your power iteration against the SVD; the last cell
# runs the public tests.

# %%
import importlib

import hw8
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff.homework.notebook import attempt
from minidiff.schedule import Schedule, timesteps

hw8 = importlib.reload(hw8)  # after editing hw8.py, rerun from here
sched = Schedule.linear(1000)


# %% [markdown]
# ## Asymmetric against symmetric
#
# The same change of $\varepsilon$ (unit norm) put into $P_t$ only (your asymmetric step) and into both terms (the
# plain DDIM step with the shifted $\varepsilon$), along a 50-step grid: the symmetric shift of $x_{t'}$ is far
# smaller, the two terms cancelling.

# %%
x, eps = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 4, dtype=torch.float64)
d = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
grid = timesteps(sched.T, 50).tolist()
rows = []
for t, tp in zip(grid[:-1], grid[1:], strict=True):
    asym = attempt(hw8.asyrp_step, sched, x, eps, eps + d, t, tp)
    if asym is None:
        break
    sym = hw8.asyrp_step(sched, x, eps + d, eps + d, t, tp)
    rows.append((t, asym.norm().item(), sym.norm().item()))
if rows:
    t, a, s = zip(*rows, strict=True)
    plt.semilogy(t, a, label="shift in P_t only (asymmetric)")
    plt.semilogy(t, s, label="shift in both terms (symmetric)")
    plt.xlabel("t")
    plt.ylabel("|change of x_t'|")
    plt.legend()
    plt.show()

# %% [markdown]
# ## Power iteration
#
# The top singular value of a random 30 x 20 matrix, by your power iteration, against `torch.linalg.svd`.

# %%
A = torch.randn(30, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
out = attempt(hw8.top_singular_vector, lambda x: A @ x, torch.zeros(20, dtype=torch.float64), 100)
if out is not None:
    print(f"yours {out[1]:.6f}, SVD {torch.linalg.svdvals(A)[0]:.6f}")

# %% [markdown]
# ## Check your work

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
