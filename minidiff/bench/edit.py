"""The ground-truth edit benchmark on `shapes` (lecture 5).

For held-out scenes, one word of the caption is changed (an object's colour or shape, or the
background colour) and the scene is re-rendered with that word changed: the exact target. The table adds
position edits of one-object scenes ("on the left" -> "on the right", the object re-rendered on the other side),
the non-rigid kind that MasaCtrl is for; their success is a column of its own and the other scores are averaged
over the word swaps only, so they compare with the tables measured before.
Each editing method gets the source image and both captions and is scored by

- edit success: the rule-based checker (`shapes_check.check`) judges the edit against the
  target caption (all of colour, shape, position and background right);
- PSNR to the rendered target (whole image);
- PSNR and SSIM of the region the edit must not touch, against the source (= the target
  there): outside the edited object (dilated by one pixel for anti-aliasing) for object
  edits, inside the objects (eroded by one pixel) for background edits. For SSIM the pixels
  outside that region are first set to the source's, so only changes inside it count.

Methods: re-generation from fresh noise with the target prompt; SDEdit at two strengths;
DDIM inversion followed by plain sampling with the target prompt; DDIM inversion + P2P word
swap (with and without local blend); null-text inversion + P2P word swap + local blend;
EDICT editing, in the reference's alternating update order (the default) and with x always
updated first (the paper's equations as written); the DDPM noise space (lecture 7): CycleDiffusion's
DPM-Encoder and edit-friendly DDPM inversion (eta = 1), decoded with the target prompt from
skip = NOISE_SPACE_SKIP * steps, and edit-friendly inversion + P2P word swap; the course project's baselines
(`bench.baselines`: Direct Inversion + P2P, Blended Diffusion, MasaCtrl, InstructPix2Pix). All use DDIM with
classifier-free guidance w (the same w everywhere) and the same number of steps, except EDICT, which gets at least
`EDICT_MIN_STEPS`: with p = 0.93 its two sequences drift apart on this model with fewer
(lecture 4's notebook, section 3; data/README.md measures 25 against 50 steps).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..baselines.direct_inversion import DirectInversion, direct_inversion_p2p
from ..datasets.shapes import KINDS, Scene, ShapesDataset, caption, move_object, render, replace_word
from ..datasets.shapes_check import check
from ..datasets.shapes_instruct import instruction_for
from ..edict import edict_edit
from ..guidance import Guidance
from ..inversion import ddim_invert, sdedit
from ..metrics import mse, psnr, ssim
from ..nn.diffusion_model import generate
from ..noise_space import NoiseLatent, dpm_encode, edit_friendly_invert
from ..noise_space import generate as decode_latent
from ..null_text import null_text_invert
from ..p2p import LocalBlend, Replace, p2p_sample
from ..samplers import ddim_sample
from ..schedule import timesteps
from ..viz import save_grid
from .baselines import baseline_methods, print_pie_bench
from .tables import BenchCommand, diffusion_model, print_table

EDIT_KINDS = ("colour", "shape", "background")  # word swaps: the scenes i % 3 of `edit_cases`
POSITION = "position"  # "on the left" -> "on the right" (non-rigid; MasaCtrl's kind): extra one-object scenes
ALL_KINDS = (*EDIT_KINDS, POSITION)
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
EDICT_MIN_STEPS = 50
NOISE_SPACE_SKIP = 0.2  # the noise-space methods decode from tau_skip, skip = 0.2 * steps (t ~ 0.8 T, as EDICT's)


@dataclass
class EditCases:
    """n edit cases: source/target images (n, 3, 32, 32), captions, which word changed, the
    region that must not change (n, 1, 32, 32) and the words whose maps make a local-blend mask."""

    kind: list[str]
    source: Tensor
    target: Tensor
    source_caption: list[str]
    target_caption: list[str]
    keep: Tensor
    blend_source: list[list[str]]
    blend_target: list[list[str]]
    instruction: list[str]  # the same edit as an InstructPix2Pix instruction (`datasets.shapes_instruct`)

    def to(self, device) -> EditCases:
        """The same cases with their images and masks on `device`."""
        return dataclasses.replace(self, source=self.source.to(device), target=self.target.to(device),
                                   keep=self.keep.to(device))


def edited_scene(scene: Scene, kind: str, new: str) -> Scene:
    """The exact target: object 0's colour, shape or position, or the background, changed to `new`."""
    if kind == POSITION:
        return move_object(scene, new)
    old = scene.background if kind == "background" else getattr(scene.objects[0], kind)
    return replace_word(scene, old, new, None if kind == "background" else 0)


