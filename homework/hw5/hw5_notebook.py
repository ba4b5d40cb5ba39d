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
# # Homework 5: Prompt-to-Prompt and null-text inversion
#
# Write the functions in `hw5.py`, then run this notebook: it applies your attention edits to toy
# cross-attention maps (each token attends to a blob of a 16 x 16 image) and draws your local-blend mask; the last
# cell runs the public tests. Lecture notebook 05 shows the same edits inside the shipped `shapes` model.
#
# P2P edits an image by generating it again with the edited prompt while injecting the source's cross-attention
# maps: all of them for a word swap (**Q1**, per-token windows), the aligned tokens for a refinement (**Q2**),
# scaled columns for a re-weighting (**Q3**); local blend (**Q4**) keeps the pixels outside the edited words'
# maps. Null-text inversion (**Q5**) makes a real image's DDIM inversion survive classifier-free guidance by
# optimising the null embedding so that each guided step lands on the inversion's trajectory.

# %%
import importlib

import hw5
import matplotlib.pyplot as plt
import pytest
import torch

from minidiff.homework.notebook import attempt

hw5 = importlib.reload(hw5)  # after editing hw5.py, rerun from here


def blob_maps(centres, r=16):
    """(1, 1, r*r, N): token j attends to a Gaussian blob at centres[j] (a softmax over tokens per pixel)."""
    yy, xx = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    logits = torch.stack([-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0 for cy, cx in centres], -1)
    return torch.softmax(logits.double().view(1, 1, r * r, -1), -1)


source = blob_maps([(8, 8), (4, 4), (12, 12)])  # "a red circle"
target = blob_maps([(8, 8), (4, 12), (12, 4)])  # "a blue circle", drawn elsewhere
words = ["a", "red/blue", "circle"]

# %% [markdown]
# ## Your edits on the maps of the second and third tokens

# %%
edits = {"source M": source, "target M*": target,
         "word swap (window open for 'circle')": attempt(hw5.word_swap, source, target,
                                                         torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)),
         "re-weight 'red/blue' x 3": attempt(hw5.reweight, target, torch.tensor([[1.0, 3.0, 1.0]],
                                                                                dtype=torch.float64))}
shown = {k: v for k, v in edits.items() if v is not None}
fig, ax = plt.subplots(2, len(shown), figsize=(3 * len(shown), 5.6))
for col, (name, m) in enumerate(shown.items()):
    for row, j in enumerate((1, 2)):
        ax[row, col].imshow(m[0, 0, :, j].view(16, 16), cmap="magma", vmin=0, vmax=1)
        ax[row, col].set_title(f"{name}\n'{words[j]}'" if row == 0 else f"'{words[j]}'", fontsize=8)
        ax[row, col].axis("off")
plt.show()

# %% [markdown]
# ## Your local-blend mask for the word 'red/blue', at 32 x 32

# %%
maps = torch.cat([source, target])[:, 0].view(2, 16, 16, 3)
mask = attempt(hw5.local_blend_mask, maps, torch.tensor([[0.0, 1.0, 0.0]] * 2, dtype=torch.float64), (32, 32), 0.3)
if mask is not None:
    fig, ax = plt.subplots(1, 3, figsize=(8, 2.8))
    for a, m, title in zip(ax, [mask[0, 0], mask[1, 0], ((mask[0] + mask[1]) > 0)[0].double()],
                           ["source mask", "target mask", "union (what LocalBlend uses)"], strict=True):
        a.imshow(m, cmap="gray")
        a.set_title(title, fontsize=9)
        a.axis("off")
    plt.show()

# %% [markdown]
# ## Check your work

# %%
pytest.main(["-q", "-p", "no:cacheprovider", "test_public.py"])  # in this kernel: uses the hw module reloaded above
