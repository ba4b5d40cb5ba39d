"""Guidance (lecture 3): classifier-free guidance and classifier guidance, as eps-model wrappers.

Both return a new eps-model callable, so every sampler, inversion and editor takes a guided model as is; they
also take the argument `guidance: Guidance | None` and wrap the model themselves (`guided`).

- Classifier-free guidance (Ho & Salimans 2021), `Guidance(null_context, w)` and `classifier_free_guidance`:
      eps~ = eps(x_t, t, null) + w (eps(x_t, t, c) - eps(x_t, t, null))                      (`cfg_eps`)
  minidiff's w: 1 = the conditional model, 0 = the unconditional one (Imagen, diffusers' guidance_scale).
  Ho & Salimans write eps~ = (1 + w') eps_c - w' eps_u, i.e. w = 1 + w' (`w_from_ho_salimans`,
  `ho_salimans_from_w`).
- Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14), `classifier_guidance`:
      eps~ = eps(x_t, t) - s sqrt(1 - ab_t) grad_{x_t} log p_phi(y | x_t, t)
  with a classifier of *noisy* images (`nn.classifiers.NoisyClassifier`, trained by
  `training.classifiers.train_noisy_classifier` on x_t ~ q(x_t | x_0) at uniformly random t). Since
  eps = -sqrt(1 - ab) grad log p_t(x_t), this samples p_t(x) p(y | x)^s; s = 1 with the exact classifier gives
  the class-conditional model (tests/test_guidance.py checks this to round-off). Classifier-free guidance with w
  equals classifier guidance with s = w applied to the unconditional model, with the implicit classifier
  p(y | x_t) ∝ p(x_t | y) / p(x_t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .protocols import Classifier, EpsModel
from .schedule import Schedule

# ---- classifier-free guidance -------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Guidance:
    """Classifier-free guidance with null condition `null_context` and scale `w` (the one way to ask for it:
    every sampler, inversion and editor takes `guidance: Guidance | None`; None = the model as it is).

    null_context: (1, L, D) or (B, L, D), the encoded empty prompt "" (`model.null_context()`); for other
                  eps-models, whatever their null context is, with a batch dimension of 1 or B
    w:            the scale of `cfg_eps`; 1 = the conditional model, 0 = the unconditional one
    """

    null_context: Tensor
    w: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.null_context, Tensor) or self.null_context.ndim < 2:
            got = tuple(self.null_context.shape) if isinstance(self.null_context, Tensor) else self.null_context
            raise TypeError(f"Guidance.null_context must be the encoded empty prompt, a (1 or B, L, D) tensor "
                            f"(any (1 or B, ...) context for other eps-models); got {got!r}")
        if isinstance(self.w, bool) or not isinstance(self.w, (int, float)) or not math.isfinite(self.w):
            raise ValueError(f"the guidance scale w must be a finite number (1 = conditional model), got {self.w!r}")

    @classmethod
    def of(cls, model, w: float) -> Guidance:
        """Guidance with the encoded "" of a text-conditional model (anything with `.null_context(batch)`)."""
        return cls(model.null_context(1), w)


def cfg_eps(eps_u: Tensor, eps_c: Tensor, w: float) -> Tensor:
    """Ho & Salimans (2021) in minidiff's w: eps~ = eps_u + w (eps_c - eps_u), eps_u/eps_c (un)conditional."""
    return eps_u + w * (eps_c - eps_u)


def classifier_free_guidance(eps_model: EpsModel, guidance: Guidance) -> EpsModel:
    """Wrap an eps-model with classifier-free guidance: eps~(x_t, t, c) = cfg_eps(eps(x_t, t, null), eps(x_t, t, c), w).

    Both halves go through the model in one batch [null; cond] (the batch layout P2P's controllers expect).
    """
    check_guidance(guidance)
    null_context, w = guidance.null_context, guidance.w

    def guided_eps(x_t: Tensor, t: Tensor, context: Tensor | None) -> Tensor:
        if context is None:
            raise ValueError("classifier-free guidance needs a conditional context, got None")
        if null_context.shape[1:] != context.shape[1:] or null_context.shape[0] not in (1, context.shape[0]):
            raise ValueError(f"the null context {tuple(null_context.shape)} does not fit the context "
                             f"{tuple(context.shape)}: expected (1 or {context.shape[0]}, *{tuple(context.shape[1:])})")
        null = null_context.expand(context.shape[0], *null_context.shape[1:]).to(context)
        eps_u, eps_c = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([null, context])).chunk(2)
        return cfg_eps(eps_u, eps_c, w)

    return guided_eps


def guided(eps_model: EpsModel, guidance: Guidance | None) -> EpsModel:
    """The eps-model a method runs for its `guidance` argument: the model itself for None, else
    `classifier_free_guidance(eps_model, guidance)`."""
    return eps_model if guidance is None else classifier_free_guidance(eps_model, guidance)


def check_guidance(guidance: Guidance | None) -> None:
    """None or a Guidance; anything else (the old (null, w) tuple, a bare w) is a TypeError saying what to write."""
    if guidance is not None and not isinstance(guidance, Guidance):
        raise TypeError(f"guidance must be None or a Guidance(null_context, w) for classifier-free guidance, got "
                        f"{type(guidance).__name__}: write Guidance(model.null_context(), w)")


def w_from_ho_salimans(w_prime: float) -> float:
    """Ho & Salimans' w' (eps~ = (1 + w') eps_c - w' eps_u) -> minidiff's w = 1 + w'."""
    return 1.0 + w_prime


def ho_salimans_from_w(w: float) -> float:
    """minidiff's w (eps~ = eps_u + w (eps_c - eps_u)) -> Ho & Salimans' w' = w - 1."""
    return w - 1.0


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
        raise ValueError(f"the classifier-guidance scale s must be >= 0, got {scale}")

    def guided_eps(x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        eps = eps_model(x_t, t, context)
        grad = log_prob_grad(classifier, x_t, t, label).to(eps.dtype)
        return eps - scale * (1 - sched.at("alpha_bar", t, eps)).sqrt() * grad

    return guided_eps
