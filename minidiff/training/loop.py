"""The training loop shared by every model (DDPM Algorithm 1 for diffusion), resumable to the bit.

    repeat
        idx = batch_indices(step)                   the data order: a pure function of (seed, step)
        loss = batch_loss(idx, gen, part)           the task's loss on this process's part of the batch
        AdamW step (lr_at(step): linear warm-up, cosine decay), gradient clipping
        ema_update(ema, model)                      the EMA weights are the model that is sampled and shipped
        every ckpt_every steps: the training state (model, EMA, optimiser, RNG, step), then export(ema)

What each model learns is its task's (`training.tasks`): L_simple for diffusion, the KL autoencoder's loss,
the classifier's cross-entropy. Atomic checkpoints (`training.checkpoint`) mean a run killed with SIGKILL and
resumed ends with exactly the weights of an uninterrupted run. Under `torchrun`, each process takes a slice of
every global batch and gradients are averaged with one explicit all-reduce (data parallelism written out, gloo
on the CPU).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import load_train_state, optimizer_from_flat, optimizer_to_flat, save_train_state

BatchLoss = Callable[[Tensor, torch.Generator, slice], Tensor]  # (global batch indices, generator, part) -> loss
Export = Callable[[torch.nn.Module, int], None]  # (EMA model, step) -> None: write the shippable model


@dataclass
class TrainConfig:
    """Everything a diffusion training run depends on (saved with its checkpoints)."""

    task: str = "diffusion"          # diffusion | autoencoder | classifier
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
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_uncond: float = 0.1            # prompt dropout for classifier-free guidance
    kl_weight: float = 1e-6          # autoencoder only: weight of the KL term
    ae_channels: int = 32            # autoencoder only: base channels
    autoencoder: str | None = None   # diffusion only: AE checkpoint (path or shipped name) -> latent diffusion
    classifier_width: int = 16       # classifier only: base width of the ResNet-9-style CNN
    ckpt_every: int = 100
    sample_every: int = 500
    seed: int = 0
    out: str = "runs/shapes"



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

def _dist() -> tuple[int, int]:
    """(rank, world size); initialises gloo when launched by torchrun."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes: one flat buffer, one all-reduce."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


def fit(cfg: TrainConfig, model: torch.nn.Module, batch_loss: BatchLoss, n: int, export: Export,
        resume: bool = True, progress: bool = True, _kill_at_step: int | None = None) -> Path:
    """The shared loop (module docstring): `batch_loss(idx, gen, part)` gives this process's loss on global batch
    `idx` of the n training items; `export(ema, step)` writes the shippable model at every checkpoint (rank 0).
    `_kill_at_step` (tests only) SIGKILLs the process right after that step. Returns the run folder."""
    rank, world = _dist()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 7 + 1)  # the same on every process
    state_path = out / "state.safetensors"
    step = _start(state_path, cfg, model, ema, opt, gen, resume, rank)
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank > 0, desc=f"train {cfg.task}")
    t0 = time.time()
    while step < cfg.steps:
        loss, gnorm = _step(cfg, model, ema, opt, params, batch_loss(batch_indices(step, cfg.batch_size, n, cfg.seed),
                                                                     gen, slice(rank, None, world)), step, world)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if rank == 0:
            _log(out, step, loss, gnorm, lr_at(cfg, step - 1), time.time() - t0)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                _checkpoint(state_path, cfg, model, ema, opt, gen, step)
                export(ema, step)
        if _kill_at_step is not None and step == _kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    return out


def _start(state_path: Path, cfg: TrainConfig, model, ema, opt, gen, resume: bool, rank: int) -> int:
    """The step to start from: the saved state's (restoring it) when resuming, else 0 (writing config.json)."""
    if resume and state_path.exists():
        return _restore(state_path, cfg, model, ema, opt, gen)
    if rank == 0:
        (Path(cfg.out) / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return 0


def _step(cfg: TrainConfig, model, ema, opt, params: list, loss: Tensor, step: int, world: int) -> tuple[float, float]:
    """One optimiser step on `loss` at `step`: lr schedule, backward, all-reduce, clipping, AdamW, EMA.
    Returns (loss, gradient norm before clipping)."""
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, step)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    if world > 1:
        _all_reduce_grads(params, world)
    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
    return loss.item(), gnorm.item()


def _checkpoint(path, cfg, model, ema, opt, gen, step) -> None:
    opt_tensors, opt_json = optimizer_to_flat(opt)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()},
               **{f"ema.{k}": v for k, v in ema.state_dict().items()}, **opt_tensors,
               "rng.gen": gen.get_state(), "rng.torch": torch.get_rng_state()}
    save_train_state(path, tensors, {"step": step, "config": asdict(cfg), "optim": opt_json})


def _restore(path, cfg, model, ema, opt, gen) -> int:
    tensors, state = load_train_state(path)
    saved = {k: v for k, v in state["config"].items() if k not in ("steps", "out", "sample_every")}
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
