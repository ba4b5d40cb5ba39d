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
# # Lecture 8: h-space, a semantic latent space inside the UNet
#
# Kwon, Jeong & Uh ("Diffusion models already have a semantic latent space", ICLR 2023; kwonminki/Asyrp_official)
# edit images by shifting the UNet's bottleneck feature $h_t$, not $x_t$. DDIM's step has three parts (DDIM eq. 12),
#
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\, P_t(\varepsilon) + D_t(\varepsilon) + \sigma_t z_t, \qquad
# P_t(\varepsilon) = \frac{x_t - \sqrt{1 - \bar\alpha_t}\,\varepsilon}{\sqrt{\bar\alpha_t}}, \qquad
# D_t(\varepsilon) = \sqrt{1 - \bar\alpha_{t'} - \sigma_t^2}\,\varepsilon,$$
#
# and the **asymmetric reverse process** (their eq. 4) uses the shifted prediction
# $\tilde\varepsilon = \varepsilon_\theta(x_t \mid h_t + \Delta h_t)$ in $P_t$ only, the original $\varepsilon$ in
# $D_t$, for $t$ in an editing interval $[T, t_{\text{edit}}]$.
#
# 1. Why $x_T$ is not a semantic space: interpolating two inversions mixes their contents.
# 2. $P_t$ and $D_t$ pictured; the asymmetric step checked inline; why the symmetric shift does little.
# 3. An implicit function $f_t(h_t) = \Delta h_t$ trained for one attribute (the `shapes` background, gray ->
#    black), with a loss the project can compute offline; its scale, its global average, and the editing interval.
# 4. Unsupervised directions: the top right singular vectors of $\partial P_t / \partial h$ by power iteration.
# 5. Composition: the sum of two $\Delta h$'s makes both edits.
#
# The CelebA table (Smiling, Young, Male on real faces) is `python -m minidiff bench hspace`; see data/README.md.

# %% tags=["parameters"]
# FAST = True is the CI-sized run. FAST = False: the 40-step grid, more scenes, more training.
FAST = True
DEVICE = "auto"  # where the models run: auto (CUDA, else MPS, else CPU; $MINIDIFF_DEVICE overrides), cpu, cuda, mps

# %%
import dataclasses
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from minidiff.datasets.shapes import render, sample_scene
from minidiff.datasets.shapes_check import background_of
from minidiff.devices import resolve_device
from minidiff.hspace import (
    D_t,
    P_t,
    applied_deltas,
    asyrp_loss,
    asyrp_sample,
    asyrp_update,
    constant_delta,
    direction_loss,
    explicit_attention,
    feature_direction,
    scale_delta,
    sum_deltas,
    top_singular_vectors,
)
from minidiff.inversion import ddim_invert
from minidiff.metrics import psnr
from minidiff.nn.hspace import ImplicitDelta
from minidiff.samplers import ddim_coefficients, ddim_update
from minidiff.schedule import timesteps
from minidiff.training import pretrained
from minidiff.training.hspace import train_implicit_delta
from minidiff.viz import image_grid

STEPS = 10 if FAST else 40
N = 6 if FAST else 24  # scenes to train on, and held-out scenes to edit
EPOCHS = 3 if FAST else 6
t_start = time.time()
device = resolve_device(DEVICE)
print(f"models run on {device}")


def grid(images, titles=None, ncol=8):
    image_grid(images.cpu(), titles, ncol=ncol, scale=1.3)
    plt.show()


model = pretrained.load("shapes", device=device)
sched = model.schedule
S_grid = timesteps(sched.T, STEPS)


