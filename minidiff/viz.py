"""Figures: image grids (more pictures land here with the editing lectures)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
from torch import Tensor


def to_numpy_image(x: Tensor):
    """(3, H, W) in [-1, 1] -> (H, W, 3) in [0, 1] for imshow. Values outside [-1, 1] are shown
    clipped (display only; the tensor is untouched)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def image_grid(x: Tensor, titles: list[str] | None = None, ncol: int = 8, scale: float = 1.6):
    """A matplotlib figure showing images x (B, 3, H, W) in [-1, 1], optional titles."""
    B = x.shape[0]
    ncol = min(ncol, B)
    nrow = math.ceil(B / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(scale * ncol, scale * nrow * (1.25 if titles else 1)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < B:
            ax.imshow(to_numpy_image(x[i]), interpolation="nearest")
            if titles:
                ax.set_title(_wrap(titles[i], 22), fontsize=6)
    fig.tight_layout()
    return fig


def save_grid(x: Tensor, path: str | Path, titles: list[str] | None = None, ncol: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = image_grid(x, titles, ncol)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join([*lines, line])



def attention_figure(image: Tensor | None, words: list[str], maps: Tensor, scale: float = 1.5):
    """Per-word cross-attention heat maps (n_words, r, r) beside the image (3, H, W) they belong to."""
    n = len(words) + (image is not None)
    fig, axes = plt.subplots(1, n, figsize=(scale * n, scale * 1.3), squeeze=False)
    axes = list(axes[0])
    if image is not None:
        axes.pop(0).imshow(to_numpy_image(image), interpolation="nearest")
    for ax, word, m in zip(axes, words, maps, strict=True):
        ax.imshow(m.detach().float().cpu().numpy(), cmap="magma")
        ax.set_title(word, fontsize=8)
    for ax in fig.axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
