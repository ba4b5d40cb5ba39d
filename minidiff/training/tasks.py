"""What each model learns: the per-model tasks that `training.loop.fit` runs, and `train`, the entry point.

- "diffusion" (DDPM Algorithm 1 with L_simple and CFG prompt dropout), pixel or latent:

      repeat
          x_0 ~ q(x_0), c ~ captions, c <- "" with probability p_uncond    (CFG prompt dropout)
          t ~ Uniform{1..T}, eps ~ N(0, I)
          gradient step on || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t, c) ||^2
                           (times min(SNR(t), gamma) / SNR(t) with --min-snr-gamma: `elbo.min_snr_weight`)

  A latent model (`--autoencoder NAME`) trains on z_0 = scale_factor * E(x_0), encoded once and cached.
- "autoencoder": the KL autoencoder of latent diffusion (`nn.autoencoder.ae_loss`).
- "classifier": the clean-image evaluation classifier (`nn.classifiers.ImageClassifier`).
- "instruct": InstructPix2Pix on rendered instruction edits of `shapes` (`training.instruct`).

Each task returns (model, batch_loss, export): the model to train, its loss on a global batch, and what to write
at every checkpoint (the EMA model as `OUT/model.{json,safetensors}`, plus sample grids for diffusion).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..datasets import load_dataset, to_float
from ..datasets.real import CELEBA_ATTRIBUTES, CIFAR10_CLASSES, celeba_targets
from ..datasets.shapes import shapes_tensors
from ..elbo import L_simple, min_snr_weight
from ..nn.autoencoder import Autoencoder, AutoencoderConfig, ae_loss, estimate_scale_factor
from ..nn.classifiers import ImageClassifier, ImageClassifierConfig, accuracy
from ..nn.diffusion_model import DiffusionModel, generate
from ..nn.text import TextEncoderConfig, Tokenizer
from ..nn.unet import UNetConfig
from ..schedule import Schedule
from ..viz import save_grid
from . import pretrained
from .checkpoint import (
    checkpoint_path,
    load_train_state,
    model_from_metadata,
    read_metadata,
    save_model,
    save_train_state,
)
from .classifiers import augment, classifier_loss
from .instruct import instruct_task
from .loop import STATE, TrainConfig, fit, train_device

UNET_PRESETS = ("shapes_small", "shapes_attn32", "shapes_pos", "shapes_pos1", "tiny", "latent_small")


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


def init_from(model: DiffusionModel, base: DiffusionModel) -> DiffusionModel:
    """Copy `base`'s weights into `model` (fine-tuning, `--init`): the same vocabulary, schedule and data, and every
    weight of `base` must fit; `model` may have more, which keep their initial values (e.g. `shapes_pos`'s
    positional embeddings, zero, so the fine-tune starts from exactly `base`'s eps)."""
    for what, a, b in (("vocabulary", model.tokenizer.itos, base.tokenizer.itos),
                       ("schedule", model.schedule.spec, base.schedule.spec), ("data", model.data, base.data)):
        if a != b:
            raise ValueError(f"--init: the checkpoint's {what} differs from this run's ({b} vs {a})")
    own = model.state_dict()
    misfits = sorted(k for k, v in base.state_dict().items() if k not in own or own[k].shape != v.shape)
    if misfits:
        raise ValueError(f"--init: {len(misfits)} weights of the checkpoint do not fit this run's model "
                         f"(--unet / --text-dim / --text-depth), e.g. {misfits[:3]}")
    model.load_state_dict(base.state_dict(), strict=False)
    return model


def load_autoencoder(name: str, device: torch.device | str = "cpu"):
    """The autoencoder checkpoint `name` (a path or a shipped name), float32, frozen, on `device`."""
    ae = pretrained.load(name, device=device)
    if type(ae).__name__ != "Autoencoder":
        raise ValueError(f"--autoencoder {name!r} is a {type(ae).__name__} checkpoint, not an Autoencoder")
    return ae.requires_grad_(False)


@torch.no_grad()
def encode_latents(ae, images: Tensor, batch: int = 500, progress: bool = True) -> Tensor:
    """z_0 = scale_factor * mean of q(z|x) for every training image, (N, C, h, w): the latent
    diffusion training set, computed once (the posterior mean, as LDM's `.mode()` option)."""
    device = next(ae.parameters()).device
    out = [ae.to_latent(images[i:i + batch].to(device)).cpu()
           for i in tqdm(range(0, len(images), batch), disable=not progress, desc="encoding latents")]
    return torch.cat(out)


def training_data(cfg: TrainConfig) -> tuple[Tensor, list[str]]:
    """All training images (N, 3, H, W) in [-1, 1] and their captions, in memory."""
    if cfg.dataset == "shapes":
        return shapes_tensors(cfg.n_train, seed=cfg.seed, split="train")
    ds = load_dataset(cfg.dataset, "train", root=cfg.data_root, image_size=cfg.image_size)
    return to_float(ds.images), list(ds.captions)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True, _kill_at_step: int | None = None) -> Path:
    """Train (or resume) `cfg.task` ("diffusion", "autoencoder", "classifier" or "instruct"); returns the run folder.

    Files in `cfg.out`: state.safetensors (resume), model.{json,safetensors} (the EMA weights,
    loadable with `training.checkpoint.load_model`), log.jsonl, config.json, and for diffusion
    samples_*.png. `_kill_at_step` (tests only) SIGKILLs the process right after that step.
    """
    device = train_device(cfg)  # checked before any data is loaded
    torch.manual_seed(cfg.seed)
    if cfg.task == "instruct":  # rendered (source, instruction, edited) triples, `training.instruct`
        model, batch_loss, export, n = instruct_task(cfg, device)
        return fit(cfg, model, batch_loss, n, export, resume, progress, _kill_at_step)
    images, captions = training_data(cfg)
    tasks = {"diffusion": _diffusion_task, "autoencoder": _autoencoder_task, "classifier": _classifier_task}
    if cfg.task not in tasks:
        raise ValueError(f"unknown task {cfg.task!r}; expected one of {sorted(tasks)}")
    model, batch_loss, export = tasks[cfg.task](cfg, images, captions, device)
    return fit(cfg, model, batch_loss, len(images), export, resume, progress, _kill_at_step)


