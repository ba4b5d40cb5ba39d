"""Diffusion training (DDPM Algorithm 1 with L_simple), resumable to the bit.

    repeat
        x_0 ~ q(x_0), c ~ captions, c <- "" with probability p_uncond    (CFG prompt dropout)
        t ~ Uniform{1..T}, eps ~ N(0, I)
        gradient step on || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t, c) ||^2
    until converged

Around it: AdamW, linear warm-up then cosine decay, gradient clipping, an EMA of the
weights (the model that is sampled and shipped), atomic checkpoints every `ckpt_every`
steps holding model, EMA, optimiser, RNG state and step, so a run killed with SIGKILL
and resumed ends with exactly the weights of an uninterrupted run. The data order is a
pure function of (seed, step), so it needs no saved state. Under `torchrun`, each
process takes a slice of every global batch and gradients are averaged with one
explicit all-reduce (data parallelism written out, gloo on the CPU).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import (
    load_train_state,
    optimizer_from_flat,
    optimizer_to_flat,
    save_model,
    save_train_state,
)
from .elbo import L_simple
from .model import DiffusionModel
from .nn.unet import UNetConfig
from .schedule import Schedule
from .text import TextEncoderConfig, Tokenizer


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


# ---- pure pieces --------------------------------------------------------------------------------

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


UNET_PRESETS = ("shapes_small", "tiny", "latent_small")


def build_model(cfg: TrainConfig, captions: list[str], ae=None) -> DiffusionModel:
    """A fresh DiffusionModel for `cfg`; with `ae` a latent model on its (C, H/f, W/f) latents."""
    if cfg.unet not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {cfg.unet!r}; expected one of {UNET_PRESETS} (see UNetConfig)")
    tok = Tokenizer.from_captions(captions)
    unet_cfg = getattr(UNetConfig, cfg.unet)(context_dim=cfg.text_dim)
    data = {"name": cfg.dataset, "image_size": cfg.image_size}
    if ae is not None:
        size = cfg.image_size // ae.cfg.factor
        unet_cfg = replace(unet_cfg, in_channels=ae.cfg.latent_channels, image_size=size)
        data["autoencoder"] = {"name": Path(cfg.autoencoder).stem, "sha256": ae.sha256,
                               "scale_factor": float(ae.scale_factor)}
    elif unet_cfg.image_size != cfg.image_size:
        raise ValueError(f"UNet preset {cfg.unet!r} is for {unet_cfg.image_size}x{unet_cfg.image_size} inputs but "
                         f"image_size is {cfg.image_size}; latent presets need --autoencoder")
    text_cfg = TextEncoderConfig(vocab_size=tok.vocab_size, max_len=tok.max_len, dim=cfg.text_dim, depth=cfg.text_depth)
    sched = Schedule.from_spec({"kind": cfg.schedule, "T": cfg.T})
    model = DiffusionModel(unet_cfg, sched, tok, text_cfg, data)
    return model.attach_autoencoder(ae, ae.sha256) if ae is not None else model


def load_autoencoder(name: str):
    """The autoencoder checkpoint `name` (a path or a shipped name), float32, frozen."""
    from . import pretrained

    ae = pretrained.load(name)
    if type(ae).__name__ != "Autoencoder":
        raise ValueError(f"--autoencoder {name!r} is a {type(ae).__name__} checkpoint, not an Autoencoder")
    return ae.requires_grad_(False)


@torch.no_grad()
def encode_latents(ae, images: Tensor, batch: int = 500, progress: bool = True) -> Tensor:
    """z_0 = scale_factor * mean of q(z|x) for every training image, (N, C, h, w): the latent
    diffusion training set, computed once (the posterior mean, as LDM's `.mode()` option)."""
    out = [ae.to_latent(images[i:i + batch])
           for i in tqdm(range(0, len(images), batch), disable=not progress, desc="encoding latents")]
    return torch.cat(out)


def training_data(cfg: TrainConfig) -> tuple[Tensor, list[str]]:
    """All training images (N, 3, H, W) in [-1, 1] and their captions, in memory."""
    if cfg.dataset == "shapes":
        from .shapes import shapes_tensors

        return shapes_tensors(cfg.n_train, seed=cfg.seed, split="train")
    from .data import load_dataset, to_float

    ds = load_dataset(cfg.dataset, "train", root=cfg.data_root, image_size=cfg.image_size)
    return to_float(ds.images), list(ds.captions)


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


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True, _kill_at_step: int | None = None) -> Path:
    """Train (or resume) `cfg.task` ("diffusion", "autoencoder" or "classifier"); returns the run folder.

    Files in `cfg.out`: state.safetensors (resume), model.{json,safetensors} (the EMA weights,
    loadable with `minidiff.checkpoint.load_model`), log.jsonl, config.json, and for diffusion
    samples_*.png. `_kill_at_step` (tests only) SIGKILLs the process right after that step.
    """
    torch.manual_seed(cfg.seed)
    images, captions = training_data(cfg)
    tasks = {"diffusion": _diffusion_task, "autoencoder": _autoencoder_task, "classifier": _classifier_task}
    if cfg.task not in tasks:
        raise ValueError(f"unknown task {cfg.task!r}; expected one of {sorted(tasks)}")
    model, batch_loss, export = tasks[cfg.task](cfg, images, captions)
    return fit(cfg, model, batch_loss, len(images), export, resume, progress, _kill_at_step)


