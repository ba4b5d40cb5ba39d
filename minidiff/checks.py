"""Input checks at the boundary of the methods: what a bad input is told, instead of a silent wrong result.

Images are floating tensors in [-1, 1] (README.md, Notation). Methods that also run on latents or on 2-D toy
data (inversion, EDICT, SDEdit) check what holds for all of those: floating, finite, and not 8-bit pixel values.
"""

from __future__ import annotations

import math

from torch import Tensor

EIGHT_BIT_HINT = "convert 8-bit images with x / 127.5 - 1 (`datasets.to_float` for uint8)"


def check_data(x: Tensor, name: str = "x0") -> None:
    """x is a floating tensor of finite values, none beyond 20 in size (what 8-bit pixel values would be)."""
    _floating_finite(x, name)
    if x.numel() and x.abs().max().item() > 20:
        raise ValueError(f"{name} has values in [{x.min().item():.4g}, {x.max().item():.4g}]: expected images in "
                         f"[-1, 1] (or latents of unit scale); {EIGHT_BIT_HINT}")


def _floating_finite(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32 or float64), got {x.dtype}; {EIGHT_BIT_HINT}")
    bad = (~x.isfinite()).sum().item()
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite values (of {x.numel()}); a single one spreads to "
                         "the whole result through the model")


def check_images(x: Tensor, name: str = "images", tol: float = 1e-3) -> None:
    """A floating tensor of finite values, every one within [-1, 1] (up to `tol`): images, as the models were
    trained on them."""
    _floating_finite(x, name)
    lo, hi = (x.min().item(), x.max().item()) if x.numel() else (0.0, 0.0)
    if lo < -1 - tol or hi > 1 + tol:
        hint = "; values in [0, 255] are 8-bit: " + EIGHT_BIT_HINT if lo >= 0 and hi > 1.5 else ""
        raise ValueError(f"{name} must be images in [-1, 1]; got values in [{lo:.4g}, {hi:.4g}]{hint}")


def check_number(value: float, name: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False) -> float:
    """A finite real number within [lo, hi] ((lo, hi] with lo_open); returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    if below or (hi is not None and value > hi):
        span = f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"{name} must lie in {span}, got {value!r}")
    return float(value)
