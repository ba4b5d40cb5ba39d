"""What every measured table shares: the markdown printer, statistics, the reconstruction metric, the held-out
images of a model's data set, and `BenchCommand`, a table's entry in the CLI registry (`bench.registry`).

Tables print markdown and return their rows as dicts, so the CLI, the notebooks and the tests share one
implementation; speed and quality targets live in these tables, never in timed tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from ..datasets import heldout
from ..training import pretrained


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table: a title line, the header, then one line per row."""
    print(f"\n{title}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def standard_error(x: Tensor) -> float:
    """Standard error of the mean of per-item values x (N,): std / sqrt(N) (NaN for one item)."""
    return (x.std() / len(x) ** 0.5).item() if len(x) > 1 else float("nan")


def reconstruction_mse(x: Tensor, x0: Tensor) -> Tensor:
    """Per-image MSE with pixels mapped from [-1, 1] to [0, 1] (no clipping): mean(((x - x0) / 2)^2), (B,)."""
    return ((x.float() - x0.float()) / 2).pow(2).flatten(1).mean(1)


def model_heldout(model, n: int, seed: int = 0) -> tuple[Tensor, list[str]]:
    """(images, captions) of n held-out items of the data set a model was trained on (`datasets.heldout`), the
    images on the model's device."""
    images, captions = heldout(model.data.get("name", "shapes"), n, model.data.get("image_size", 32), seed=seed)
    return images.to(next(model.parameters()).device), captions


LIST_OPTIONS = ("w", "steps", "scales", "skip", "eta", "augment")  # the bench options that take several values


@dataclass(frozen=True)
class BenchCommand:
    """One `python -m minidiff bench NAME` table: its help line, its own defaults for the shared options
    (n, w, steps, ...; checkpoint "shapes" unless it says otherwise), and `run(options)`, called with those
    defaults overridden by what the user gave (options given as None are left out). options["device"] (the CPU
    unless given) is where the models are loaded and the table runs."""

    name: str
    help: str
    run: Callable[[dict], object]
    defaults: dict = field(default_factory=dict)
    lists: tuple[str, ...] = ()  # the list options (LIST_OPTIONS) this table sweeps; the others take one

    def __call__(self, given: dict) -> object:
        options = {"checkpoint": "shapes", "device": "cpu", **self.defaults,
                   **{k: v for k, v in given.items() if v is not None}}
        for key in LIST_OPTIONS:
            if key not in self.lists and len(options.get(key) or ()) > 1:
                raise ValueError(f"bench {self.name} takes one --{key} value, got {options[key]}"
                                 + (f" (it sweeps {', '.join('--' + k for k in self.lists)})" if self.lists else ""))
        return self.run(options)


def diffusion_model(options: dict):
    """The diffusion model a table's --checkpoint names (an autoencoder or classifier checkpoint is refused)."""
    return pretrained.load(options["checkpoint"], kind="DiffusionModel", device=options.get("device", "cpu"))