def make_cases(edits: list[tuple[Scene, str, str]]) -> EditCases:
    """EditCases from (scene, kind, new word) triples; kind in ALL_KINDS (object edits change object 0)."""
    out: dict[str, list] = {k: [] for k in EditCases.__dataclass_fields__}
    for scene, kind, new in edits:
        if kind not in ALL_KINDS:
            raise ValueError(f"edit kind must be one of {ALL_KINDS}, got {kind!r}")
        edited = edited_scene(scene, kind, new)
        (src, masks), (tgt, masks_t) = render(scene), render(edited)
        if kind == "background":  # keep the objects' interiors
            inside = masks.any(0, keepdim=True)[None].float()  # (1, 1, 32, 32)
            keep = 1 - F.max_pool2d(1 - inside, 3, 1, 1)  # erode by one pixel
            blend = ([scene.background], [new])
        else:  # keep everything but the edited object (source or target outline), dilated
            obj = (masks[0] | masks_t[0])[None, None].float()
            keep = 1 - F.max_pool2d(obj, 3, 1, 1)
            colour = scene.objects[0].colour
            blend = ([colour], [new if kind == "colour" else colour])
        for k, v in zip(EditCases.__dataclass_fields__, (kind, src, tgt, caption(scene), caption(edited), keep[0],
                                                           *blend, instruction_for(scene, kind, new)), strict=True):
            out[k].append(v)
    stacked = {k: torch.stack(out[k]) for k in ("source", "target", "keep")}
    return EditCases(**{**out, **stacked})


def edit_cases(n: int, seed: int = 0, positions: int = 0) -> EditCases:
    """Held-out (test-split) scenes 0..n-1; case i edits EDIT_KINDS[i % 3]: the first object's colour or shape, or
    the background, to a word drawn from the other values of that kind. Then `positions` position edits (`bench
    edit`: n // 3): the next one-object test scenes not in the center, moved to the opposite side (left <-> right,
    top <-> bottom)."""
    data, rng = ShapesDataset(n + 20 * positions + 1, seed, "test"), np.random.default_rng([seed, 5])
    edits = []
    for i in range(n):
        scene, kind = data.scene(i), EDIT_KINDS[i % 3]
        old = scene.background if kind == "background" else getattr(scene.objects[0], kind)
        edits.append((scene, kind, str(rng.choice([w for w in KINDS[kind] if w != old]))))
    movable = [s for s in map(data.scene, range(n, len(data))) if len(s.objects) == 1 and s.objects[0].position
               in OPPOSITE][:positions]  # about 2 in 5 scenes qualify
    edits += [(s, POSITION, OPPOSITE[s.objects[0].position]) for s in movable]
    return make_cases(edits)


def score(x: Tensor, cases: EditCases) -> dict[str, Tensor]:
    """Per-case scores of edited images x (n, 3, 32, 32): success (0/1), PSNR to target, PSNR/SSIM/MSE kept region
    (MSE of [-1, 1] images, `metrics.mse`)."""
    x = x.float()
    return {"success": torch.tensor([float(check(xi, p)["correct"]) for xi, p in zip(x, cases.target_caption,
                                                                                      strict=True)]),
            "psnr_target": psnr(x, cases.target),
            "psnr_keep": psnr(x, cases.source, cases.keep),
            "mse_keep": mse(x, cases.source, cases.keep),
            "ssim_keep": ssim(cases.keep * x + (1 - cases.keep) * cases.source, cases.source, cases.keep)}


