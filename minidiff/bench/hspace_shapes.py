"""Lecture 8's table on `shapes`, where the renderer and the checker give ground truth: the gray -> black background
edit in h-space, and what the unsupervised Jacobian directions change.

For `n` held-out one-object scenes on a gray background (and `n_train` other ones to train on):

1. f_t (`nn.hspace.ImplicitDelta`) is trained over [T, min(t_edits)] (= t_edit = 500 by default; trained over
   [T, 200] the target form diverged: noise images at scale 1, measured) with Asyrp's loss on P_t, in two forms:
   *direction*: 1 - cos(Delta I, Delta T) in the feature space of the border colour (`border_colour`, the mean of
   the 2-pixel border; Delta T = mean border of black-background renders - gray ones), the CLIP-free analogue of
   Asyrp's loss; *target*: |border(P_edit) - black|^2, the analogue of the attribute-logit loss. Both add
   lambda_recon |P_edit - P_source| (lambda_recon = 1).
2. Each f edits the held-out scenes at several scales (negative: the reverse edit) and as the global delta h. The
   exact target of every edit exists: the same scene rendered on a black background (`datasets.shapes.render`,
   deterministic), so the table gives the checker's reading (`shapes_check.check` against the target caption:
   background read black, the object's colour, shape and position kept, everything right) and the PSNR to the
   exact target, beside the PSNR to the unedited reconstruction.
3. The t_edit sweep (Asyrp Figure 18) of the target-loss f, and the top-k right singular vectors of dP_t/dh at
   t_edit (`bench.hspace.face_directions`; no labels), applied as +-step |h| v: the rate at which the checker's
   reading of the background, the object's colour, shape and position differs between -v and +v names what each
   direction moves.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..datasets.shapes import BACKGROUND_COLOURS, caption, render, sample_scene
from ..datasets.shapes_check import check
from ..hspace import (
    applied_deltas,
    asyrp_loss,
    constant_delta,
    direction_loss,
    feature_direction,
    scale_delta,
)
from ..metrics import psnr
from ..nn.hspace import ImplicitDelta
from ..training import pretrained
from ..training.hspace import train_implicit_delta
from .hspace import direction_edits, edit, hspace_table, implicit_delta, invert
from .tables import BenchCommand, print_table

STEPS, EPOCHS, LR, LAMBDA_RECON = 40, 3, 3e-3, 1.0
SCALES = (-1.0, 0.25, 0.5, 1.0, 2.0)
READINGS = ("background", "colour", "shape", "position")


def border_colour(x: Tensor) -> Tensor:
    """The mean colour of the 2-pixel border of images (B, 3, H, W), (B, 3): the background's colour wherever the
    object does not reach the border."""
    mask = torch.ones(x.shape[-2:], dtype=torch.bool, device=x.device)
    mask[2:-2, 2:-2] = False
    return x[..., mask].mean(-1)


def scene_pairs(n: int, seed: int, source: str = "gray", target: str = "black") -> list[tuple]:
    """n one-object scenes on the source background and the same scenes on the target one."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = dataclasses.replace(sample_scene(rng, 1), background=source)
        out.append((s, dataclasses.replace(s, background=target)))
    return out


def renders(scenes: list, device) -> Tensor:
    """The scenes rendered, (N, 3, 32, 32) in [-1, 1]."""
    return torch.stack([render(s)[0] for s in scenes]).to(device)


def shapes_losses(device) -> dict:
    """Asyrp's loss on P_t in its two forms (module docstring): name -> loss(P_edit, P_source, t) (B,)."""
    black = torch.tensor(BACKGROUND_COLOURS["black"], device=device) * 2 - 1
    rng = np.random.default_rng(100)
    gray = renders([dataclasses.replace(sample_scene(rng, 1), background="gray") for _ in range(64)], device)
    delta_T = feature_direction(border_colour(renders([dataclasses.replace(sample_scene(rng, 1), background="black")
                                                       for _ in range(64)], device)), border_colour(gray))
    return {
        "direction (border colour)": lambda pe, ps, t: asyrp_loss(
            pe, ps, direction_loss(border_colour(pe), border_colour(ps), delta_T), LAMBDA_RECON),
        "target (|border - black|^2)": lambda pe, ps, t: asyrp_loss(
            pe, ps, (border_colour(pe) - black).pow(2).sum(1), LAMBDA_RECON)}