def _loss(model: DiffusionModel, x0: Tensor, tok: Tensor, null_tok: Tensor, p_uncond: float,
          gen: torch.Generator, part: slice, min_snr_gamma: float | None = None) -> Tensor:
    """L_simple on this process's `part` of the global batch, captions dropped to "" with
    probability p_uncond; with `min_snr_gamma`, each example weighted by `elbo.min_snr_weight`. The noise
    (dropout, t, eps) is drawn for the whole global batch from one generator that every process holds in the
    same state, so 2 processes with batch B/2 each follow the 1-process run with batch B."""
    B, device = x0.shape[0], next(model.parameters()).device
    drop = torch.rand(B, generator=gen) < p_uncond  # (B,)
    t = torch.randint(1, model.schedule.T + 1, (B,), generator=gen)  # (B,)
    eps = torch.randn(x0.shape, generator=gen)  # (B, C, H, W), drawn on the CPU: the same on every device
    tok = torch.where(drop[:, None], null_tok, tok)  # (B, L)
    x0, eps, t, tok = (v[part].to(device) for v in (x0, eps, t, tok))  # this process's part, on its device
    loss = L_simple(model, model.schedule, x0, context=model.text_encoder(tok), t=t, eps=eps)  # (B_part,)
    if min_snr_gamma is not None:
        loss = loss * min_snr_weight(model.schedule, t, min_snr_gamma).to(loss)
    return loss.mean()


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


def _diffusion_task(cfg: TrainConfig, images: Tensor, captions: list[str], device: torch.device):
    ae = load_autoencoder(cfg.autoencoder, device) if cfg.autoencoder else None
    model = build_model(cfg, captions, ae)
    if cfg.init:
        init_from(model, pretrained.load(cfg.init, kind="DiffusionModel").float())
    model = model.to(device)
    if ae is not None:
        images = _cached_latents(ae, images, Path(cfg.out))  # (N, C, h, w): the UNet's data x_0 is now z_0
    tokens = model.tokenizer.encode(captions)  # (N, L)
    null_tokens = model.tokenizer.encode([""])  # (1, L)

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        return _loss(model, images[idx], tokens[idx], null_tokens, cfg.p_uncond, gen, part, cfg.min_snr_gamma)

    def export(ema: DiffusionModel, step: int) -> None:
        save_model(ema, Path(cfg.out) / "model", force=True, info={"step": step, "train_config": asdict(cfg)})
        if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
            _sample_grid(ema, captions[:16], Path(cfg.out) / f"samples_{step:06d}.png", cfg.seed)

    return model, batch_loss, export


