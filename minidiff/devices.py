"""Where the work runs: the device, the precision and the number of CPU threads.

Every function in minidiff computes on its inputs' device and in their dtype (tensors it makes itself follow
`like.device` / `like.dtype`; the samplers' and training's noise comes from a CPU torch.Generator and is moved, so
a seed gives the same noise on every device; the autoencoder's posterior sample during its training is the one
draw made on the device). Moving the model and the first tensor is the caller's one decision, made here:

    device = resolve_device(None)          # CUDA if available, else MPS, else the CPU ("auto")
    model = pretrained.load("shapes", device=device)
    with autocast(device, "bf16"):         # optional mixed precision for sampling, inversion, editing
        x0 = ddim_sample(model, model.schedule, x_T.to(device), ...)

bf16 autocast runs the UNet's matmuls and convolutions in bfloat16 and leaves the samplers' arithmetic in float32
(the UNet returns eps in its input's dtype); it is never on by default, and exactness checks (EDICT round trips,
inversion, the derivation tests) run in float32 or float64.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> torch.device:
    """CUDA when available, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def is_device_name(name: object) -> bool:
    """Whether `name` is one of DEVICE_NAMES (whether that device exists is `resolve_device`'s check)."""
    return isinstance(name, str) and (name in ("auto", "cpu", "cuda", "mps") or
                                      (name.startswith("cuda:") and name[5:].isdigit()))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a torch.device: None or "auto" -> $MINIDIFF_DEVICE if set (e.g. "cpu" to keep a GPU machine's
    runs on the CPU; the test suite sets it), else `default_device()`; "cuda", "cuda:1", "mps", "cpu" checked to
    exist here, so a missing GPU is one clear error and not a failure deep inside a run."""
    if device is None or device == "auto":
        env = os.environ.get("MINIDIFF_DEVICE", "auto")
        return default_device() if env in ("", "auto") else resolve_device(env)
    if not isinstance(device, torch.device) and not is_device_name(device):
        raise ValueError(f"device must be {DEVICE_NAMES}, got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r} was asked for but this machine has "
                         f"{torch.cuda.device_count()} CUDA devices; use --device cpu (or auto)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available here; use --device cpu (or auto)")
    return dev


def autocast(device: str | torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """A context running matmuls and convolutions in `precision` ("fp32": a no-op, "bf16", "fp16" on CUDA) on
    `device`'s type (torch.autocast); the samplers' updates stay in the tensors' own dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    if precision == "fp16" and dev.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; on the CPU use bf16 (fast only on CPUs with AMX or AVX512-BF16)")
    return torch.autocast(dev.type, dtype=PRECISIONS[precision])


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op CPU threads (None: leave torch's setting), then restore it.

    Tiny models (the 2-D toy's MLP) do microsecond ops where a second thread buys little (8% for the toy, alone)
    and, when another process is busy, makes every op wait for a descheduled thread (the toy then runs 4x slower);
    one thread does not collapse (benchmarks/threads.py measures both)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
