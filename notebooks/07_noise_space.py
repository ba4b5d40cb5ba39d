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
# # Lecture 7: The DDPM noise space
#
# DDIM with $\eta = 0$ is a deterministic map $x_T \mapsto x_0$, and DDIM inversion encodes an image into its $x_T$.
# With $\eta > 0$ (DDPM at $\eta = 1$) every step adds fresh noise,
#
# $$x_{t'} = \mu_\theta(x_t, t) + \sigma_t z_t, \qquad z_t \sim \mathcal N(0, I),$$
#
# so the sampler is a deterministic function $x_0 = G(z)$ of the *whole* latent $z = (x_T, z_{\tau_S}, \dots,
# z_{\tau_1})$. Two papers encode images into that space:
#
# - **CycleDiffusion** (Wu & De la Torre, ICCV 2023): the *DPM-Encoder* draws $x_T \sim q(x_T \mid x_0)$ and then
#   $x_{t'} \sim q_\sigma(x_{t'} \mid x_t, x_0)$ down the grid, reading each noise off as
#   $z_t = (x_{t'} - \mu_\theta(x_t, t)) / \sigma_t$ (their eq. 5). Decoding with another condition translates
#   (zero-shot image-to-image translation), and Langevin dynamics in $z$ guides sampling with any energy
#   (plug-and-play guidance).
# - **Edit-friendly DDPM inversion** (Huberman-Spiegelglas, Kulikov & Michaeli, CVPR 2024): the same read-off, but
#   every $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\tilde\varepsilon_t$ drawn *independently*. The
#   paper finds its noise maps larger than $\mathcal N(0, I)$ and carrying the image's layout, which edits keep;
#   section 3 measures what this project's small model shows.
#
# 1. Two latent spaces: what $\eta$ changes.
# 2. The DPM-Encoder derived and checked against the library; why the reconstruction is exact.
# 3. Noise-map statistics: DPM-Encoder vs edit-friendly, as numbers and pictures.
# 4. A colour edit on `shapes`, judged against its exact render.
# 5. Cat -> dog on real CIFAR-10 images (needs the CIFAR-10 archive).
# 6. Plug-and-play guidance by Langevin dynamics on a 2-D Gaussian, against the closed form.
# 7. Plug-and-play guidance on images, with the project's CIFAR-10 classifier as the energy.

# %% tags=["parameters"]
# FAST = True is the CI-sized run. FAST = False: more steps, images and Langevin steps.
FAST = True
DEVICE = "auto"  # where the models run: auto (CUDA, else MPS, else CPU; $MINIDIFF_DEVICE overrides), cpu, cuda, mps

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from minidiff.bench.tables import reconstruction_mse
from minidiff.bench.translation import METHODS, class_images, classifier_energy, null_prompt_image, translate
from minidiff.bench.translation import caption as cifar_caption
from minidiff.datasets import load_dataset, missing
from minidiff.datasets.shapes import ShapesDataset, caption, render, replace_word, shapes_tensors
from minidiff.datasets.shapes_check import check
from minidiff.devices import resolve_device
from minidiff.guidance import Guidance
from minidiff.inversion import ddim_invert
from minidiff.noise_space import (
    dpm_encode,
    edit_friendly_invert,
    generate,
    langevin_guidance,
    langevin_stationary_var,
)
from minidiff.samplers import ddim_sample
from minidiff.schedule import standard_normal, timesteps
from minidiff.training import pretrained
from minidiff.viz import image_grid

STEPS = 10 if FAST else 50  # DDIM grid of the shapes sections
N_SCENES = 4 if FAST else 16
N_CIFAR = 4 if FAST else 16
LANGEVIN_STEPS = 15 if FAST else 200
W = 3.0
t_start = time.time()
device = resolve_device(DEVICE)
print(f"models run on {device}")


def have(section: str, *names: str) -> bool:
    """Whether the checkpoints `names` are shipped; if not, says that `section` is skipped."""
    absent = [n for n in names if not pretrained.available(n)]
    if absent:
        print(f"skipping {section}: checkpoints {absent} are not in {pretrained.checkpoint_dir()}")
    return not absent


def data_available(section: str, name: str) -> bool:
    """Whether the CIFAR-10 images are found (never downloads); if not, says why `section` is skipped."""
    why = missing(name)
    if why is not None:
        print(f"skipping {section} for {name}: {why}")
    return why is None


