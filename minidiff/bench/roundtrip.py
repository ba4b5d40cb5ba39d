"""DDIM inversion round trips (lectures 2-3): reconstruction MSE of invert-then-sample, per step count and under
classifier-free guidance.

- `ddim_roundtrip_table`: DDIM inversion then sampling, reconstruction MSE per step count, beside the
  DDIM paper's CIFAR-10 numbers (Song et al. 2021, sec. 5.4, "reconstruction from latent space").
- `cfg_inversion_table`: the same under classifier-free guidance w (inverting with the same w): the
  local-linearity error grows with w, which is what null-text inversion fixes (Mokady et al. 2023).

`model` is anything with the DiffusionModel interface: an eps-model callable `model(x_t, t, context)` with
`.schedule`, `.conditional`, `.encode_text(prompts)` and `.null_context(B)` (and `.encode` / `.decode` for a
latent model).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..guidance import Guidance
from ..inversion import ddim_invert
from ..samplers import ddim_sample
from .tables import BenchCommand, diffusion_model, model_heldout, print_table, reconstruction_mse, standard_error

# DDIM paper, sec. 5.4 (reconstruction from x_T on the CIFAR-10 test set, per-dimension MSE, pixels in [0, 1])
DDIM_PAPER_CIFAR10 = {10: 0.014, 20: 0.0065, 50: 0.0023, 100: 0.0009, 200: 0.0004, 500: 0.0001, 1000: 0.0001}


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
        guidance = None if w is None else Guidance.of(model, w)
        z_T = ddim_invert(model, sched, z0, steps, ctx, guidance=guidance, spacing=spacing)
        z = ddim_sample(model, sched, z_T, steps, context=ctx, spacing=spacing, guidance=guidance)
        out.append(reconstruction_mse(model.decode(z) if latent else z, x0))
    return torch.cat(out)


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
        rows.append({"steps": "AE floor", "mse": mse.mean().item(), "se": standard_error(mse),
                     "ddim_paper_cifar10": None})
    for steps in steps_list:
        mse = _roundtrip(model, images, captions, steps, None, spacing, batch)
        rows.append({"steps": steps, "mse": mse.mean().item(), "se": standard_error(mse),
                     "ddim_paper_cifar10": DDIM_PAPER_CIFAR10.get(steps)})
    print_table(f"DDIM inversion -> sampling, reconstruction MSE on {len(images)} images (pixels in [0, 1])",
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
        rows.append({"w": w, "steps": steps, "mse": mse.mean().item(), "se": standard_error(mse)})
    print_table(f"DDIM inversion under CFG ({steps} steps, same w to invert and sample), {len(images)} images",
                 ["w", "reconstruction MSE"], [[f"{r['w']:g}", f"{r['mse']:.2e} ± {r['se']:.1e}"] for r in rows])
    return rows


def _roundtrip_cli(o: dict) -> list[dict]:
    model = diffusion_model(o)
    images, captions = model_heldout(model, o["n"], o["seed"])
    return ddim_roundtrip_table(model, images, captions, steps_list=tuple(o["steps"]))


def _cfg_inversion_cli(o: dict) -> list[dict]:
    model = diffusion_model(o)
    images, captions = model_heldout(model, o["n"], o["seed"])
    return cfg_inversion_table(model, images, captions, ws=tuple(o["w"]), steps=o["steps"][0])


ROUNDTRIP = BenchCommand("ddim-roundtrip", "DDIM inversion + sampling: reconstruction MSE per step count",
                         _roundtrip_cli, dict(n=64, steps=[10, 20, 50, 100, 200, 500, 1000]),
                         lists=("steps",))
CFG_INVERSION = BenchCommand("cfg-inversion", "the same round trip under classifier-free guidance w",
                             _cfg_inversion_cli, dict(n=64, w=[1.0, 3.0, 7.5], steps=[50]),
                             lists=("w",))
