"""Null-text inversion vs DDIM inversion under guidance (lecture 3): reconstruction PSNR on held-out `shapes` scenes."""

from __future__ import annotations

import time

import torch

from ..guidance import Guidance
from ..inversion import ddim_invert
from ..metrics import psnr
from ..null_text import null_text_invert, null_text_sample
from ..samplers import ddim_sample
from .tables import BenchCommand, diffusion_model, model_heldout, print_table


def null_text_table(model, n: int = 16, ws: tuple[float, ...] = (3.0, 7.5), steps: int = 50,
                    lrs: tuple[float, ...] = (1e-2, 1e-1), inner_steps: int = 10, seed: int = 0) -> list[dict]:
    """Reconstruction PSNR of DDIM inversion vs null-text inversion under guidance w (n held-out scenes):
    the w = 1 pivot, then per w DDIM inversion with that w and null-text inversion per Adam learning rate."""
    x0, caps = model_heldout(model, n, seed)
    ctx = model.encode_text(caps)
    with torch.no_grad():
        rec = ddim_sample(model, model.schedule, ddim_invert(model, model.schedule, x0, steps, ctx), steps, context=ctx)
    rows = [{"method": "DDIM inversion, w = 1 (the pivot)", "w": 1.0, "psnr": psnr(rec, x0).mean().item()}]
    for w in ws:
        guidance = Guidance.of(model, w)
        t0 = time.perf_counter()
        with torch.no_grad():
            x_T = ddim_invert(model, model.schedule, x0, steps, ctx, guidance=guidance)
            rec = ddim_sample(model, model.schedule, x_T, steps, context=ctx, guidance=guidance)
        rows.append({"method": f"DDIM inversion, w = {w}", "w": w, "psnr": psnr(rec, x0).mean().item(),
                     "seconds": time.perf_counter() - t0})
        for lr in lrs:
            t0 = time.perf_counter()
            inv = null_text_invert(model, model.schedule, x0, ctx, guidance, steps=steps, inner_steps=inner_steps,
                                   lr=lr)
            rec = null_text_sample(model, model.schedule, inv, ctx)
            rows.append({"method": f"null-text inversion, w = {w}, Adam lr {lr:g}, {inner_steps} inner steps",
                         "w": w, "psnr": psnr(rec, x0).mean().item(), "seconds": time.perf_counter() - t0})
    print_table(f"Reconstruction PSNR (dB, mean over {n} held-out scenes, {steps} steps)", ["method", "PSNR", "s"],
                [[r["method"], f"{r['psnr']:.1f}", f"{r.get('seconds', 0):.0f}"] for r in rows])
    return rows


NULL_TEXT = BenchCommand("null-text", "reconstruction PSNR of DDIM vs null-text inversion under guidance",
                         lambda o: null_text_table(diffusion_model(o), n=o["n"], ws=tuple(o["w"]),
                                                   steps=o["steps"][0], seed=o["seed"]),
                         dict(n=16, w=[3.0, 7.5], steps=[50]), lists=("w",))
