"""Training the classifiers of `nn.classifiers`.

- The noisy classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4):
  `train_noisy_classifier` (cross-entropy on x_t ~ q(x_t | x_0) at uniformly random t), its accuracy per
  timestep, and `train_shapes_classifier` end to end on `shapes` (`python -m minidiff train-classifier`).
- The clean-image evaluation classifiers (`--task classifier` of `training.tasks`): the augmentation and loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..datasets.shapes import shapes_labels, shapes_tensors
from ..gaussian import q_sample
from ..nn.classifiers import ImageClassifier, NoisyClassifier, NoisyClassifierConfig
from ..protocols import Classifier
from ..schedule import Schedule, standard_normal, t_batch


def train_noisy_classifier(classifier: nn.Module, sched: Schedule, images: Tensor, labels: Tensor, steps: int = 2000,
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
        x_t = q_sample(sched, x0, t, standard_normal(x0.shape, x0, g))
        loss = F.cross_entropy(classifier(x_t, t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    classifier.eval()
    return losses


@torch.no_grad()
def noisy_classifier_accuracy(classifier: Classifier, sched: Schedule, images: Tensor, labels: Tensor,
                        ts: tuple[int, ...] = (1, 250, 500, 750, 1000), seed: int = 0) -> dict[int, float]:
    """Accuracy of the noisy classifier on x_t ~ q(x_t | x_0) at each timestep in `ts` (held-out images)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t_int in ts:
        t = t_batch(t_int, images)
        x_t = q_sample(sched, images, t, standard_normal(images.shape, images, g))
        out[t_int] = (classifier(x_t, t).argmax(1) == labels.to(images.device)).float().mean().item()
    return out


def train_shapes_classifier(sched: Schedule, kind: str = "background", n: int = 20_000, steps: int = 3000,
                            batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                            cfg: NoisyClassifierConfig | None = None, n_test: int = 1000,
                            progress: bool = True) -> tuple[NoisyClassifier, list[float], dict]:
    """The `shapes` noisy classifier end to end: n training scenes, `train_noisy_classifier`, then the accuracy
    per timestep on n_test held-out (test-split) scenes. `sched` must be the diffusion model's schedule.
    Returns (classifier in eval mode, losses, {t: accuracy})."""
    torch.manual_seed(seed)
    images, captions = shapes_tensors(n, seed=seed, split="train")
    labels, names = shapes_labels(captions, kind)
    classifier = NoisyClassifier(cfg or NoisyClassifierConfig(num_classes=len(names)))
    losses = train_noisy_classifier(classifier, sched, images, labels, steps, batch_size, lr, seed, progress)
    test_images, test_captions = shapes_tensors(n_test, seed=seed, split="test")
    accuracy = noisy_classifier_accuracy(classifier, sched, test_images, shapes_labels(test_captions, kind)[0])
    return classifier, losses, accuracy


# ---- the clean-image evaluation classifiers ---------------------------------------------------------

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
