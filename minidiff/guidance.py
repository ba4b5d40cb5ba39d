"""Guidance (lecture 3): classifier-free guidance and classifier guidance, as eps-model wrappers.

Both return a new eps-model callable, so every sampler and inversion takes a guided model as is.

- Classifier-free guidance (Ho & Salimans 2021), `classifier_free_guidance` from `samplers`:
      eps~ = eps(x_t, t, null) + w (eps(x_t, t, c) - eps(x_t, t, null))
  minidiff's w: 1 = the conditional model, 0 = the unconditional one (Imagen, diffusers'
  guidance_scale). Ho & Salimans write eps~ = (1 + w') eps_c - w' eps_u, i.e. w = 1 + w'
  (`guidance_scale_from_ho_salimans`, `ho_salimans_from_guidance_scale`).
- Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14), `classifier_guidance`:
      eps~ = eps(x_t, t) - s sqrt(1 - ab_t) grad_{x_t} log p_phi(y | x_t, t)
  with a classifier of *noisy* images (`NoisyClassifier`, trained by `train_classifier` on
  x_t ~ q(x_t | x_0) at uniformly random t). Since eps = -sqrt(1 - ab) grad log p_t(x_t),
  this samples p_t(x) p(y | x)^s; s = 1 with the exact classifier gives the class-conditional
  model (tests/test_guidance.py checks this to round-off). Classifier-free guidance with w
  equals classifier guidance with s = w applied to the unconditional model, with the implicit
  classifier p(y | x_t) ∝ p(x_t | y) / p(x_t).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .gaussian import q_sample
from .nn.layers import Downsample, ResBlock, group_norm, timestep_embedding
from .samplers import EpsModel, classifier_free_guidance
from .schedule import Schedule

__all__ = ["classifier_free_guidance", "guidance_scale_from_ho_salimans", "ho_salimans_from_guidance_scale",
           "ClassifierConfig", "NoisyClassifier", "shapes_labels", "train_classifier", "classifier_accuracy",
           "train_shapes_classifier",
           "log_prob_grad", "classifier_guidance"]

Classifier = Callable[[Tensor, Tensor], Tensor]  # classifier(x_t (B, ...), t (B,)) -> logits (B, K)


def guidance_scale_from_ho_salimans(w_prime: float) -> float:
    """Ho & Salimans' w' (eps~ = (1 + w') eps_c - w' eps_u) -> minidiff's w = 1 + w'."""
    return 1.0 + w_prime


def ho_salimans_from_guidance_scale(w: float) -> float:
    """minidiff's w (eps~ = eps_u + w (eps_c - eps_u)) -> Ho & Salimans' w' = w - 1."""
    return w - 1.0


# ---- a classifier of noisy images ---------------------------------------------------------------

@dataclass
class ClassifierConfig:
    """NoisyClassifier hyper-parameters (defaults: ~0.2M parameters for 3x32x32 `shapes`)."""

    num_classes: int = 4
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    norm_groups: int = 8


class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t): logits from a noisy image and its timestep (Dhariwal & Nichol 2021, sec. 4).

    conv_in -> per level: ResBlock with the time embedding (+ Downsample but at the last level)
    -> GroupNorm, SiLU, global average pool -> Linear to num_classes.
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        for level, mult in enumerate(cfg.channel_mults):
            self.blocks.append(ResBlock(ch, cfg.base_channels * mult, emb_dim, groups=cfg.norm_groups))
            ch = cfg.base_channels * mult
            self.downs.append(Downsample(ch) if level < len(cfg.channel_mults) - 1 else nn.Identity())
        self.norm_out = group_norm(ch, cfg.norm_groups)
        self.head = nn.Linear(ch, cfg.num_classes)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """x_t: (B, C, H, W), t: (B,) integer -> logits (B, num_classes)."""
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels).to(x_t.dtype))  # (B, 4 base)
        h = self.conv_in(x_t)  # (B, base, H, W)
        for block, down in zip(self.blocks, self.downs, strict=True):
            h = down(block(h, emb))
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))  # (B, C_last)
        return self.head(h)


def shapes_labels(captions: list[str], kind: str = "background") -> tuple[Tensor, list[str]]:
    """Class labels (N,) of `shapes` captions and the class names.

    kind "background": the background colour (4 classes: black, white, gray, brown), the default,
    visible at every noise level since it fills most of the image; kind "colour": the colour of
    the first object of the caption (6 classes; the left/top one in two-object scenes).
    """
    from .shapes import KINDS, parse_caption

    if kind not in ("background", "colour"):
        raise ValueError(f"kind must be 'background' or 'colour' (of the first object), got {kind!r}")
    names = list(KINDS[kind])
    specs = [parse_caption(c) for c in captions]
    words = [s["background"] if kind == "background" else s["objects"][0]["colour"] for s in specs]
    return torch.tensor([names.index(w) for w in words], dtype=torch.long), names


