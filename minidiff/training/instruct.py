"""Training InstructPix2Pix (`nn.instruct`) on exact instruction edits of `shapes` (`datasets.shapes_instruct`).

    repeat
        (c_I, c_T, x_0) ~ rendered (source, instruction, edited) triples
        with probability 0.05 each: drop c_T only, drop c_I only, drop both   (sec. 3.2.1: nulls are the empty
                                                                              instruction and the zero image)
        t ~ Uniform{1..T}, eps ~ N(0, I)
        gradient step on || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t, c_T, c_I) ||^2

starting from a trained text-to-image model (`--init`, default the shipped `shapes`), as the paper starts from
Stable Diffusion. `python -m minidiff train --task instruct ...` (data/README has the shipped command).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ..baselines.instruct_pix2pix import instruct_edit
from ..datasets.shapes_instruct import INSTRUCTION_WORDS, instruct_pairs
from ..elbo import L_simple
from ..nn.instruct import InstructPix2Pix
from ..viz import save_grid
from . import pretrained
from .checkpoint import save_model

DROP = 0.05  # probability of each of: instruction only, image only, both dropped


def dropout_masks(B: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(drop_text, drop_image), each (B,) bool, from one uniform draw per example: [0, DROP) drops the instruction
    only, [DROP, 2 DROP) the image only, [2 DROP, 3 DROP) both."""
    r = torch.rand(B, generator=gen)
    return (r < DROP) | ((r >= 2 * DROP) & (r < 3 * DROP)), (r >= DROP) & (r < 3 * DROP)


def instruct_loss(model: InstructPix2Pix, src: Tensor, tgt: Tensor, tok: Tensor, null_tok: Tensor,
                  gen: torch.Generator, part: slice) -> Tensor:
    """L_simple of the edited images x_0 = tgt given (c_I = src, c_T = tok), with the conditioning dropout of the
    module docstring; noise for the whole global batch from `gen`, this process's `part` computed."""
    B, device = src.shape[0], next(model.parameters()).device
    drop_text, drop_image = dropout_masks(B, gen)
    t = torch.randint(1, model.schedule.T + 1, (B,), generator=gen)
    eps = torch.randn(tgt.shape, generator=gen)
    tok = torch.where(drop_text[:, None], null_tok, tok)  # (B, L)
    image = torch.where(drop_image[:, None, None, None], torch.zeros_like(src), src)  # (B, C, H, W)
    image, x0, eps, t, tok = (v[part].to(device) for v in (image, tgt, eps, t, tok))
    eps_model = lambda x_t, t_, c: model(x_t, t_, c, image=image)  # noqa: E731 (binds c_I for L_simple)
    return L_simple(eps_model, model.schedule, x0, context=model.text_encoder(tok), t=t, eps=eps).mean()


def instruct_task(cfg, device: torch.device):
    """(model, batch_loss, export, n) for `training.loop.fit`: cfg.n_train rendered triples (cfg.seed), the model
    initialised from cfg.init (`InstructPix2Pix.from_text_model`)."""
    src, tgt, instructions = instruct_pairs(cfg.n_train, cfg.seed, "train")
    base = pretrained.load(cfg.init or "shapes", kind="DiffusionModel")
    model = InstructPix2Pix.from_text_model(base, INSTRUCTION_WORDS).to(device)
    tokens, null = model.tokenizer.encode(instructions), model.tokenizer.encode([""])
    shown = instruct_pairs(8, cfg.seed, "test")

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        return instruct_loss(model, src[idx], tgt[idx], tokens[idx], null, gen, part)

    def export(ema: InstructPix2Pix, step: int) -> None:
        save_model(ema, Path(cfg.out) / "model", force=True, info={"step": step, "train_config": asdict(cfg)})
        if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
            edited = instruct_edit(ema, shown[0].to(device), shown[2], steps=25, seed=cfg.seed).cpu()
            save_grid(torch.cat([shown[0], shown[1], edited]), Path(cfg.out) / f"edits_{step:06d}.png", ncol=8,
                      titles=[*shown[2], *[""] * 16])

    return model, batch_loss, export, len(src)
