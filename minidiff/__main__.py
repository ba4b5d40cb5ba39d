"""Command line: python -m minidiff {demo,train,sample,export,bench,train-classifier} --help"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields

import torch


def _train_parser(sub) -> None:
    from .train import TrainConfig

    p = sub.add_parser("train", help="train a text-conditional diffusion model (resumes from --out)",
                       description="Train with L_simple; checkpoints every --ckpt-every steps to --out; "
                                   "re-running the same command resumes exactly. Under torchrun, data parallel.")
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else None
        typ = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=default, help=f"(default: {default})")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out has a state")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minidiff", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="the offline showcase: figures in --out")
    d.add_argument("--out", default="out")
    d.add_argument("--fast", action="store_true", help="fewer training steps and samples")
    _train_parser(sub)
    s = sub.add_parser("sample", help="sample a prompt with a checkpoint and save an image grid")
    s.add_argument("--checkpoint", default="shapes", help="shipped name or path to NAME.json")
    s.add_argument("--prompt", required=True, help='e.g. "a red circle on the left on a gray background"')
    s.add_argument("--n", type=int, default=8)
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--eta", type=float, default=0.0)
    s.add_argument("--guidance", type=float, default=3.0, help="CFG scale w (1 = conditional only)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="out/samples.png")
    e = sub.add_parser("export", help="export a run's EMA model as a shippable checkpoint")
    e.add_argument("--run", required=True)
    e.add_argument("--to", required=True, help="destination stem, e.g. data/shapes")
    e.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    e.add_argument("--command", default="", help="the training command, recorded in the JSON")
    b = sub.add_parser("bench", help="measured tables (printed as markdown; figures in out/)",
                       description="prompt-accuracy: checker-judged samples of held-out prompts; ddim-roundtrip: "
                       "inversion+sampling MSE vs steps; cfg-inversion: the same under CFG w; eta-grid: samples "
                       "across eta and steps; classifier-guidance: background hit rate vs guidance scale; edit: the "
                       "ground-truth edit benchmark (SDEdit, DDIM/null-text inversion + P2P, EDICT); null-text: "
                       "reconstruction PSNR of DDIM vs null-text inversion under guidance; autoencoder: held-out "
                       "reconstruction PSNR/SSIM of the shipped autoencoders; quality: classifier accuracy, "
                       "classifier-FID and -KID of a latent model's samples (e.g. --checkpoint cifar10 --classifier "
                       "cifar10_classifier); edict: EDICT vs DDIM reconstruction (the EDICT paper's Table 1; "
                       "latent models "
                       "add the autoencoder floor; --float64 for 200 steps).")
    b.add_argument("what", choices=["prompt-accuracy", "ddim-roundtrip", "cfg-inversion", "eta-grid",
                                    "classifier-guidance", "edit", "null-text", "autoencoder", "quality", "edict"])
    b.add_argument("--checkpoint", default="shapes")
    b.add_argument("--n", type=int, default=None, help="number of prompts / images (a default per table)")
    b.add_argument("--guidance", type=float, nargs="+", default=None, help="CFG scale(s) w")
    b.add_argument("--steps", type=int, nargs="+", default=None, help="DDIM step count(s)")
    b.add_argument("--classifier", default="data/shapes_classifier",
                   help="classifier-guidance: the noisy classifier; quality: the evaluation classifier")
    b.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 3.0, 10.0])
    b.add_argument("--prompt", default="a red circle on the left on a gray background")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--float64", action="store_true", help="edict: run model and images in float64")
    b.add_argument("--edict-steps", type=int, default=None, help="edit: EDICT's steps (default max(steps, 50))")
    b.add_argument("--out", default="out")
    c = sub.add_parser("train-classifier", help="train the noise-conditional shapes classifier for classifier guidance")
    c.add_argument("--checkpoint", default="shapes", help="the diffusion model whose schedule the classifier uses")
    c.add_argument("--kind", default="background", choices=["background", "colour"])
    c.add_argument("--n", type=int, default=20_000)
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--to", default="data/shapes_classifier")
    a = ap.parse_args(argv)
    commands = {"demo": _demo, "train": _train, "sample": _sample, "export": _export, "bench": _bench,
                "train-classifier": _train_classifier}
    return commands[a.cmd](a)


def _demo(a) -> int:
    from .demo import run

    run(a.out, fast=a.fast)
    return 0


def _train(a) -> int:
    from .train import config_from_args, train

    if a.threads:
        torch.set_num_threads(a.threads)
    opts = {k: v for k, v in vars(a).items() if k not in ("cmd", "no_resume", "threads")}
    out = train(config_from_args(**opts), resume=not a.no_resume)
    print(f"run folder: {out}")
    return 0


def _sample(a) -> int:
    from . import pretrained
    from .evaluate import generate
    from .viz import save_grid

    model = pretrained.load(a.checkpoint)
    x0 = generate(model, [a.prompt] * a.n, a.guidance, a.steps, a.seed, eta=a.eta)
    print(f"saved {save_grid(x0, a.out, titles=[a.prompt] * a.n, ncol=min(a.n, 8))}")
    return 0


def _export(a) -> int:
    from .checkpoint import load_model, save_model

    model = load_model(f"{a.run}/model")
    info = dict(model.info)
    info["command"] = a.command
    print(f"saved {save_model(model, a.to, dtype=getattr(torch, a.dtype), info=info)}")
    return 0


def _bench(a) -> int:
    from pathlib import Path

    from . import experiments, pretrained
    from .evaluate import prompt_accuracy_table
    from .shapes import shapes_tensors

    out = Path(a.out)
    if a.what == "prompt-accuracy":
        prompt_accuracy_table(a.checkpoint, n=a.n or 200, guidance=a.guidance or [3.0], steps=(a.steps or [50])[0],
                              seed=a.seed, figure=out / "prompt_accuracy.png")
        return 0
    if a.what in ("autoencoder", "quality"):
        from . import experiments_latent

        if a.what == "autoencoder":
            experiments_latent.autoencoder_table(n=a.n or 1000)
        else:
            experiments_latent.quality_table(a.checkpoint, a.classifier, n=a.n or 500,
                                             guidance=(a.guidance or [3.0])[0], steps=(a.steps or [25])[0],
                                             seed=a.seed)
        return 0
    model = pretrained.load(a.checkpoint)
    if a.what in ("edit", "null-text"):
        from . import experiments_p2p

        if a.what == "edit":
            experiments_p2p.edit_benchmark(model, n=a.n or 120, w=(a.guidance or [3.0])[0], steps=(a.steps or [50])[0],
                                           seed=a.seed, figure=str(out / "edit_benchmark.png"),
                                           edict_steps=a.edict_steps)
        else:
            experiments_p2p.null_text_table(model, n=a.n or 16, ws=tuple(a.guidance or (3.0, 7.5)),
                                            steps=(a.steps or [50])[0], seed=a.seed)
        return 0
    if model.data.get("name", "shapes") == "shapes":
        images, captions = shapes_tensors(a.n or 64, seed=a.seed, split="test")
    else:  # CIFAR-10 / CelebA models: held-out images of their data set
        from .experiments_latent import heldout

        images, captions = heldout(model.data["name"], a.n or 64, model.data["image_size"])
    if a.what == "ddim-roundtrip":
        experiments.ddim_roundtrip_table(model, images, captions, steps_list=tuple(a.steps or (10, 20, 50, 100, 200,
                                                                                             500, 1000)))
    elif a.what == "cfg-inversion":
        experiments.cfg_inversion_table(model, images, captions, ws=tuple(a.guidance or (1.0, 3.0, 7.5)),
                                        steps=(a.steps or [50])[0])
    elif a.what == "edict":
        from .experiments_edict import edict_table

        dtype = torch.float64 if a.float64 else torch.float32
        ae = model.autoencoder.to(dtype) if model.latent else None
        edict_table(model.to(dtype), images.to(dtype), captions, steps_list=tuple(a.steps or (50, 100, 200)), ae=ae,
                    guidance_w=(a.guidance or [3.0])[0])
    elif a.what == "eta-grid":
        experiments.eta_steps_grid(model, a.prompt, steps=tuple(a.steps or (10, 20, 50, 100)), seed=a.seed,
                                   guidance=(a.guidance or [3.0])[0], path=out / "eta_steps_grid.png")
    else:
        from .checkpoint import load_model

        clf = load_model(a.classifier)
        if clf.info.get("kind") != "background":
            kind = clf.info.get("kind")
            raise ValueError(f"{a.classifier} predicts {kind!r}; this table needs a background classifier")
        experiments.classifier_guidance_table(model, clf, clf.info["labels"], tuple(a.scales), n=a.n or 64,
                                              steps=(a.steps or [50])[0], seed=a.seed)
    return 0


def _train_classifier(a) -> int:
    from . import pretrained
    from .checkpoint import save_model
    from .guidance import shapes_labels, train_shapes_classifier

    sched = pretrained.load(a.checkpoint).schedule
    clf, losses, accuracy = train_shapes_classifier(sched, a.kind, n=a.n, steps=a.steps, seed=a.seed)
    labels = shapes_labels([], a.kind)[1]
    print("held-out accuracy by timestep: " + ", ".join(f"t={t}: {acc:.3f}" for t, acc in accuracy.items()))
    info = {"labels": labels, "kind": a.kind, "schedule": sched.spec, "steps": a.steps, "final_loss": losses[-1],
            "heldout_accuracy": {str(t): acc for t, acc in accuracy.items()},
            "command": "python -m minidiff train-classifier " + " ".join(sys.argv[2:])}
    print(f"saved {save_model(clf, a.to, info=info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
