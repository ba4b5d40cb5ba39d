"""`python -m minidiff demo`: the course's showcase, offline, on built-in data and shipped checkpoints.

Part 1 (lecture 1): train a DDPM on 2-D two-moons in seconds, sample it with Algorithm 2 and
split its ELBO per timestep. Part 2 (if the shipped `shapes` model is present): text-to-image
samples from it, each marked by the rule-based checker. Part 3, the editing showcase
(lectures 3-5): a rendered shapes image is inverted with null-text inversion, its words'
cross-attention maps are drawn, and it is edited by Prompt-to-Prompt word swaps (colour with
local blend, shape with a short per-word injection, background) and by EDICT; every edit is
scored against the exactly re-rendered target (`out/editing.png`).
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


def editing_figure(out: Path, steps: int = 50, w: float = 3.0) -> dict | None:
    """Invert, show attention maps, edit with P2P and EDICT, score against rendered targets; None if no model."""
    from . import pretrained
    from .edict import edict_edit
    from .experiments_p2p import make_cases, p2p_word_swaps, score
    from .inversion import null_text_invert, null_text_sample
    from .metrics import psnr
    from .p2p import AttentionEdit, AttentionStore, p2p_sample, word_maps
    from .shapes import Scene, ShapeObject
    from .viz import to_numpy_image

    if not pretrained.available("shapes"):
        return None
    model = pretrained.load("shapes")
    scene = Scene((ShapeObject("circle", "red", "left", size=5.6, dx=0.4, dy=-0.6),), "gray", 0.7, 0.05, 7)
    cases = make_cases([(scene, "colour", "green"), (scene, "shape", "square"), (scene, "background", "white")])
    x0, src = cases.source[:1], cases.source_caption[:1]
    ctx, null = model.encode_text(src), model.null_context()
    print(f"null-text inversion of {src[0]!r} ({steps} steps, w = {w})")
    inv = null_text_invert(model, model.schedule, x0, ctx, null, w=w, steps=steps, progress=True)
    with torch.no_grad():
        rec = null_text_sample(model, model.schedule, inv.x_T, ctx, inv.null_embeddings, w, inv.grid)
        store = AttentionStore(2)
        ctrl = AttentionEdit(model.tokenizer, src, src, inv.grid, cross_steps=0.0, store=store)
        p2p_sample(model, ctrl, inv.x_T, w, inv.null_embeddings)
        words, maps = word_maps(store, model.tokenizer, src[0])
        x_T = inv.x_T.expand(3, -1, -1, -1)
        nulls = inv.null_embeddings.expand(-1, 3, -1, -1)
        print("P2P word swaps (colour + local blend, shape, background)")
        edits = p2p_word_swaps(model, cases, x_T, w, steps, blend=True, null=nulls)
        print("EDICT edit (colour)")
        edict = edict_edit(model, model.schedule, x0, ctx, model.encode_text(cases.target_caption[:1]), steps,
                           guidance=(null, w))[0]
    s_p2p = score(edits, cases)
    s_edict = score(edict, make_cases([(scene, "colour", "green")]))
    rec_psnr = psnr(rec, x0).item()

    shown = [i for i, wd in enumerate(words) if wd in ("red", "circle", "left", "gray", "background")]
    fig, ax = plt.subplots(3, 6, figsize=(13, 7.4))
    for a in ax.flat:
        a.axis("off")
    ax[0, 0].imshow(to_numpy_image(x0[0]), interpolation="nearest")
    ax[0, 0].set_title("source (rendered)", fontsize=8)
    ax[0, 1].imshow(to_numpy_image(rec[0]), interpolation="nearest")
    ax[0, 1].set_title(f"null-text reconstruction\nPSNR {rec_psnr:.1f} dB", fontsize=8)
    for k, i in enumerate(shown[:4]):
        ax[0, 2 + k].imshow(maps[i], cmap="magma")
        ax[0, 2 + k].set_title(f"cross-attention '{words[i]}'", fontsize=8)
    labels = ["P2P: red -> green\n(local blend)", "P2P: circle -> square\n(short injection)",
              "P2P: gray -> white\n(background)", "EDICT: red -> green"]
    results = [(edits[i], {k: v[i].item() for k, v in s_p2p.items()}, cases.target[i]) for i in range(3)]
    results.append((edict[0], {k: v[0].item() for k, v in s_edict.items()}, cases.target[0]))
    for k, (img, sc, tgt) in enumerate(results):
        ax[1, k].imshow(to_numpy_image(tgt), interpolation="nearest")
        ax[1, k].set_title("target (rendered)", fontsize=8)
        ax[2, k].imshow(to_numpy_image(img), interpolation="nearest")
        ok = "OK" if sc["success"] else "X"
        ax[2, k].set_title(f"{labels[k]}\n{ok}, PSNR to target {sc['psnr_target']:.1f} dB", fontsize=8)
    fig.suptitle(f"Editing by inversion: {src[0]!r}, DDIM {steps} steps, w = {w}", fontsize=10)
    fig.tight_layout()
    path = out / "editing.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"figure": str(path), "reconstruction_psnr_db": rec_psnr,
            "edits_correct": (s_p2p["success"].sum().item() + s_edict["success"].sum().item()) / 4,
            "psnr_to_target_db": [round(r[1]["psnr_target"], 1) for r in results]}


def run(out: str | Path = "out", fast: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"toy": toy_figure(out, steps=2000 if fast else 6000)}
    shapes = shapes_figure(out, n=8 if fast else 16)
    if shapes is not None:
        results["shapes"] = shapes
    editing = editing_figure(out, steps=25 if fast else 50)
    if editing is not None:
        results["editing"] = editing
    for name, r in results.items():
        print(f"[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return results
