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
# # Lecture 3: editing by inversion, and guidance
#
# To edit a real image with a text-to-image diffusion model we must first find *where the model would have
# generated it from*, then regenerate under a new prompt. Sources: Meng et al. (2022), *SDEdit*; Song, Meng & Ermon
# (2021), *DDIM* (sec. 4.3 and 5.4); Dhariwal & Nichol (2021), *Diffusion Models Beat GANs* (classifier guidance);
# Ho & Salimans (2021), *Classifier-Free Diffusion Guidance*; Mokady et al. (2023), *Null-text Inversion*.
#
# 1. Naive editing (SDEdit): noise the image, denoise with the new prompt. A trade-off, measured.
# 2. DDIM inversion: run the deterministic sampler backwards; its one approximation, and how big it is.
# 3. Guidance: classifier-free (two conventions) and classifier guidance, checked on an exact oracle.
# 4. Guidance breaks inversion: the motivation for null-text inversion.
# 5. Exercises.
#
# Every experiment runs on `pretrained.load("shapes")`, a small text-conditional model of $32 \times 32$ scenes whose
# captions follow a fixed grammar. Because the scenes are procedurally rendered, the *ideal* result of an edit
# ("red" $\to$ "green") can be rendered exactly, and `datasets.shapes_check.check` judges what an image shows: edits are
# measured, not eyeballed.

# %% tags=["parameters"]
# FAST = True is the CI-sized run (about 70 s in the test suite, 2 threads): few images, short step grids.
# FAST = False runs the full-size lecture (more images, t0 values and step counts; several minutes).
FAST = True
DEVICE = "auto"  # where the models run: auto (CUDA, else MPS, else CPU; $MINIDIFF_DEVICE overrides), cpu, cuda, mps

# %%
import matplotlib.pyplot as plt
import torch
from torch.testing import assert_close

from minidiff.bench.roundtrip import DDIM_PAPER_CIFAR10, cfg_inversion_table, ddim_roundtrip_table
from minidiff.bench.tables import reconstruction_mse
from minidiff.datasets.shapes import OBJECT_COLOURS, ShapesDataset, caption, render, replace_word
from minidiff.datasets.shapes_check import check, check_batch
from minidiff.devices import resolve_device
from minidiff.guidance import (
    Guidance,
    classifier_free_guidance,
    classifier_guidance,
    ho_salimans_from_w,
    w_from_ho_salimans,
)
from minidiff.inversion import ddim_invert, ddim_invert_step, sdedit, sdedit_grid
from minidiff.oracles import two_gaussians_eps, two_gaussians_logits
from minidiff.samplers import ddim_sample, ddim_step
from minidiff.training import pretrained
from minidiff.viz import image_grid

F64 = torch.float64
N_EDIT = 4 if FAST else 24  # source images for SDEdit
T0S = (100, 300, 500, 700, 900) if FAST else tuple(range(100, 1001, 100))  # SDEdit noise levels
SDEDIT_STEPS = 25 if FAST else 50  # SDEdit grid: the part below t0 of a SDEDIT_STEPS-step DDIM grid
N_INV = 4 if FAST else 24  # images for the inversion experiments
INV_STEPS = 20 if FAST else 50  # steps of the inversion shown in detail, and of the CFG table
ROUNDTRIP_STEPS = (10, 20, 50) if FAST else (10, 20, 50, 100, 200)
CFG_WS = (0.0, 1.0, 3.0, 7.5)  # guidance scales for the sample grid
N_PER_W = 4 if FAST else 16  # samples per guidance scale
SAMPLE_STEPS = 20 if FAST else 50
W_EDIT = 3.0  # classifier-free guidance scale of the SDEdit edits


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


device = resolve_device(DEVICE)
model = pretrained.load("shapes", device=device)
sched = model.schedule
T, ab = sched.T, sched.alpha_bar  # alpha_bar_t, float64, ab[0] = 1
test_set = ShapesDataset(1000, seed=0, split="test")  # scenes the model never saw
print(f"shapes model on {device}: {model.num_params() / 1e6:.2f}M parameters, T = {T}; "
      f"e.g. {caption(test_set.scene(0))!r}")