def grid(images, titles=None, ncol=8):
    image_grid(images, titles, ncol=ncol, scale=1.3)
    plt.show()


# %% [markdown]
# ## 1. Two latent spaces
#
# With $\eta = 0$ the latent is $x_T$ alone: $3 \cdot 32 \cdot 32 = 3072$ numbers for a `shapes` image. With
# $\eta = 1$ it is $x_T$ and one noise per step, $(S + 1) \cdot 3072$ numbers. Below: one $x_T$, and three draws of
# the per-step noises. At $\eta = 0$ the three would be identical; at $\eta = 1$ they differ, so $x_T$ alone no
# longer names an image, $z$ does.

# %%
model = pretrained.load("shapes", device=device)
sched, prompt = model.schedule, "a red circle on the left on a gray background"
S_grid = timesteps(sched.T, STEPS)
ctx1, g = model.encode_text([prompt]), Guidance.of(model, W)
x_T = standard_normal((1, 3, 32, 32), torch.empty(0, device=device), torch.Generator().manual_seed(0))
samples = [ddim_sample(model, sched, x_T, grid=S_grid, context=ctx1, guidance=g)]  # eta = 0
for seed in range(3):
    samples.append(ddim_sample(model, sched, x_T, grid=S_grid, eta=1.0, context=ctx1, guidance=g,
                               generator=torch.Generator().manual_seed(seed)))
print(f"latent size: eta = 0: {x_T.numel()} numbers; eta > 0: {(len(S_grid)) * x_T.numel()} ({STEPS} steps)")
grid(torch.cat(samples), ["eta = 0"] + [f"eta = 1, noises #{k}" for k in range(3)], ncol=4)

# %% [markdown]
# ## 2. The DPM-Encoder, derived and checked
#
# DDIM's family (eq. 7 of the DDIM paper) has the posterior
#
# $$q_\sigma(x_{t'} \mid x_t, x_0) = \mathcal N\Big(\sqrt{\bar\alpha_{t'}}\, x_0 + \sqrt{1 - \bar\alpha_{t'} -
# \sigma_t^2}\, \frac{x_t - \sqrt{\bar\alpha_t} x_0}{\sqrt{1 - \bar\alpha_t}},\ \sigma_t^2 I\Big)$$
#
# with
# $\sigma_t = \eta \sqrt{(1 - \bar\alpha_{t'}) / (1 - \bar\alpha_t)}\sqrt{1 - \bar\alpha_t / \bar\alpha_{t'}}$. The
# sampler's step has the same form with $x_0$ replaced by the model's prediction; call its mean $\mu_\theta(x_t, t)$.
# The encoder walks down the grid drawing $x_{t'}$ from the *true* posterior and stores
# $z_t = (x_{t'} - \mu_\theta(x_t, t)) / \sigma_t$. Decoding then takes exactly the same steps:
# $\mu_\theta(x_t, t) + \sigma_t z_t = x_{t'}$ by construction, for *any* model. The one exception is the last step,
# to $t' = 0$: there $\sigma = 0$, nothing can be stored, and $G$ ends on the model's one-step prediction
# $\hat x_0(x_{\tau_1})$; the library returns the difference as `residual`.
#
# Below, one step of the encoder by hand, compared with the library's at every step (its `callback`).

# %%
def sigma(t: int, t_prev: int, eta: float = 1.0) -> float:
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()  # alpha_bar[0] = 1
    return eta * ((1 - ab_prev) / (1 - ab)) ** 0.5 * (1 - ab / ab_prev) ** 0.5


def by_hand(step: dict) -> torch.Tensor:
    """z_t from the equations above, given the library's x_t, eps, and the x_{t'} it drew."""
    t, t_prev = step["t"], step["t_prev"]
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    x0_pred = (step["x_t"] - (1 - ab) ** 0.5 * step["eps"]) / ab**0.5
    mu = ab_prev**0.5 * x0_pred + (1 - ab_prev - sigma(t, t_prev) ** 2) ** 0.5 * step["eps"]
    s = sigma(t, t_prev)
    return (step["x_prev"] - mu) / s if s > 0 else torch.zeros_like(mu)


x0, caps = shapes_tensors(N_SCENES, seed=0, split="test")
x0, ctx = x0.to(device), model.encode_text(caps)
steps_seen = []
z = dpm_encode(model, sched, x0, grid=S_grid, context=ctx, generator=torch.Generator().manual_seed(1),
               callback=lambda st: steps_seen.append(st))
