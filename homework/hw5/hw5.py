"""Homework 5: Prompt-to-Prompt and null-text inversion (lecture 5; Hertz et al., "Prompt-to-Prompt Image Editing
with Cross-Attention Control", ICLR 2023, sec. 3.2 and google/prompt-to-prompt; Mokady et al., "Null-text
Inversion for Editing Real Images using Guided Diffusion Models", CVPR 2023, Algorithm 1).

Write the body of each function where it says `raise NotImplementedError`. Cross-attention maps are
probabilities of shape (B, heads, P, N): for each of P pixels, a distribution over N prompt tokens. The source
prompt's maps M_t and the target prompt's M*_t come from the same step of the two branches. Provided: `sched`, a
`minidiff.schedule.Schedule`, and `ddim_step` below.

Rules: keep the dtype of the tensor inputs; import only `torch`, `math` and `minidiff.schedule`. Check your work
with `python -m pytest -q test_public.py` (or the last cell of hw5_notebook.py); the grader also runs hidden tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from minidiff.schedule import Schedule


def ddim_step(sched: Schedule, x_t: Tensor, eps: Tensor, t: int, t_prev: int) -> Tensor:
    """The deterministic DDIM step t -> t_prev (eta = 0). Provided."""
    ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t_prev].item()
    return ab_prev ** 0.5 * (x_t - (1 - ab) ** 0.5 * eps) / ab ** 0.5 + (1 - ab_prev) ** 0.5 * eps


def word_swap(M: Tensor, M_target: Tensor, alpha: Tensor) -> Tensor:
    """Q1 (2 points). Word swap with per-token injection windows: token j takes the source's maps while its
    window is open at this step (alpha_j = 1) and keeps the target's otherwise (alpha_j = 0),

        Edit_j = alpha_j M_j + (1 - alpha_j) M*_j.

    M, M_target: (B, heads, P, N); alpha: (N,) of 0s and 1s (or weights in [0, 1]). Returns (B, heads, P, N)."""
    # BEGIN SOLUTION
    return alpha * M + (1 - alpha) * M_target
    # END SOLUTION


def refine(M: Tensor, M_target: Tensor, mapper: Tensor, aligned: Tensor) -> Tensor:
    """Q2 (3 points). Refinement (words added to the prompt): target token j aligned to source token mapper[j]
    takes that token's map, an added token (aligned[j] = 0) keeps its own,

        Edit_j = M_{mapper[j]} if aligned[j] else M*_j.

    M, M_target: (B, heads, P, N); mapper: (B, N) long (source index per target token; any valid index where
    not aligned); aligned: (B, N) of 0/1. Returns (B, heads, P, N)."""
    # BEGIN SOLUTION
    idx = mapper[:, None, None, :].expand(-1, M.shape[1], M.shape[2], -1)
    return torch.where(aligned[:, None, None, :] > 0, M.gather(-1, idx), M_target)
    # END SOLUTION


def reweight(M: Tensor, c: Tensor) -> Tensor:
    """Q3 (2 points). Re-weighting: scale the maps of chosen tokens, (Edit)_{i,j} = c_j M_{i,j} (P2P's
    equalizer; the rows no longer sum to 1, by design). M: (B, heads, P, N); c: (B, N). Returns (B, heads, P, N)."""
    # BEGIN SOLUTION
    return M * c[:, None, None, :]
    # END SOLUTION


def local_blend_mask(maps: Tensor, weights: Tensor, size: tuple[int, int], threshold: float) -> Tensor:
    """Q4 (3 points). Local blend's mask from cross-attention maps (P2P sec. 3.2; minidiff's `LocalBlend`):

        m = sum_j weights_j maps_j               the blend words' maps, (B, 1, r, r)
        m = maxpool3x3(m)                        kernel 3, stride 1, padding 1
        m = bilinear resize to `size`            (align_corners=False)
        m = (m - min m) / (max m - min m)        per image (min-max; clamp the denominator at 1e-12)
        mask = (m > threshold) as float

    maps: (B, r, r, N) a word's map per token (averaged over heads, layers and steps); weights: (B, N) 1 for the
    blend words. Returns (B, 1, H, W)."""
    # BEGIN SOLUTION
    m = (maps * weights[:, None, None, :]).sum(-1)[:, None]
    m = F.max_pool2d(m, kernel_size=3, stride=1, padding=1)
    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    lo, hi = m.flatten(1).amin(1)[:, None, None, None], m.flatten(1).amax(1)[:, None, None, None]
    return (((m - lo) / (hi - lo).clamp_min(1e-12)) > threshold).to(maps.dtype)
    # END SOLUTION


def null_text_loss(eps_model, sched: Schedule, x_t: Tensor, t: int, t_prev: int, null: Tensor, eps_c: Tensor,
                   target: Tensor, w: float) -> Tensor:
    """Q5 (3 points). Null-text inversion's inner loss (Algorithm 1): with the guided noise
    eps~ = eps(x_t, t, null) + w (eps_c - eps(x_t, t, null)),

        loss = mean over pixels of (x*_{t_prev} - ddim_step(x_t, eps~))^2   per image.

    eps_model(x, t, context) with t a (B,) long tensor; null: (B, L, D) the null embeddings being optimised;
    eps_c = eps(x_t, t, prompt) (fixed); target = x*_{t_prev} from the DDIM inversion. Returns (B,),
    differentiable in `null`."""
    # BEGIN SOLUTION
    eps_u = eps_model(x_t, torch.full((len(x_t),), t, dtype=torch.long), null)
    x_prev = ddim_step(sched, x_t, eps_u + w * (eps_c - eps_u), t, t_prev)
    return (x_prev - target).pow(2).flatten(1).mean(1)
    # END SOLUTION
