"""Classifiers: the noisy-image classifier of classifier guidance, and the project's own clean-image classifiers.

`NoisyClassifier` is p_phi(y | x_t, t) (Dhariwal & Nichol 2021, sec. 4), the classifier of
`guidance.classifier_guidance`; `training.classifiers.train_noisy_classifier` trains it.

`ImageClassifier` judges samples (lecture 6 metrics).

No Inception weights are available offline, so sample quality is measured in the feature
space of small classifiers trained here on clean images:

- CIFAR-10: the 10 classes (softmax); a conditional sample "a photo of a {class}" is right
  if the classifier says that class.
- CelebA: the 8 attributes the captions use (Smiling, Young, Male, Eyeglasses and the four
  hair colours), each a sigmoid; a sample is scored per attribute its caption states.

`features(x)` is the pooled penultimate activation, the space of `metrics.frechet_distance`
and `metrics.kernel_distance` ("classifier-FID" / "classifier-KID": never plain FID).

Architecture: a ResNet-9-style CNN (Page 2018, the DAWNBench CIFAR model) at an eighth of
its width, GroupNorm instead of BatchNorm (no running statistics, so the EMA of the
weights is the whole model). Trained with random crops (4-pixel reflect padding) and
horizontal flips by `training.loop.fit` (`--task classifier`, `training.classifiers.augment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Downsample, ResBlock, group_norm, timestep_embedding


@dataclass
class NoisyClassifierConfig:
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

    def __init__(self, cfg: NoisyClassifierConfig):
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


@dataclass
class ImageClassifierConfig:
    """`kind` "multiclass" (softmax over `labels`) or "multilabel" (one sigmoid per label)."""

    labels: tuple[str, ...] = ()
    kind: str = "multiclass"
    width: int = 16
    image_size: int = 32
    dataset: str = "cifar10"

    def __post_init__(self):
        self.labels = tuple(self.labels)
        if self.kind not in ("multiclass", "multilabel"):
            raise ValueError(f"kind must be 'multiclass' or 'multilabel', got {self.kind!r}")


def _conv(c_in: int, c_out: int, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), _conv(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageClassifier(nn.Module):
    """x (B, 3, 32, 32) in [-1, 1] -> logits (B, len(labels)); `features(x)` -> (B, 8 * width)."""

    def __init__(self, cfg: ImageClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.net = nn.Sequential(
            _conv(3, w),
            _conv(w, 2 * w), nn.MaxPool2d(2), _Residual(2 * w),  # 16x16
            _conv(2 * w, 4 * w), nn.MaxPool2d(2),  # 8x8
            _conv(4 * w, 8 * w), nn.MaxPool2d(2), _Residual(8 * w),  # 4x4
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(8 * w, len(cfg.labels))

    def features(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(f"expected images (B, 3, {self.cfg.image_size}, {self.cfg.image_size}), "
                             f"got {tuple(x.shape)}")
        return self.net(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def predict(model: ImageClassifier, x: Tensor, batch: int = 500) -> Tensor:
    """Class indices (B,) (multiclass) or 0/1 predictions (B, K) (multilabel)."""
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    return out.argmax(1) if model.cfg.kind == "multiclass" else (out > 0).long()


@torch.no_grad()
def features(model: ImageClassifier, x: Tensor, batch: int = 500) -> Tensor:
    """Penultimate features (N, 8 * width), float64."""
    return torch.cat([model.features(x[i:i + batch]).double() for i in range(0, len(x), batch)])


def accuracy(model: ImageClassifier, x: Tensor, y: Tensor) -> Tensor:
    """Accuracy: a scalar (multiclass) or per label (K,) (multilabel)."""
    p = predict(model, x)
    return (p == y).double().mean(0)


