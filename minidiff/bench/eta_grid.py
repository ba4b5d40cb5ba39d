"""DDIM's eta and step count side by side (lecture 2): one x_T sampled with every (eta, steps), as a figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..guidance import Guidance
from ..samplers import ddim_sample
from ..schedule import standard_normal
from ..viz import to_numpy_image
from .tables import BenchCommand, diffusion_model, reconstruction_mse


@torch.no_grad()
def eta_steps_grid(model, prompt: str | None = None, etas: tuple[float, ...] = (0.0, 0.5, 1.0),
                   steps: tuple[int, ...] = (10, 20, 50, 100), seed: int = 0, w: float = 3.0,
                   path: str | Path = "out/eta_steps_grid.png", size: int = 32, channels: int = 3) -> list[dict]:
    """One x_T (and one noise seed) sampled with every (eta, steps), with classifier-free guidance w on a
    conditional model; saves a figure with a row per eta.

    Rows: {"eta", "steps", "change_vs_most_steps"}: the MSE ([0, 1] pixels) between that sample and the
    same eta's sample with the most steps (for eta = 0: the distance to the converged ODE solution).
    """
    x_T = standard_normal((1, channels, size, size), next(model.parameters()), torch.Generator().manual_seed(seed))
    ctx, guidance = None, None
    if model.conditional:
        ctx, guidance = model.encode_text([prompt or ""]), Guidance.of(model, w)
    samples = {(eta, S): ddim_sample(model, model.schedule, x_T, S, eta, ctx, guidance=guidance,
                                     generator=torch.Generator().manual_seed(seed + 1))
               for eta in etas for S in steps}
    title = f"DDIM, seed {seed}" + (f": {prompt!r}, w = {w:g}" if model.conditional else "")
    _figure(samples, etas, steps, title, Path(path))
    return [{"eta": eta, "steps": S, "change_vs_most_steps": reconstruction_mse(x, samples[eta, max(steps)]).item()}
            for (eta, S), x in samples.items()]


def _figure(samples: dict, etas: tuple[float, ...], steps: tuple[int, ...], title: str, path: Path) -> None:
    fig, axes = plt.subplots(len(etas), len(steps), figsize=(1.6 * len(steps), 1.7 * len(etas)), squeeze=False)
    for (i, eta), (j, S) in ((a, b) for a in enumerate(etas) for b in enumerate(steps)):
        axes[i, j].imshow(to_numpy_image(samples[eta, S][0]), interpolation="nearest")
        axes[i, j].set_title(f"eta={eta:g}, {S} steps", fontsize=7)
        axes[i, j].axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")


def _cli(o: dict) -> list[dict]:
    return eta_steps_grid(diffusion_model(o), o["prompt"], steps=tuple(o["steps"]), seed=o["seed"],
                          w=o["w"][0], path=Path(o["out"]) / "eta_steps_grid.png")


ETA_GRID = BenchCommand("eta-grid", "samples of one x_T across eta and steps (a figure)", _cli,
                        dict(steps=[10, 20, 50, 100], w=[3.0]), lists=("steps",))