for st in steps_seen:
    assert_close(by_hand(st), st["z"], atol=1e-4, rtol=1e-4)
print(f"the hand-derived z_t equals the library's at all {len(steps_seen)} steps")

x_rec = generate(model, sched, z, context=ctx)
print(f"G(z) vs x_0: MSE {reconstruction_mse(x_rec, x0).mean():.2e} (pixels in [0, 1]); the final step's residual "
      f"RMS {z.residual.pow(2).mean().sqrt():.3f}; G(z) + residual vs x_0: max |diff| "
      f"{(x_rec + z.residual - x0).abs().max():.1e}")

# %% [markdown]
# ## 3. Noise-map statistics
#
# With the exact $\varepsilon$ of the data the DPM-Encoder's $z$ is $\mathcal N(0, I)$ (the test suite checks it on
# Gaussian data, where that $\varepsilon$ is known in closed form). The edit-friendly encoder draws each $x_t$
# independently, so $x_{t'}$ is further from where the model's step from $x_t$ goes than a posterior draw would be:
# its $z_t$ are larger than $\mathcal N(0, I)$, the more so the finer the grid. Per step: the standard deviation of
# $z_t$, and the correlation of $z_t$ with $x_0$ and of $|z_t|^2$ with $x_0$'s edges (where structure would show).
#
# Measured with this notebook's code on 4 scenes: the DPM-Encoder's std is 0.99-1.03 at every step but the last
# noisy one (and, on 50 steps, the one before it: 1.12); the edit-friendly std has median 1.38 on 10 steps and 2.75
# on 50. Neither map correlates with $x_0$ (|r| <= 0.05) or with its edges (|r| <= 0.09), except at the last noisy
# step, where *both* carry the model's error along the edges (r = 0.34-0.35 on 10 steps, 0.14 on 50; with $x_0$
# itself r = 0.06-0.11): on this small model the edit-friendly maps are larger, not visibly more structured.

# %%
ef = edit_friendly_invert(model, sched, x0, grid=S_grid, context=ctx, generator=torch.Generator().manual_seed(1))
edges = ((x0[..., :, 1:] - x0[..., :, :-1]).abs().sum(1)[..., :-1, :] +
         (x0[..., 1:, :] - x0[..., :-1, :]).abs().sum(1)[..., :, :-1])  # (B, 31, 31) gradient magnitude