# P2P settings per edit kind. Colour and background: inject the source maps for 80% of the steps
# and self-attention for 40% (the paper's defaults for attribute edits). Shape: the edited word
# gets only 20% (a per-word schedule: its source map draws the old outline) and self-attention 20%.
# Position: as shape (the source's maps of the object's words still say where it was: P2P keeps layouts).
# Background edits are not blended (the mask would have to be the whole background).
P2P_SETTINGS = {"colour": dict(word=0.8, self_steps=0.4, blend=True),
                "shape": dict(word=0.2, self_steps=0.2, blend=True),
                "background": dict(word=0.8, self_steps=0.4, blend=False),
                POSITION: dict(word=0.2, self_steps=0.2, blend=True)}


def word_swap_controller(model, cases: EditCases, idx: list[int], grid: Tensor, kind: str, blend: bool) -> Replace:
    """The P2P word swap of cases idx (all of one kind), with that kind's P2P_SETTINGS and local blend."""
    st = P2P_SETTINGS[kind]
    src, tgt = [cases.source_caption[i] for i in idx], [cases.target_caption[i] for i in idx]
    lb = None
    if blend and st["blend"]:
        lb = LocalBlend.for_model(model, src, tgt, [cases.blend_source[i] for i in idx],
                                  [cases.blend_target[i] for i in idx])
    changed = {b for s, t in zip(src, tgt, strict=True) for a, b in zip(s.split(), t.split(), strict=True) if a != b}
    return Replace(model.tokenizer, src, tgt, grid, cross_steps={"default": 0.8, **{w: st["word"] for w in changed}},
                   self_steps=st["self_steps"], local_blend=lb)


def by_kind(cases: EditCases, like: Tensor, run) -> Tensor:
    """out[idx] = run(kind, idx) for the cases of each edit kind (one controller per kind): (n, C, h, w)."""
    out = torch.empty_like(like)
    for kind in ALL_KINDS:
        idx = [i for i, k in enumerate(cases.kind) if k == kind]
        if idx:
            out[idx] = run(kind, idx)
    return out


def p2p_word_swaps(model, cases: EditCases, x_T: Tensor | None, w: float, steps: int, blend: bool,
                   null: Tensor | None = None, latent: NoiseLatent | None = None, skip: int = 0,
                   direct: DirectInversion | None = None) -> Tensor:
    """P2P word swap of every case, one controller per edit kind (`word_swap_controller`); returns the targets.
    From x_T (DDIM, eta = 0; with `null` the per-step null embeddings of null-text inversion), from a Direct
    Inversion (its x_T and offsets), or with `latent` from an edit-friendly / DPM-Encoder inversion, decoded from
    its x_t[skip] with its noise maps (edit-friendly + P2P)."""
    grid, guidance = timesteps(model.schedule.T, steps)[skip:], Guidance.of(model, w)

    def run(kind: str, idx: list[int]) -> Tensor:
        ctrl = word_swap_controller(model, cases, idx, grid, kind, blend)
        if latent is not None:
            return p2p_sample(model, ctrl, latent.x_t[skip][idx], guidance, noise=latent.noise[skip:, idx],
                              eta=latent.eta)[1]
        if direct is not None:
            return direct_inversion_p2p(model, ctrl, direct.select(idx), guidance)[1]
        return p2p_sample(model, ctrl, x_T[idx], guidance, None if null is None else null[:, idx])[1]

    return by_kind(cases, cases.source if x_T is None else x_T, run)


