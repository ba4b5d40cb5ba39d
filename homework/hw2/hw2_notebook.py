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
# # Homework 2: DDIM and the sigma (eta) family
#
# Write the four functions in `hw2.py`, then run this notebook: it samples with your DDIM next to the library's
# from the same noise, and checks your work with the public tests. The grader also runs hidden tests (other
# schedules, eta, grids and dtypes).
#
# DDIM (Song et al. 2021) keeps DDPM's marginals $q(x_t \mid x_0)$ but replaces the Markov forward process by a
# family indexed by $\sigma_t$; its reverse step (eq. 12) splits into the predicted $x_0$, the direction pointing
# to $x_t$ and fresh noise (**Q2**), with $\sigma_t(\eta)$ of eq. 16 (**Q1**): $\eta = 0$ is deterministic,
# $\eta = 1$ on consecutive steps is DDPM. Because only the marginals matter, the step may jump over timesteps: a
# strided grid $\tau$ (**Q3**) and the sampling loop over it (**Q4**).

# %%
import importlib

import hw2
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff import oracles, samplers
from minidiff.homework.notebook import attempt
from minidiff.schedule import Schedule

hw2 = importlib.reload(hw2)  # after editing hw2.py, rerun from here
sched = Schedule.linear(1000)


# %% [markdown]
# ## Your sampler next to the library's
#
# Data: two 2-D Gaussians at $\pm\mu$, whose optimal $\varepsilon$ is known in closed form
# (`minidiff.oracles.two_gaussians_eps`), so the samplers are compared without any training. Same $x_T$ and the
# same noise for both; 20 strided steps.

# %%
mu = torch.tensor([2.0, 1.0], dtype=torch.float64)
model = oracles.two_gaussians_eps(sched, mu, s=0.3)
g = torch.Generator().manual_seed(0)
x_T = torch.randn(1000, 2, generator=g, dtype=torch.float64)
noise = torch.randn(20, 1000, 2, generator=g, dtype=torch.float64)
fig, ax = plt.subplots(1, 2, figsize=(9, 4))
for a, eta in zip(ax, (0.0, 1.0), strict=True):
    ref = samplers.ddim_sample(model, sched, x_T, 20, eta, noise=noise if eta else None)
    a.scatter(*ref.T, s=4, alpha=0.5, label="library")
    yours = attempt(hw2.ddim_sample, lambda x, t: model(x, t), sched, x_T, 20, eta, noise if eta else None)
    if yours is not None:
        a.scatter(*yours.T, s=4, alpha=0.5, label=f"yours (max difference {(yours - ref).abs().max():.1e})")
    a.set_title(f"DDIM, 20 steps, eta = {eta:g}")
    a.legend(loc="upper left")
plt.show()

# %% [markdown]
# ## Check your work
#
# The public tests (`test_public.py`): small cases worked out by hand.

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
