"""Measured experiments of lectures 2 and 3 on a trained model: pure functions returning rows.

Each function prints a markdown table (or saves a figure) and returns its rows as dicts, so the CLI,
notebooks and tests share one implementation. `model` is anything with the DiffusionModel interface:
an eps-model callable `model(x_t, t, context)` with `.schedule`, `.conditional`, `.encode_text(prompts)`
and `.null_context(B)`.

- `ddim_roundtrip_table`: DDIM inversion then sampling, reconstruction MSE per step count, beside the
  DDIM paper's CIFAR-10 numbers (Song et al. 2021, sec. 5.4, "reconstruction from latent space").
- `cfg_inversion_table`: the same under classifier-free guidance w (inverting with the same w): the
  local-linearity error grows with w, which is what null-text inversion fixes (Mokady et al. 2023).
- `eta_steps_grid`: samples from one seed across eta and step counts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .inversion import ddim_invert
from .samplers import classifier_free_guidance, ddim_sample

# DDIM paper, sec. 5.4 (reconstruction from x_T on the CIFAR-10 test set, per-dimension MSE, pixels in [0, 1])
DDIM_PAPER_CIFAR10 = {10: 0.014, 20: 0.0065, 50: 0.0023, 100: 0.0009, 200: 0.0004, 500: 0.0001, 1000: 0.0001}


def reconstruction_mse(x: Tensor, x0: Tensor) -> Tensor:
    """Per-image MSE with pixels mapped from [-1, 1] to [0, 1] (no clipping): mean(((x - x0) / 2)^2), (B,)."""
    return ((x.float() - x0.float()) / 2).pow(2).flatten(1).mean(1)


def _context(model, captions: list[str] | None, n: int) -> Tensor | None:
    """Prompts -> context; no prompts on a conditional model -> the null context (unconditional inversion)."""
    if not model.conditional:
        if captions is not None:
            raise ValueError("this model is unconditional; pass captions=None")
        return None
    if captions is not None and len(captions) != n:
        raise ValueError(f"{n} images but {len(captions)} captions")
    return model.null_context(n) if captions is None else model.encode_text(captions)


def _roundtrip(model, images: Tensor, captions: list[str] | None, steps: int, w: float | None, spacing: str,
               batch: int) -> Tensor:
    """Per-image reconstruction MSE of ddim_sample(ddim_invert(x0)), optionally both under CFG with scale w.
    A latent model inverts `model.encode(x0)` and is scored on `model.decode` of its reconstruction."""
    sched, out = model.schedule, []
    latent = getattr(model, "latent", False)
    for i in range(0, len(images), batch):
        x0 = images[i:i + batch]
        z0 = model.encode(x0) if latent else x0
        ctx = _context(model, None if captions is None else captions[i:i + batch], len(x0))
        guidance = None if w is None else (model.null_context(1), w)
        eps = model if w is None else classifier_free_guidance(model, guidance[0], w)
        z_T = ddim_invert(model, sched, z0, steps, ctx, guidance=guidance, spacing=spacing)
        z = ddim_sample(eps, sched, z_T, steps, context=ctx, spacing=spacing)
        out.append(reconstruction_mse(model.decode(z) if latent else z, x0))
    return torch.cat(out)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


@torch.no_grad()
def ddim_roundtrip_table(model, images: Tensor, captions: list[str] | None = None,
                         steps_list: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000), spacing: str = "leading",
                         batch: int = 64) -> list[dict]:
    """Mean reconstruction MSE ([0, 1] pixels) of DDIM inversion + DDIM sampling (eta = 0) per step count.

    images: (N, C, H, W) in [-1, 1]; captions: prompts to invert under (None: the null context on a
    conditional model). A latent model works on `model.encode(images)` and is scored in pixel space after
    `model.decode`, with a first row for the autoencoder alone (the floor).
    Rows: {"steps", "mse", "se" (standard error over images), "ddim_paper_cifar10"}.
    """
    rows = []
    if getattr(model, "latent", False):  # the autoencoder alone: the floor of every latent round trip
        mse = torch.cat([reconstruction_mse(model.decode(model.encode(x)), x) for x in images.split(batch)])
        rows.append({"steps": "AE floor", "mse": mse.mean().item(), "se": _se(mse), "ddim_paper_cifar10": None})
    for steps in steps_list:
        mse = _roundtrip(model, images, captions, steps, None, spacing, batch)
        rows.append({"steps": steps, "mse": mse.mean().item(), "se": _se(mse),
                     "ddim_paper_cifar10": DDIM_PAPER_CIFAR10.get(steps)})
    _print_table(f"DDIM inversion -> sampling, reconstruction MSE on {len(images)} images (pixels in [0, 1])",
                 ["steps", "MSE (this model)", "DDIM paper, CIFAR-10"],
                 [[str(r["steps"]), f"{r['mse']:.2e} ± {r['se']:.1e}",
                   "-" if r["ddim_paper_cifar10"] is None else f"{r['ddim_paper_cifar10']:g}"] for r in rows])
    return rows


@torch.no_grad()
def cfg_inversion_table(model, images: Tensor, captions: list[str], ws: tuple[float, ...] = (1.0, 3.0, 7.5),
                        steps: int = 50, spacing: str = "leading", batch: int = 64) -> list[dict]:
    """Reconstruction MSE of DDIM inversion + sampling, both with classifier-free guidance w and the captions.

    w = 1 is the plain conditional model; larger w makes eps~ less linear in x_t along the path, so the
    approximation eps(x_{t_prev}, t) ~= eps(x_t, t) of inversion errs more. Rows: {"w", "steps", "mse", "se"}.
    """
    if not model.conditional:
        raise ValueError("classifier-free guidance needs a text-conditional model")
    rows = []
    for w in ws:
        mse = _roundtrip(model, images, captions, steps, w, spacing, batch)
        rows.append({"w": w, "steps": steps, "mse": mse.mean().item(), "se": _se(mse)})
    _print_table(f"DDIM inversion under CFG ({steps} steps, same w to invert and sample), {len(images)} images",
                 ["w", "reconstruction MSE"], [[f"{r['w']:g}", f"{r['mse']:.2e} ± {r['se']:.1e}"] for r in rows])
    return rows


@torch.no_grad()
def eta_steps_grid(model, prompt: str | None = None, etas: tuple[float, ...] = (0.0, 0.5, 1.0),
                   steps: tuple[int, ...] = (10, 20, 50, 100), seed: int = 0, guidance: float = 3.0,
                   path: str | Path = "out/eta_steps_grid.png", size: int = 32, channels: int = 3) -> list[dict]:
    """One x_T (and one noise seed) sampled with every (eta, steps); a figure with a row per eta.

    Rows: {"eta", "steps", "change_vs_most_steps"}: the MSE ([0, 1] pixels) between that sample and the
    same eta's sample with the most steps (for eta = 0: the distance to the converged ODE solution).
    """
    import matplotlib.pyplot as plt

    from .viz import to_numpy_image

    x_T = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))
    eps, ctx = model, None
    if model.conditional:
        ctx = model.encode_text([prompt or ""])
        x_T = x_T.to(ctx.device)
        eps = classifier_free_guidance(model, model.null_context(1), guidance)
    samples = {(eta, S): ddim_sample(eps, model.schedule, x_T, S, eta, ctx,
                                     generator=torch.Generator().manual_seed(seed + 1))
               for eta in etas for S in steps}
    rows = [{"eta": eta, "steps": S, "change_vs_most_steps": reconstruction_mse(x, samples[eta, max(steps)]).item()}
            for (eta, S), x in samples.items()]
    fig, axes = plt.subplots(len(etas), len(steps), figsize=(1.6 * len(steps), 1.7 * len(etas)), squeeze=False)
    for (i, eta), (j, S) in ((a, b) for a in enumerate(etas) for b in enumerate(steps)):
        axes[i, j].imshow(to_numpy_image(samples[eta, S][0]), interpolation="nearest")
        axes[i, j].set_title(f"eta={eta:g}, {S} steps", fontsize=7)
        axes[i, j].axis("off")
    fig.suptitle(f"DDIM, seed {seed}" + (f": {prompt!r}, w = {guidance:g}" if model.conditional else ""), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")
    return rows


def _se(x: Tensor) -> float:
    return (x.std() / len(x) ** 0.5).item() if len(x) > 1 else float("nan")


@torch.no_grad()
def classifier_guidance_table(model, classifier, label_names: list[str], scales: tuple[float, ...] = (0.0, 1.0, 3.0),
                              n: int = 64, steps: int = 50, seed: int = 0) -> list[dict]:
    """Classifier guidance (Dhariwal & Nichol 2021) on the *unconditional* model (the null prompt): for each
    background label y and scale s, sample n images with eps~ = eps - s sqrt(1 - ab_t) grad log p(y | x_t) and
    report the fraction whose background (measured by `shapes_check.background_of`) is y. s = 0 is the
    unguided model: the base rate of each background. Rows: {"scale", "label", "hit_rate"}."""
    from .guidance import classifier_guidance
    from .shapes_check import background_of

    null = model.null_context(n)
    unconditional = lambda x, t, c: model(x, t, null[: x.shape[0]])  # noqa: E731
    rows = []
    for s in scales:
        for k, name in enumerate(label_names):
            g = torch.Generator().manual_seed(seed)
            x_T = torch.randn(n, 3, 32, 32, generator=g).to(null)  # the model's device and dtype
            eps = classifier_guidance(unconditional, classifier, k, s, model.schedule)
            x = ddim_sample(eps, model.schedule, x_T, steps)
            rows.append({"scale": s, "label": name, "hit_rate": sum(background_of(xi) == name for xi in x) / n})
    _print_table(f"Classifier guidance on the unconditional model: fraction of {n} samples with the requested "
                 f"background (DDIM {steps} steps)", ["scale", *label_names, "mean"],
                 [[f"{s:g}", *[f"{r['hit_rate']:.2f}" for r in rows if r["scale"] == s],
                   f"{sum(r['hit_rate'] for r in rows if r['scale'] == s) / len(label_names):.2f}"] for s in scales])
    return rows
