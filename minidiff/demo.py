"""`python -m minidiff demo`: the course's showcase, offline, on built-in data and shipped checkpoints.

Part 1 (lecture 1): train a DDPM on 2-D two-moons in seconds, sample it with Algorithm 2 and
split its ELBO per timestep. Part 2 (if the shipped `shapes` model is present): text-to-image
samples from it, each marked by the rule-based checker.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .elbo import elbo_terms
from .samplers import ddpm_sample
from .schedule import Schedule
from .toy import train_toy, two_moons


def toy_figure(out: Path, steps: int = 6000, seed: int = 0) -> dict:
    """Train the 2-D toy, save out/toy_ddpm.png, return the numbers shown in it."""
    g = torch.Generator().manual_seed(seed)
    sched = Schedule.linear(1000)
    data = two_moons(20_000, g)
    model, losses = train_toy(data, sched, steps=steps, seed=seed)
    with torch.no_grad():
        x = ddpm_sample(model, sched, torch.randn(2000, 2, generator=g), generator=g, progress=True)
        terms = elbo_terms(model, sched, data[:1000], discrete=False, generator=g)
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.8))
    ax[0].scatter(*data[:2000].T, s=2, alpha=0.5)
    ax[0].set_title("data: two moons")
    ax[1].scatter(*x.T, s=2, alpha=0.5, color="C1")
    ax[1].set_title("DDPM samples (Algorithm 2, T=1000)")
    for a in ax[:2]:
        a.set_xlim(-1.5, 1.5), a.set_ylim(-1.2, 1.2), a.set_aspect("equal")
    ax[2].semilogy(range(2, sched.T + 1), terms["L_t"].mean(0), lw=1)
    ax[2].set_title(f"ELBO per step: L_(t-1), nats  (total {terms['nats'].mean():.3f})")
    ax[2].set_xlabel("t")
    ax[3].plot(torch.tensor(losses).view(-1, 50).mean(1))
    ax[3].set_title("L_simple during training (mean of 50 steps)")
    ax[3].set_xlabel("step / 50")
    fig.tight_layout()
    path = out / "toy_ddpm.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"figure": str(path), "elbo_nats_per_example": terms["nats"].mean().item(),
            "L_T": terms["L_T"].mean().item(), "L_0": terms["L_0"].mean().item(),
            "final_loss": sum(losses[-100:]) / 100}


def shapes_figure(out: Path, n: int = 16, guidance: float = 3.0, seed: int = 0) -> dict | None:
    """Text-to-image samples of the shipped shapes model with the checker's verdicts; None if absent."""
    from . import pretrained
    from .evaluate import generate
    from .shapes import caption, sample_scene
    from .shapes_check import check
    from .viz import save_grid

    if not pretrained.available("shapes"):
        return None
    model = pretrained.load("shapes")
    prompts = [caption(sample_scene(10_000 + i)) for i in range(n)]
    x0 = generate(model, prompts, guidance, steps=50, seed=seed)
    verdicts = [check(x0[i], prompts[i]) for i in range(n)]
    ok = [v["correct"] for v in verdicts]
    titles = [("OK  " if o else "X  ") + p for o, p in zip(ok, prompts, strict=True)]
    path = save_grid(x0, out / "shapes_samples.png", titles=titles, ncol=4)
    return {"figure": str(path), "prompts_fully_correct": sum(ok) / n}


def run(out: str | Path = "out", fast: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"toy": toy_figure(out, steps=2000 if fast else 6000)}
    shapes = shapes_figure(out, n=8 if fast else 16)
    if shapes is not None:
        results["shapes"] = shapes
    for name, r in results.items():
        print(f"[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return results
