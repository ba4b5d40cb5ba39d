"""The EDICT paper's Table 1 in miniature (lecture 4): reconstruction MSE of inversion + sampling, EDICT vs DDIM.

Same conventions as `bench.roundtrip`: `model` has the DiffusionModel interface (an eps-model callable with
`.schedule`, `.conditional`, `.encode_text`, `.null_context`), the function prints a markdown table and returns
its rows. MSE is per pixel with pixels in [0, 1] (`bench.tables.reconstruction_mse`).

Paper numbers (Wallace et al. 2023, Table 1, as given in the project seed): Stable Diffusion on MS-COCO, 50 / 100 /
200 steps. Their reference code (`recon_test` in salesforce/EDICT) computes the MSE on pixels in [-1, 1], which is
4x ours; the table prints them divided by 4 so the columns compare like with like.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..edict import edict_invert, edict_sample
from ..guidance import Guidance
from ..inversion import ddim_invert
from ..samplers import ddim_sample
from .tables import BenchCommand, diffusion_model, model_heldout, print_table, reconstruction_mse, standard_error

# MSE on [-1, 1] pixels, per step count (the autoencoder and EDICT rows do not depend on it)
EDICT_PAPER_TABLE1 = {
    "AE (floor)": {50: 0.015, 100: 0.015, 200: 0.015},
    "EDICT (UC)": {50: 0.015, 100: 0.015, 200: 0.015},
    "EDICT (C)": {50: 0.015, 100: 0.015, 200: 0.015},
    "DDIM (UC)": {50: 0.030, 100: 0.027, 200: 0.023},
    "DDIM (C)": {50: 0.420, 100: 0.471, 200: 0.497},
}
METHODS = ("EDICT (UC)", "EDICT (C)", "DDIM (UC)", "DDIM (C)")


def _roundtrips(model, z0: Tensor, captions: list[str] | None, steps: int, w: float, p: float,
                spacing: str) -> dict[str, tuple[Tensor, float]]:
    """{method: (reconstruction z0', seconds)} for one batch; DDIM and EDICT timed alternately, side by side."""
    sched, n = model.schedule, len(z0)
    null = model.null_context(n) if model.conditional else None  # unconditional: the null prompt
    runs = {"UC": (null, None)}
    if captions is not None:
        runs["C"] = (model.encode_text(captions), Guidance.of(model, w))
    out = {}
    for kind, (ctx, guidance) in runs.items():
        t0 = time.perf_counter()
        z_T = ddim_invert(model, sched, z0, steps, ctx, guidance=guidance, spacing=spacing)
        ddim = ddim_sample(model, sched, z_T, steps, context=ctx, spacing=spacing, guidance=guidance)
        t1 = time.perf_counter()
        x_T, y_T = edict_invert(model, sched, z0, steps=steps, p=p, context=ctx, guidance=guidance, spacing=spacing)
        edict = edict_sample(model, sched, x_T, y_T, steps, p, ctx, guidance=guidance, spacing=spacing)[0]
        t2 = time.perf_counter()
        out[f"DDIM ({kind})"], out[f"EDICT ({kind})"] = (ddim, t1 - t0), (edict, t2 - t1)
    return out


@torch.no_grad()
def edict_table(model, images: Tensor, captions: list[str] | None, steps_list: tuple[int, ...] = (50, 100, 200),
                ae=None, w: float = 3.0, p: float = 0.93, spacing: str = "leading",
                batch: int = 16) -> list[dict]:
    """Reconstruction MSE of invert-then-sample on held-out `images` (N, C, H, W) in [-1, 1], per step count:

    - AE (floor): from_latent(to_latent(x)) vs x, only when an autoencoder `ae` is given (then the diffusion runs
      on `ae.to_latent(x)` and every reconstruction is decoded with `ae.from_latent`);
    - EDICT (UC) / DDIM (UC): the null prompt, no guidance; EDICT with mixing weight p;
    - EDICT (C) / DDIM (C): the captions with classifier-free guidance w, the same w for inverting
      and sampling (rows only when captions are given). The reference `recon_test` defaults to w = 7 and
      `EDICT_editing` to 3; the reconstruction setting of the paper's Table 1 is not restated here.

    EDICT returns its x sequence (what the paper reports). Also the wall time of EDICT relative to DDIM for the
    same steps, measured side by side on the same batches: two model calls per step make 2x the floor.

    Precision: EDICT's inversion stretches x - y by 1/p^2 per step, starting from round-off. In float32 with
    p = 0.93 the shapes model (a training checkpoint) round-trips to MSE ~1e-12 at 50 and 100 steps but fails at
    200 (|x_T - y_T| ~ 4e7, MSE ~ 1e4). Pass a float64 model and images (`model.double()`, `images.double()`)
    for the paper's step counts, as the paper's reference code does.
    Rows: {"method", "steps", "mse", "se", "seconds", "paper_mse_pm1" ([-1, 1] units, or None)}.
    """
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if captions is not None and not model.conditional:
        raise ValueError("the conditional rows need a text-conditional model; pass captions=None")
    encode = (lambda x: x) if ae is None else ae.to_latent
    decode = (lambda z: z) if ae is None else ae.from_latent
    rows = []
    if ae is not None:
        mse = torch.cat([reconstruction_mse(decode(encode(x)), x) for x in images.split(batch)])
        rows += [_row("AE (floor)", S, mse, 0.0) for S in steps_list]
    for S in steps_list:
        rows += _rows_at(model, images, captions, S, w, p, spacing, batch, encode, decode)
    _print(rows, steps_list, len(images), w, p)
    return rows


def _rows_at(model, images: Tensor, captions: list[str] | None, S: int, w: float, p: float, spacing: str,
             batch: int, encode, decode) -> list[dict]:
    """The rows of one step count S: every method's MSE over all batches and its total seconds."""
    mse: dict[str, list[Tensor]] = {}
    seconds: dict[str, float] = {}
    for i in range(0, len(images), batch):
        x0 = images[i:i + batch]
        caps = None if captions is None else captions[i:i + batch]
        for method, (z, sec) in _roundtrips(model, encode(x0), caps, S, w, p, spacing).items():
            mse.setdefault(method, []).append(reconstruction_mse(decode(z), x0))
            seconds[method] = seconds.get(method, 0.0) + sec
    return [_row(m, S, torch.cat(mse[m]), seconds[m]) for m in METHODS if m in mse]


def _row(method: str, steps: int, mse: Tensor, seconds: float) -> dict:
    return {"method": method, "steps": steps, "mse": mse.mean().item(), "se": standard_error(mse), "seconds": seconds,
            "paper_mse_pm1": EDICT_PAPER_TABLE1.get(method, {}).get(steps)}


def _print(rows: list[dict], steps_list: tuple[int, ...], n: int, w: float, p: float) -> None:
    by = {(r["method"], r["steps"]): r for r in rows}
    methods = [m for m in ("AE (floor)", *METHODS) if (m, steps_list[0]) in by]
    table = []
    for m in methods:
        ours = [f"{by[m, S]['mse']:.2e} ± {by[m, S]['se']:.0e}" for S in steps_list]
        paper = [EDICT_PAPER_TABLE1[m].get(S) for S in steps_list]
        table.append([m, *ours, " / ".join("-" if v is None else f"{v / 4:.4f}" for v in paper)])
    for kind in ("UC", "C"):
        if (f"EDICT ({kind})", steps_list[0]) in by:
            table.append([f"wall time EDICT / DDIM ({kind})",
                          *[f"{by[f'EDICT ({kind})', S]['seconds'] / by[f'DDIM ({kind})', S]['seconds']:.2f}x"
                            for S in steps_list], "2x = two model calls per step"])
    print_table(f"Reconstruction MSE (pixels in [0, 1]) of invert-then-sample on {n} held-out images; "
                 f"C = captions with CFG w = {w:g}, EDICT p = {p:g}",
                 ["method", *[f"{S} steps" for S in steps_list],
                  "paper, COCO / SD (its [-1, 1] MSE / 4), " + " / ".join(map(str, steps_list))], table)


def _cli(o: dict) -> list[dict]:
    model = diffusion_model(o)
    images, captions = model_heldout(model, o["n"], o["seed"])
    dtype = torch.float64 if o.get("float64") else torch.float32
    ae = model.autoencoder.to(dtype) if model.latent else None
    return edict_table(model.to(dtype), images.to(dtype), captions, steps_list=tuple(o["steps"]), ae=ae,
                       w=o["w"][0])


EDICT = BenchCommand("edict", "EDICT vs DDIM reconstruction (the EDICT paper's Table 1; latent models add the "
                     "autoencoder floor; --float64 for 200 steps)", _cli, dict(n=64, steps=[50, 100, 200], w=[3.0]),
                     lists=("steps",))
