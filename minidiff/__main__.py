"""Command line: python -m minidiff {demo,train,sample,export,bench} --help"""

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
    b = sub.add_parser("bench", help="measured tables")
    b.add_argument("what", choices=["prompt-accuracy"])
    b.add_argument("--checkpoint", default="shapes")
    b.add_argument("--n", type=int, default=200)
    b.add_argument("--guidance", type=float, nargs="+", default=[3.0], help="one or more CFG scales")
    b.add_argument("--steps", type=int, default=50)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default="out/prompt_accuracy.png")
    a = ap.parse_args(argv)
    return {"demo": _demo, "train": _train, "sample": _sample, "export": _export, "bench": _bench}[a.cmd](a)


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
    from .samplers import classifier_free_guidance, ddim_sample
    from .viz import save_grid

    model = pretrained.load(a.checkpoint)
    g = torch.Generator().manual_seed(a.seed)
    size, ch = model.unet.cfg.image_size, model.unet.cfg.in_channels
    with torch.no_grad():
        x_T = torch.randn(a.n, ch, size, size, generator=g)
        eps = classifier_free_guidance(model, model.null_context(), a.guidance)
        x0 = ddim_sample(eps, model.schedule, x_T, a.steps, a.eta, model.encode_text([a.prompt] * a.n),
                         generator=g, progress=True)
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
    from .evaluate import prompt_accuracy_table

    prompt_accuracy_table(a.checkpoint, n=a.n, guidance=a.guidance, steps=a.steps, seed=a.seed, figure=a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
