"""`python -m minidiff demo`: the course's showcase, offline, on built-in data and shipped checkpoints.

Part 1 (lecture 1): train a DDPM on 2-D two-moons in seconds, sample it with Algorithm 2 and
split its ELBO per timestep. Part 2 (if the shipped `shapes` model is present): text-to-image
samples from it, each marked by the rule-based checker. Part 3, the editing showcase
(lectures 3-5): a rendered shapes image is inverted with null-text inversion, its words'
cross-attention maps are drawn, and it is edited by Prompt-to-Prompt word swaps (colour with
local blend, shape with a short per-word injection, background) and by EDICT; every edit is
scored against the exactly re-rendered target (`out/editing.png`).

DDIM runs 25 steps for the samples and the inversion (the steps of the edit and null-text tables in data/README.md;
prompt accuracy at w = 3 is the same at 25 and 50 steps: all 200 prompts fully correct at both); EDICT runs 50
(it drifts with fewer, data/README.md). With two or more threads, parts 1 and 2 run in a child process on one core
while part 3 runs here on the other (`run`).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..datasets.shapes import Scene, ShapeObject, caption, sample_scene
from ..datasets.shapes_check import check
from ..datasets.toy import two_moons
from ..devices import num_threads
from ..edict import edict_edit
from ..elbo import elbo_terms
from ..guidance import Guidance
from ..metrics import psnr
from ..nn.diffusion_model import generate
from ..null_text import null_text_invert
from ..p2p import AttentionEdit, AttentionStore, p2p_sample, word_maps
from ..samplers import ddpm_sample
from ..schedule import Schedule, standard_normal
from ..training import pretrained
from ..training.toy import train_toy
from ..viz import save_grid, to_numpy_image
from .edit import make_cases, p2p_word_swaps, score


def toy_figure(out: Path, steps: int = 4000, seed: int = 0, progress: bool = True) -> dict:
    """Train the 2-D toy, save out/toy_ddpm.png, return the numbers shown in it."""
    g = torch.Generator().manual_seed(seed)
    sched = Schedule.linear(1000)
    data = two_moons(20_000, g)
    model, losses = train_toy(data, sched, steps=steps, seed=seed, progress=progress)
    with torch.no_grad():
        x = ddpm_sample(model, sched, standard_normal((2000, 2), data, g), generator=g, progress=progress)
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


def shapes_figure(out: Path, n: int = 16, guidance: float = 3.0, seed: int = 0, steps: int = 25,
                  progress: bool = True) -> dict | None:
    """Text-to-image samples of the shipped shapes model with the checker's verdicts; None if absent."""
    if not pretrained.available("shapes"):
        return None
    model = pretrained.load("shapes")
    prompts = [caption(sample_scene(10_000 + i)) for i in range(n)]
    x0 = generate(model, prompts, guidance, steps=steps, seed=seed, progress=progress)
    verdicts = [check(x0[i], prompts[i]) for i in range(n)]
    ok = [v["correct"] for v in verdicts]
    titles = [("OK  " if o else "X  ") + p for o, p in zip(ok, prompts, strict=True)]
    path = save_grid(x0, out / "shapes_samples.png", titles=titles, ncol=4)
    return {"figure": str(path), "prompts_fully_correct": sum(ok) / n}


def editing_results(steps: int = 25, w: float = 3.0, edict_steps: int = 50) -> dict:
    """The editing showcase's numbers and images: null-text inversion of one rendered scene, its cross-attention
    maps, P2P word swaps (colour with local blend, shape, background) and an EDICT colour edit, each scored
    against the exactly re-rendered target. Needs the shipped `shapes` model."""
    model = pretrained.load("shapes")
    scene = Scene((ShapeObject("circle", "red", "left", size=5.6, dx=0.4, dy=-0.6),), "gray", 0.7, 0.05, 7)
    cases = make_cases([(scene, "colour", "green"), (scene, "shape", "square"), (scene, "background", "white")])
    x0, src = cases.source[:1], cases.source_caption[:1]
    ctx, guidance = model.encode_text(src), Guidance.of(model, w)
    print(f"null-text inversion of {src[0]!r} ({steps} steps, w = {w})")
    inv = null_text_invert(model, model.schedule, x0, ctx, guidance, steps=steps, progress=True)
    with torch.no_grad():  # one pass draws the reconstruction and records its attention maps: with nothing injected,
        store = AttentionStore(2)  # p2p_sample's source row is null_text_sample's guided DDIM with the same nulls
        rec, _ = p2p_sample(model, AttentionEdit(model.tokenizer, src, src, inv.grid, cross_steps=0.0, store=store),
                            inv.x_T, guidance, inv.null_embeddings)
        words, maps = word_maps(store, model.tokenizer, src[0])
        print("P2P word swaps (colour + local blend, shape, background)")
        edits = p2p_word_swaps(model, cases, inv.x_T.expand(3, -1, -1, -1), w, steps, blend=True,
                               null=inv.null_embeddings.expand(-1, 3, -1, -1))
        print("EDICT edit (colour)")
        edict = edict_edit(model, model.schedule, x0, ctx, model.encode_text(cases.target_caption[:1]),
                           edict_steps, guidance=guidance)[0]
    s_p2p, s_edict = score(edits, cases), score(edict, make_cases([(scene, "colour", "green")]))
    results = [(edits[i], {k: v[i].item() for k, v in s_p2p.items()}, cases.target[i]) for i in range(3)]
    results.append((edict[0], {k: v[0].item() for k, v in s_edict.items()}, cases.target[0]))
    return {"source": x0[0], "prompt": src[0], "reconstruction": rec[0], "reconstruction_psnr_db": psnr(rec, x0).item(),
            "words": words, "maps": maps, "results": results, "steps": steps, "edict_steps": edict_steps, "w": w}