# %% [markdown]
# ## 1. Naive editing: SDEdit
#
# Take a source image $x_0$, noise it to a level $t_0$ in one shot, $x_{t_0} = \sqrt{\bar\alpha_{t_0}}\, x_0 +
# \sqrt{1 - \bar\alpha_{t_0}}\, \epsilon$ (a draw from $q(x_{t_0} \mid x_0)$), and run the sampler from $t_0$ down to 0
# under the *new* prompt. Noise erases the details below a scale that grows with $t_0$; what survives (layout,
# coarse colours) steers the sampler, and the prompt fills in the rest. So $t_0$ is a single dial between two
# failures:
#
# - small $t_0$: *faithful* to the source but the edit does not happen (the old colour survives the noise and the
#   model keeps it);
# - large $t_0$: the edit happens but the rest of the image is re-invented ($t_0 = T$ is plain text-to-image
#   sampling: the source is forgotten).
#
# `sdedit` does exactly this with a DDIM sampler on `sdedit_grid`: $t_0$ followed by the part below $t_0$ of an
# `SDEDIT_STEPS`-step grid. The edit here: change the colour word of the first object of a test scene; `replace_word`
# renders the ideal result. First `sdedit` against the two lines above, on one image:

# %%
def recolour(scene):
    """The scene with its first object's colour replaced by the next palette colour not in the scene."""
    colours, used = list(OBJECT_COLOURS), {o.colour for o in scene.objects}
    old = scene.objects[0].colour
    new = next(c for c in colours[colours.index(old) + 1:] + colours if c not in used)
    return replace_word(scene, old, new, object_index=0)


sources = [test_set.scene(i) for i in range(N_EDIT)]
targets = [recolour(s) for s in sources]
x_src = torch.stack([render(s)[0] for s in sources]).to(device)  # (N, 3, 32, 32) in [-1, 1]
x_ideal = torch.stack([render(s)[0] for s in targets]).to(device)  # the exact edit
src_prompts, tgt_prompts = [caption(s) for s in sources], [caption(s) for s in targets]
print(f"source: {src_prompts[0]!r}\ntarget: {tgt_prompts[0]!r}")

guided = classifier_free_guidance(model, Guidance.of(model, W_EDIT))  # section 3 explains guidance
ctx_tgt = model.encode_text(tgt_prompts)
eps_fwd = torch.randn(x_src.shape, generator=gen(0)).to(device)  # one forward noise, shared by every t0

t0 = 300
grid = sdedit_grid(T, t0, SDEDIT_STEPS)
x_t0 = ab[t0].sqrt().float() * x_src[:1] + (1 - ab[t0]).sqrt().float() * eps_fwd[:1]  # q(x_t0 | x_0)
inline = ddim_sample(guided, sched, x_t0, grid=grid, context=ctx_tgt[:1])
assert_close(sdedit(guided, sched, x_src[:1], t0, SDEDIT_STEPS, context=ctx_tgt[:1], eps=eps_fwd[:1]), inline)
print(f"t0 = {t0}: grid {grid.tolist()}")

# %% [markdown]
# Now every source image at every $t_0$, with the same forward noise. Three measurements per output, against the
# source, against the ideal edit, and by the checker: is the first object now of the target colour (`edit made`),
# and does the image show the whole target caption (`all correct`: the edit made and nothing else broken)?

# %%
edits = {t0: sdedit(guided, sched, x_src, t0, SDEDIT_STEPS, context=ctx_tgt, eps=eps_fwd) for t0 in T0S}
rows = []
for t0, x in edits.items():
    verdicts = [check(img, p) for img, p in zip(x, tgt_prompts, strict=True)]
    rows.append({"t0": t0, "mse_source": reconstruction_mse(x, x_src).mean().item(),
                 "mse_ideal": reconstruction_mse(x, x_ideal).mean().item(),
                 "edit_made": sum(v["objects"][0]["colour"] for v in verdicts) / N_EDIT,
                 "all_correct": sum(v["correct"] for v in verdicts) / N_EDIT})
