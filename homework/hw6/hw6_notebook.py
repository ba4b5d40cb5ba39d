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
# # Homework 6: the latent autoencoder
#
# Write the functions in `hw6.py`, then run this notebook: it runs your functions on the shipped CIFAR-10
# autoencoder (`cifar10_ae`, trained with kl_weight = 1e-6) and on rendered `shapes` images (no data set needed),
# and checks your work with the public tests.
#
# Latent diffusion trains the diffusion model on the latents of an autoencoder whose encoder outputs a diagonal
# Gaussian (**Q1**: drawing from it differentiably) with a KL penalty towards N(0, I) (**Q2**) in its loss
# (**Q3**). The weight is tiny, so the KL barely constrains the latents' scale; since the noise schedule assumes
# unit-variance data, LDM multiplies the latents by a constant (**Q4**).

# %%
import importlib

import hw6
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from minidiff.datasets.shapes import render, sample_scene
from minidiff.homework.notebook import attempt
from minidiff.training import pretrained

hw6 = importlib.reload(hw6)  # after editing hw6.py, rerun from here


ae = pretrained.load("cifar10_ae", kind="Autoencoder")
rng = np.random.default_rng(0)
x = torch.stack([render(sample_scene(rng))[0] for _ in range(64)])
with torch.no_grad():
    post = ae.encode(x)

# %% [markdown]
# ## Your KL and scale factor on real latents

# %%
kl = attempt(hw6.kl_to_standard_normal, post.mean, post.logvar)
if kl is not None:
    print(f"KL per image: mean {kl.mean():.0f} nats over {post.mean[0].numel()} latent entries")
s = attempt(hw6.scale_factor, post.mean)
if s is not None:
    print(f"your scale factor {s:.4f}; the shipped autoencoder's (estimated on CIFAR-10) {ae.scale_factor.item():.4f}")
    plt.hist(post.mean.flatten().numpy(), bins=80, alpha=0.6, density=True, label="latent means")
    plt.hist((s * post.mean).flatten().numpy(), bins=80, alpha=0.6, density=True, label="scaled by your factor")
    plt.legend()
    plt.show()

# %% [markdown]
# ## Draws from q(z | x) decoded
#
# The posterior's standard deviation is small next to the means (the KL weight is 1e-6), so draws decode to
# nearly the same image.

# %%
z = attempt(hw6.reparameterize, post.mean[:4], post.logvar[:4], torch.randn_like(post.mean[:4]))
if z is not None:
    with torch.no_grad():
        pics = torch.cat([x[:4], ae.decode(post.mean[:4]), ae.decode(z)])
    fig, ax = plt.subplots(3, 4, figsize=(6, 4.6))
    for a, img in zip(ax.flat, pics, strict=True):
        a.imshow(((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
        a.axis("off")
    ax[0, 0].set_title("input", fontsize=8)
    ax[1, 0].set_title("decoded mean", fontsize=8)
    ax[2, 0].set_title("decoded draw", fontsize=8)
    plt.show()

# %% [markdown]
# ## Check your work

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
