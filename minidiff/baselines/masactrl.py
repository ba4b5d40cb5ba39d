"""MasaCtrl (Cao, Wang, Qi, Shan, Qie & Zheng, "MasaCtrl: Tuning-Free Mutual Self-Attention Control for Consistent
Image Synthesis and Editing", ICCV 2023), a course-project baseline for non-rigid edits.

Prompt-to-Prompt keeps the source's *layout* (its cross-attention maps say where each word is drawn), so it cannot
move or re-pose an object. MasaCtrl keeps the source's *content* instead: denoise source and target side by side
from the same x_T and, after a start step and in the decoder's self-attention layers, let the target's queries
read the source's keys and values (eq. 3-4):

    Attention(Q_tgt, K_src, V_src) = softmax(Q_tgt K_src^T / sqrt(d)) V_src

The target prompt decides the layout (its queries come from its own x_t and cross-attention), the source supplies
what the pixels look like. Early steps (before `start`) and the encoder layers run uncontrolled, so the target's
layout can form first. The masked variant (sec. 3.3) keeps foreground and background apart: target queries inside
the target's object mask read only source keys inside the source's object mask, and the rest only the rest,

    P'_ij = m_tgt(i) P_ij m_src(j) / sum_k P_ik m_src(k)
          + (1 - m_tgt(i)) P_ij (1 - m_src(j)) / sum_k P_ik (1 - m_src(k))

which equals attending with the other keys masked out before the softmax. The paper takes the masks from the
cross-attention maps of the object's word in each branch (`CrossAttentionMasks`); they may also be given (the exact
object masks of `shapes`).

It runs on the library's attention hook: `keys_values` swaps K and V (`attention_control.AttentionController`),
`self_attention` applies the masks to P, and `p2p_sample` denoises both branches (with any inversion's x_T, e.g.
DDIM or Direct Inversion). The paper's defaults for Stable Diffusion are step 4 of 50 and layer 10 of 16 (the
decoder); here `start` = 0.1 of the steps and the decoder's self-attention layers ("up.*"; `for_model`). For real
images the reference (and cure-lab/PnPInversion's run of it) inverts and reconstructs the source with the empty
prompt ""; `bench edit` uses the source caption, as for every other row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention_control import AttentionInfo, hooked_layers
from ..p2p import AttentionEdit, word_weights
from ..p2p_alignment import conditional_rows

if TYPE_CHECKING:
    from ..nn.text import Tokenizer


def source_to_target(x: Tensor, G: int) -> Tensor:
    """Rows [sources (G); targets (G)], repeated for each CFG half (B = halves * 2G), with every target row
    replaced by its pair's source row: (B, ...) -> (B, ...)."""
    y = x.unflatten(0, (-1, 2, G)).clone()  # (halves, 2, G, ...)
    y[:, 1] = y[:, 0]
    return y.flatten(0, 2)


def mask_at(mask: Tensor, resolution: int) -> Tensor:
    """A (G, 1, H, W) mask at an attention resolution r, flattened to (G, r*r): a cell is in it when at least half
    of its pixels are."""
    return (F.adaptive_avg_pool2d(mask.float(), resolution) >= 0.5).flatten(1)


