"""The attention hook's protocol (lecture 5): what a controller is told and what it may do.

Every attention layer of the UNet (`nn.attention.Attention`) computes P = softmax(Q K^T / sqrt(d)) and, when a
controller is set, replaces it by `controller(P, info)` before P V; a controller with a `keys_values` method (the
base class has the identity) may first replace K and V. Prompt-to-Prompt's edits (`p2p`) are
controllers. This module holds the protocol only (no network), so methods depend on it and not on `nn`:

    with attention_control(model, controller):     # sets the controller on every hooked layer, restores on exit
        eps = model(x_t, t, context)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True, eq=False)
class AttentionInfo:
    """What a controller is told about the attention call it is looking at.

    kind:       "self" (keys are the image tokens) or "cross" (keys are the text tokens)
    layer:      qualified module name inside the UNet, e.g. "down.1.attn.cross_attn"
    resolution: (H, W) of the feature map whose H*W pixels are the queries
    heads:      number of heads (probs has shape (B, heads, H*W, N_k))
    t:          the UNet's timestep argument, shape (B,)
    """

    kind: Literal["self", "cross"]
    layer: str
    resolution: tuple[int, int]
    heads: int
    t: torch.Tensor


Controller = Callable[[torch.Tensor, AttentionInfo], torch.Tensor]


class AttentionController:
    """Base class for attention controllers: the identity.

    `__call__(probs, info)` dispatches on `info.kind` to the two hooks below;
    override `cross` and/or `self_attention` (or `__call__` itself). Each hook gets
    probs of shape (B, heads, N_q, N_k) and must return a tensor of the same shape.
    A controller may keep state (e.g. stored maps) but should derive the sampling
    step from `info.t`, not from call counters.
    """

    def __call__(self, probs: torch.Tensor, info: AttentionInfo) -> torch.Tensor:
        if info.kind == "cross":
            return self.cross(probs, info)
        return self.self_attention(probs, info)

    def cross(self, probs: torch.Tensor, info: AttentionInfo) -> torch.Tensor:
        """Cross-attention hook: probs (B, heads, HW, L) over the L text tokens."""
        return probs

    def self_attention(self, probs: torch.Tensor, info: AttentionInfo) -> torch.Tensor:
        """Self-attention hook: probs (B, heads, HW, HW) over the image tokens."""
        return probs

    def keys_values(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    info: AttentionInfo) -> tuple[torch.Tensor, torch.Tensor]:
        """Key/value hook, called before P is computed: q (B, heads, N_q, d), k and v (B, heads, N_k, d) -> the
        K and V the layer uses (same shapes). Identity here; MasaCtrl (`baselines.masactrl`) overrides it."""
        return k, v


def hooked_layers(model) -> list:
    """The modules of `model` (an `nn.Module`) that take a controller (`set_controller`), in registration order."""
    return [m for m in model.modules() if callable(getattr(m, "set_controller", None))]


@contextlib.contextmanager
def attention_control(model, controller: Controller) -> Iterator[Controller]:
    """Set `controller` on every hooked attention layer of `model` (an `nn.Module`) inside the `with` block.

    Given a `DiffusionModel`, only its UNet is controlled (the text encoder's attention has no
    timestep). The previous controllers are restored on exit, even if the block raises.
    Yields the controller, so `with attention_control(unet, Store()) as store:` works.
    """
    if hasattr(model, "unet"):
        model = model.unet  # a DiffusionModel: only the UNet's layers see a timestep (not the text encoder's)
    layers = hooked_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Attention layers to control (modules with set_controller)")
    previous = [layer.controller for layer in layers]
    try:
        for layer in layers:
            layer.set_controller(controller)
        yield controller
    finally:
        for layer, prev in zip(layers, previous, strict=True):
            layer.set_controller(prev)
