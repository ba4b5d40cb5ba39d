"""Measured tables for trained models (printed as markdown, figures saved).

`python -m minidiff bench prompt-accuracy`: does a text-to-image `shapes` model draw what the
prompt says? Prompts are captions of held-out (test-split) scenes; each sample is judged by
the rule-based checker of `minidiff.shapes` (colour, shape and position of every prompted
object, and the background). Two reference rows bracket the model: the checker on the exact
renders of the same prompts (its ceiling) and the model's samples judged against shuffled
prompts (chance level).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .model import DiffusionModel
from .samplers import classifier_free_guidance, ddim_sample

ATTRIBUTES = ("colour", "shape", "position", "background", "correct")


@torch.no_grad()
def generate(model: DiffusionModel, prompts: list[str], guidance: float = 3.0, steps: int = 50, seed: int = 0,
             batch: int = 50, eta: float = 0.0, progress: bool = True, decode: bool = True) -> Tensor:
    """DDIM samples for `prompts` with classifier-free guidance scale `guidance`: images
    (N, 3, H, W); for a latent model the decoded latents, or the latents themselves
    (N, C, h, w) with decode=False."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.unet.cfg
    x_T = torch.randn(len(prompts), cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    x_T = x_T.to(next(model.parameters()))  # drawn on the CPU (the same noise on every device), then moved
    eps = classifier_free_guidance(model, model.null_context(), guidance)
    out = []
    for i in tqdm(range(0, len(prompts), batch), disable=not progress, desc=f"sampling w={guidance}"):
        ctx = model.encode_text(prompts[i:i + batch])
        z0 = ddim_sample(eps, model.schedule, x_T[i:i + batch], steps, eta, ctx, generator=g)
        out.append(model.decode(z0) if decode else z0)
    return torch.cat(out)


def heldout_prompts(n: int, seed: int = 0) -> tuple[list[str], Tensor]:
    """Captions of n test-split scenes and their exact renders (N, 3, 32, 32)."""
    from .shapes import shapes_tensors

    images, captions = shapes_tensors(n, seed=seed, split="test")
    return captions, images


def prompt_accuracy_table(checkpoint: str = "shapes", n: int = 200, guidance: float | list[float] = 3.0,
                          steps: int = 50, seed: int = 0, figure: str | Path | None = None) -> list[dict]:
    """Print (and return) the prompt-accuracy table; save a figure of the first 32 samples."""
    from . import pretrained
    from .shapes_check import check_batch

    model = pretrained.load(checkpoint)
    prompts, renders = heldout_prompts(n, seed)
    rows = [{"row": "exact renders (checker ceiling)", **check_batch(renders, prompts)}]
    for w in [guidance] if isinstance(guidance, (int, float)) else guidance:
        x = generate(model, prompts, w, steps, seed)
        rows.append({"row": f"model, DDIM {steps} steps, w = {w}", **check_batch(x, prompts)})
        for k in (1, 2):  # binding colour/shape to position is the hard part of two-object prompts
            sel = [i for i, p in enumerate(prompts) if (p.count(" and a ") + 1) == k]
            rows.append({"row": f"  of which {k}-object prompts ({len(sel)})",
                         **check_batch(x[sel], [prompts[i] for i in sel])})
        shuffled = prompts[1:] + prompts[:1]
        rows.append({"row": f"  same samples vs shuffled prompts (chance), w = {w}", **check_batch(x, shuffled)})
        if figure is not None:
            _figure(x[:32], prompts[:32], Path(figure).with_stem(f"{Path(figure).stem}_w{w:g}"))
    print(f"\nPrompt accuracy of '{checkpoint}' on {n} held-out prompts (seed {seed}):\n")
    print("| | " + " | ".join(ATTRIBUTES) + " |\n|---|" + "---|" * len(ATTRIBUTES))
    for r in rows:
        print(f"| {r['row']} | " + " | ".join(f"{r[a]:.3f}" for a in ATTRIBUTES) + " |")
    return rows


def _figure(x: Tensor, prompts: list[str], path: Path) -> None:
    from .shapes_check import check
    from .viz import save_grid

    marks = ["OK " if check(xi, p)["correct"] else "X " for xi, p in zip(x, prompts, strict=True)]
    print(f"saved {save_grid(x, path, titles=[m + p for m, p in zip(marks, prompts, strict=True)], ncol=8)}")
