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
# # Homework 1: DDPM as a hierarchical VAE
#
# Write the five functions in `hw1.py` (each docstring states the equation, the shapes and the points), then run
# this notebook: it pictures your functions and checks them with the public tests. The grader also runs hidden
# tests (other shapes, dtypes, schedules and the edge timesteps t = 1 and t = T), so make each function general.
#
# The forward process adds Gaussian noise in T small steps, $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}
# x_{t-1}, \beta_t I)$ (DDPM eq. 2). Composing the steps gives the marginal of **Q1**,
# $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t} x_0, (1 - \bar\alpha_t) I)$ (eq. 4). Bayes' rule on
# $q(x_t \mid x_{t-1}) q(x_{t-1} \mid x_0)$ gives the posterior of **Q2** (eqs. 6-7), and eliminating $x_0$ with eq. 4
# its mean in terms of the noise, **Q3** (eq. 11). The ELBO (eq. 5) is $L_T + \sum_{t \ge 2} L_{t-1} + L_0$: each
# $L_{t-1}$ is a weighted noise-prediction error with the weight of **Q4** (eq. 12), and $L_T$ (**Q5**) is the KL of
# the last marginal to the prior.

# %%
import importlib

import hw1
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff.homework.notebook import attempt
from minidiff.schedule import Schedule

hw1 = importlib.reload(hw1)  # after editing hw1.py, rerun from here
sched = Schedule.linear(1000)


# %% [markdown]
# ## Your forward marginal on an image
#
# A picture with three coloured stripes, noised to several $t$ with the same $\varepsilon$: by $t = 1000$ nothing
# is left of it ($\sqrt{\bar\alpha_{1000}} \approx 0.006$).

# %%
x0 = torch.zeros(1, 3, 32, 32, dtype=torch.float64) - 1
for c in range(3):
    x0[0, c, :, 4 + 9 * c: 10 + 9 * c] = 1.0
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
ts = [0, 50, 200, 500, 1000]
xs = [attempt(hw1.q_sample, sched, x0, torch.tensor([t]), eps) if t else x0 for t in ts]
if all(x is not None for x in xs):
    fig, ax = plt.subplots(1, len(ts), figsize=(2 * len(ts), 2.2))
    for a, x, t in zip(ax, xs, ts, strict=True):
        a.imshow(((x[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
        a.set_title(f"t = {t}")
        a.axis("off")
    plt.show()

# %% [markdown]
# ## Your ELBO weights
#
# $\lambda_t$ of Q4 for the two standard choices of the reverse variance, $\sigma_t^2 = \beta_t$ and
# $\sigma_t^2 = \tilde\beta_t$. Ho et al. drop these weights (L_simple, eq. 14): the plot shows how unevenly the
# true ELBO weighs the timesteps.

# %%
beta_tilde = torch.zeros_like(sched.beta)
beta_tilde[2:] = (1 - sched.alpha_bar[1:-1]) / (1 - sched.alpha_bar[2:]) * sched.beta[2:]
beta_tilde[:2] = 1.0  # unused: lambda_0 = lambda_1 = 0
curves = {name: attempt(hw1.lambda_t, sched, s2) for name, s2 in [("sigma^2 = beta", sched.beta.clone()),
                                                                   ("sigma^2 = beta~", beta_tilde)]}
if all(c is not None for c in curves.values()):
    for name, lam in curves.items():
        plt.semilogy(range(2, sched.T + 1), lam[2:], label=name)
    plt.xlabel("t")
    plt.ylabel("lambda_t")
    plt.legend()
    plt.show()

# %% [markdown]
# ## Check your work
#
# The public tests (`test_public.py`): small cases worked out by hand.

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
