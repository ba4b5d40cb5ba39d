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
# # Lecture 5: Prompt-to-Prompt, editing through cross-attention
#
# Hertz et al. (ICLR 2023), *Prompt-to-Prompt Image Editing with Cross-Attention Control*, and Mokady et al.
# (CVPR 2023), *Null-text Inversion for Editing Real Images*. A text-conditioned UNet reads the prompt only
# through cross-attention: pixel $i$ attends to token $j$ with weight
#
# $$M_t[i, j] = \mathrm{softmax}_j\left(\frac{Q_i \cdot K_j}{\sqrt d}\right),
# \qquad Q = \ell_Q(\phi(x_t)),\ K = \ell_K(\psi(P)).$$
#
# So $M_t$ says *where* each word is drawn. Prompt-to-Prompt denoises the source prompt $P$ and the target prompt
# $P^*$ side by side from the same $x_T$ and, in the target's pass, replaces its maps $M^*_t$ by an edit of $M_t$.
#
# 1. The attention maps: one hook in `nn.attention`, a store, per-word pictures.
# 2. Word swap (Replace) and the injection window $\tau$; per-word windows; self-attention injection.
# 3. Refinement (added words) and re-weighting.
# 4. Local blend: a mask from the maps keeps everything else identical.
# 5. Real images: DDIM inversion breaks under guidance; null-text inversion repairs it.
# 6. The ground-truth edit benchmark.

# %% tags=["parameters"]
# FAST = True is the CI-sized run (about 110 s alone on 1 thread): 20-step grids, few benchmark scenes.
# FAST = False runs the lecture's sizes: 50-step grids and a 30-scene benchmark (several minutes).
FAST = True
DEVICE = "auto"  # where the model runs: auto (CUDA, else MPS, else CPU; $MINIDIFF_DEVICE overrides), cpu, cuda, mps

# %%
import time

import matplotlib.pyplot as plt
import torch

from minidiff.bench.edit import edit_benchmark, make_cases
from minidiff.datasets.shapes import Scene, ShapeObject
from minidiff.datasets.shapes_check import check
from minidiff.devices import resolve_device
from minidiff.guidance import Guidance
from minidiff.inversion import ddim_invert
from minidiff.metrics import psnr
from minidiff.null_text import null_text_invert, null_text_sample
from minidiff.p2p import (
    AttentionEdit,
    AttentionStore,
    LocalBlend,
    Refine,
    Replace,
    Reweight,
    p2p_sample,
    word_maps,
)
from minidiff.p2p_alignment import refinement_mapper
from minidiff.samplers import ddim_sample
from minidiff.schedule import timesteps
from minidiff.training import pretrained
from minidiff.viz import attention_figure, image_grid, to_numpy_image

STEPS = 20 if FAST else 50
N_BENCH = 3 if FAST else 30
W = 3.0  # classifier-free guidance scale used throughout (the shapes model's sampling default)

t_start = time.time()
device = resolve_device(DEVICE)
model = pretrained.load("shapes", device=device)
print(f"shapes model on {device}")
tok, sched = model.tokenizer, model.schedule
GW = Guidance.of(model, W)  # classifier-free guidance: the model's encoded "" as null condition, scale W
grid = timesteps(sched.T, STEPS)
x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)


def show(images, titles):
    image_grid(torch.stack(list(images)), titles, ncol=len(images), scale=2.0)
    plt.show()


# %% [markdown]
# **Any seed will do.** The shipped `shapes` model draws the two-object prompt below right from each of the seeds
# 0-15, with 20 and with 50 steps (checked with `shapes_check.check`), and all 104 two-object test prompts at
# $w = 3$ (`data/README.md`). Its predecessor, `shapes_v1`, managed 3 (20 steps) and 4 (50 steps) of those 16 seeds
# and 0.31 of the prompts: its attention queries at 16x16 could not tell left from right, so it often put the two
# colours in each other's places. A position code in each attention block fixed that (issue 15;
# `benchmarks/shapes_binding.py`).
# Prompt-to-Prompt edits whatever the source pass draws, so a right source makes the pictures below easy to read.