def edit_methods(model, cases: EditCases, w: float = 3.0, steps: int = 50, seed: int = 0,
                 nti_lr: float = 1e-2, nti_inner: int = 10, methods: tuple[str, ...] | None = None,
                 edict_steps: int | None = None) -> dict[str, tuple[Tensor, float]]:
    """{method: (edited images (n, 3, 32, 32), seconds)}; `methods` selects the methods whose names contain one of
    its strings. EDICT runs `edict_steps` steps, by default max(steps, EDICT_MIN_STEPS)."""
    edict_steps = max(steps, EDICT_MIN_STEPS) if edict_steps is None else edict_steps
    out = {}
    for name, run in _method_table(model, cases, w, steps, seed, nti_lr, nti_inner, edict_steps).items():
        if methods is not None and not any(m in name for m in methods):
            continue
        t0 = time.perf_counter()
        with torch.no_grad():
            x = run()
        out[name] = (x, time.perf_counter() - t0)
    return out


def _method_table(model, cases: EditCases, w: float, steps: int, seed: int, nti_lr: float, nti_inner: int,
                  edict_steps: int) -> dict:
    """{method name: a function computing its edits}; DDIM and null-text inversion are computed once, when
    first needed, and shared by the methods that start from them."""
    sched, T, x0 = model.schedule, model.schedule.T, cases.source
    src_ctx, tgt_ctx = model.encode_text(cases.source_caption), model.encode_text(cases.target_caption)
    guidance, g, cache = Guidance.of(model, w), torch.Generator().manual_seed(seed), {}
    once = lambda key, compute: cache[key] if key in cache else cache.setdefault(key, compute())  # noqa: E731

    ddim_xT = lambda: once("ddim", lambda: ddim_invert(model, sched, x0, steps, src_ctx, guidance=guidance))
    nti = lambda: once("nti", lambda: null_text_invert(model, sched, x0, src_ctx, guidance, steps=steps,
                                                       inner_steps=nti_inner, lr=nti_lr))
    edict = lambda leapfrog: edict_edit(model, sched, x0, src_ctx, tgt_ctx, edict_steps, guidance=guidance,
                                        leapfrog=leapfrog)[0]
    noisy = lambda enc: once(enc.__name__, lambda: enc(model, sched, x0, steps, context=src_ctx, guidance=guidance,
                                                        generator=torch.Generator().manual_seed(seed)))
    skip = round(NOISE_SPACE_SKIP * steps)
    return {
        "re-generate (target prompt, new noise)": lambda: generate(model, cases.target_caption, w, steps, seed,
                                                                   progress=False),
        "SDEdit t0 = 0.5 T": lambda: sdedit(model, sched, x0, T // 2, steps, tgt_ctx, generator=g, guidance=guidance),
        "SDEdit t0 = 0.75 T": lambda: sdedit(model, sched, x0, 3 * T // 4, steps, tgt_ctx, generator=g,
                                             guidance=guidance),
        "DDIM inversion, target prompt": lambda: ddim_sample(model, sched, ddim_xT(), steps, context=tgt_ctx,
                                                             guidance=guidance),
        "DDIM inversion + P2P": lambda: p2p_word_swaps(model, cases, ddim_xT(), w, steps, blend=False),
        "DDIM inversion + P2P + local blend": lambda: p2p_word_swaps(model, cases, ddim_xT(), w, steps, blend=True),
        "null-text inversion + P2P + local blend": lambda: p2p_word_swaps(model, cases, nti().x_T, w, steps,
                                                                          blend=True, null=nti().null_embeddings),
        f"EDICT (p = 0.93, strength 0.8, {edict_steps} steps)": lambda: edict(True),
        f"EDICT, x always first ({edict_steps} steps)": lambda: edict(False),
        "CycleDiffusion (DPM-Encoder), target prompt": lambda: decode_latent(model, sched, noisy(dpm_encode), tgt_ctx,
                                                                            guidance, skip),
        "edit-friendly inversion, target prompt": lambda: decode_latent(model, sched, noisy(edit_friendly_invert),
                                                                       tgt_ctx, guidance, skip),
        "edit-friendly inversion + P2P": lambda: p2p_word_swaps(model, cases, None, w, steps, blend=False,
                                                                latent=noisy(edit_friendly_invert), skip=skip),
        **baseline_methods(model, cases, w, steps, seed, ddim_xT, p2p_word_swaps),  # the project's baselines
    }


def edit_benchmark(model, n: int = 120, w: float = 3.0, steps: int = 50, seed: int = 0,
                   methods: tuple[str, ...] | None = None, figure: str | None = None,
                   edict_steps: int | None = None, positions: int | None = None) -> list[dict]:
    """Print the edit table (overall and per edit kind) and return its rows; save an example figure. n word-swap
    cases and `positions` (default n // 3) position edits (`edit_cases`)."""
    positions = n // 3 if positions is None else positions
    cases = edit_cases(n, seed, positions).to(next(model.parameters()).device)
    results = edit_methods(model, cases, w, steps, seed, methods=methods, edict_steps=edict_steps)
    ref = {"rendered target (ceiling)": cases.target, "source unchanged (no edit)": cases.source}
    rows = [table_row(name, images, seconds, cases)
            for name, (images, seconds) in {**{k: (v, 0.0) for k, v in ref.items()}, **results}.items()]
    header = ["method", "success", "colour", "shape", "bg", "position", "PSNR to target", "PSNR kept", "SSIM kept",
              "MSE kept", "s / edit"]
    body = [[r["method"], f"{r['success']:.2f}", *(f"{r[f'success_{k}']:.2f}" for k in ALL_KINDS),
             f"{r['psnr_target']:.1f}", f"{r['psnr_keep']:.1f}", f"{r['ssim_keep']:.3f}", f"{r['mse_keep']:.5f}",
             f"{r['seconds'] / len(cases.kind):.2f}"] for r in rows]
    print_table(f"Ground-truth edits on {n} + {positions} held-out shapes scenes (w = {w}, {steps} DDIM steps, "
                f"seed {seed}); success and PSNR/SSIM/MSE over the word swaps, 'position' on the moves", header, body)
    print_pie_bench()
    if figure is not None:
        _figure(cases, results, figure)
    return rows


def table_row(name: str, images: Tensor, seconds: float, cases: EditCases) -> dict:
    """One method's row: success per kind; the means of the other scores over the word swaps (colour, shape,
    background), whose numbers stay comparable with the tables measured before the position edits existed."""
    s = score(images, cases)
    swaps = torch.tensor([k in EDIT_KINDS for k in cases.kind])
    row = {"method": name, "seconds": seconds, **{k: v[swaps].mean().item() for k, v in s.items()}}
    for kind in ALL_KINDS:
        sel = torch.tensor([k == kind for k in cases.kind])
        row[f"success_{kind}"] = s["success"][sel].mean().item() if sel.any() else float("nan")
    return row


def _figure(cases: EditCases, results: dict[str, tuple[Tensor, float]], path: str) -> None:
    """One example per edit kind (its first case) per method: rows = kinds, columns = source, target, methods."""
    cols = {"source": cases.source, "target (rendered)": cases.target, **{m: x for m, (x, _) in results.items()}}
    first = [cases.kind.index(k) for k in ALL_KINDS if k in cases.kind]
    images = torch.cat([torch.stack([x[i] for x in cols.values()]) for i in first])
    titles = [name if r == 0 else "" for r in range(len(first)) for name in cols]  # column names on the first row
    for r, i in enumerate(first):  # the first image of each row is titled with its edit
        titles[r * len(cols)] = f"source ({cases.kind[i]} edit to:)\n{cases.target_caption[i]}"
    print(f"saved {save_grid(images, path, titles=titles, ncol=len(cols))}")


EDIT = BenchCommand("edit", "the ground-truth edit benchmark (SDEdit, DDIM/null-text inversion + P2P, EDICT, "
                    "noise space, the project baselines)",
                    lambda o: edit_benchmark(diffusion_model(o), n=o["n"], w=o["w"][0],
                                             steps=o["steps"][0], seed=o["seed"], methods=o.get("only"),
                                             figure=str(Path(o["out"]) / "edit_benchmark.png"),
                                             edict_steps=o.get("edict_steps")),
                    dict(n=120, w=[3.0], steps=[50]))
