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
# # Homework 3: editing by inversion and guidance
#
# Write the five functions in `hw3.py`, then run this notebook: it runs your inversion, SDEdit and classifier
# guidance on two 2-D Gaussians at $\pm\mu$ whose optimal $\varepsilon$ and exact noisy classifier are known in
# closed form (`minidiff.oracles`), so nothing needs training; the last cell runs the public tests.
#
# DDIM's deterministic step can be run upwards (**Q1**); walking the grid from $x_0$ to $x_T$ (**Q2**) needs
# $\varepsilon(x_t, t)$ at the unknown $x_t$ and uses $\varepsilon(x_{t'}, t)$ instead, exact only when the model
# ignores $x$. SDEdit (**Q3**) instead noises the input part of the way, to $t_0$, and denoises under the new
# condition: small $t_0$ keeps the input, large $t_0$ forgets it. Guidance (**Q4**, **Q5**) sharpens the
# conditional: classifier-free by extrapolating from the unconditional $\varepsilon$, classifier guidance by the
# classifier's gradient, $\varepsilon - s\sqrt{1 - \bar\alpha_t}\nabla\log p(y \mid x_t)$.

# %%
import importlib

import hw3
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff import oracles
from minidiff.homework.notebook import attempt
from minidiff.schedule import Schedule, timesteps

hw3 = importlib.reload(hw3)  # after editing hw3.py, rerun from here
sched = Schedule.cosine(200)
mu = torch.tensor([2.0, 1.0], dtype=torch.float64)
mixture = oracles.two_gaussians_eps(sched, mu, 0.4)
to_class = {y: oracles.two_gaussians_eps(sched, mu, 0.4, y) for y in (0, 1)}
g = torch.Generator().manual_seed(0)


def sample(eps, x_T, steps=20):
    """Deterministic DDIM with the provided step."""
    grid, x = timesteps(sched.T, steps).tolist(), x_T
    for hi, lo in zip(grid[:-1], grid[1:], strict=True):
        x = hw3.ddim_step(sched, x, eps(x, torch.full((len(x),), hi)), hi, lo)
    return x


# %% [markdown]
# ## Inversion: the round trip
#
# Points of the $+\mu$ class inverted with your `ddim_invert` and sampled back; the error shrinks with the number
# of steps (the local-linearity approximation).

# %%
x0 = mu + 0.4 * torch.randn(500, 2, generator=g, dtype=torch.float64)
for steps in (5, 20, 100):
    x_T = attempt(hw3.ddim_invert, mixture, sched, x0, steps)
    if x_T is None:
        break
    print(f"{steps:>3} steps: round-trip error {(sample(mixture, x_T, steps) - x0).norm(dim=1).mean():.2e}")

# %% [markdown]
# ## SDEdit: from one class to the other
#
# The same points, edited towards the $-\mu$ class (its class-conditional $\varepsilon$) from several $t_0$.

# %%
eps_noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
fig, ax = plt.subplots(1, 4, figsize=(14, 3.4), sharex=True, sharey=True)
ax[0].scatter(*x0.T, s=3)
ax[0].set_title("input")
for a, t0 in zip(ax[1:], (20, 80, 160), strict=True):
    out = attempt(hw3.sdedit, to_class[1], sched, x0, t0, 20, eps_noise)
    if out is not None:
        a.scatter(*out.T, s=3, color="C1")
        a.set_title(f"SDEdit to -mu from t0 = {t0}")
plt.show()

# %% [markdown]
# ## Classifier guidance
#
# The mixture model guided towards class 0 ($+\mu$) by the exact noisy classifier at scales $s$: $s = 1$ is the
# class-conditional model (the other class disappears), $s > 1$ sharpens it further.

# %%
logits = oracles.two_gaussians_logits(sched, mu, 0.4)
x_T = torch.randn(500, 2, generator=g, dtype=torch.float64)
fig, ax = plt.subplots(1, 3, figsize=(11, 3.4), sharex=True, sharey=True)
for a, s in zip(ax, (0.0, 1.0, 4.0), strict=True):
    y = torch.zeros(500, dtype=torch.long)
    if attempt(hw3.classifier_guided_eps, mixture, logits, sched, x_T[:1], torch.tensor([5]), y[:1], s) is None:
        break
    out = sample(lambda x, t, y=y, s=s: hw3.classifier_guided_eps(mixture, logits, sched, x, t, y, s), x_T)
    a.scatter(*out.T, s=3)
    a.set_title(f"classifier guidance to +mu, s = {s:g}")
plt.show()

# %% [markdown]
# ## Check your work
#
# The public tests (`test_public.py`): small cases worked out by hand.

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