mse_ideal_source = reconstruction_mse(x_ideal, x_src).mean().item()  # not editing at all
print(f"SDEdit, w = {W_EDIT:g}, {N_EDIT} images (MSE on [0, 1] pixels; ideal-vs-source MSE {mse_ideal_source:.4f})")
print("| t0 | MSE to source | MSE to ideal edit | edit made | all correct |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['t0']} | {r['mse_source']:.4f} | {r['mse_ideal']:.4f} | {r['edit_made']:.2f} "
          f"| {r['all_correct']:.2f} |")
best = min(rows, key=lambda r: r["mse_ideal"])
print(f"closest to the ideal edit: t0 = {best['t0']}, MSE {best['mse_ideal']:.4f} = "
      f"{best['mse_ideal'] / mse_ideal_source:.0%} of the source's own distance from it")

n_show = min(3, N_EDIT)
panel = torch.stack([torch.stack([x_src[i], x_ideal[i], *(edits[t0][i] for t0 in T0S)]) for i in range(n_show)])
titles = ["source", "ideal edit", *(f"t0 = {t0}" for t0 in T0S)] * n_show
image_grid(panel.flatten(0, 1), titles, ncol=len(T0S) + 2)
plt.show()

fig, ax = plt.subplots(1, 2, figsize=(12, 3.2))
ax[0].plot(T0S, [r["mse_source"] for r in rows], "o-", label="to the source (faithfulness)")
ax[0].plot(T0S, [r["mse_ideal"] for r in rows], "s-", label="to the ideal edit")
ax[0].set(xlabel="t0", ylabel="MSE, [0, 1] pixels", title="distance")
ax[1].plot(T0S, [r["edit_made"] for r in rows], "o-", label="target colour present (edit made)")
ax[1].plot(T0S, [r["all_correct"] for r in rows], "s-", label="whole target caption correct")
ax[1].set(xlabel="t0", ylabel="fraction of images", ylim=(-0.05, 1.05), title="checker")
for axis in ax:
    axis.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the table as a trade-off curve. The distance to the source grows with $t_0$, while the edit needs a fairly
# large $t_0$ to happen at all: colour is a low-frequency attribute that survives a lot of noise. The distance to the
# ideal edit is what we really want small. It is large at both ends (small $t_0$: the colour is not changed; large
# $t_0$: everything else changes too) and smallest at an intermediate $t_0$, well below the source's own distance
# from the ideal edit (the line under the table): there the colour is redrawn and the coarse layout survives.
#
# SDEdit is a strong baseline. On the project's edit benchmark (`data/README.md`: 102 colour, shape and background
# edits, lecture 5) nearly every method shows the target caption: this model draws every prompt right, so even
# re-generating from new noise does. The methods differ in what they keep of the region the edit must *not* touch.
# SDEdit at $t_0 = 0.5\,T$ succeeds on 0.87 of the edits (it repaints only 0.62 of the backgrounds) and keeps that
# region at 25.7 dB PSNR, SSIM 0.633; at $t_0 = 0.75\,T$ it makes every edit and keeps 24.3 dB, SSIM 0.595: the
# fresh, random noise re-invents fine detail there too (new noise alone: 22.9 dB). Keeping the rest of the image needs
# the noise that *reproduces* it, inversion (next section), and more than plain DDIM inversion under the new prompt
# (22.7 dB): lecture 5's attention control and null-text inversion (25.7 dB), EDICT's exact inversion (lecture 4,
# 27.9 dB, SSIM 0.818) and most of all the DDPM noise space (lecture 7: 37.6 dB, SSIM 0.944). (With `FAST = True`
# these are 4 images: expect noisy fractions.)
#
# ## 2. DDIM inversion
#
# At $\eta = 0$ DDIM is a deterministic map $x_T \mapsto x_0$ (lecture 2, section 5: Euler steps of an ODE). Run it
# backwards and we get a latent $x_T$ that regenerates our image, and that we can regenerate under another prompt.
#
# **The reversed step.** A sampling step $t \to t_\text{prev}$ in the coordinates $\bar x = x / \sqrt{\bar\alpha}$,
# $\bar\sigma = \sqrt{1 - \bar\alpha} / \sqrt{\bar\alpha}$ is
# $\bar x_{t_\text{prev}} = \bar x_t + (\bar\sigma_{t_\text{prev}} - \bar\sigma_t)\, \epsilon_\theta(x_t, t)$.
# Solving for $x_t$:
#
# $$\bar x_t = \bar x_{t_\text{prev}} + (\bar\sigma_t - \bar\sigma_{t_\text{prev}})\, \epsilon_\theta(x_t, t),$$
#
# an *implicit* equation: the unknown $x_t$ is inside $\epsilon_\theta$. DDIM inversion replaces
# $\epsilon_\theta(x_t, t)$ by $\epsilon_\theta(x_{t_\text{prev}}, t)$, assuming $\epsilon_\theta$ is locally linear
# (nearly constant) in $x$ over one step. Back in $x$:
#
# $$x_t = \sqrt{\bar\alpha_t}\, \underbrace{\frac{x_{t_\text{prev}} - \sqrt{1 - \bar\alpha_{t_\text{prev}}}\,
#   \epsilon}{\sqrt{\bar\alpha_{t_\text{prev}}}}}_{\hat x_0} + \sqrt{1 - \bar\alpha_t}\; \epsilon, \qquad
#   \epsilon = \epsilon_\theta(x_{t_\text{prev}}, t).$$
#
# It is an explicit Euler-type step of the same ODE run towards larger $\bar\sigma$ (with the model's $t$ taken at the
# step's end). Its per-step error is
# $\approx (\bar\sigma_t - \bar\sigma_{t_\text{prev}})\, \partial_x \epsilon_\theta\, (x_t - x_{t_\text{prev}})$: second
# order in the step, so the whole round trip errs at first order and vanishes as the steps shrink. `minidiff`
# evaluates the model at the *target* $t$ (as diffusers' `DDIMInverseScheduler` and null-text inversion do), so the
# approximation is only in the $x$ argument and the model is never asked about $t = 0$.