def train_classifier(classifier: nn.Module, sched: Schedule, images: Tensor, labels: Tensor, steps: int = 2000,
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Train p_phi(y | x_t, t) by cross-entropy on noisy images, in place; returns the per-step losses:

        repeat { (x_0, y) ~ data, t ~ U{1..T}, eps ~ N(0, I), x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,
                 step on -log p_phi(y | x_t, t) }

    images: (N, C, H, W) in [-1, 1]; labels: (N,) long. AdamW, constant lr; the classifier ends in eval mode.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(classifier.parameters(), lr=lr)
    classifier.train()
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="train classifier"):
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        x0, y = images[idx], labels[idx].to(images.device)
        t = torch.randint(1, sched.T + 1, (batch_size,), generator=g).to(images.device)
        x_t = q_sample(sched, x0, t, torch.randn(x0.shape, generator=g, dtype=x0.dtype).to(x0.device))
        loss = F.cross_entropy(classifier(x_t, t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    classifier.eval()
    return losses


@torch.no_grad()
def classifier_accuracy(classifier: Classifier, sched: Schedule, images: Tensor, labels: Tensor,
                        ts: tuple[int, ...] = (1, 250, 500, 750, 1000), seed: int = 0) -> dict[int, float]:
    """Accuracy of the noisy classifier on x_t ~ q(x_t | x_0) at each timestep in `ts` (held-out images)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t_int in ts:
        t = torch.full((len(images),), t_int, dtype=torch.long, device=images.device)
        x_t = q_sample(sched, images, t, torch.randn(images.shape, generator=g, dtype=images.dtype).to(images.device))
        out[t_int] = (classifier(x_t, t).argmax(1) == labels.to(images.device)).float().mean().item()
    return out


def train_shapes_classifier(sched: Schedule, kind: str = "background", n: int = 20_000, steps: int = 3000,
                            batch_size: int = 64, lr: float = 1e-3, seed: int = 0, cfg: ClassifierConfig | None = None,
                            n_test: int = 1000, progress: bool = True) -> tuple[NoisyClassifier, list[float], dict]:
    """The `shapes` noisy classifier end to end: n training scenes, `train_classifier`, then the accuracy
    per timestep on n_test held-out (test-split) scenes. `sched` must be the diffusion model's schedule.
    Returns (classifier in eval mode, losses, {t: accuracy})."""
    from .shapes import shapes_tensors

    torch.manual_seed(seed)
    images, captions = shapes_tensors(n, seed=seed, split="train")
    labels, names = shapes_labels(captions, kind)
    classifier = NoisyClassifier(cfg or ClassifierConfig(num_classes=len(names)))
    losses = train_classifier(classifier, sched, images, labels, steps, batch_size, lr, seed, progress)
    test_images, test_captions = shapes_tensors(n_test, seed=seed, split="test")
    accuracy = classifier_accuracy(classifier, sched, test_images, shapes_labels(test_captions, kind)[0])
    return classifier, losses, accuracy


# ---- classifier guidance --------------------------------------------------------------------------

def log_prob_grad(classifier: Classifier, x_t: Tensor, t: Tensor, label: int | Tensor) -> Tensor:
    """grad_{x_t} log p_phi(y | x_t, t), shape of x_t; works inside torch.no_grad() (samplers run there)."""
    y = torch.full((x_t.shape[0],), label, dtype=torch.long, device=x_t.device) if isinstance(label, int) \
        else label.long()
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = F.log_softmax(classifier(x, t), dim=-1)  # (B, K)
        if y.shape != (x.shape[0],) or bool((y < 0).any()) or bool((y >= log_p.shape[1]).any()):
            raise ValueError(f"label must be an int or (B,) = ({x.shape[0]},) tensor of classes in "
                             f"0..{log_p.shape[1] - 1}, got {label!r}")
        selected = log_p.gather(1, y.to(log_p.device).view(-1, 1)).sum()  # sum over the batch: per-example grads
        return torch.autograd.grad(selected, x)[0]


def classifier_guidance(eps_model: EpsModel, classifier: Classifier, label: int | Tensor, scale: float,
                        sched: Schedule) -> EpsModel:
    """Dhariwal & Nichol (2021), eq. 14: eps~(x_t, t) = eps(x_t, t) - s sqrt(1 - ab_t) grad_{x_t} log p_phi(y | x_t, t).

    `label`: the class y (an int, or a (B,) tensor); `scale` s >= 0 (0: no guidance, 1: p(x | y) for an
    exact classifier, > 1: sharper p(x) p(y | x)^s). Returns an eps-model (x_t, t, context) -> eps~.
    """
    if not scale >= 0:
        raise ValueError(f"the guidance scale must be >= 0, got {scale}")

    def guided(x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        eps = eps_model(x_t, t, context)
        grad = log_prob_grad(classifier, x_t, t, label).to(eps.dtype)
        return eps - scale * (1 - sched.at("alpha_bar", t, eps)).sqrt() * grad

    return guided
