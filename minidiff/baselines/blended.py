"""Blended Diffusion (Avrahami, Lischinski & Fried, CVPR 2022) and Blended Latent Diffusion (Avrahami, Fried &
Lischinski, SIGGRAPH 2023), a course-project baseline: local edits by pasting the source back at every step.

Denoise with the target prompt, and after every step replace everything outside the edit mask m by the source
forward-noised to the new timestep (Algorithm 1 of Blended Latent Diffusion; in latent space for latent models):

    x_k = q_sample(x_0^src, t_k, eps_k)                                   start from the noised source
    x~_{t_prev} = ddim_step(x_t, cfg_eps(eps(x_t, t, null), eps(x_t, t, C_tgt), w))       the edit
    x_{t_prev} = m * x~_{t_prev} + (1 - m) * q_sample(x_0^src, t_prev, eps_{t_prev})   the blend, fresh eps

so outside m the trajectory *is* the source's forward-noised one and, at t_prev = 0, the source itself (in the
model's space: for a latent model z_0 = E(x) outside the latent mask and the image D(z_0), equal to the source
up to the autoencoder). Inside m nothing ties the result to the source except the start x_k. The mask comes
from the user (`bench.edit` uses the exact object masks of `shapes`) or from the source prompt's cross-attention
maps of chosen words (`attention_mask`). `latent_mask` takes a pixel mask to a latent grid (any latent cell
touching the mask is in it); `blended_latent_sample` wraps the three for images (encode, blend, decode).

Reference-code notes (Blended Latent Diffusion's script, as run in cure-lab/PnPInversion): it skips the first 25%
of the steps but starts them from pure noise, and noises the source to t instead of t_prev; here the start is the
noised source (the paper's algorithm) and the source is noised to where the step lands, so the last paste is
exactly x_0^src.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_control import attention_control
from ..checks import check_data
from ..gaussian import q_sample
from ..guidance import Guidance, guided
from ..inversion import ddim_invert
from ..p2p import AttentionStore, word_mask, word_weights
from ..protocols import EpsModel
from ..samplers import ddim_coefficients, ddim_update
from ..schedule import Schedule, resolve_grid, standard_normal, step_pairs, t_batch


def check_mask(mask: Tensor, x: Tensor) -> None:
    """A blend mask is (B, 1, H, W) with x's batch and size and values 0 or 1."""
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"the mask must be (B, 1, H, W) = ({x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}) like the "
                         f"images, got {tuple(mask.shape)} (`latent_mask` resizes a pixel mask to a latent grid)")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("the mask must be binary (1 = edit here, 0 = keep the source); threshold it first")


@torch.no_grad()
def blended_sample(eps_model: EpsModel, sched: Schedule, x0: Tensor, mask: Tensor, context: Tensor,
                   guidance: Guidance | None = None, steps: int = 50, skip: int = 0, grid: Tensor | None = None,
                   noise: Tensor | None = None, generator: torch.Generator | None = None,
                   callback: Callable[[dict], None] | None = None) -> Tensor:
    """Blended (Latent) Diffusion (module docstring): DDIM with the target `context` from the source noised to
    grid[skip], pasting the forward-noised source outside `mask` after every step.

    x0: (B, ...) the source (latents for a latent model); mask: (B, 1, h, w) binary, 1 = edit; `noise`:
    (S - skip + 1, B, ...) the eps of the start and of each paste (drawn with `generator` if None). `callback`
    gets {"i", "t", "t_prev", "x_edit", "x_prev"} after each step (x_edit before the blend)."""
    check_data(x0, "x0")
    check_mask(mask, x0)
    grid = resolve_grid(sched.T, steps, "leading", grid)[skip:]
    S = len(grid) - 1
    if noise is None:
        noise = standard_normal((S + 1, *x0.shape), x0, generator)
    if tuple(noise.shape) != (S + 1, *x0.shape):
        raise ValueError(f"noise must be (steps - skip + 1, B, ...) = {(S + 1, *x0.shape)}, got {tuple(noise.shape)}")
    model, m = guided(eps_model, guidance), mask.to(x0)
    coefs = ddim_coefficients(sched, grid[:-1], grid[1:]).tolist()  # (S, 5)
    x = q_sample(sched, x0, t_batch(int(grid[0]), x0), noise[0])
    for i, (t_int, t_prev) in enumerate(step_pairs(grid)):
        x_edit = ddim_update(x, model(x, t_batch(t_int, x), context), coefs[i])
        x_prev = m * x_edit + (1 - m) * q_sample(sched, x0, t_batch(t_prev, x0), noise[i + 1])
        if callback is not None:
            callback({"i": i, "t": t_int, "t_prev": t_prev, "x_edit": x_edit, "x_prev": x_prev})
        x = x_prev
    return x


@torch.no_grad()
def blended_latent_sample(model, images: Tensor, mask: Tensor, context: Tensor, guidance: Guidance | None = None,
                          steps: int = 50, skip: int = 0, **kwargs) -> tuple[Tensor, Tensor]:
    """Blended Latent Diffusion on images: z_0 = E(images), the pixel `mask` (B, 1, H, W) taken to the latent grid
    (`latent_mask`), `blended_sample` in latent space, then D. Returns (edited images (B, 3, H, W), edited latents);
    outside the latent mask the latents are z_0 exactly, so the image there is the source up to the autoencoder
    (and the decoder's receptive field at the mask's edge). For a pixel model E and D are the identity. kwargs go
    to `blended_sample` (grid, noise, generator, callback)."""
    check_mask(mask, images)
    z0 = model.encode(images)  # (B, c, h, w)
    z = blended_sample(model, model.schedule, z0, latent_mask(mask, tuple(z0.shape[-2:])), context, guidance, steps,
                       skip, **kwargs)
    return model.decode(z), z


def latent_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A pixel mask (B, 1, H, W) on a latent grid `size` = (h, w): a latent cell is in the mask if any of its
    pixels is (max-pooling, so the edit region is never cut)."""
    return F.adaptive_max_pool2d(mask.float(), size).to(mask.dtype)


@torch.no_grad()
def attention_mask(model, x0: Tensor, prompts: list[str], words: list[list[str]], steps: int = 10,
                   threshold: float = 0.3) -> Tensor:
    """A mask from the source's cross-attention: the maps of `words[b]` in prompts[b], averaged over the layers at
    the largest attention resolution and over the steps of a w = 1 DDIM inversion of x0, max-pooled 3x3,
    upsampled to x0's size, min-max normalised per image and thresholded (`p2p.word_mask`, as P2P's `LocalBlend`):
    (B, 1, H, W)."""
    store = AttentionStore(len(prompts))
    with attention_control(model, store):
        ddim_invert(model, model.schedule, x0, steps, context=model.encode_text(prompts))
    maps = store.maps(max(store.resolutions()))  # (B, r, r, L)
    weights = word_weights(model.tokenizer, prompts, words, maps.device)  # (B, L)
    return word_mask(maps, weights, tuple(x0.shape[-2:]), threshold).to(x0.dtype)