def masked_probs(probs: Tensor, m_tgt: Tensor, m_src: Tensor) -> Tensor:
    """The masked mutual attention P' of the module docstring. probs (G, heads, HW_q, HW_k) of the target rows
    (already over the source's keys), m_tgt (G, HW_q) and m_src (G, HW_k) in {0, 1}."""
    k_fg = m_src[:, None, None, :].to(probs)  # (G, 1, 1, HW_k)
    q_fg = m_tgt[:, None, :, None].to(probs)  # (G, 1, HW_q, 1)
    fg, bg = probs * k_fg, probs * (1 - k_fg)
    fg = fg / fg.sum(-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
    bg = bg / bg.sum(-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
    return q_fg * fg + (1 - q_fg) * bg


class CrossAttentionMasks:
    """MasaCtrl's object masks from cross-attention (sec. 3.3): the conditional rows' maps of each row's object words
    at one resolution, averaged over heads and layers within a step, min-max normalised per row and thresholded.
    The masks used at step i are those of step i - 1 (none at the first step), as the reference aggregates the maps
    after each step. `weights` (2G, L) marks the object tokens of [sources; targets]."""

    def __init__(self, weights: Tensor, resolution: int, threshold: float = 0.1):
        self.weights, self.resolution, self.threshold = weights, resolution, threshold
        self.step, self.sum, self.count, self.masks = -1, 0.0, 0, None

    @classmethod
    def for_words(cls, tokenizer: Tokenizer, prompts: list[str], words: list[list[str]], resolution: int,
                  threshold: float = 0.1) -> CrossAttentionMasks:
        """For the rows [sources; targets] = `prompts` and the object words of each row."""
        return cls(word_weights(tokenizer, prompts, words), resolution, threshold)

    def advance(self, step: int) -> None:
        """At a new step, turn the maps summed over the last one into masks (m_src, m_tgt), each (G, 1, r, r)."""
        if step == self.step:
            return
        if self.count:
            m = ((self.sum / self.count) * self.weights.to(self.sum)[:, None, :]).sum(-1)  # (2G, r*r)
            lo, hi = m.amin(1, keepdim=True), m.amax(1, keepdim=True)
            m = ((m - lo) / (hi - lo).clamp_min(1e-12) > self.threshold).to(m.dtype)
            self.masks = m.view(2, -1, 1, self.resolution, self.resolution).unbind(0)
        self.step, self.sum, self.count = step, 0.0, 0

    def observe(self, probs: Tensor, info: AttentionInfo, step: int) -> None:
        self.advance(step)
        if info.kind == "cross" and info.resolution[0] == self.resolution:
            self.sum = self.sum + probs[conditional_rows(probs.shape[0], self.weights.shape[0])].mean(1).detach()
            self.count += 1


class MutualSelfAttention(AttentionEdit):
    """MasaCtrl's controller for `p2p_sample`: in the self-attention `layers`, from step int(start * S) on, the
    target rows use their source's K and V (both CFG halves, as the reference); with `masks` = (m_src, m_tgt),
    each (G, 1, H, W) in {0, 1}, or `auto_masks` (`CrossAttentionMasks`), the masked variant. No cross-attention
    injection."""

    def __init__(self, tokenizer: Tokenizer, sources, targets, grid: Tensor, layers: list[str], start: float = 0.1,
                 masks: tuple[Tensor, Tensor] | None = None, auto_masks: CrossAttentionMasks | None = None):
        super().__init__(tokenizer, sources, targets, grid, cross_steps=0.0)
        self.auto_masks = auto_masks
        if not 0 <= start <= 1:
            raise ValueError(f"start is a fraction of the steps in [0, 1] (MasaCtrl: 4 / 50), got {start}")
        if not layers:
            raise ValueError("MasaCtrl needs at least one self-attention layer to control")
        if masks is not None and any(m.shape[0] != self.G or m.ndim != 4 for m in masks):
            raise ValueError(f"masks must be (m_src, m_tgt), each (G={self.G}, 1, H, W)")
        self.layers, self.start_step, self.masks = set(layers), int(start * self.n_steps), masks

    @classmethod
    def for_model(cls, model, sources, targets, grid: Tensor, start: float = 0.1, first_layer: str = "up.",
                  **kwargs) -> MutualSelfAttention:
        """Control the self-attention layers of `model.unet` from the first whose name starts with `first_layer`
        (the decoder, as the paper's layer 10 of 16) to the last."""
        names = [m.layer_name for m in hooked_layers(model.unet) if m.kind == "self"]
        first = next((i for i, n in enumerate(names) if n.startswith(first_layer)), None)
        if first is None:
            raise ValueError(f"no self-attention layer named {first_layer}*; layers: {names}")
        return cls(model.tokenizer, sources, targets, grid, names[first:], start, **kwargs)

    def active(self, info: AttentionInfo) -> bool:
        return info.kind == "self" and info.layer in self.layers and self.step(info) >= self.start_step

    def keys_values(self, q: Tensor, k: Tensor, v: Tensor, info: AttentionInfo) -> tuple[Tensor, Tensor]:
        if not self.active(info):
            return k, v
        return source_to_target(k, self.G), source_to_target(v, self.G)

    def cross(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        if self.auto_masks is not None:
            self.auto_masks.observe(probs, info, self.step(info))
        return super().cross(probs, info)

    def self_attention(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        if self.store is not None:
            self.store.observe(probs, info)
        if self.auto_masks is not None:
            self.auto_masks.advance(self.step(info))
        masks = self.masks if self.auto_masks is None else self.auto_masks.masks
        if masks is None or not self.active(info):
            return probs
        m_src, m_tgt = (mask_at(m.to(probs.device), info.resolution[0]) for m in masks)  # (G, HW)
        out = probs.unflatten(0, (-1, 2, self.G)).clone()  # (halves, 2, G, heads, HW, HW)
        out[:, 1] = masked_probs(out[:, 1], m_tgt, m_src)
        return out.flatten(0, 2)