EDIT_LABELS = ["P2P: red -> green\n(local blend)", "P2P: circle -> square\n(short injection)",
               "P2P: gray -> white\n(background)", "EDICT: red -> green\n({} steps)"]


def editing_plot(r: dict, path: Path) -> Path:
    """The figure of `editing_results`: source, reconstruction and attention maps; targets; edits."""
    fig, ax = plt.subplots(3, 6, figsize=(13, 7.4))
    for a in ax.flat:
        a.axis("off")
    ax[0, 0].imshow(to_numpy_image(r["source"]), interpolation="nearest")
    ax[0, 0].set_title("source (rendered)", fontsize=8)
    ax[0, 1].imshow(to_numpy_image(r["reconstruction"]), interpolation="nearest")
    ax[0, 1].set_title(f"null-text reconstruction\nPSNR {r['reconstruction_psnr_db']:.1f} dB", fontsize=8)
    shown = [i for i, wd in enumerate(r["words"]) if wd in ("red", "circle", "left", "gray", "background")]
    for k, i in enumerate(shown[:4]):
        ax[0, 2 + k].imshow(r["maps"][i], cmap="magma")
        ax[0, 2 + k].set_title(f"cross-attention '{r['words'][i]}'", fontsize=8)
    for k, (img, sc, tgt) in enumerate(r["results"]):
        ax[1, k].imshow(to_numpy_image(tgt), interpolation="nearest")
        ax[1, k].set_title("target (rendered)", fontsize=8)
        ax[2, k].imshow(to_numpy_image(img), interpolation="nearest")
        ok = "OK" if sc["success"] else "X"
        label = EDIT_LABELS[k].format(r["edict_steps"])
        ax[2, k].set_title(f"{label}\n{ok}, PSNR to target {sc['psnr_target']:.1f} dB", fontsize=8)
    fig.suptitle(f"Editing by inversion: {r['prompt']!r}, DDIM {r['steps']} steps, w = {r['w']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def editing_figure(out: Path, steps: int = 25, w: float = 3.0, edict_steps: int = 50) -> dict | None:
    """Invert, show attention maps, edit with P2P and EDICT, score against rendered targets (`editing_results`),
    save out/editing.png (`editing_plot`); None if the shipped shapes model is absent."""
    if not pretrained.available("shapes"):
        return None
    r = editing_results(steps, w, edict_steps)
    path = editing_plot(r, out / "editing.png")
    return {"figure": str(path), "reconstruction_psnr_db": r["reconstruction_psnr_db"],
            "edits_correct": sum(sc["success"] for _, sc, _ in r["results"]) / len(r["results"]),
            "psnr_to_target_db": [round(sc["psnr_target"], 1) for _, sc, _ in r["results"]]}


def toy_and_samples(out: Path, toy_steps: int, n: int, progress: bool = True) -> dict:
    """Parts 1 and 2: {"toy": ..., "shapes": ...} ("shapes" only with the shipped model)."""
    results = {"toy": toy_figure(out, steps=toy_steps, progress=progress)}
    shapes = shapes_figure(out, n=n, progress=progress)
    return results if shapes is None else {**results, "shapes": shapes}


def toy_and_samples_on_one_thread(out: Path, toy_steps: int, n: int) -> dict:
    """Parts 1 and 2 as `run`'s child process runs them: one thread, no progress bars (they would interleave with
    part 3's)."""
    with num_threads(1):
        return toy_and_samples(out, toy_steps, n, progress=False)


def run(out: str | Path = "out", fast: bool = False) -> dict:
    """The three parts; `fast` trains the toy 2,000 steps instead of 4,000 (`train_toy`'s default) and draws 8
    samples instead of 16.

    With n >= 2 threads, parts 1 and 2 run in a child process on one thread (the toy trains on one anyway,
    `train_toy`) while part 3 runs here on n - 1: null-text inversion's batch-1 forward+backward gains nothing from a
    second thread (79 vs 77 ms for `shapes` on the project's CPU), so the second core would otherwise idle."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    toy_steps, n, threads = (2000 if fast else 4000), (8 if fast else 16), torch.get_num_threads()
    if threads >= 2:
        print(f"parts 1-2 (2-D toy, {toy_steps} steps; {n} shapes samples) run in a child process beside part 3")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            child = pool.submit(toy_and_samples_on_one_thread, out, toy_steps, n)
            with num_threads(threads - 1):
                editing = editing_figure(out)
            results = child.result()
    else:
        results, editing = toy_and_samples(out, toy_steps, n), editing_figure(out)
    if editing is not None:
        results["editing"] = editing
    for name, r in results.items():
        print(f"[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return results