# %%
def ddim_invert_step_inline(x_prev, eps, t_prev: int, t: int):
    x0_pred = (x_prev - (1 - ab[t_prev]).sqrt() * eps) / ab[t_prev].sqrt()  # predicted x_0 at t_prev
    return ab[t].sqrt() * x0_pred + (1 - ab[t]).sqrt() * eps  # re-noised to t with the same eps


x_prev, eps = (torch.randn(4, 3, 32, 32, generator=gen(k), dtype=F64) for k in (1, 2))
for t_prev, t_int in [(0, 20), (1, 21), (480, 500), (951, 1000)]:
    x_t = ddim_invert_step_inline(x_prev, eps, t_prev, t_int)
    assert_close(x_t, ddim_invert_step(sched, x_prev, eps, t_prev, t_int), rtol=1e-12, atol=1e-12)
    assert_close(ddim_step(sched, x_t, eps, t_int, t_prev), x_prev, rtol=1e-12, atol=1e-12)  # exact inverse, same eps

# an eps-model that ignores x: the local-linearity approximation is exact, and the round trip is round-off
table = torch.randn(T + 1, 3, 32, 32, generator=gen(3), dtype=F64)


def x_independent(x_t, t, context=None):
    return table[t].to(x_t)


x0 = x_src.to("cpu", F64)  # a float64 exactness check: on the CPU, beside `table` (MPS has no float64)
for steps in (10, 50):
    x_T = ddim_invert(x_independent, sched, x0, steps)
    err = (ddim_sample(x_independent, sched, x_T, steps) - x0).abs().max().item()
    assert err < 1e-11
    print(f"x-independent eps, {steps} steps: max |reconstruction - x_0| = {err:.1e}")

# %% [markdown]
# **The real model.** Invert `N_INV` test images under their captions, record the trajectory with the callback, and
# measure the approximation directly: at each step, how far is the $\epsilon_\theta(x_{t_\text{prev}}, t)$ we used from
# the $\epsilon_\theta(x_t, t)$ the sampler will use on the way back?

# %%
x_inv, inv_prompts = torch.stack([render(test_set.scene(100 + i))[0] for i in range(N_INV)]).to(device), [
    caption(test_set.scene(100 + i)) for i in range(N_INV)]
