"""Command line: python -m minidiff {demo,train,sample,export,bench,train-classifier,homework} --help"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
ERRORS = (ValueError, TypeError, OSError, RuntimeError)  # what a user's input can cause: one line, exit 2


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. Errors print one line, `minidiff: error: ...`, and return 2 (argparse's convention);
    --debug (or MINIDIFF_DEBUG=1) shows the traceback instead."""
    ap = argparse.ArgumentParser(prog="python -m minidiff", description=__doc__)
    ap.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (_demo_parser, _train_parser, _sample_parser, _export_parser, _bench_parser, _classifier_parser,
                _homework_parser):
        add(sub)
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except ERRORS as e:
        if a.debug or os.environ.get("MINIDIFF_DEBUG", "") not in ("", "0"):
            raise
        print(f"minidiff: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


# ---- argument types: checked while parsing, before any work --------------------------------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def float_or_off(text: str) -> float | None:
    """A number, or off / none (None: the option is switched off)."""
    return None if text.lower() in ("off", "none") else float(text)


def writable_folder(text: str) -> Path:
    """A folder that exists or can be made, and can be written to."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    parent = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {parent} (no permission)")
    return path


def image_file(text: str) -> Path:
    """An image path to write: a known suffix, not a folder, in a writable folder."""
    path = Path(text)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"expected an image file name ending in {', '.join(IMAGE_SUFFIXES)}, "
                                         f"got {text}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name such as {path / 'samples.png'}")
    writable_folder(str(path.parent))
    return path


def device_name(text: str) -> str:
    """One of `devices.DEVICE_NAMES`; that the device exists is checked when the command starts."""
    from .devices import DEVICE_NAMES, is_device_name

    if not is_device_name(text):
        raise argparse.ArgumentTypeError(f"expected {DEVICE_NAMES}, got {text}")
    return text


def _device_options(p) -> None:
    p.add_argument("--device", type=device_name, default="auto",
                   help="where to run: auto (CUDA, else MPS, else the CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: autocast the model's matmuls and convolutions to bfloat16 (faster on GPUs and "
                        "AMX CPUs; see benchmarks/README.md for its fidelity cost)")


# ---- parsers ----------------------------------------------------------------------------------------

def _demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="the offline showcase: figures in --out")
    d.add_argument("--out", type=writable_folder, default="out")
    d.add_argument("--fast", action="store_true", help="fewer training steps and samples")
    d.set_defaults(func=_demo)


def _train_parser(sub) -> None:
    from .training.loop import TrainConfig

    types = {"int": int, "float": float, "str": str}
    p = sub.add_parser("train", help="train a text-conditional diffusion model (resumes from --out)",
                       description="Train with L_simple; checkpoints every --ckpt-every steps to --out; "
                                   "re-running the same command resumes exactly. Under torchrun, data parallel.")
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else None
        typ = float_or_off if f.name in ("grad_clip", "min_snr_gamma") else types.get(str(f.type).split(" ")[0], str)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=default, help=f"(default: {default})")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out has a state")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=_train)


def _sample_parser(sub) -> None:
    s = sub.add_parser("sample", help="sample a prompt with a checkpoint and save an image grid")
    s.add_argument("--checkpoint", default="shapes", help="shipped name or path to NAME.json")
    s.add_argument("--prompt", required=True, help='e.g. "a red circle on the left on a gray background"')
    s.add_argument("--n", type=positive_int, default=8)
    s.add_argument("--steps", type=positive_int, default=50)
    s.add_argument("--eta", type=nonnegative_float, default=0.0)
    s.add_argument("--w", type=nonnegative_float, default=3.0,
                   help="classifier-free guidance scale w (1 = conditional only)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=image_file, default="out/samples.png")
    _device_options(s)
    s.set_defaults(func=_sample)


def _export_parser(sub) -> None:
    e = sub.add_parser("export", help="export a run's EMA model (from its training state) as a checkpoint")
    e.add_argument("--run", required=True, help="the run folder (the train command's --out)")
    e.add_argument("--to", required=True, help="the checkpoint to write, e.g. data/shapes (.safetensors is added)")
    e.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    e.add_argument("--command", default="", help="the training command, recorded in the checkpoint")
    e.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    e.set_defaults(func=_export)


def _bench_parser(sub) -> None:
    from .bench.registry import TABLES

    b = sub.add_parser("bench", help="measured tables (printed as markdown; figures in out/)",
                       description="; ".join(f"{name}: {t.help}" for name, t in TABLES.items()) +
                       ". Options left out take the table's own defaults.")
    b.add_argument("what", choices=list(TABLES))
    b.add_argument("--checkpoint", default=None, help="shipped name or path (default: shapes; quality: cifar10)")
    b.add_argument("--n", type=positive_int, default=None, help="number of prompts / images (a default per table)")
    b.add_argument("--w", type=nonnegative_float, nargs="+", default=None, help="classifier-free guidance scale(s) w")
    b.add_argument("--steps", type=positive_int, nargs="+", default=None, help="DDIM step count(s)")
    b.add_argument("--classifier", default=None,
                   help="classifier-guidance: the noisy classifier; quality: the evaluation classifier")
    b.add_argument("--scales", type=nonnegative_float, nargs="+", default=None,
                   help="classifier-guidance: scales s; langevin: energy weights lambda")
    b.add_argument("--skip", type=nonnegative_int, nargs="+", default=None,
                   help="translation: steps left out at the grid's noisy end (the first: the table's; all of them: "
                        "the trade-off figure's)")
    b.add_argument("--eta", type=positive_float, nargs="+", default=None,
                   help="translation: eta of the stochastic encoders (the first: the table's; all: the trade-off's)")
    b.add_argument("--augment", type=nonnegative_int, nargs="+", default=None,
                   help="langevin: differentiable-augmentation views averaged in the energy (0: none)")
    b.add_argument("--only", nargs="+", default=None,
                   help="edit: run only the methods whose names contain one of these strings")
    b.add_argument("--prompt", default="a red circle on the left on a gray background")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--float64", action="store_true", help="edict: run model and images in float64")
    b.add_argument("--edict-steps", type=positive_int, default=None,
                   help="edit: EDICT's steps (default max(steps, 50))")
    b.add_argument("--out", type=writable_folder, default="out")
    _device_options(b)
    b.set_defaults(func=_bench)


def _classifier_parser(sub) -> None:
    c = sub.add_parser("train-classifier", help="train the noise-conditional shapes classifier for classifier guidance")
    c.add_argument("--checkpoint", default="shapes", help="the diffusion model whose schedule the classifier uses")
    c.add_argument("--kind", default="background", choices=["background", "colour"])
    c.add_argument("--n", type=positive_int, default=20_000)
    c.add_argument("--steps", type=positive_int, default=3000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--to", default=None, help="the checkpoint to write (default: the shipped shapes_classifier)")
    c.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    c.set_defaults(func=_train_classifier)


def _homework_parser(sub) -> None:
    h = sub.add_parser("homework", help="the course's assignments: list, release to students, grade submissions")
    hs = h.add_subparsers(dest="action", required=True)
    hs.add_parser("list", help="the assignments, their questions and points").set_defaults(func=_homework_list)
    r = hs.add_parser("release", help="write the student release (solutions stubbed, hidden tests left out)")
    r.add_argument("assignment")
    r.add_argument("--out", required=True, help="a new or empty folder")
    r.set_defaults(func=_homework_release)
    g = hs.add_parser("grade", help="grade one submission (a file or a folder holding <assignment>.py), or with "
                      "--batch a folder of them into one CSV")
    g.add_argument("assignment")
    g.add_argument("submission")
    g.add_argument("--batch", action="store_true", help="SUBMISSION is a folder of submissions (files or folders)")
    g.add_argument("--report", default=None, help="the JSON report (default: <submission>.grade.json; batch: "
                   "grades.csv and one JSON per submission in SUBMISSION)")
    g.set_defaults(func=_homework_grade)
    m = hs.add_parser("mutants", help="grade the instructors' realistic mistakes: the mutation table")
    m.add_argument("assignment", nargs="*", help="default: every assignment")
    m.set_defaults(func=_homework_mutants)


# ---- commands -----------------------------------------------------------------------------------------

def _homework_list(a) -> int:
    from .homework.source import assignments, metadata

    for name in assignments():
        meta = metadata(name)
        qs = ", ".join(f"{q} {v['title']} ({v['points']})" for q, v in meta["questions"].items())
        print(f"{name}: {meta['title']} [{sum(v['points'] for v in meta['questions'].values())} points] {qs}")
    return 0


def _homework_mutants(a) -> int:
    from .homework.mutation import mutation_rows, print_mutation_table
    from .homework.source import assignments

    for name in a.assignment or assignments():
        print_mutation_table(name, mutation_rows(name))
    return 0


def _homework_release(a) -> int:
    from .homework.source import release

    for f in release(a.assignment, a.out):
        print(f"wrote {f}")
    return 0


def _homework_grade(a) -> int:
    import json

    from .homework.grade import grade, grade_folder, print_report

    sub = Path(a.submission)
    if a.batch:
        if not sub.is_dir():
            raise ValueError(f"--batch expects a folder of submissions, got {sub}")
        csv_path = Path(a.report) if a.report else sub / "grades.csv"
        for r in grade_folder(a.assignment, sub, csv_path):
            print(f"{r['student']}: {r['score']:g} / {r['max']:g}")
        print(f"wrote {csv_path}")
        return 0
    report = grade(a.assignment, sub)
    print_report(report)
    path = Path(a.report) if a.report else sub.with_name(sub.name + ".grade.json")
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


def _demo(a) -> int:
    from .bench.demo import run

    run(a.out, fast=a.fast)
    return 0


def _train(a) -> int:
    from .training.loop import config_from_args
    from .training.tasks import train

    if a.threads:
        torch.set_num_threads(a.threads)
    opts = {k: v for k, v in vars(a).items() if k not in ("cmd", "func", "no_resume", "threads", "debug")}
    out = train(config_from_args(**opts), resume=not a.no_resume)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, once
        print(f"run folder: {out}")
    return 0


def _sample(a) -> int:
    from .devices import autocast, resolve_device
    from .nn.diffusion_model import generate
    from .training import pretrained
    from .viz import save_grid

    device = resolve_device(a.device)
    with autocast(device, a.precision):
        x0 = generate(pretrained.load(a.checkpoint, kind="DiffusionModel", device=device), [a.prompt] * a.n, a.w,
                      a.steps, a.seed, eta=a.eta).cpu()
    outside = (x0.abs() > 1).float().mean().item()
    if outside > 0.01:
        print(f"warning: {100 * outside:.0f}% of the pixel values fell outside [-1, 1] and are clipped in the saved "
              f"image (w = {a.w:g}; the shipped models sample well at w = 1-5)", file=sys.stderr)
    print(f"saved {save_grid(x0, a.out, titles=[a.prompt] * a.n, ncol=min(a.n, 8))}")
    return 0


def _export(a) -> int:
    from .training.tasks import export_run

    print(f"saved {export_run(a.run, a.to, dtype=getattr(torch, a.dtype), command=a.command, force=a.force)}")
    return 0


def _bench(a) -> int:
    from .bench.registry import TABLES
    from .devices import autocast, resolve_device

    options = {k: v for k, v in vars(a).items() if k not in ("cmd", "func", "what", "debug", "precision")}
    options["device"] = resolve_device(a.device)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    with autocast(options["device"], a.precision):
        TABLES[a.what](options)
    return 0


def _train_classifier(a) -> int:
    from .datasets.shapes import shapes_labels
    from .training import pretrained
    from .training.checkpoint import checkpoint_path, save_model
    from .training.classifiers import train_shapes_classifier

    to = a.to or pretrained.checkpoint_dir() / "shapes_classifier"
    if checkpoint_path(to).exists() and not a.force:  # before training, not after
        raise FileExistsError(f"{checkpoint_path(to)} already exists; pass --force to replace it, or --to elsewhere")
    sched = pretrained.load(a.checkpoint, kind="DiffusionModel").schedule
    clf, losses, accuracy = train_shapes_classifier(sched, a.kind, n=a.n, steps=a.steps, seed=a.seed)
    print("held-out accuracy by timestep: " + ", ".join(f"t={t}: {acc:.3f}" for t, acc in accuracy.items()))
    info = {"labels": shapes_labels([], a.kind)[1], "kind": a.kind, "schedule": sched.spec, "steps": a.steps,
            "final_loss": losses[-1], "heldout_accuracy": {str(t): acc for t, acc in accuracy.items()},
            "command": "python -m minidiff train-classifier " + " ".join(sys.argv[2:])}
    print(f"saved {save_model(clf, to, info=info, force=a.force)}")
    return 0