def _autoencoder_task(cfg: TrainConfig, images: Tensor, captions: list[str], device: torch.device):
    """KL autoencoder: loss = L1 reconstruction + kl_weight * KL (`ae_loss`); the exported model
    carries the latent scale factor estimated on (up to) 2,000 training images."""
    model = Autoencoder(AutoencoderConfig(kl_weight=cfg.kl_weight, base_channels=cfg.ae_channels,
                                          latent_channels=cfg.ae_latent_channels)).to(device)

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))  # the posterior sample
        return ae_loss(model, images[idx][part].to(device))[0]

    probe = images[torch.linspace(0, len(images) - 1, min(2000, len(images))).long()].to(device)  # once

    def export(ema, step: int) -> None:
        ema.scale_factor.fill_(estimate_scale_factor(ema, probe))
        save_model(ema, Path(cfg.out) / "model", force=True, info={"step": step, "train_config": asdict(cfg)})

    return model, batch_loss, export


def _classifier_task(cfg: TrainConfig, images: Tensor, captions: list[str], device: torch.device):
    """The evaluation classifier (`nn.classifiers.ImageClassifier`): CIFAR-10 classes or CelebA caption
    attributes, cross-entropy / binary cross-entropy on augmented clean images (`training.classifiers`); the
    export records the held-out accuracy."""
    if cfg.dataset not in ("cifar10", "celeba"):
        raise ValueError(f"the classifier task trains on cifar10 or celeba, not {cfg.dataset!r}")
    x_train = images  # training_data's images: the same train split, already in [-1, 1]
    y_train = _classifier_targets(cfg, load_dataset(cfg.dataset, "train", root=cfg.data_root,
                                                    image_size=cfg.image_size))
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root, image_size=cfg.image_size)
    x_test, y_test = to_float(test.images).to(device), _classifier_targets(cfg, test).to(device)
    labels, kind = ((CIFAR10_CLASSES, "multiclass") if cfg.dataset == "cifar10" else (CELEBA_ATTRIBUTES, "multilabel"))
    model = ImageClassifier(ImageClassifierConfig(labels, kind, cfg.classifier_width, cfg.image_size,
                                                  cfg.dataset)).to(device)

    def batch_loss(idx: Tensor, gen: torch.Generator, part: slice) -> Tensor:
        x = augment(x_train[idx], gen)
        return classifier_loss(model, x[part].to(device), y_train[idx][part].to(device))

    def export(ema, step: int) -> None:
        acc = accuracy(ema.eval(), x_test, y_test)
        ema.train()
        info = {"step": step, "train_config": asdict(cfg), "test_accuracy": acc.tolist(), "labels": list(labels),
                "n_test": len(x_test)}
        save_model(ema, Path(cfg.out) / "model", force=True, info=info)
        print(f"\nstep {step}: held-out accuracy {acc.tolist()}")

    return model, batch_loss, export


def _classifier_targets(cfg: TrainConfig, ds) -> Tensor:
    """The labels (N,) of CIFAR-10, or the (N, 8) CELEBA_ATTRIBUTES of CelebA."""
    if cfg.dataset == "cifar10":
        return ds.extras["label"]
    return celeba_targets(ds.extras["attributes"], ds.attribute_names)


def _sample_grid(model: DiffusionModel, prompts: list[str], path: Path, seed: int) -> None:
    x0 = generate(model, prompts, w=3.0, steps=25, seed=seed, progress=False)
    save_grid(x0, path, titles=prompts, ncol=4)




def export_run(run: str | Path, to: str | Path, dtype: torch.dtype = torch.float16, command: str = "",
               force: bool = False) -> Path:
    """Write a run's EMA model as a checkpoint, from its training state alone (RUN/state.safetensors holds the
    model's architecture and the EMA weights): info records the step, the training config and `command`, plus
    what the run's own export measured at that step (e.g. held-out accuracy). Returns the checkpoint's path."""
    state_path = Path(run) / STATE
    if not state_path.exists():
        raise FileNotFoundError(f"{state_path} is missing: {run} is not a run folder (the train command's --out), "
                                "or its first checkpoint was not reached yet")
    tensors, state = load_train_state(state_path)
    exported = Path(run) / "model"
    own = read_metadata(exported) if checkpoint_path(exported).exists() else None  # the run's own export
    arch = state.get("model") or own  # states written before they held the architecture: take the export's
    if arch is None:
        raise ValueError(f"{state_path} does not describe its model (an older run) and {exported} is missing")
    model = model_from_metadata(arch, state_path)
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    info = {"step": state["step"], "train_config": state["config"], "command": command}
    if own is not None and own.get("info", {}).get("step") == state["step"]:
        info = {**own["info"], **info}
    return save_model(model, to, dtype=dtype, info=info, force=force)
