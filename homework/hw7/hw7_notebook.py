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
# # Homework 7: the DDPM noise space
#
# Write the functions in `hw7.py`, then run this notebook: it encodes points of one 2-D Gaussian class with your
# DPM-Encoder under that class's model and decodes the same noise under the other class's model (CycleDiffusion's
# zero-shot translation), with the exact class-conditional $\varepsilon$ of two Gaussians (`minidiff.oracles`);
# the last cell runs the public tests.
#
# The encoder draws a trajectory from the *forward* posteriors $q_\sigma(x_{t-1} \mid x_t, x_0)$ (**Q1**) and
# records the noise $z_t$ that makes the model's reverse step land on it (**Q2**); decoding that noise (**Q3**)
# retraces the trajectory, and decoding it with another model maps the image across, keeping what the noise
# encodes.

# %%
import importlib

import hw7
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff import oracles
from minidiff.homework.notebook import attempt
from minidiff.schedule import Schedule, timesteps

hw7 = importlib.reload(hw7)  # after editing hw7.py, rerun from here
sched = Schedule.cosine(200)
mu = torch.tensor([2.0, 1.0], dtype=torch.float64)
source, target = (oracles.two_gaussians_eps(sched, mu, 0.4, y) for y in (0, 1))
g = torch.Generator().manual_seed(0)
x0 = mu + 0.4 * torch.randn(300, 2, generator=g, dtype=torch.float64)
grid = timesteps(sched.T, 25).tolist()
draws = torch.randn(len(grid), 300, 2, generator=g, dtype=torch.float64)


# %%
enc = attempt(hw7.dpm_encode, source, sched, x0, grid, 1.0, draws)
if enc is not None:
    x_T, z = enc
    back = attempt(hw7.decode, source, sched, x_T, z, grid, 1.0)
    moved = attempt(hw7.decode, target, sched, x_T, z, grid, 1.0)
    if back is not None and moved is not None:
        print(f"reconstruction: mean distance to x_0 {(back - x0).norm(dim=1).mean():.2e} (the last, noiseless step "
              "leaves x_0 - x0_pred)")
        plt.figure(figsize=(5, 4))
        plt.scatter(*x0.T, s=4, label="x_0 (class +mu)")
        plt.scatter(*moved.T, s=4, label="decoded under class -mu")
        for a, b in zip(x0[:15], moved[:15], strict=True):
            plt.plot([a[0], b[0]], [a[1], b[1]], "k-", lw=0.4)
        plt.legend()
        plt.title("zero-shot translation in the noise space")
        plt.show()

# %% [markdown]
# ## Check your work

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
