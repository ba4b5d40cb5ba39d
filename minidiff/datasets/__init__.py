"""Data sets behind one interface (lecture 6 data; `shapes` is every lecture's offline default).

    load_dataset(name, split)        a Dataset of dicts: `image` (3, H, W) in [-1, 1], `caption`, `index`, extras
    heldout(name, n)                 (images (n, 3, H, W) in [-1, 1], captions) of the test split: what benchmarks use
    available(name) / missing(name)  whether the files are there, and if not, why (the loader's own message)

- "shapes": procedural scenes with captions and exact edit targets (`datasets.shapes`; offline, no files),
  judged by `datasets.shapes_check`.
- "cifar10", "celeba": real photos read from local archives (`datasets.real`).
- The 2-D toy point clouds of lecture 1 are in `datasets.toy`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .real import NAMES, available, load_celeba, load_cifar10, missing, to_float
from .shapes import ShapesDataset, shapes_tensors

__all__ = ["NAMES", "available", "heldout", "load_dataset", "missing", "to_float"]


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 image_size: int = 32, **options) -> Dataset:
    """A data set by name ('shapes', 'cifar10', 'celeba'); items are dicts (see module doc).

    options: for 'shapes' n (default 10,000) and seed; for the others download=False,
    cache=True, limit=None (keep an evenly spaced subset of that many images), progress=True.
    """
    if name == "shapes":
        if image_size != 32:
            raise ValueError(f"shapes scenes are 32x32; got image_size={image_size}")
        return ShapesDataset(split=split, **options)  # options: n, seed
    if name == "cifar10":
        return load_cifar10(split, root, image_size, **options)
    if name == "celeba":
        return load_celeba(split, root, image_size, **options)
    raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(NAMES)}")


def heldout(name: str, n: int | None = None, image_size: int = 32, root: str | None = None,
            seed: int = 0) -> tuple[Tensor, list[str]]:
    """(images (n, 3, s, s) in [-1, 1], captions) of the test split: for 'shapes' the first n test scenes of
    `seed` (their exact renders); for the real data sets n evenly spaced test items (all with n=None)."""
    if name == "shapes":
        return shapes_tensors(64 if n is None else n, seed=seed, split="test")
    ds = load_dataset(name, "test", root=root, image_size=image_size)
    k = len(ds) if n is None else min(n, len(ds))
    idx = torch.linspace(0, len(ds) - 1, k).long()
    return to_float(ds.images[idx]), [ds.captions[i] for i in idx.tolist()]