def fit(cfg: TrainConfig, model: torch.nn.Module, batch_loss, n: int, export, resume: bool = True,
        progress: bool = True, _kill_at_step: int | None = None) -> Path:
    """The shared loop: `batch_loss(idx, gen, part)` gives this process's loss on global batch `idx`;
    `export(ema, step)` writes the shippable model at every checkpoint (rank 0)."""
    rank, world = _dist()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 7 + 1)  # the same on every process
    step, state_path = 0, out / "state.safetensors"
    if resume and state_path.exists():
        step = _restore(state_path, cfg, model, ema, opt, gen)
    elif rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank > 0, desc=f"train {cfg.task}")
    t0 = time.time()
    while step < cfg.steps:
        idx = batch_indices(step, cfg.batch_size, n, cfg.seed)
        loss = batch_loss(idx, gen, slice(rank, None, world))
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        if world > 1:
            _all_reduce_grads(params, world)
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if rank == 0:
            _log(out, step, loss.item(), gnorm.item(), lr_at(cfg, step - 1), time.time() - t0)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                _checkpoint(state_path, cfg, model, ema, opt, gen, step)
                export(ema, step)
        if _kill_at_step is not None and step == _kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    return out


def _loss(model: DiffusionModel, x0: Tensor, tok: Tensor, null_tok: Tensor, p_uncond: float,
          gen: torch.Generator, part: slice) -> Tensor:
    """L_simple on this process's `part` of the global batch, captions dropped to "" with
    probability p_uncond. The noise (dropout, t, eps) is drawn for the whole global batch
    from one generator that every process holds in the same state, so 2 processes with
    batch B/2 each follow the 1-process run with batch B."""
    B = x0.shape[0]
    drop = torch.rand(B, generator=gen) < p_uncond  # (B,)
    t = torch.randint(1, model.schedule.T + 1, (B,), generator=gen)  # (B,)
    eps = torch.randn(x0.shape, generator=gen)  # (B, C, H, W)
    tok = torch.where(drop[:, None], null_tok, tok)  # (B, L)
    context = model.text_encoder(tok[part])
    return L_simple(model, model.schedule, x0[part], context=context, t=t[part], eps=eps[part]).mean()


def _cached_latents(ae, images: Tensor, out: Path) -> Tensor:
    """encode_latents, kept in OUT/latents.safetensors (keyed by the autoencoder's sha256 and the
    number of images) so that a resumed run does not re-encode the whole data set."""
    path = out / "latents.safetensors"
    key = f"{ae.sha256}:{len(images)}"
    if path.exists():
        tensors, state = load_train_state(path)
        if state.get("key") == key:
            return tensors["z0"]
    z = encode_latents(ae, images)
    save_train_state(path, {"z0": z}, {"key": key})  # atomic, like every checkpoint
    return z


