"""The project's own image classifiers, used to judge samples (lecture 6 metrics).

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
horizontal flips by `train.fit` (`--task classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CELEBA_ATTRIBUTES = ("Smiling", "Young", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair", "Brown_Hair", "Gray_Hair")


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


def augment(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random crop after reflect-padding by `pad`, and a random horizontal flip, per image."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B), generator=gen)
    flip = torch.rand(B, generator=gen) < 0.5
    out = torch.stack([padded[b, :, dy[b]:dy[b] + H, dx[b]:dx[b] + W] for b in range(B)])
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def classifier_loss(model: ImageClassifier, x: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy (multiclass, y (B,) long) or mean binary cross-entropy (multilabel, y (B, K) 0/1)."""
    logits = model(x)
    if model.cfg.kind == "multiclass":
        return F.cross_entropy(logits, y)
    return F.binary_cross_entropy_with_logits(logits, y.float())


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


def celeba_targets(attributes: Tensor, attribute_names: list[str]) -> Tensor:
    """(N, 40) CelebA attributes -> (N, 8) targets in CELEBA_ATTRIBUTES order."""
    idx = [attribute_names.index(a) for a in CELEBA_ATTRIBUTES]
    return attributes[:, idx]


def caption_attributes(caption: str) -> dict[str, int]:
    """The CELEBA_ATTRIBUTES a CelebA caption states (see data.celeba_caption): 1 or 0 for each;
    hair colours only when a hair colour is named (captions say nothing about absent hair colour)."""
    words = caption.split()
    out = {"Smiling": int("smiling" in words), "Young": int("young" in words), "Male": int("man" in words),
           "Eyeglasses": int("eyeglasses" in words)}
    if "hair" in words:
        colour = words[words.index("hair") - 1]
        for name in CELEBA_ATTRIBUTES[4:]:
            out[name] = int(name.split("_")[0].lower() == colour)
    return out