# %% [markdown]
# ## 1. Cross-attention maps
#
# Every `Attention` layer computes $P = \mathrm{softmax}(QK^\top/\sqrt d)$ explicitly and hands it to one hook,
# `controller(P, info)`, before multiplying by $V$. `info` says which layer ("cross" or "self"), its resolution and
# the timestep. An `AttentionStore` keeps the conditional rows (under classifier-free guidance the UNet batch is
# `[null rows; conditional rows]`), averaged over heads, summed over steps. Each pixel's row is a distribution over
# the prompt's tokens.

# %%
src = "a red circle on the left and a blue square on the right on a white background"
store = AttentionStore(2)
ctrl = AttentionEdit(tok, src, src, grid, cross_steps=0.0, store=store)  # injects nothing: plain sampling
x_src, _ = p2p_sample(model, ctrl, x_T, guidance=GW)
print("resolutions with cross-attention:", store.resolutions(), "| each row sums to",
      store.maps(16).sum(-1).mean().item())
words, maps = word_maps(store, tok, src)
attention_figure(x_src[0], words, maps)
plt.show()
print("the checker says the sample shows the prompt:", check(x_src[0], src)["correct"])

# %% [markdown]
# The colour words light up their objects: "red" on the left, "blue" on the right; "left" and "right" light up their
# halves of the picture. The shape words and the function words are much more diffuse on this small model (its text
# encoder mixes tokens), which matters for local blend below. **Check**: the map of "red" puts more mass on the left
# half than on the right.

# %%
red, blue = maps[words.index("red")], maps[words.index("blue")]
print(f"'red' left/right mass: {red[:, :8].sum():.2f} / {red[:, 8:].sum():.2f}; "
      f"'blue': {blue[:, :8].sum():.2f} / {blue[:, 8:].sum():.2f}")
assert red[:, :8].sum() > red[:, 8:].sum() and blue[:, 8:].sum() > blue[:, :8].sum()

# %% [markdown]
# ## 2. Word swap and the injection window $\tau$
#
# $$\mathrm{Edit}(M_t, M^*_t, t) = \begin{cases} M_t & \text{during the first } \tau \text{ of the steps} \\
# M^*_t & \text{afterwards}\end{cases}$$
#
# A sanity check first: swapping a prompt with *itself* over all steps must give exactly the source sample.

# %%
same = Replace(tok, src, src, grid, cross_steps=1.0, self_steps=1.0)
a, b = p2p_sample(model, same, x_T, guidance=GW)
assert torch.equal(a, b)

tgt = "a red circle on the left and a green square on the right on a white background"
rows, titles = [x_src[0]], ["source"]
for tau in (0.0, 0.2, 0.5, 0.8, 1.0):
    _, x = p2p_sample(model, Replace(tok, src, tgt, grid, cross_steps=tau), x_T, guidance=GW)
    rows.append(x[0])
    titles.append(f"tau = {tau}\n{'OK' if check(x[0], tgt)['correct'] else 'X'}")
show(rows, titles)

# %% [markdown]
# $\tau = 0$ is plain re-generation from the same noise; larger $\tau$ keeps more of the source's layout. (On this
# prompt and seed the model draws the same layout even at $\tau = 0$, so the five pictures look alike: their mean
# absolute difference from $\tau = 1$ falls from 0.06 at $\tau = 0$ to 0.006 at $\tau = 0.8$, pixels in $[-1, 1]$, with
# 20 or 50 steps; section 6's benchmark measures what the injection keeps over many scenes.) For a *shape* swap the
# source map draws the old outline, so the swapped word should get a short window while the rest keeps a long one: a
# per-word schedule `{"default": 0.8, "triangle": 0.2}`. Self-attention injection (`self_steps`) copies the source's
# pixel-to-pixel attention, which fixes the layout even more strongly.

# %%
tgt_shape = "a red circle on the left and a blue triangle on the right on a white background"
settings = {"tau 0.8 for all": dict(cross_steps=0.8),
            "'triangle' 0.2": dict(cross_steps={"default": 0.8, "triangle": 0.2}),
            "+ self-attention 0.3": dict(cross_steps={"default": 0.8, "triangle": 0.2}, self_steps=0.3)}
rows, titles = [x_src[0]], ["source"]
for name, kw in settings.items():
    _, x = p2p_sample(model, Replace(tok, src, tgt_shape, grid, **kw), x_T, guidance=GW)
    rows.append(x[0])
    titles.append(f"{name}\n{'OK' if check(x[0], tgt_shape)['correct'] else 'X'}")