ctx_inv = model.encode_text(inv_prompts)
trajectory = []
x_T = ddim_invert(model, sched, x_inv, INV_STEPS, context=ctx_inv, callback=trajectory.append)
mismatch = []
with torch.no_grad():
    for d in trajectory:
        eps_exact = model(d["x_t"], torch.full((N_INV,), d["t"], device=device), ctx_inv)  # what sampling will use at t
        mismatch.append(((eps_exact - d["eps"]).norm() / eps_exact.norm()).item())
x_rec = ddim_sample(model, sched, x_T, INV_STEPS, context=ctx_inv)
mse_inv = reconstruction_mse(x_rec, x_inv)
print(f"{INV_STEPS}-step inversion: x_T mean {x_T.mean():+.3f}, std {x_T.std():.3f} (N(0, I) would be 0, 1); "
      f"reconstruction MSE {mse_inv.mean():.2e}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy([d["t"] for d in trajectory], mismatch, "o-", ms=3)
ax.set(xlabel="t (the step's target)", ylabel="relative error",
       title=r"$\|\epsilon(x_t, t) - \epsilon(x_{t_{prev}}, t)\| / \|\epsilon(x_t, t)\|$")
plt.show()
image_grid(torch.cat([x_inv, x_T / 3, x_rec]), ["source"] * N_INV + ["x_T / 3"] * N_INV + ["reconstruction"] * N_INV,
           ncol=N_INV)
plt.show()

# %% [markdown]
# The mismatch is typically largest in the first large steps above $t = 0$, where $\bar\sigma$ changes most relative
# to its size (the grid's first step, $0 \to 1$, is tiny) and fine image detail makes the model least smooth in $x$.
# `bench.roundtrip.ddim_roundtrip_table` repeats the round trip for several step counts, beside
# the DDIM paper's CIFAR-10 numbers (sec. 5.4: per-dimension MSE on $[0, 1]$ pixels, from the unconditional CIFAR-10
# model). Different data and model, same trend: the error falls roughly like $1/S$ or faster.

# %%
roundtrip = ddim_roundtrip_table(model, x_inv, inv_prompts, steps_list=ROUNDTRIP_STEPS)
if INV_STEPS in ROUNDTRIP_STEPS:  # the same computation as above, through the library
    assert_close(next(r["mse"] for r in roundtrip if r["steps"] == INV_STEPS), mse_inv.mean().item(), rtol=1e-3,
                 atol=0)
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.errorbar([r["steps"] for r in roundtrip], [r["mse"] for r in roundtrip], yerr=[2 * r["se"] for r in roundtrip],
            fmt="o-", label=f"shapes model, {N_INV} images (± 2 SE)")
ax.plot(list(DDIM_PAPER_CIFAR10), list(DDIM_PAPER_CIFAR10.values()), "s--", label="DDIM paper, CIFAR-10")
ax.set(xscale="log", yscale="log", xlabel="steps S", ylabel="reconstruction MSE", title="invert, then sample")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Guidance
#
# **Classifier-free guidance** (Ho & Salimans 2021). One network, trained with the prompt dropped 10% of the time,
# gives both $\epsilon_c = \epsilon_\theta(x_t, t, c)$ and $\epsilon_u = \epsilon_\theta(x_t, t, \varnothing)$
# (the empty prompt, `model.null_context`). Sampling with
#
# $$\tilde\epsilon = \epsilon_u + w\, (\epsilon_c - \epsilon_u)$$
#
# extrapolates away from the unconditional prediction. Two conventions are in use, and they differ by one:
#
# - `minidiff`, Imagen and diffusers' `guidance_scale`: $w$ as above; $w = 0$ unconditional, $w = 1$ the plain
#   conditional model. Stable Diffusion's default 7.5 is this $w$.
# - Ho & Salimans' paper: $\tilde\epsilon = (1 + w')\, \epsilon_c - w' \epsilon_u$, so $w' = 0$ is the conditional
#   model and $w = 1 + w'$ (`w_from_ho_salimans`).
#
# Why it works: $\epsilon = -\sqrt{1 - \bar\alpha_t}\, \nabla_{x_t} \log p_t(x_t)$ for the optimal model, so
# $\epsilon_c - \epsilon_u = -\sqrt{1 - \bar\alpha_t}\, \nabla_{x_t} \log \frac{p_t(x_t \mid c)}{p_t(x_t)} =
# -\sqrt{1 - \bar\alpha_t}\, \nabla_{x_t} \log p_t(c \mid x_t)$ by Bayes. CFG is classifier guidance (below) with scale
# $w$ and an *implicit* classifier: it samples $\propto p_t(x_t)\, p_t(c \mid x_t)^w$.

# %%
x_t = torch.randn(N_INV, 3, 32, 32, generator=gen(10)).to(device)
t = torch.linspace(50, 950, N_INV).round().long().to(device)  # (N_INV,) one noise level per image
with torch.no_grad():
    eps_c, eps_u = model(x_t, t, ctx_inv), model(x_t, t, model.null_context(N_INV))
    for w_prime in (0.0, 2.0, 6.5):
        w = w_from_ho_salimans(w_prime)
        assert w == 1 + w_prime and ho_salimans_from_w(w) == w_prime
        eps_ho_salimans = (1 + w_prime) * eps_c - w_prime * eps_u  # Ho & Salimans' form
        eps_minidiff = eps_u + w * (eps_c - eps_u)  # minidiff's form
        assert_close(eps_ho_salimans, eps_minidiff, rtol=1e-5, atol=1e-5)
        # the library runs [null; cond] as one batch of 2B: equal up to float32 round-off
        assert_close(classifier_free_guidance(model, Guidance.of(model, w))(x_t, t, ctx_inv), eps_minidiff,
                     rtol=1e-4, atol=1e-4)
print("w' = 0, 2, 6.5 (Ho & Salimans) = w = 1, 3, 7.5 (minidiff); inline CFG = classifier_free_guidance")

# %% [markdown]
# Samples across $w$: the same $x_T$ and prompts in every row, `SAMPLE_STEPS` DDIM steps, and the checker's verdict
# on each row.

# %%
prompts = [caption(test_set.scene(200 + i)) for i in range(N_PER_W)]
ctx = model.encode_text(prompts)
x_T = torch.randn(N_PER_W, 3, 32, 32, generator=gen(11)).to(device)
by_w = {}
for w in CFG_WS:
    by_w[w] = ddim_sample(classifier_free_guidance(model, Guidance.of(model, w)), sched, x_T, SAMPLE_STEPS,
                          context=ctx)
    acc = check_batch(by_w[w], prompts)
    print(f"w = {w:3g}: all correct {acc['correct']:.2f}, colour {acc['colour']:.2f}, shape {acc['shape']:.2f}, "
          f"position {acc['position']:.2f}, background {acc['background']:.2f}, "
          f"pixel std {by_w[w].std():.2f}")
image_grid(torch.cat(list(by_w.values())), [f"w = {w:g}" for w in CFG_WS for _ in prompts], ncol=N_PER_W)
plt.show()
print(f"pixel std of real test images: {x_inv.std():.2f}; prompts (one per column):", *prompts, sep="\n  ")

# %% [markdown]
# **Classifier guidance** (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14) uses an explicit classifier of *noisy*
# images $p_\phi(y \mid x_t, t)$:
#
# $$\tilde\epsilon(x_t, t) = \epsilon_\theta(x_t, t)
#   - s \sqrt{1 - \bar\alpha_t}\; \nabla_{x_t} \log p_\phi(y \mid x_t, t).$$
#
# With the score identity above, $s = 1$ and the exact classifier turn the unconditional model into the conditional
# one: $\epsilon_u - \sqrt{1 - \bar\alpha_t}\, \nabla \log p(y \mid x_t) = -\sqrt{1 - \bar\alpha_t}\, \nabla \log
# p_t(x_t \mid y) = \epsilon_y$. We can check that to round-off on two Gaussian classes $x_0 \mid y \sim
# \mathcal N(\pm\mu, s_0^2 I)$, where the optimal unconditional and class models and the exact noisy classifier are all
# closed-form (`minidiff.oracles`). (For `shapes`, `training.classifiers.train_shapes_classifier` trains a
# `NoisyClassifier` of the background colour: exercise 4.)

# %%
mu, s0 = torch.tensor([1.0, 0.5], dtype=F64), 0.35
eps_mix, eps_pos = two_gaussians_eps(sched, mu, s0), two_gaussians_eps(sched, mu, s0, label=0)
classifier = two_gaussians_logits(sched, mu, s0)  # logits of y = 0 (+mu) and y = 1 (-mu)


def classifier_guidance_inline(x_t, t, y: int, scale: float):
    x = x_t.detach().requires_grad_(True)
    log_p_y = torch.log_softmax(classifier(x, t), dim=1)[:, y].sum()  # sum over the batch: per-example gradients
    (grad,) = torch.autograd.grad(log_p_y, x)
    # eps~ = eps - s sqrt(1 - ab_t) grad log p(y | x_t)                          (Dhariwal & Nichol eq. 14)
    return eps_mix(x_t, t) - scale * (1 - ab[t, None]).sqrt() * grad


x_t, t = 2 * torch.randn(64, 2, generator=gen(12), dtype=F64), torch.linspace(1, T, 64).round().long()
guided_2 = classifier_guidance(eps_mix, classifier, 0, 2.0, sched)  # an eps-model: (x_t, t, context) -> eps~
assert_close(classifier_guidance_inline(x_t, t, 0, 2.0), guided_2(x_t, t))
assert_close(classifier_guidance(eps_mix, classifier, 0, 1.0, sched)(x_t, t), eps_pos(x_t, t), rtol=1e-10, atol=1e-12)
for w in (3.0, 7.5):  # CFG with w = classifier guidance with scale w on the unconditional model
    assert_close(eps_mix(x_t, t) + w * (eps_pos(x_t, t) - eps_mix(x_t, t)),
                 classifier_guidance(eps_mix, classifier, 0, w, sched)(x_t, t), rtol=1e-10, atol=1e-12)
print("exact classifier, s = 1: guided mixture eps = class eps; CFG(w) = classifier guidance(s = w), to round-off")

x_T = torch.randn(2000, 2, generator=gen(13), dtype=F64)
scales = (0.0, 1.0, 4.0)
fig, ax = plt.subplots(1, len(scales), figsize=(12, 3.4), sharex=True, sharey=True)
for axis, s in zip(ax, scales, strict=True):
    x = ddim_sample(classifier_guidance(eps_mix, classifier, 0, s, sched), sched, x_T, steps=50)
    in_class = (x @ mu > 0).double().mean().item()
    axis.scatter(*x.T, s=1, alpha=0.4)
    axis.scatter(*mu, marker="x", color="k")
    axis.set_title(f"s = {s:g}: {100 * in_class:.1f}% in class +mu, spread {x[x @ mu > 0].std(0).mean():.3f}",
                   fontsize=9)
    axis.set(aspect="equal")
    print(f"classifier guidance s = {s:g}: {100 * in_class:.1f}% of samples on the +mu side")
fig.tight_layout()
plt.show()

# %% [markdown]
# $s = 0$ samples the mixture, $s = 1$ the class (std $s_0 = 0.35$ per coordinate), and $s > 1$ samples
# $\propto p(x)\, p(y \mid x)^s$: it pushes samples away from the other class and narrows the spread. That sharpening
# is what makes large $w$ popular for prompt adherence, and it is not free, as the next section shows.
#
# ## 4. Guidance breaks DDIM inversion
#
# To edit with a strong prompt we want to sample with $w \approx 7.5$, so we invert with the same guided model.
# But $\tilde\epsilon = \epsilon_u + w(\epsilon_c - \epsilon_u)$ multiplies the $x$-dependence of $\epsilon_c -
# \epsilon_u$ by $w$: the guided model is much less linear along the path, and the local-linearity error of each
# inversion step grows. `bench.roundtrip.cfg_inversion_table` measures the round trip (invert and sample, both with the
# same $w$ and caption):

# %%
cfg_rows = cfg_inversion_table(model, x_inv, inv_prompts, ws=(1.0, 3.0, 7.5), steps=INV_STEPS)
g75 = Guidance.of(model, 7.5)  # the one way to ask for guidance: every sampler and inversion takes guidance=
x_rec_75 = ddim_sample(model, sched, ddim_invert(model, sched, x_inv, INV_STEPS, ctx_inv, guidance=g75), INV_STEPS,
                       context=ctx_inv, guidance=g75)
assert_close(reconstruction_mse(x_rec_75, x_inv).mean().item(), cfg_rows[-1]["mse"], rtol=1e-3, atol=0)
w1 = cfg_rows[0]["mse"]
print("relative to w = 1: " + ", ".join(f"w = {r['w']:g}: {r['mse'] / w1:.1f}x" for r in cfg_rows[1:]))

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.errorbar([r["w"] for r in cfg_rows], [r["mse"] for r in cfg_rows], yerr=[2 * r["se"] for r in cfg_rows], fmt="o-")
ax.set(yscale="log", xlabel="guidance scale w", ylabel="reconstruction MSE",
       title=f"{INV_STEPS}-step round trip under CFG")
plt.show()
image_grid(torch.cat([x_inv, x_rec, x_rec_75]), ["source"] * N_INV + ["w = 1"] * N_INV + ["w = 7.5"] * N_INV,
           ncol=N_INV)
plt.show()

# %% [markdown]
# **Null-text inversion** (Mokady et al. 2023; lecture 5) keeps the accurate $w = 1$ inversion as a *pivot*
# trajectory $x^*_T, \dots, x^*_0$ and makes the $w = 7.5$ sampler follow it: for $t = T, \dots, 1$ it optimises the
# null-text embedding $\varnothing_t$ (the unconditional context, one per step) so that the guided step from the
# current $\bar z_t$ lands on the pivot, $\min_{\varnothing_t} \|x^*_{t-1} - \text{step}(\bar z_t, \varnothing_t, c,
# w)\|^2$. Weights and prompt embedding stay untouched, the reconstruction under $w = 7.5$ comes close to the
# $w = 1$ inversion's (on `shapes`, 8 scenes, 25 steps: 24.4 dB, against DDIM inversion's 17.7 dB at $w = 7.5$ and
# the pivot's 26.2 dB; `data/README.md`), and
# editing is then sampling from $x^*_T$ with the optimised $\varnothing_t$ and a changed prompt (with Prompt-to-Prompt's
# attention control, lecture 5).
#
# ## 5. Exercises
#
# 1. SDEdit with $\eta = 1$ (`sdedit(..., eta=1.0)`) instead of DDIM: at equal $t_0$, is the edit stronger or weaker,
#    and the image closer to or farther from the source? Why?
# 2. Edit by inversion: invert a source image under its caption ($w = 1$), then sample from $x_T$ under the *target*
#    caption. Compare the distance to the ideal edit and the checker's verdict with the best SDEdit $t_0$. Then start
#    from an intermediate inverted $x_{t_0}$ instead of $x_T$ (use the callback's trajectory).
# 3. Fixed-point inversion: solve the implicit equation of section 2 by iterating $x_t \leftarrow$
#    `ddim_invert_step(x_prev, eps_model(x_t, t))` a few times per step. Plot the round-trip error vs steps with 0, 1, 3
#    iterations. What does each iteration cost?
# 4. Train the noisy background classifier (`training.classifiers.train_shapes_classifier`, a few minutes) and
#    guide unconditional samples (null context) to each background colour with `classifier_guidance`. How does the
#    checker's background accuracy grow with $s$?
# 5. Show that in the two-Gaussian oracle CFG with $w$ samples exactly $\propto p_t(x)\, p_t(y \mid x)^w$ at every $t$
#    for the score, and compute that tilted distribution at $t = 0$ in closed form: is it still a Gaussian mixture?
# 6. Why is the inversion mismatch largest near $t = 0$? Plot $\bar\sigma_t - \bar\sigma_{t_\text{prev}}$ and
#    $\bar\sigma_t$ along the grid, and try the `trailing` spacing.
