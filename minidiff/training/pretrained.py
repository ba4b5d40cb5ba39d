"""The shipped checkpoints, by name.

    from minidiff.training import pretrained
    model = pretrained.load("shapes")     # DiffusionModel, eval mode, float32, on the CPU
    model = pretrained.load("shapes", device="auto")   # on CUDA (else MPS, else the CPU)

Checkpoints live in the repository's `data/` folder as NAME.safetensors (one self-describing file, with a
readable copy of its metadata in NAME.json; set $MINIDIFF_CHECKPOINTS to use another folder). Each records the
command that trained it (`info.command`) and what it measured.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..devices import resolve_device
from ..nn.diffusion_model import DiffusionModel
from .checkpoint import SUFFIX, Checkpointable, checkpoint_path, load_model, read_metadata


def checkpoint_dir() -> Path:
    return Path(os.environ.get("MINIDIFF_CHECKPOINTS", Path(__file__).resolve().parents[2] / "data"))


def names() -> list[str]:
    """Names of the checkpoints present in `checkpoint_dir()` (NAME.safetensors files)."""
    files = checkpoint_dir().glob(f"*{SUFFIX}")
    return sorted(p.name.removesuffix(SUFFIX) for p in files if not p.name.startswith("."))


def available(name: str) -> bool:
    return name in names()


def load(name: str, kind: str | tuple[str, ...] | None = None, device: str | torch.device = "cpu") -> Checkpointable:
    """Load shipped checkpoint `name` (or a path to a checkpoint) onto `device` (`devices.resolve_device` names:
    "cpu", "cuda", "auto", ...): a diffusion model, an autoencoder or a classifier, whichever the checkpoint holds.
    `kind` (e.g. "DiffusionModel") refuses any other, saying what the checkpoint is instead.

    A latent diffusion model comes back with its autoencoder attached: the checkpoint named in its
    `data["autoencoder"]`, looked up beside it, then in `checkpoint_dir()`, and checked against the recorded
    sha256.
    """
    if os.sep in name or name.endswith((".json", SUFFIX)):
        path = Path(name)
    elif not available(name):
        raise ValueError(f"no shipped checkpoint named {name!r} in {checkpoint_dir()}; available: {names()}")
    else:
        path = checkpoint_dir() / name
    if kind is not None:
        want = (kind,) if isinstance(kind, str) else kind
        have = read_metadata(path).get("kind", "DiffusionModel")
        if have not in want:
            raise ValueError(f"{name!r} is {'an' if have[0] in 'AEIOU' else 'a'} {have} checkpoint; this needs a "
                             f"{' or '.join(want)} "
                             f"(shipped: {', '.join(n for n in names() if _kind(n) in want)})")
    device = resolve_device(device)
    model = load_model(path, device=device)
    if isinstance(model, DiffusionModel) and model.latent:
        ae_name = model.data["autoencoder"]["name"]
        beside = path.parent / ae_name
        ae = load_model(beside, device=device) if checkpoint_path(beside).exists() else load(ae_name, device=device)
        model.attach_autoencoder(ae, ae.sha256)
    return model


def _kind(name: str) -> str | None:
    try:
        return read_metadata(checkpoint_dir() / name).get("kind", "DiffusionModel")
    except (OSError, ValueError):
        return None
