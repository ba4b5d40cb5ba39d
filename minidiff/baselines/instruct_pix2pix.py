"""InstructPix2Pix (Brooks, Holynski & Efros, "InstructPix2Pix: Learning to Follow Image Editing Instructions",
CVPR 2023), a course-project baseline: no inversion at all, a diffusion model trained to edit.

The network eps_theta(x_t, t, c_T, c_I) sees the image to edit c_I (concatenated to x_t) and the instruction c_T
(`nn.instruct.InstructPix2Pix`); it is trained on (source, instruction, edited) triples, here rendered exactly by
`datasets.shapes_instruct`, with each condition dropped to its null (zero image, empty instruction) 5% of the
time alone and 5% together, so one network also gives the three guidance terms. Sampling uses the paper's
classifier-free guidance with two scales (eq. 3):

    eps~ = eps(x_t, 0, 0) + s_I (eps(x_t, c_I, 0) - eps(x_t, 0, 0)) + s_T (eps(x_t, c_I, c_T) - eps(x_t, c_I, 0))

s_I pulls towards the input image, s_T towards the instruction; s_I = s_T = 1 is the conditional model
eps(x_t, c_I, c_T). Sampling starts from pure noise (DDIM here; the paper uses Euler ancestral).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..checks import check_data, check_number
from ..samplers import ddim_sample
from ..schedule import standard_normal


def dual_cfg_eps(eps_uu: Tensor, eps_iu: Tensor, eps_it: Tensor, s_I: float, s_T: float) -> Tensor:
    """Eq. 3: eps(0, 0) + s_I (eps(c_I, 0) - eps(0, 0)) + s_T (eps(c_I, c_T) - eps(c_I, 0))."""
    return eps_uu + s_I * (eps_iu - eps_uu) + s_T * (eps_it - eps_iu)


def dual_guided(model, image: Tensor, null_context: Tensor, s_I: float, s_T: float) -> Callable:
    """The eps-model eps~(x_t, t, c_T) of eq. 3 for `model(x_t, t, context, image)` and the images to edit
    (B, C, H, W); the three terms come from one batched call of 3B rows [(0, 0); (c_I, 0); (c_I, c_T)]."""
    check_number(s_I, "the image guidance scale s_I", lo=0)
    check_number(s_T, "the text guidance scale s_T", lo=0)

    def eps(x_t: Tensor, t: Tensor, context: Tensor) -> Tensor:
        null = null_context.expand(x_t.shape[0], *null_context.shape[1:]).to(context)
        images = torch.cat([torch.zeros_like(image), image, image])  # (3B, C, H, W)
        out = model(torch.cat([x_t] * 3), torch.cat([t] * 3), torch.cat([null, null, context]), image=images)
        return dual_cfg_eps(*out.chunk(3), s_I, s_T)

    return eps


@torch.no_grad()
def instruct_edit(model, images: Tensor, instructions: list[str], s_I: float = 1.5, s_T: float = 3.0,
                  steps: int = 50, seed: int = 0, x_T: Tensor | None = None) -> Tensor:
    """Edit `images` (B, C, H, W) in [-1, 1] by `instructions` (B strings): DDIM from x_T ~ N(0, I) (seeded) with
    the dual guidance of eq. 3. Words outside the model's instruction vocabulary raise a ValueError naming them."""
    check_data(images, "images")
    if len(instructions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(instructions)} instructions")
    context = model.encode_text(list(instructions))  # unknown words: the tokenizer's ValueError
    if x_T is None:
        x_T = standard_normal(images.shape, images, torch.Generator().manual_seed(seed))
    eps = dual_guided(model, images, model.encode_text([""]), s_I, s_T)
    return ddim_sample(eps, model.schedule, x_T, steps, context=context)
