"""InstructPix2Pix's network (Brooks, Holynski & Efros, CVPR 2023, sec. 3.2): a text-conditional diffusion model
whose UNet also sees the image to edit, concatenated to x_t along the channels (`UNetConfig.cond_channels`),

    eps_theta(x_t, t, c_T, c_I) = UNet([x_t, c_I], t, c_T)          (B, 2C, H, W) in, (B, C, H, W) out

c_T the encoded instruction, c_I the source image (zeros: the null image of classifier-free guidance). It starts
from a trained text-to-image model (`from_text_model`): the UNet's input convolution gains C input channels
with zero weights, so at step 0 it *is* that model whatever the image, and the text encoder keeps its weights
and the embeddings of the words both vocabularies share. Sampling with the paper's two guidance scales is in
`baselines.instruct_pix2pix`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from .diffusion_model import DiffusionModel
from .text import Tokenizer


class InstructPix2Pix(DiffusionModel):
    """A DiffusionModel whose UNet also takes c_I (`UNetConfig.cond_channels` = C); call it as
    model(x_t, t, context, image)."""

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor | None = None, image: Tensor | None = None,
                **kwargs) -> Tensor:
        """eps_theta(x_t, t, c_T, c_I): x_t and image (B, C, H, W), context (B, L, D) -> (B, C, H, W)."""
        if image is None or image.shape != x_t.shape:
            got = None if image is None else tuple(image.shape)
            raise ValueError(f"InstructPix2Pix needs the image to edit, shaped like x_t {tuple(x_t.shape)}, got {got}")
        return self.unet(x_t, t, context, cond=image, **kwargs)

    @classmethod
    def from_text_model(cls, base: DiffusionModel, words: list[str]) -> InstructPix2Pix:
        """An InstructPix2Pix initialised from a pixel-space text-to-image `base` (module docstring), with the
        tokenizer over `words`."""
        if base.latent or not base.conditional:
            raise ValueError("InstructPix2Pix starts from a pixel-space, text-conditional DiffusionModel")
        tok = Tokenizer(words, base.tokenizer.max_len)
        text_cfg = replace(base.text_encoder.cfg, vocab_size=tok.vocab_size)
        unet_cfg = replace(base.unet.cfg, cond_channels=base.unet.cfg.in_channels)
        model = cls(unet_cfg, base.schedule, tok, text_cfg, {**base.data, "edits": "instructions"})
        state = {k: v for k, v in base.state_dict().items() if k not in ("unet.conv_in.weight",
                                                                        "text_encoder.tok_emb.weight")}
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            w = model.unet.conv_in.weight  # (out, 2C, k, k)
            w.zero_()
            w[:, :base.unet.cfg.in_channels] = base.unet.conv_in.weight  # the image's channels start at zero
            emb, old = model.text_encoder.tok_emb.weight, base.text_encoder.tok_emb.weight
            for i, word in enumerate(tok.itos):
                if word in base.tokenizer.stoi:
                    emb[i] = old[base.tokenizer.stoi[word]]
        return model
