"""The course project's baselines as rows of the ground-truth edit benchmark (`bench edit`, issue 19).

Each row edits every case of `bench.edit.EditCases` with one method of `minidiff.baselines` at the table's w and
DDIM steps: Direct Inversion + P2P (with and without local blend), Blended Diffusion with the exact edit-region
mask of `shapes` and with a cross-attention mask, MasaCtrl from DDIM inversion (plain, and masked by the
edited object's cross-attention) and from Direct Inversion,
Pix2Pix-Zero, and InstructPix2Pix when its checkpoint (`shapes_instruct`) is shipped. `PIE_BENCH` is the
published comparison printed beside the table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..baselines.blended import attention_mask, blended_sample
from ..baselines.direct_inversion import direct_inversion_p2p, direct_invert
from ..baselines.instruct_pix2pix import instruct_edit
from ..baselines.masactrl import CrossAttentionMasks, MutualSelfAttention
from ..baselines.pix2pix_zero import edit_direction, pix2pix_zero_edit, pix2pix_zero_invert
from ..datasets.shapes import swap_sentences
from ..guidance import Guidance
from ..p2p import p2p_sample
from ..schedule import timesteps
from ..training import pretrained

BLEND_SKIP = 0.25  # Blended Latent Diffusion's script skips the first 25% of the steps (`baselines.blended`)
INSTRUCT = "shapes_instruct"  # the shipped InstructPix2Pix checkpoint
S_I, S_T = 2.0, 3.0  # InstructPix2Pix's guidance scales in the table: the best success of 7 pairs on 48 cases

# PIE-Bench (Ju et al., ICLR 2024, Table 1; Stable Diffusion, 700 real images): background PSNR (dB) of the three
# P2P rows, as quoted in issue 19 and, for Direct Inversion + P2P, its paperswithcode entry (also structure distance
# 11.65e-3, background LPIPS 54.55e-3, CLIP similarity 25.02). The other rows of that table are not reproduced: they
# could not be checked offline.
PIE_BENCH = [("DDIM inversion + P2P", 17.9), ("null-text inversion + P2P", 27.0), ("Direct Inversion + P2P", 27.2)]


def baseline_methods(model, cases, w: float, steps: int, seed: int, ddim_x_T: Callable[[], Tensor],
                     p2p_word_swaps: Callable) -> dict[str, Callable[[], Tensor]]:
    """{row name: a function computing its edits (n, C, h, w)}; the Direct Inversion is computed once, by the first
    row that needs it (its time is charged there). `ddim_x_T` gives the table's shared DDIM inversion and
    `p2p_word_swaps` is `bench.edit`'s per-kind P2P."""
    sched, x0, guidance = model.schedule, cases.source, Guidance.of(model, w)
    src_ctx, tgt_ctx = model.encode_text(cases.source_caption), model.encode_text(cases.target_caption)
    cache: dict = {}
    direct = lambda: cache.get("di") or cache.setdefault("di", direct_invert(model, sched, x0, src_ctx, guidance,
                                                                           steps))
    blended = lambda mask: blended_sample(model, sched, x0, mask, tgt_ctx, guidance, steps,
                                          skip=round(BLEND_SKIP * steps), generator=torch.Generator().manual_seed(seed))
    masa = lambda **kw: MutualSelfAttention.for_model(model, cases.source_caption, cases.target_caption,
                                                      timesteps(sched.T, steps), **kw)
    masks = lambda: CrossAttentionMasks.for_words(model.tokenizer, cases.source_caption + cases.target_caption,
                                                  cases.blend_source + cases.blend_target,
                                                  max(model.unet.cfg.attention_resolutions))
    rows = {
        "Direct Inversion + P2P": lambda: p2p_word_swaps(model, cases, None, w, steps, blend=False, direct=direct()),
        "Direct Inversion + P2P + local blend": lambda: p2p_word_swaps(model, cases, None, w, steps, blend=True,
                                                                       direct=direct()),
        "Blended Diffusion, exact mask": lambda: blended(1 - cases.keep),
        "Blended Diffusion, attention mask": lambda: blended(attention_mask(model, x0, cases.source_caption,
                                                                            cases.blend_source)),
        "MasaCtrl (DDIM inversion)": lambda: p2p_sample(model, masa(), ddim_x_T(), guidance)[1],
        "MasaCtrl, cross-attention masks (DDIM inversion)": lambda: p2p_sample(model, masa(auto_masks=masks()),
                                                                               ddim_x_T(), guidance)[1],
        "Direct Inversion + MasaCtrl": lambda: direct_inversion_p2p(model, masa(), direct(), guidance)[1],
    }
    rows["Pix2Pix-Zero"] = lambda: pix2pix_zero_rows(model, cases, guidance, steps, seed)
    if pretrained.available(INSTRUCT):
        rows[f"InstructPix2Pix (s_I {S_I}, s_T {S_T})"] = lambda: instruct_edit(
            pretrained.load(INSTRUCT, device=x0.device), x0, cases.instruction, S_I, S_T, steps, seed)
    return rows


def pix2pix_zero_rows(model, cases, guidance: Guidance, steps: int, seed: int) -> Tensor:
    """Pix2Pix-Zero of every case: its regularised inversion with the source caption, the direction of the swapped
    word from 32 grammar sentences each (`datasets.shapes.swap_sentences`), cross-attention guidance 0.1."""
    context = model.encode_text(cases.source_caption)
    x_T = pix2pix_zero_invert(model, model.schedule, cases.source, context, steps, seed=seed)
    changed = [next((a, b) for a, b in zip(s.split(), t.split(), strict=True) if a != b)
               for s, t in zip(cases.source_caption, cases.target_caption, strict=True)]
    directions = {pair: edit_direction(model.encode_text, *swap_sentences(*pair, seed=seed)) for pair in set(changed)}
    direction = torch.cat([directions[pair] for pair in changed])  # (n, L, D)
    return pix2pix_zero_edit(model, x_T, context, direction, guidance, steps)[1]


def print_pie_bench() -> None:
    """The published ordering beside the table (another model, other images: compare orderings, not values)."""
    print("\nPIE-Bench (Ju et al., ICLR 2024; Stable Diffusion, 700 real images, hand-drawn masks, no exact targets): "
          "background PSNR")
    for name, value in PIE_BENCH:
        print(f"  {name:<28} {value:5.1f} dB")
    print("  (CLIP similarity of the three within about 0.3: all three edit; they differ in what they keep)")
