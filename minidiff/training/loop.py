"""The training loop shared by every model (DDPM Algorithm 1 for diffusion), resumable to the bit.

    repeat
        idx = batch_indices(step)                   the data order: a pure function of (seed, step)
        loss = batch_loss(idx, gen, part)           the task's loss on this process's part of the batch
        AdamW step (lr_at(step): linear warm-up, cosine decay), gradient clipping
        ema_update(ema, model)                      the EMA weights are the model that is sampled and shipped
        every ckpt_every steps: the training state (model, EMA, optimiser, RNG, step), then export(ema)

What each model learns is its task's (`training.tasks`): L_simple for diffusion, the KL autoencoder's loss,
the classifier's cross-entropy. Atomic checkpoints (`training.checkpoint`) mean a run killed with SIGKILL and
resumed ends with exactly the weights of an uninterrupted run. Under `torchrun` (one or several nodes), each
process takes its slice of every global batch and torch's DistributedDataParallel averages the gradients (NCCL on
CUDA, gloo on the CPU), so a run's result does not depend on the number of processes. `cfg.device` (auto: CUDA,
else MPS, else CPU; each process of a CUDA run takes cuda:LOCAL_RANK) is where the model trains; data stays on
the CPU and each batch is moved.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

try:
    import fcntl  # POSIX file locks
except ImportError:  # pragma: no cover (Windows: runs are not locked)
    fcntl = None

from ..devices import DEVICE_NAMES, autocast, is_device_name, resolve_device
from .checkpoint import (
    load_train_state,
    model_metadata,
    optimizer_from_flat,
    optimizer_to_flat,
    read_metadata,
    save_train_state,
)

STATE = "state.safetensors"  # the training state in a run folder; the exported model is OUT/model.safetensors
BatchLoss = Callable[[Tensor, torch.Generator, slice], Tensor]  # (global batch indices, generator, part) -> loss
Export = Callable[[torch.nn.Module, int], None]  # (EMA model, step) -> None: write the shippable model


@dataclass
class TrainConfig:
    """Everything a diffusion training run depends on (saved with its checkpoints)."""

    task: str = "diffusion"          # diffusion | autoencoder | classifier | instruct (InstructPix2Pix)
    dataset: str = "shapes"          # shapes | cifar10 | celeba
    n_train: int = 20_000            # shapes only: number of rendered training scenes
    data_root: str | None = None     # folder with cifar10-png.zip / celeba-10k.zip (else $MINIDIFF_DATA)
    image_size: int = 32
    unet: str = "shapes_small"       # a UNetConfig preset
    text_dim: int = 64
    text_depth: int = 2
    T: int = 1000
    schedule: str = "linear"
    steps: int = 2000
    batch_size: int = 64             # global batch, split across processes
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1        # cosine decay from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0    # max gradient norm; None (--grad-clip off): no clipping
    ema_decay: float = 0.999
    p_uncond: float = 0.1            # prompt dropout for classifier-free guidance
    min_snr_gamma: float | None = None  # diffusion only: None = L_simple (DDPM eq. 14); e.g. 5 = min-SNR weighting
    kl_weight: float = 1e-6          # autoencoder only: weight of the KL term
    ae_channels: int = 32            # autoencoder only: base channels
    ae_latent_channels: int = 4      # autoencoder only: channels of the (C, H/4, W/4) latent
    autoencoder: str | None = None   # diffusion only: AE checkpoint (path or shipped name) -> latent diffusion
    classifier_width: int = 16       # classifier only: base width of the ResNet-9-style CNN
    init: str | None = None          # diffusion: start from this checkpoint's weights (fine-tuning); instruct: the
                                     # text-to-image model it starts from (default: shapes)
    ckpt_every: int = 100
    sample_every: int = 500
    seed: int = 0
    device: str = "auto"             # auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps
    precision: str = "fp32"          # fp32 | bf16 (autocast of the forward pass; pays on GPUs, see benchmarks/)
    out: str = "runs/shapes"

    def __post_init__(self) -> None:
        check_train_config(self)



# Every option's valid range, checked when a TrainConfig is made: (field, test, what is expected)
_FINITE = math.isfinite
RULES = (
    ("task", lambda v: v in ("diffusion", "autoencoder", "classifier", "instruct"),
     "one of diffusion, autoencoder, classifier, instruct"),
    ("dataset", lambda v: v in ("shapes", "cifar10", "celeba"), "one of shapes, cifar10, celeba"),
    ("schedule", lambda v: v in ("linear", "cosine"), "linear or cosine"),
    *((name, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1") for name in (
        "n_train", "image_size", "text_dim", "T", "steps", "batch_size", "ae_channels", "ae_latent_channels",
        "classifier_width", "ckpt_every")),
    *((name, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0") for name in (
        "text_depth", "warmup", "sample_every", "seed")),
    ("lr", lambda v: _FINITE(v) and v > 0, "a finite number > 0"),
    ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("weight_decay", lambda v: _FINITE(v) and v >= 0, "a finite number >= 0"),
    ("kl_weight", lambda v: _FINITE(v) and v >= 0, "a finite number >= 0"),
    ("grad_clip", lambda v: v is None or (_FINITE(v) and v > 0), "a finite number > 0, or off (no clipping)"),
    ("ema_decay", lambda v: 0 <= v < 1, "in [0, 1) (0.999 is usual)"),
    ("p_uncond", lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    ("min_snr_gamma", lambda v: v is None or (_FINITE(v) and v > 0), "a finite number > 0 (5 in the paper), or off"),
    ("device", is_device_name, DEVICE_NAMES),
    ("precision", lambda v: v in ("fp32", "bf16"), "fp32 or bf16"),
)
RESUMABLE_ELSEWHERE = ("steps", "out", "sample_every", "device")  # may change when a run is resumed


def check_train_config(cfg: TrainConfig) -> None:
    """Raise a ValueError naming the option, what it must be and what it was, for the first invalid option."""
    for name, ok, want in RULES:
        value = getattr(cfg, name)
        try:
            valid = bool(ok(value))
        except TypeError:
            valid = False
        if not valid:
            raise ValueError(f"--{name.replace('_', '-')} must be {want}, got {value!r}")


# ---- pure pieces ---------------------------------------------------------------------------------

def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to lr * min_lr_ratio at `steps`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> Tensor:
    """Indices of global batch `step`: consecutive slices of one random permutation per epoch.

    A pure function of its arguments, so resuming at any step replays the same data order.
    """
    pos = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = pos // n
    out = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + e))
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


# ---- the loop -----------------------------------------------------------------------------------

def train_device(cfg: TrainConfig) -> torch.device:
    """cfg.device resolved (`devices.resolve_device`); under torchrun on CUDA, process k takes cuda:LOCAL_RANK.
    Several processes need "cuda" (one GPU each) or the CPU: a fixed cuda:N or MPS is refused."""
    device, world = resolve_device(cfg.device), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and (device.type == "mps" or device.index is not None):
        raise ValueError(f"--device {cfg.device} ({device}) cannot be shared by {world} torchrun processes; use "
                         "--device cuda (process k takes cuda:LOCAL_RANK) or --device cpu")
    if device.type == "cuda" and device.index is None:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if local >= torch.cuda.device_count():
            raise ValueError(f"torchrun process {local} needs cuda:{local} but this node has "
                             f"{torch.cuda.device_count()} GPUs; use --nproc_per_node <= {torch.cuda.device_count()}")
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _dist(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun (NCCL on CUDA, else gloo)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TaskLoss(torch.nn.Module):
    """The model with its task's loss as forward(idx, gen, part): what DistributedDataParallel wraps, so that the
    forward pass it prepares its gradient all-reduce for is the one the loss runs."""

    def __init__(self, model: torch.nn.Module, batch_loss: BatchLoss):
        super().__init__()
        self.model, self.batch_loss = model, batch_loss

    def forward(self, idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        return self.batch_loss(idx, gen, part)


def data_parallel(model: torch.nn.Module, batch_loss: BatchLoss, world: int) -> BatchLoss:
    """`batch_loss` itself for one process; else through torch's DistributedDataParallel, which averages the
    gradients over the processes during backward (inputs stay where they are: device_ids=None)."""
    if world == 1:
        return batch_loss
    return torch.nn.parallel.DistributedDataParallel(TaskLoss(model, batch_loss), device_ids=None)


def fit(cfg: TrainConfig, model: torch.nn.Module, batch_loss: BatchLoss, n: int, export: Export,
        resume: bool = True, progress: bool = True, _kill_at_step: int | None = None) -> Path:
    """The shared loop (module docstring): `batch_loss(idx, gen, part)` gives this process's loss on global batch
    `idx` of the n training items; `export(ema, step)` writes the shippable model at every checkpoint (rank 0).
    The run folder is locked while training (`run_lock`). Re-running a finished run trains nothing and re-exports
    the model if its export is missing or older than the training state. `_kill_at_step` (tests only) SIGKILLs
    the process right after that step. Returns the run folder."""
    device = next(model.parameters()).device
    rank, world = _dist(device)
    if cfg.batch_size % world:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the {world} torchrun processes (each "
                         "takes an equal part of every global batch)")
    out = Path(cfg.out)
    with run_lock(out) if rank == 0 else contextlib.nullcontext():
        ema = copy.deepcopy(model).requires_grad_(False).eval()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed * 7 + 1)  # the same on every process
        step = _start(out / STATE, cfg, model, ema, opt, gen, resume, rank)
        if step >= cfg.steps:
            return _finished(out, step, ema, export, rank)
        bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank > 0, desc=f"train {cfg.task}")
        t0, params = time.time(), [p for p in model.parameters() if p.requires_grad]
        loss_fn = data_parallel(model, batch_loss, world)
        while step < cfg.steps:
            with autocast(device, cfg.precision):
                loss = loss_fn(batch_indices(step, cfg.batch_size, n, cfg.seed), gen, slice(rank, None, world))
            loss, gnorm = _step(cfg, model, ema, opt, params, loss, step, world)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if rank == 0:
                _log(out, step, loss, gnorm, lr_at(cfg, step - 1), time.time() - t0)
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    export(ema, step)  # first: what it writes into the EMA model (a scale factor) is then saved too
                    _checkpoint(out / STATE, cfg, model, ema, opt, gen, step)
            if _kill_at_step is not None and step == _kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
        bar.close()
    return out


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on OUT/.lock (released by the OS when the process dies, even by SIGKILL), so a
    second process training into the same folder fails at once instead of interleaving with this one."""
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # no POSIX locks (Windows): one run per folder is the user's to ensure
        yield
        return
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RuntimeError(f"run folder {out} is being trained by another process ({f.read().strip() or 'pid ?'}"
                               "); wait for it to finish, or train into another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _finished(out: Path, step: int, ema, export: Export, rank: int) -> Path:
    """A run whose state has reached --steps: re-export if the exported model is missing or older, else nothing."""
    if rank == 0 and _exported_step(out) != step:
        export(ema, step)
        print(f"{out}: finished at step {step}; its model export was missing or stale and has been rewritten")
    elif rank == 0:
        print(f"{out}: already finished at step {step}; nothing to train (raise --steps to train further)")
    return out


def _exported_step(out: Path) -> int | None:
    try:
        return read_metadata(out / "model").get("info", {}).get("step")
    except (OSError, ValueError):
        return None


def _start(state_path: Path, cfg: TrainConfig, model, ema, opt, gen, resume: bool, rank: int) -> int:
    """The step to start from: the saved state's (restoring it) when resuming, else 0 (writing config.json)."""
    if resume and state_path.exists():
        step = _restore(state_path, cfg, model, ema, opt, gen)
        if step > cfg.steps:
            raise ValueError(f"{state_path.parent} has already trained {step} steps; --steps {cfg.steps} is below "
                             "that (raise --steps to train further, or use another --out)")
        return step
    if rank == 0:
        (Path(cfg.out) / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return 0


def _step(cfg: TrainConfig, model, ema, opt, params: list, loss: Tensor, step: int, world: int) -> tuple[float, float]:
    """One optimiser step on `loss` at `step`: lr schedule, backward (DDP averages the gradients over the
    processes), clipping, AdamW, EMA. Returns (the global batch's loss, gradient norm before clipping)."""
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, step)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(params, math.inf if cfg.grad_clip is None else cfg.grad_clip)
    opt.step()
    ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
    loss = loss.detach().float()
    if world > 1:  # log the mean over the processes' parts: the loss of the whole global batch
        dist.all_reduce(loss)
        loss /= world
    return loss.item(), gnorm.item()


def _checkpoint(path, cfg, model, ema, opt, gen, step) -> None:
    opt_tensors, opt_json = optimizer_to_flat(opt)
    tensors = {**{f"model.{k}": v.cpu() for k, v in model.state_dict().items()},
               **{f"ema.{k}": v.cpu() for k, v in ema.state_dict().items()},
               **{k: v.cpu() for k, v in opt_tensors.items()},
               "rng.gen": gen.get_state(), "rng.torch": torch.get_rng_state()}
    save_train_state(path, tensors, {"step": step, "config": asdict(cfg), "optim": opt_json,
                                     "model": model_metadata(ema)})


def _restore(path, cfg, model, ema, opt, gen) -> int:
    tensors, state = load_train_state(path)
    saved = {k: v for k, v in state["config"].items() if k not in RESUMABLE_ELSEWHERE}
    now = {k: v for k, v in asdict(cfg).items() if k in saved}
    if saved != now:
        diff = {k: (saved[k], now[k]) for k in saved if saved[k] != now.get(k)}
        raise ValueError(f"{path} was written by a run with another configuration (saved, now): {diff}; "
                         "resume with the same settings or use a new --out folder")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    optimizer_from_flat(opt, tensors, state["optim"])
    gen.set_state(tensors["rng.gen"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(state["step"])


def _log(out: Path, step: int, loss: float, gnorm: float, lr: float, seconds: float) -> None:
    with open(out / "log.jsonl", "a") as f:
        row = {"step": step, "loss": loss, "grad_norm": gnorm, "lr": lr, "seconds": round(seconds, 2)}
        f.write(json.dumps(row) + "\n")


def config_from_args(**kwargs) -> TrainConfig:
    """A TrainConfig from keyword arguments, rejecting unknown names (CLI helper)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
    return TrainConfig(**kwargs)