def judge_shapes(x: Tensor, rec: Tensor, targets: Tensor, target_scenes: list) -> dict:
    """The checker's reading of edits x against the target captions, PSNR to the exact targets and to rec."""
    res = [check(img, caption(s)) for img, s in zip(x.cpu(), target_scenes, strict=True)]
    return {**{k: float(np.mean([r[k] for r in res])) for k in (*READINGS, "correct")},
            "psnr_target": psnr(x, targets).mean().item(), "psnr_rec": psnr(x, rec).mean().item()}


def readings_moved(minus: Tensor, plus: Tensor, scenes: list) -> dict:
    """The rate at which the checker's verdict on the source caption differs between -v and +v, per reading."""
    a = [check(img, caption(s)) for img, s in zip(minus.cpu(), scenes, strict=True)]
    b = [check(img, caption(s)) for img, s in zip(plus.cpu(), scenes, strict=True)]
    return {k: float(np.mean([ra[k] != rb[k] for ra, rb in zip(a, b, strict=True)])) for k in READINGS}


def train_shapes(model, loss, x_T: Tensor, t_edit: int, seed: int = 0) -> tuple[ImplicitDelta, float]:
    """f_t (initialised from `seed`) trained on the inverted training scenes x_T over [T, t_edit]; returns f and the
    seconds."""
    t0 = time.perf_counter()
    f = implicit_delta(model, seed, x_T.device)
    train_implicit_delta(model, model.schedule, f, x_T, loss, t_edit, STEPS, model.null_context(1), epochs=EPOCHS,
                         batch_size=8, lr=LR)
    return f, time.perf_counter() - t0


def shapes_edit_rows(model, f, x_T_train: Tensor, x_T: Tensor, rec: Tensor, targets: Tensor, scenes: list,
                     t_edit: int) -> list[dict]:
    """f at each of SCALES and the global delta h (the mean of f_t(h_t) over the training scenes and steps) on the
    held-out x_T, judged by `judge_shapes`; each row keeps its images "x"."""
    deltas, _ = applied_deltas(model, model.schedule, x_T_train, f, t_edit, STEPS, model.null_context(len(x_T_train)))
    edits = [(f"f_t {s:g}", scale_delta(f, s)) for s in SCALES] + [("global delta h", constant_delta(
        deltas.mean((0, 1))))]
    rows = []
    for name, delta in edits:
        x = edit(model, x_T, delta, t_edit)
        rows.append({"edit": name, "x": x, **judge_shapes(x, rec, targets, scenes)})
    return rows


def shapes_direction_rows(model, x_T: Tensor, scenes: list, t: int, k: int = 3, step: float = 0.5) -> list[dict]:
    """`direction_edits` on scenes, named by the checker: per direction the mean singular value and
    `readings_moved` between -v and +v."""
    _, imgs, sing, t = direction_edits(model, x_T, t, k, step)  # imgs: (B, k, 2 (-v, +v), 3, H, W)
    return [{"direction": i + 1, "t": t, "singular value": sing[:, i].mean().item(), "x": imgs[:, i],
             **readings_moved(imgs[:, i, 0], imgs[:, i, 1], scenes)} for i in range(k)]


def hspace_shapes_table(checkpoint: str = "shapes", n: int = 32, n_train: int = 16, t_edit: int = 500,
                        t_edits: tuple[int, ...] = (900, 800, 700, 600, 500), out: str | None = None,
                        device: str | torch.device = "cpu", seed: int = 0) -> dict:
    """The module docstring's measurements on a pixel-space shapes model, printed, with figures in `out`."""
    model = pretrained.load(checkpoint, kind="DiffusionModel", device=device)
    train = renders([s for s, _ in scene_pairs(n_train, 1)], device)
    pairs = scene_pairs(n, 2)
    x, targets, target_scenes = renders([s for s, _ in pairs], device), renders([t for _, t in pairs], device), \
        [t for _, t in pairs]
    x_T_train, x_T = invert(model, train), invert(model, x)
    rec = edit(model, x_T, None, 0)
    res: dict = {"edits": {"reconstruction (no edit)": [{"edit": "-", "x": rec,
                                                         **judge_shapes(rec, rec, targets, target_scenes)}]},
                 "seconds": {}}
    fs = {}
    for name, loss in shapes_losses(device).items():
        fs[name], res["seconds"][name] = train_shapes(model, loss, x_T_train, min(t_edits), seed)
        res["edits"][name] = shapes_edit_rows(model, fs[name], x_T_train, x_T, rec, targets, target_scenes, t_edit)
    res["t_edit"] = [{"t_edit": te, **judge_shapes(edit(model, x_T, fs[name], te), rec, targets, target_scenes)}
                     for te in t_edits]
    res["directions"] = shapes_direction_rows(model, x_T[:4], [s for s, _ in pairs[:4]], t_edit)
    _print_shapes(res, n, n_train, t_edit, min(t_edits), name)
    if out is not None:
        _shapes_figures(res, x, targets, Path(out))
    return res