show(rows, titles)

# %% [markdown]
# A word swap needs prompts of equal length (tokens are swapped in place); anything else is an error that names
# both prompts' words:

# %%
try:
    Replace(tok, src, "a red circle on the left on a white background", grid)
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## 3. Refinement and re-weighting
#
# **Refinement** adds words. An alignment $A$ maps each target token to a source token; aligned tokens take the
# source's maps, new words keep their own:
# $(\mathrm{Edit})_{i,j} = (M^*_t)_{i,j}$ if $A(j) = \varnothing$, else $(M_t)_{i,A(j)}$.
# $A$ is the reference code's global alignment (`p2p.global_alignment`: Needleman-Wunsch with match 1, mismatch -1,
# gap 0, ties broken towards inserted target words). Ties are common when a word repeats: below, the "on" of
# "on the right" takes the maps of the source's "on a white background", and the "on" after "right" is new.

# %%
one = "a red circle on the left on a white background"
two = "a red circle on the left and a blue square on the right on a white background"
mapper, aligned = refinement_mapper(tok, one, two)
print("target words:", tok.split(two))
print("source token of each target token:", mapper[: len(tok.split(two)) + 1].tolist())
print("aligned?                           ", aligned[: len(tok.split(two)) + 1].int().tolist())
x1, x2 = p2p_sample(model, Refine(tok, one, two, grid, cross_steps=0.8), x_T, guidance=GW)
show([x1[0], x2[0]], [one, f"refined: {'OK' if check(x2[0], two)['correct'] else 'X'}"])

# %% [markdown]
# **Re-weighting** scales one word's column of the maps, $(\mathrm{Edit})_{i,j} = c \cdot (M_t)_{i,j}$ for the chosen
# $j$ (the rows no longer sum to one; that is the point). $c = 1$ changes nothing, exactly; $c = 0$ removes the word.

# %%
rows, titles = [], []
for c in (0.0, 0.5, 1.0, 2.0):
    a, x = p2p_sample(model, Reweight(tok, one, one, grid, weights={"red": c}, cross_steps=1.0), x_T, guidance=GW)
    if c == 1.0:
        assert torch.equal(a, x)
    rows.append(x[0])
    titles.append(f"'red' x {c}")
show(rows, titles)

# %% [markdown]
# ## 4. Local blend
#
# After each step, $x^*_t \leftarrow x_t + m \odot (x^*_t - x_t)$ with a binary mask $m$ from the (accumulated)
# maps of chosen words in both prompts: sum the words' maps, 3x3 max-pool, upsample to $x_t$'s size, normalise,
# threshold. `LocalBlend.for_model` reads the maps at the largest cross-attention resolution of the model's UNet
# config (`max(model.unet.cfg.attention_resolutions)`). Outside the mask the target *is* the source, bit for bit.

# %%
tgt_colour = "a red circle on the left and a green square on the right on a white background"
blend = LocalBlend.for_model(model, [src], [tgt_colour], [["blue"]], [["green"]])
a, x = p2p_sample(model, Replace(tok, src, tgt_colour, grid, cross_steps=0.8, local_blend=blend), x_T, guidance=GW)
mask = blend.last_mask
outside = (mask == 0).expand_as(a)
print(f"mask covers {mask.mean():.0%} of the image; max |target - source| outside it:",
      (a - x)[outside].abs().max().item())
assert torch.equal(a[outside], x[outside])
fig, ax = plt.subplots(1, 3, figsize=(6, 2.2))
for axis, img, title in zip(ax[:2], [a[0], x[0]], ["source", "word swap + local blend"], strict=True):
    axis.imshow(to_numpy_image(img), interpolation="nearest")
    axis.set_title(title, fontsize=8)
ax[2].imshow(mask[0, 0].cpu(), cmap="gray")
ax[2].set_title("mask", fontsize=8)
for axis in ax:
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 5. Real images: null-text inversion
#
# To edit an image we did not generate, we need its $x_T$. DDIM inversion (lecture 3) is accurate without guidance
# but drifts under it, and editing needs guidance. Null-text inversion keeps the $w = 1$ inversion as a *pivot*
# $x^*_0, \dots, x^*_T$ and, for each step, optimises the null-text embedding $\varnothing_t$ (Adam, 10 inner steps,
# early stop) so the guided step lands on the pivot:
#
# $$\min_{\varnothing_t} \left\| x^*_{t-1} - \mathrm{DDIM}\big(\bar x_t,\ \varepsilon(\bar x_t, \varnothing_t) +
# w\,[\varepsilon(\bar x_t, C) - \varepsilon(\bar x_t, \varnothing_t)]\big) \right\|^2 .$$