def r(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def stats(lat) -> dict[str, list[float]]:
    noise = lat.noise[:-1]  # the last step has sigma = 0 and stores zeros
    return {"std": [n.std().item() for n in noise], "corr(z, x_0)": [r(n, x0) for n in noise],
            "corr(|z|^2, edges)": [r(n.pow(2).sum(1)[..., :-1, :-1], edges) for n in noise]}


t_axis = S_grid[:-2].tolist()
fig, ax = plt.subplots(1, 3, figsize=(12, 3))
for name, lat in (("DPM-Encoder", z), ("edit-friendly", ef)):
    st = stats(lat)
    for axis, (key, values) in zip(ax, st.items(), strict=True):
        axis.plot(t_axis, values, "o-", label=name)
        axis.set(xlabel="t", ylabel=key)
    print(f"{name:>13}: median std of z_t {sorted(st['std'])[len(t_axis) // 2]:.2f}; |corr(z_t, x_0)| <= "
          f"{max(abs(v) for v in st['corr(z, x_0)']):.2f}; corr(|z_t|^2, edges) at the last noisy step "
          f"{st['corr(|z|^2, edges)'][-1]:.2f}")
ax[0].axhline(1.0, color="gray", lw=0.5)
ax[0].legend()
plt.tight_layout()
plt.show()
k = len(t_axis) // 2
maps = torch.cat([z.noise[k, :1], ef.noise[k, :1], z.noise[-2, :1], x0[:1]])
grid(maps / maps.abs().amax(dim=(1, 2, 3), keepdim=True),
     [f"DPM-Encoder z, t={t_axis[k]}", f"edit-friendly z, t={t_axis[k]}", f"DPM-Encoder z, t={t_axis[-1]}", "x_0"],
     ncol=4)

# %% [markdown]
# ## 4. A colour edit on `shapes`
#
# Encode with the source caption, decode with the target one (the colour word swapped), under guidance $w$, from
# `skip` steps into the grid. The renderer gives the exact target, and the checker says whether the edit shows the
# target caption. DDIM inversion (deterministic) is the baseline.

# %%
data = ShapesDataset(100, split="test")
scene = next(data.scene(i) for i in range(100) if len(data.scene(i).objects) == 1)
old = scene.objects[0].colour
new = "blue" if old != "blue" else "green"
target = replace_word(scene, old, new)
x_src, x_tgt = render(scene)[0][None].to(device), render(target)[0][None].to(device)
c_src, c_tgt = model.encode_text([caption(scene)]), model.encode_text([caption(target)])
skip = STEPS // 5
panels, titles = [x_src], ["source"]
for name, encoder in (("CycleDiffusion", dpm_encode), ("edit-friendly", edit_friendly_invert)):
    lat = encoder(model, sched, x_src, grid=S_grid, context=c_src, guidance=g,
                  generator=torch.Generator().manual_seed(2))
    panels.append(generate(model, sched, lat, context=c_tgt, guidance=g, skip=skip))
    titles.append(name)
x_inv = ddim_invert(model, sched, x_src, context=c_src, guidance=g, grid=S_grid[skip:])
panels.append(ddim_sample(model, sched, x_inv, context=c_tgt, guidance=g, grid=S_grid[skip:]))
titles.append("DDIM inversion")
for image, name in zip(panels[1:], titles[1:], strict=True):
    verdict = check(image[0], caption(target))
    print(f"{name:>15}: {'correct' if verdict['correct'] else 'wrong'}; MSE to the exact target "
          f"{reconstruction_mse(image, x_tgt).item():.4f}")
grid(torch.cat([*panels, x_tgt]), [*titles, "exact target"], ncol=5)

# %% [markdown]
# One scene is an anecdote; `python -m minidiff bench translation` measures the same methods on CIFAR-10 (next
# section, and data/README.md).
#
# ## 5. Cat -> dog on CIFAR-10
#
# Unpaired translation with the latent `cifar10` model (the methods of `bench.translation`: CycleDiffusion,
# edit-friendly, DDIM inversion with the target caption, SDEdit), judged by the project's CIFAR-10 classifier (no
# CLIP weights exist offline): the probability it gives "dog".

# %%
if have("§5", "cifar10", "cifar10_classifier") and data_available("§5", "cifar10"):
    latent = pretrained.load("cifar10", device=device)
    judge = pretrained.load("cifar10_classifier", device=device)
    cats = class_images(load_dataset("cifar10", "test"), "cat", N_CIFAR, device)
    rows, names = [cats], ["source"] * len(cats)
    for method in METHODS:
        y = translate(latent, method, cats, cifar_caption("cat"), cifar_caption("dog"), steps=STEPS, skip=STEPS // 5)
        with torch.no_grad():
            p_dog = F.softmax(judge(y), -1)[:, judge.cfg.labels.index("dog")]
        print(f"{method:>15}: p(dog) {p_dog.mean():.2f}; PSNR to the cat "
              f"{(-10 * torch.log10(reconstruction_mse(y, cats))).mean():.1f} dB")
        rows.append(y)
        names += [method] * len(cats)
    grid(torch.cat(rows), names, ncol=len(cats))

# %% [markdown]
# ## 6. Plug-and-play guidance on a Gaussian, against the closed form
#
# To sample $p(z) \propto \mathcal N(z; 0, I)\, e^{-E(z)}$, run Langevin dynamics
# $z \leftarrow z - \frac{s}{2}(z + \nabla E(z)) + \sqrt{s}\,\omega$ (CycleDiffusion sec. 4.2, $s = 0.05$, 200 steps).
# With $E(z) = \frac{\lambda}{2}\lVert z - a \rVert^2$ the target is Gaussian with mean $\lambda a / (1 + \lambda)$
# and variance $1 / (1 + \lambda)$; the discretised chain's variance is `langevin_stationary_var(s, 1 + lambda)`,
# slightly larger. Here $G$ is the identity, so every number can be checked.

# %%
lam, a, s = 3.0, torch.tensor([2.0, -1.0]), 0.05
chains = langevin_guidance(lambda zz: 0.5 * lam * (zz - a).pow(2).sum(1), torch.randn(4000, 2),
                           steps=400 if FAST else 1000, step_size=s, generator=torch.Generator().manual_seed(0))
mean_exact, var_exact = lam * a / (1 + lam), langevin_stationary_var(s, 1 + lam)
print(f"mean {chains.mean(0).tolist()} vs {mean_exact.tolist()}; variance {chains.var(0).tolist()} vs {var_exact:.4f} "
      f"(the continuous-time target: {1 / (1 + lam):.4f})")
fig, ax = plt.subplots(figsize=(4, 4))
ax.hist2d(chains[:, 0].numpy(), chains[:, 1].numpy(), bins=60, cmap="Blues")
u, v = torch.meshgrid(torch.linspace(-1, 3.5, 100), torch.linspace(-2.5, 1.5, 100), indexing="xy")
density = torch.exp(-0.5 * ((u - mean_exact[0]) ** 2 + (v - mean_exact[1]) ** 2) / var_exact)
ax.contour(u, v, density, levels=4, colors="k", linewidths=0.7)
ax.plot(0, 0, "r+", ms=10)
ax.set(title="Langevin chains (histogram) vs the tilted Gaussian (contours); + = prior mean", xlabel="z1", ylabel="z2")
ax.title.set_fontsize(8)
plt.show()

# %% [markdown]
# ## 7. Plug-and-play guidance on images
#
# Now $z$ is the latent of the `cifar10` model's sampler without a caption (the null prompt) and
# $E(z) = -\lambda \log p_\text{clf}(\text{dog} \mid D(G(z)))$, with the project's clean-image classifier as the
# judge (`bench.translation.classifier_energy`) and autograd through every sampling step (`noise_space.G` on the
# packed latent) and the decoder $D$. The
# same classifier that is the energy then reports the result, so its rise is optimistic: part of it can be an
# adversarial perturbation rather than a dog (CycleDiffusion uses CLIP with differentiable augmentation against
# that; here neither exists offline).

# %%
if have("§7", "cifar10", "cifar10_classifier"):
    latent = pretrained.load("cifar10", device=device)
    judge = pretrained.load("cifar10_classifier", device=device)
    lat_grid, B, dog = timesteps(latent.schedule.T, 10), 2 if FAST else 8, judge.cfg.labels.index("dog")
    energy = classifier_energy(latent, judge, lat_grid, dog, lam=10.0)  # -10 log p(dog | D(G(z)))
    z0 = standard_normal((B, len(lat_grid), 4, 8, 8), torch.empty(0, device=device), torch.Generator().manual_seed(0))
    z1 = langevin_guidance(energy, z0, steps=LANGEVIN_STEPS, step_size=0.05, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = null_prompt_image(latent, z0, lat_grid), null_prompt_image(latent, z1, lat_grid)
        p0, p1 = (F.softmax(judge(x), -1)[:, dog] for x in (before, after))
    print(f"p(dog) by the judge: {p0.tolist()} -> {p1.tolist()} after {LANGEVIN_STEPS} Langevin steps (lambda = 10)")
    grid(torch.cat([before, after]),
         [f"unguided, p(dog) {p:.2f}" for p in p0] + [f"guided, p(dog) {p:.2f}" for p in p1], ncol=B)

# %% [markdown]
# ## Exercises
#
# 1. Show that the DPM-Encoder's $z$ is exactly $\mathcal N(0, I)$ when $\varepsilon_\theta$ is the true
#    $\mathbb E[\varepsilon \mid x_t]$ and $\sigma_t$ is DDPM's $\tilde\beta_t^{1/2}$ (the test suite checks it with
#    the closed-form optimal $\varepsilon$ of Gaussian data). Where does the argument break for the edit-friendly
#    encoder?
# 2. Sweep `skip` in section 4 from 0 to $S - 1$ and plot the checker's verdict and the MSE to the source: where do
#    edits start to fail, and why does a later start keep more of the source?
# 3. `python -m minidiff bench translation` prints the CIFAR-10 table and the trade-off figure; which method keeps
#    the most of the source at a given target-class accuracy?
# 4. Replace the energy of section 7 by the classifier applied to a randomly shifted and flipped image (a
#    differentiable augmentation). Does $p(\text{dog})$ by an un-augmented judge rise less? What does that say about
#    adversarial directions?

# %%
print(f"notebook ran in {time.time() - t_start:.0f} s")