def _diffusion_task(cfg: TrainConfig, images: Tensor, captions: list[str]):
    ae = load_autoencoder(cfg.autoencoder) if cfg.autoencoder else None
    model = build_model(cfg, captions, ae)
    if ae is not None:
        images = _cached_latents(ae, images, Path(cfg.out))  # (N, C, h, w): the UNet's data x_0 is now z_0
    tokens = model.tokenizer.encode(captions)  # (N, L)
    null_tokens = model.tokenizer.encode([""])  # (1, L)

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        return _loss(model, images[idx], tokens[idx], null_tokens, cfg.p_uncond, gen, part)

    def export(ema: DiffusionModel, step: int) -> None:
        save_model(ema, Path(cfg.out) / "model", info={"step": step, "train_config": asdict(cfg)})
        if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
            _sample_grid(ema, captions[:16], Path(cfg.out) / f"samples_{step:06d}.png", cfg.seed)

    return model, batch_loss, export


def _autoencoder_task(cfg: TrainConfig, images: Tensor, captions: list[str]):
    """KL autoencoder: loss = L1 reconstruction + kl_weight * KL (`ae_loss`); the exported model
    carries the latent scale factor estimated on (up to) 2,000 training images."""
    from .nn.autoencoder import Autoencoder, AutoencoderConfig, ae_loss, estimate_scale_factor

    model = Autoencoder(AutoencoderConfig(kl_weight=cfg.kl_weight, base_channels=cfg.ae_channels))

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))  # the posterior sample
        return ae_loss(model, images[idx][part])[0]

    def export(ema, step: int) -> None:
        probe = images[torch.linspace(0, len(images) - 1, min(2000, len(images))).long()]
        ema.scale_factor.fill_(estimate_scale_factor(ema, probe))
        save_model(ema, Path(cfg.out) / "model", info={"step": step, "train_config": asdict(cfg)})

    return model, batch_loss, export


def _classifier_task(cfg: TrainConfig, images: Tensor, captions: list[str]):
    """The evaluation classifier (`minidiff.classifier`): CIFAR-10 classes or CelebA caption
    attributes, cross-entropy / binary cross-entropy on augmented clean images; the export
    records the held-out accuracy."""
    from .classifier import (
        CELEBA_ATTRIBUTES,
        ImageClassifier,
        ImageClassifierConfig,
        accuracy,
        augment,
        celeba_targets,
        classifier_loss,
    )
    from .data import CIFAR10_CLASSES, load_dataset, to_float

    def targets(ds) -> Tensor:
        if cfg.dataset == "cifar10":
            return ds.extras["label"]
        return celeba_targets(ds.extras["attributes"], ds.attribute_names)

    if cfg.dataset not in ("cifar10", "celeba"):
        raise ValueError(f"the classifier task trains on cifar10 or celeba, not {cfg.dataset!r}")
    x_train = images  # training_data's images: the same train split, already in [-1, 1]
    y_train = targets(load_dataset(cfg.dataset, "train", root=cfg.data_root, image_size=cfg.image_size))
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root, image_size=cfg.image_size)
    x_test, y_test = to_float(test.images), targets(test)
    labels, kind = ((CIFAR10_CLASSES, "multiclass") if cfg.dataset == "cifar10" else (CELEBA_ATTRIBUTES, "multilabel"))
    model = ImageClassifier(ImageClassifierConfig(labels, kind, cfg.classifier_width, cfg.image_size, cfg.dataset))

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        x = augment(x_train[idx], gen)
        return classifier_loss(model, x[part], y_train[idx][part])

    def export(ema, step: int) -> None:
        acc = accuracy(ema.eval(), x_test, y_test)
        ema.train()
        info = {"step": step, "train_config": asdict(cfg), "test_accuracy": acc.tolist(), "labels": list(labels),
                "n_test": len(x_test)}
        save_model(ema, Path(cfg.out) / "model", info=info)
        print(f"\nstep {step}: held-out accuracy {acc.tolist()}")

    return model, batch_loss, export


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


def _sample_grid(model: DiffusionModel, prompts: list[str], path: Path, seed: int) -> None:
    from .evaluate import generate
    from .viz import save_grid

    x0 = generate(model, prompts, guidance=3.0, steps=25, seed=seed, progress=False)
    save_grid(x0, path, titles=prompts, ncol=4)


def config_from_args(**kwargs) -> TrainConfig:
    """A TrainConfig from keyword arguments, rejecting unknown names (CLI helper)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
    return TrainConfig(**kwargs)