# %%
scene = Scene((ShapeObject("circle", "red", "left", size=5.6, dx=0.4, dy=-0.6),), "gray", 0.7, 0.05, 7)
cases = make_cases([(scene, "colour", "green")])
x0, target, prompt = cases.source.to(device), cases.target.to(device), cases.source_caption
ctx, null = model.encode_text(prompt), model.null_context()
recs, inversions = {}, {}
for w in (W, 7.5):
    with torch.no_grad():
        z = ddim_invert(model, sched, x0, STEPS, ctx, guidance=Guidance(null, w))
        recs[f"DDIM inversion, w = {w}"] = ddim_sample(model, sched, z, STEPS, context=ctx, guidance=Guidance(null, w))
    inversions[w] = null_text_invert(model, sched, x0, ctx, Guidance(null, w), steps=STEPS)
    recs[f"null-text inversion, w = {w}"] = null_text_sample(model, sched, inversions[w], ctx)
show([x0[0], *[r[0] for r in recs.values()]],
     ["real (rendered)", *[f"{k}\n{psnr(r, x0).item():.1f} dB" for k, r in recs.items()]])
gain = psnr(recs["null-text inversion, w = 7.5"], x0) - psnr(recs["DDIM inversion, w = 7.5"], x0)
print(f"null-text inversion gains {gain.item():.1f} dB at w = 7.5")
assert gain.item() > 3

# %% [markdown]
# The optimised embeddings (one per step, shape `(steps, batch, L, D)`) are passed to `p2p_sample` as
# `null_embeddings`; the source and the target use them, as in the reference code. Editing the inverted image:

# %%
inv = inversions[W]  # the null-text inversion at w = W from above
blend = LocalBlend.for_model(model, prompt, cases.target_caption, [["red"]], [["green"]])
edit = Replace(tok, prompt, cases.target_caption, grid, cross_steps=0.8, self_steps=0.4, local_blend=blend)
rec, x = p2p_sample(model, edit, inv.x_T, guidance=GW, null_embeddings=inv.null_embeddings)
show([x0[0], rec[0], x[0], target[0]],
     ["real", "reconstruction", f"edit: {'OK' if check(x[0], cases.target_caption[0])['correct'] else 'X'}",
      "exact target (rendered)"])
print(f"PSNR to the exact target: {psnr(x, target).item():.1f} dB")

# %% [markdown]
# ## 6. The ground-truth edit benchmark
#
# Because `shapes` scenes can be re-rendered with one word changed, every edit has an exact target. The table
# scores each method by the checker's verdict on the target prompt, PSNR to the target, and PSNR/SSIM of the region
# the edit must not touch. `python -m minidiff bench edit` runs it on 120 scenes with 50 steps by default
# (`data/README.md` has the table for 102 scenes at 25 steps); here a few scenes, and in FAST mode without the
# null-text row (section 5 ran null-text inversion; here it would take most of the notebook's time):

# %%
rows = edit_benchmark(model, n=N_BENCH, w=W, steps=max(STEPS, 25) if FAST else 50,
                      methods=("SDEdit t0 = 0.5 T", "DDIM inversion + P2P + local blend",
                               *(() if FAST else ("null-text inversion + P2P + local blend",))))

# %% [markdown]
# ## Exercises
#
# 1. Re-weighting: plot the fraction of "red" pixels of the target against $c \in [0, 3]$.
# 2. The reference normalises local-blend maps by their maximum only. Switch `p2p.word_mask` to that and measure
#    how much of the image the mask covers on this model. Why do diffuse maps break it?
# 3. Null-text inversion with `inner_steps = 1, 3, 10` and `lr = 1e-3, 1e-2, 1e-1`: reconstruction PSNR and time.
# 4. Write a controller that injects only the maps of the 8x8 layers. Which edits still work?

# %%
print(f"notebook ran in {time.time() - t_start:.0f} s")
