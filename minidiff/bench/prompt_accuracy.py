"""Prompt accuracy (`python -m minidiff bench prompt-accuracy`): does a text-to-image `shapes` model draw what
the prompt says? Prompts are captions of held-out (test-split) scenes; each sample is judged by
the rule-based checker `datasets.shapes_check` (colour, shape and position of every prompted
object, and the background). Two reference rows bracket the model: the checker on the exact
renders of the same prompts (its ceiling) and the model's samples judged against shuffled
prompts (chance level).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..datasets import heldout
from ..datasets.shapes_check import check, check_batch
from ..nn.diffusion_model import generate
from ..training import pretrained
from ..viz import save_grid
from .tables import BenchCommand, print_table

ATTRIBUTES = ("colour", "shape", "position", "background", "correct")


def prompt_accuracy_table(checkpoint: str = "shapes", n: int = 200, ws: tuple[float, ...] = (3.0,),
                          steps: int = 50, seed: int = 0, figure: str | Path | None = None,
                          device: str | torch.device = "cpu") -> list[dict]:
    """Print (and return) the prompt-accuracy table for each guidance scale in `ws`; save a figure of the first
    32 samples per w. The model samples on `device`."""
    model = pretrained.load(checkpoint, kind="DiffusionModel", device=device)
    renders, prompts = heldout("shapes", n, seed=seed)
    rows = [{"row": "exact renders (checker ceiling)", **check_batch(renders, prompts)}]
    for w in ws:
        x = generate(model, prompts, w, steps, seed).cpu()
        rows.append({"row": f"model, DDIM {steps} steps, w = {w}", **check_batch(x, prompts)})
        for k in (1, 2):  # binding colour/shape to position is the hard part of two-object prompts
            sel = [i for i, p in enumerate(prompts) if (p.count(" and a ") + 1) == k]
            rows.append({"row": f"  of which {k}-object prompts ({len(sel)})",
                         **check_batch(x[sel], [prompts[i] for i in sel])})
        shuffled = prompts[1:] + prompts[:1]
        rows.append({"row": f"  same samples vs shuffled prompts (chance), w = {w}", **check_batch(x, shuffled)})
        if figure is not None:
            _figure(x[:32], prompts[:32], Path(figure).with_stem(f"{Path(figure).stem}_w{w:g}"))
    print_table(f"Prompt accuracy of '{checkpoint}' on {n} held-out prompts (seed {seed}):", ["", *ATTRIBUTES],
                [[r["row"], *[f"{r[a]:.3f}" for a in ATTRIBUTES]] for r in rows])
    return rows


def _figure(x: Tensor, prompts: list[str], path: Path) -> None:
    marks = ["OK " if check(xi, p)["correct"] else "X " for xi, p in zip(x, prompts, strict=True)]
    print(f"saved {save_grid(x, path, titles=[m + p for m, p in zip(marks, prompts, strict=True)], ncol=8)}")


PROMPT_ACCURACY = BenchCommand(
    "prompt-accuracy", "checker-judged samples of held-out prompts",
    lambda o: prompt_accuracy_table(o["checkpoint"], n=o["n"], ws=tuple(o["w"]), steps=o["steps"][0], seed=o["seed"],
                                    figure=Path(o["out"]) / "prompt_accuracy.png", device=o["device"]),
    dict(n=200, w=[3.0], steps=[50]), lists=("w",))