def _print_shapes(res: dict, n: int, n_train: int, t_edit: int, t_train: int, last: str) -> None:
    judge = "judged by the exact checker (shapes_check.check) against the target caption"
    rows = [[loss, r["edit"], *(f"{r[k]:.3f}" for k in (*READINGS, "correct")), f"{r['psnr_target']:.2f}",
             f"{r['psnr_rec']:.2f}"] for loss, rs in res["edits"].items() for r in rs]
    print_table(f"Asyrp h-space edits, gray -> black background, on {n} held-out one-object shapes scenes (f_t "
                f"trained on {n_train} other scenes, {EPOCHS} epochs over [T, {t_train}], edits over [T, {t_edit}], "
                f"{STEPS} DDIM steps, null prompt); {judge}",
                ["loss", "edit", "background read black", "colour kept", "shape kept", "position kept",
                 "target caption correct", "PSNR to exact target", "PSNR to reconstruction"], rows)
    print_table("Training seconds", ["loss", "s"], [[k, f"{v:.0f}"] for k, v in res["seconds"].items()])
    print_table(f"The editing interval [T, t_edit] (Asyrp Figure 18), f_t of the {last} loss at scale 1; {judge}",
                ["t_edit", "background read black", "target caption correct", "PSNR to exact target",
                 "PSNR to reconstruction"],
                [[str(r["t_edit"]), f"{r['background']:.3f}", f"{r['correct']:.3f}", f"{r['psnr_target']:.2f}",
                  f"{r['psnr_rec']:.2f}"] for r in res["t_edit"]])
    d = res["directions"]
    print_table(f"Unsupervised directions: top right singular vectors of dP_t/dh at t = {d[0]['t']} ({len(d[0]['x'])} "
                "scenes, each its own), delta h = +-0.5 |h| v over [T, t]; the rate at which the checker's verdict on "
                "the source caption differs between -v and +v",
                ["direction", "mean singular value", *(f"{k} moved" for k in READINGS)],
                [[str(r["direction"]), f"{r['singular value']:.3f}", *(f"{r[k]:.3f}" for k in READINGS)] for r in d])


def _shapes_figures(res: dict, x: Tensor, targets: Tensor, out: Path) -> None:
    from ..viz import save_grid

    cols = [("source", x), ("exact target", targets)] + [(f"{loss[:6]} {r['edit']}", r["x"])
                                                           for loss, rs in res["edits"].items() for r in rs]
    grid = torch.stack([c[:6] for _, c in cols], 1).flatten(0, 1)
    print(f"saved {save_grid(grid.cpu(), out / 'hspace_shapes.png', titles=[t for t, _ in cols] * 6, ncol=len(cols))}")
    d = torch.stack([r["x"] for r in res["directions"]], 1)  # (B, k, 2, 3, H, W)
    titles = [f"v{r['direction']} {s}" for r in res["directions"] for s in "-+"] * len(d)
    path = save_grid(d.flatten(0, 2).cpu(), out / "hspace_shapes_directions.png", titles=titles, ncol=2 * d.shape[1])
    print(f"saved {path}")


def hspace_command(o: dict) -> dict:
    """`bench hspace`: the CelebA table (default), or the shapes one for a pixel shapes checkpoint."""
    if o["checkpoint"].startswith("shapes"):
        return hspace_shapes_table(o["checkpoint"], n=o.get("n", 32), out=o["out"], device=o["device"],
                                   seed=o.get("seed", 0))
    return hspace_table(o["checkpoint"], o["classifier"], n=o.get("n", 64), out=o["out"], device=o["device"],
                        seed=o.get("seed", 0))


HSPACE = BenchCommand(
    "hspace", "Asyrp h-space editing (lecture 8). Default: real CelebA faces (Smiling, Young, Male), f_t trained on "
    "celeba_classifier's feature direction, scales, the global delta h, composition, the t_edit sweep and "
    "unsupervised Jacobian directions, judged by celeba_classifier. --checkpoint shapes: the gray -> black "
    "background edit judged by the exact checker against the rendered target, and what the Jacobian directions move",
    hspace_command, dict(checkpoint="celeba", classifier="celeba_classifier"))