def scenes(n: int, seed: int, background: str) -> torch.Tensor:
    """n rendered one-object scenes with the given background, (n, 3, 32, 32) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return torch.stack([render(dataclasses.replace(sample_scene(rng, 1), background=background))[0]
                        for _ in range(n)]).to(device)


def invert(x: torch.Tensor) -> torch.Tensor:
    """x_T by DDIM inversion with the null prompt (the model used as an unconditional one, Asyrp's setting)."""
    return ddim_invert(model, sched, x, grid=S_grid, context=model.null_context(len(x)))


def decode(x_T: torch.Tensor, delta=None, t_edit: int = 0) -> torch.Tensor:
    return asyrp_sample(model, sched, x_T, delta, t_edit, grid=S_grid, context=model.null_context(len(x_T)))


# %% [markdown]
# ## 1. $x_T$ is not a semantic space
#
# Two scenes, inverted to their $x_T$, and the straight line between them decoded. Half-way, the image is neither
# scene: the pixels of $x_T$ carry no attribute one could move along (the checker reads each background).

# %%
pair = torch.cat([scenes(1, 0, "gray"), scenes(1, 3, "black")])
x_T_pair = invert(pair)
alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
mixed = decode(torch.stack([(1 - a) * x_T_pair[0] + a * x_T_pair[1] for a in alphas]))
grid(torch.cat([pair, mixed]), ["source A", "source B"] + [f"x_T lerp {a:g}: {background_of(x)}"
                                                             for a, x in zip(alphas, mixed, strict=True)], ncol=7)

# %% [markdown]
# ## 2. $P_t$ and $D_t$, and the asymmetric step
#
# Along one DDIM trajectory: $x_t$, the predicted $x_0$ ($P_t$) and the direction term $D_t$ (scaled to be
# visible). Then the asymmetric step checked against its closed form: with $\tilde\varepsilon = \varepsilon$ it *is*
# the DDIM step, bit for bit; otherwise it moves $x_{t'}$ by
# $-\sqrt{\bar\alpha_{t'}}\sqrt{1 - \bar\alpha_t}/\sqrt{\bar\alpha_t}\,(\tilde\varepsilon - \varepsilon)$. Shifting
# both terms would move it by
# $(\sqrt{1 - \bar\alpha_{t'}} - \sqrt{\bar\alpha_{t'}}\sqrt{1 - \bar\alpha_t}/\sqrt{\bar\alpha_t})
# (\tilde\varepsilon - \varepsilon)$: the two parts nearly cancel (Asyrp's Theorem 1), the more so the finer the
# grid, which is why $\Delta h$ must go into $P_t$ alone.

# %%
steps = []
asyrp_sample(model, sched, x_T_pair[:1], None, 0, grid=S_grid, context=model.null_context(1), callback=steps.append)
show = [steps[i] for i in np.linspace(0, len(steps) - 1, 4).round().astype(int)]
pics, titles = [], []
for st in show:
    c = ddim_coefficients(sched, st["t"], st["t_prev"]).tolist()[0]
    pics += [st["x_t"][0], P_t(st["x_t"], st["eps"], c)[0].clamp(-1, 1), (3 * D_t(st["eps"], c)[0]).clamp(-1, 1)]
    titles += [f"x_t, t = {st['t']}", "P_t (pred. x_0)", "3 D_t"]
grid(torch.stack(pics), titles, ncol=6)

g = torch.Generator().manual_seed(0)
x, eps, eps_e = (torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(3))
for t, t_prev in [(S_grid[1].item(), S_grid[2].item()), (501, 500)]:
    c = ddim_coefficients(sched, t, t_prev).tolist()[0]
    assert torch.equal(asyrp_update(x, eps, eps, c), ddim_update(x, eps, c))
    asym = (asyrp_update(x, eps, eps_e, c) - ddim_update(x, eps, c)).norm()
    sym = (ddim_update(x, eps_e, c) - ddim_update(x, eps, c)).norm()
    print(f"step {t} -> {t_prev}: |asymmetric shift| = {asym:.3f}, |symmetric shift| = {sym:.4f} "
          f"(ratio {sym / asym:.3f})")

# %% [markdown]
# ## 3. Training $f_t$: gray -> black background
#
# Asyrp's loss (their eq. 6) is $\lambda_\text{dir} L_\text{direction}(P_t^\text{edit}, P_t^\text{source}) +
# \lambda_\text{recon} |P_t^\text{edit} - P_t^\text{source}|$ with
# $L_\text{direction} = 1 - \cos(\Delta I, \Delta T)$, $\Delta I$ and $\Delta T$ the image and text directions in
# CLIP's space. No CLIP exists offline; any feature space where the attribute has a direction works. Here the
# feature is the mean colour of the image border, and $\Delta T$ = mean feature of black-background renders minus
# gray ones (`hspace.feature_direction`). $f_t$ is trained on `N` gray-background scenes, then applied to `N`
# *other* scenes; the checker (`background_of`, exact on renders) judges the result.
#
# What to expect in FAST mode (6 scenes, 10 steps, 3 epochs; the numbers printed below vary from run to run with
# f_t's initialisation and the thread count, the pattern does not): the direction loss falls from 1 to near 0 within
# seconds, but $1 - \cos$ rewards the direction of $\Delta I$, not its length, and the reconstruction term holds the
# length down, so at scale 1 the edit is faint. The border darkens with the scale and then saturates (one run on
# `shapes`: brightness -0.40 at scale 4, -0.46 at 8 and 12), the object degrades at the large scales (the PSNR to the
# reconstruction falls to 11.7-12.7 dB at scales 4-12), and the checker never reads the background as black (a black
# border is -0.84 on the [-1, 1] scale). Negative scales move it the other way, a little. On this 1.7M-parameter model
# h-space moves a global attribute, weakly; `bench hspace --checkpoint shapes` measures the same edit with a stronger
# loss against the exact target (data/README.md).

# %%
def border(x: torch.Tensor) -> torch.Tensor:
    """Mean colour of the 2-pixel border, (B, 3)."""
    mask = torch.ones(32, 32, dtype=torch.bool, device=x.device)
    mask[2:-2, 2:-2] = False
    return x[..., mask].mean(-1)


delta_T = feature_direction(border(scenes(64, 100, "black")), border(scenes(64, 100, "gray")))
T_EDIT = int(S_grid[len(S_grid) // 2])


def loss(p_edit, p_src, t):
    return asyrp_loss(p_edit, p_src, direction_loss(border(p_edit), border(p_src), delta_T), lambda_recon=1.0)


x_train, x_test = scenes(N, 1, "gray"), scenes(N, 2, "gray")
f = ImplicitDelta(model(x_train[:1], S_grid[:1], model.null_context(1), return_h=True)[1].shape[1]).to(device)
t0 = time.time()
losses = train_implicit_delta(model, sched, f, invert(x_train), loss, T_EDIT, STEPS, model.null_context(1),
                              epochs=EPOCHS, batch_size=N, lr=3e-3, progress=False)
print(f"f_t trained over [T, {T_EDIT}] in {time.time() - t0:.0f} s: loss {losses[0]:.3f} -> {losses[-1]:.3f}")

x_T_test = invert(x_test)
rec = decode(x_T_test)
scales = [-4.0, 0.0, 4.0, 8.0, 12.0]
edits = {s: decode(x_T_test, scale_delta(f, s), T_EDIT) for s in scales}
hit = {s: np.mean([background_of(x) == "black" for x in e]) for s, e in edits.items()}
bright = {s: border(e).mean().item() for s, e in edits.items()}
for s in scales:
    print(f"scale {s:+.1f}: read as black {hit[s]:.2f}, border brightness {bright[s]:+.3f}, "
          f"PSNR to reconstruction {psnr(edits[s], rec).mean():.1f} dB")
grid(torch.cat([rec[:4]] + [edits[s][:4] for s in scales]), None, ncol=4)
print("rows: the reconstruction, then scales " + ", ".join(f"{s:g}" for s in scales))

# %% [markdown]
# Linearity: the border brightness against the scale of $\Delta h$ (negative scales go the other way), and the
# global $\Delta h$: the average of $f_t(h_t)$ over the training scenes and the editing steps, one tensor for all
# images and all $t$. Asyrp finds $\Delta h_t$ nearly constant in $t$; the cosine of each step's mean with the
# global one says how nearly.

# %%
deltas, ts = applied_deltas(model, sched, invert(x_train), f, T_EDIT, STEPS, model.null_context(N))
global_dh = deltas.mean((0, 1))
cos = F.cosine_similarity(deltas.mean(1).flatten(1), global_dh.flatten()[None], dim=1)
glob = decode(x_T_test, constant_delta(8.0 * global_dh), T_EDIT)
print(f"global delta h at scale 8: read as black {np.mean([background_of(x) == 'black' for x in glob]):.2f}, border "
      f"{border(glob).mean():+.3f} (f_t: {hit[8.0]:.2f}, {bright[8.0]:+.3f}); cosine of delta h_t with it: "
      + ", ".join(f"t={t}: {c:.2f}" for t, c in zip(ts.tolist(), cos.tolist(), strict=True)))
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
ax[0].plot(scales, [bright[s] for s in scales], "o-")
ax[0].set(xlabel="scale of delta h", ylabel="border brightness", title="linearity")
t_edits = [int(t) for t in S_grid[:-1] if t >= T_EDIT]
sweep = [border(decode(x_T_test, scale_delta(f, 8.0), te)).mean().item() for te in t_edits]
ax[1].plot(t_edits, sweep, "o-")
ax[1].set(xlabel="t_edit (edit over [T, t_edit])", ylabel="border brightness", title="the editing interval, scale 8")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Unsupervised directions from the Jacobian
#
# Park et al. ("Unsupervised discovery of semantic latent directions in diffusion models", NeurIPS 2023) look for
# the directions in which the output moves most: the top right singular vectors of a Jacobian. Here
# $J = \partial P_t / \partial h$ at one $x_t$ (mid-grid), found without forming $J$ by power iteration on
# $J^\top J$ with `torch.func.jvp` / `vjp` (`hspace.top_singular_vectors`; the test suite checks it against the
# SVD of the explicit Jacobian). Each row: $-v_i$, the reconstruction, $+v_i$, applied as
# $\Delta h = \pm 0.5 |h| v_i$ over $[T, t]$. No labels are involved; what each direction does is read off the
# pictures (on `shapes`: mostly colour and brightness of object and background, entangled).

# %%
st = steps[len(steps) // 2]
c = ddim_coefficients(sched, st["t"], st["t_prev"]).tolist()[0]
tb, ctx1 = torch.tensor([st["t"]], device=device), model.null_context(1)
with torch.no_grad():
    h = model(st["x_t"], tb, ctx1, return_h=True)[1]
with explicit_attention(model):
    V, sv = top_singular_vectors(lambda dh: P_t(st["x_t"], model(st["x_t"], tb, ctx1, h_delta=dh), c),
                                 torch.zeros_like(h), k=3, iters=10 if FAST else 30,
                                 generator=torch.Generator().manual_seed(0))
print(f"top singular values at t = {st['t']}: " + ", ".join(f"{s:.3f}" for s in sv.tolist()))
rows = []
for v in V[:, 0]:
    for sign in (-1, 0, 1):
        dh = constant_delta(sign * 0.5 * h.norm() * v)
        rows.append(decode(x_T_pair[:1], dh if sign else None, st["t"])[0])
grid(torch.stack(rows), [f"v{i + 1} {s}" for i in range(3) for s in ("-", "0", "+")], ncol=3)

# %% [markdown]
# ## 5. Composition: $\Delta h$'s add
#
# Asyrp composes edits by adding their $\Delta h$. Here the trained background edit ($f_t$ at scale 8) and the
# first unsupervised direction ($+0.5|h| v_1$), both over $[T, t_\text{edit}]$ on the scene of section 4, and
# their sum. Each edit is read off by two numbers: the change of the border brightness (what $f_t$ was trained
# to move) and the projection of the image change onto the change $v_1$ alone makes,
# $\langle x - x_\text{rec}, d_v \rangle / |d_v|^2$ (1 for the $v_1$ edit itself). If $\Delta h$'s compose,
# the sum shows both readings, and its image change is close to the sum of the two changes (in FAST mode the
# printed relative difference was 0.12 in one run: they add, roughly, as the network is not linear in $h$).

# %%
one = x_T_pair[:1]
rec1 = decode(one)
v1 = constant_delta(0.5 * h.norm() * V[0, 0])
comp = {"f_t x 8": decode(one, scale_delta(f, 8.0), T_EDIT), "v1": decode(one, v1, T_EDIT),
        "f_t x 8 + v1": decode(one, sum_deltas(scale_delta(f, 8.0), v1), T_EDIT)}
d_v = comp["v1"] - rec1
reading = {k: ((border(x) - border(rec1)).mean().item(), ((x - rec1) * d_v).sum().item() / d_v.pow(2).sum().item())
           for k, x in comp.items()}
d_sum = comp["f_t x 8"] + comp["v1"] - 2 * rec1
rel = ((comp["f_t x 8 + v1"] - rec1) - d_sum).norm() / d_sum.norm()
print(f"|change of the summed edit - sum of the changes| / |sum of the changes| = {rel:.3f}")
grid(torch.cat([rec1, *comp.values(), (rec1 + d_sum).clamp(-1, 1)]),
     ["reconstruction", *comp, "rec + both changes"], ncol=5)
fig, ax = plt.subplots(figsize=(6, 2.8))
pos = np.arange(len(reading))
ax.bar(pos - 0.2, [r[0] for r in reading.values()], 0.4, label="border brightness change")
ax.bar(pos + 0.2, [r[1] for r in reading.values()], 0.4, label="projection on the v1 change")
ax.set_xticks(pos, list(reading))
ax.axhline(0, color="k", lw=0.5)
ax.legend()
ax.set_title("composition: the sum of two delta h shows both edits")
plt.tight_layout()
plt.show()
print(f"notebook ran in {time.time() - t_start:.0f} s")
