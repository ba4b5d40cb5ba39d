"""The shipped checkpoints, by name.

    from minidiff.training import pretrained
    model = pretrained.load("shapes")     # DiffusionModel, eval mode, float32

Checkpoints live in the repository's `data/` folder as NAME.json + NAME.safetensors
(set $MINIDIFF_CHECKPOINTS to use another folder). Each JSON records the command that
trained it (`info.command`) and what it measured.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..nn.autoencoder import Autoencoder
from ..nn.classifiers import ImageClassifier, NoisyClassifier
from ..nn.diffusion_model import DiffusionModel
from .checkpoint import load_model


def checkpoint_dir() -> Path:
    return Path(os.environ.get("MINIDIFF_CHECKPOINTS", Path(__file__).resolve().parents[2] / "data"))


def names() -> list[str]:
    """Names of the checkpoints present (those with both a .json and a .safetensors file)."""
    d = checkpoint_dir()
    return sorted(p.stem for p in d.glob("*.json") if p.with_suffix(".safetensors").exists())


def available(name: str) -> bool:
    return name in names()


def load(name: str) -> DiffusionModel | Autoencoder | NoisyClassifier | ImageClassifier:
    """Load shipped checkpoint `name` (or a path to NAME.json / NAME.safetensors): a diffusion model, an
    autoencoder or a classifier, whichever the checkpoint holds (its JSON's "kind").

    A latent diffusion model comes back with its autoencoder attached: the checkpoint
    named in its `data["autoencoder"]`, looked up beside it, then in `checkpoint_dir()`,
    and checked against the recorded sha256.
    """
    if os.sep in name or name.endswith((".json", ".safetensors")):
        path = Path(name)
    elif not available(name):
        raise ValueError(f"no shipped checkpoint named {name!r} in {checkpoint_dir()}; available: {names()}")
    else:
        path = checkpoint_dir() / name
    model = load_model(path)
    if isinstance(model, DiffusionModel) and model.latent:
        ae_name = model.data["autoencoder"]["name"]
        beside = path.parent / ae_name
        ae = load_model(beside) if beside.with_suffix(".json").exists() else load(ae_name)
        model.attach_autoencoder(ae, ae.sha256)
    return model
