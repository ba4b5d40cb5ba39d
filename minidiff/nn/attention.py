"""Explicit multi-head attention with ONE controller hook (for Prompt-to-Prompt).

    K, V = controller.keys_values(Q, K, V, info)    optional (MasaCtrl: the target reads the source's K, V)
    P = softmax(Q K^T / sqrt(d))        (B, heads, N_q, N_k), rows sum to 1 over keys
    P = controller(P, info)             the hook (identity when no controller is set)
    out = W_o (P V)

A controller is any callable `controller(probs, info) -> probs`. `info` is an
`AttentionInfo` telling it which layer it is in ("self" or "cross", the module's
qualified name inside the UNet, the feature-map resolution, the number of heads)
and the UNet's timestep argument `t`, so it knows the sampling step without
keeping counters. Attach one to every attention layer of a model with

    with attention_control(unet, controller):
        eps = unet(x_t, t, context)

(`minidiff.attention_control`, where `AttentionInfo` and `AttentionController` live
too: the methods that use the hook import those, not this module) which only
assigns `module.controller` (via `Attention.set_controller`) and restores the
previous value on exit, also when an exception is raised. Nothing is
monkey-patched and no class is matched by name.

Fused path: with no controller and `fused=True`, the layer calls
`F.scaled_dot_product_attention` (same maths, no (N_q, N_k) matrix is kept).
With a controller the explicit path is always used, because the controller must
see P. The fused path is faster on the project's 2-core CPU (training step of the
shipped-size UNet about 1.05 s fused vs 1.3 s explicit), so
`UNetConfig.fused_attention` defaults to True; see `UNetConfig` for the numbers.
The two paths agree to ~1e-7 per layer in float32 (round-off), not bit for bit.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..attention_control import AttentionInfo, Controller


class Attention(nn.Module):
    """Multi-head attention: self-attention if `context_dim` is None, else cross-attention.

    Queries come from x (B, N_q, query_dim); keys and values from x (self) or
    from the context (B, N_k, context_dim) (cross). `layer_name` is set by the
    owning model (the UNet sets it to the qualified module name).
    """

    def __init__(
        self, query_dim: int, context_dim: int | None = None, heads: int = 4,
        dim_head: int = 32, fused: bool = False,
    ):
        super().__init__()
        inner = heads * dim_head
        self.kind: Literal["self", "cross"] = "self" if context_dim is None else "cross"
        self.heads, self.dim_head, self.fused = heads, dim_head, fused
        kv_dim = query_dim if context_dim is None else context_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        self.layer_name = ""
        self.controller: Controller | None = None

    def set_controller(self, controller: Controller | None) -> None:
        """Set (or clear with None) the callable applied to the attention probabilities."""
        self.controller = controller

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, *,
        t: torch.Tensor | None = None, resolution: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """x: (B, N_q, query_dim), context: (B, N_k, context_dim) -> (B, N_q, query_dim)."""
        if (context is None) != (self.kind == "self"):
            raise ValueError(
                f"{self.kind}-attention layer '{self.layer_name}' expects "
                f"{'no context' if self.kind == 'self' else 'a context (B, L, D)'}, "
                f"got {'None' if context is None else tuple(context.shape)}"
            )
        kv = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, heads, N_q, d)
        k = rearrange(self.to_k(kv), "b n (h d) -> b h n d", h=self.heads)  # (B, heads, N_k, d)
        v = rearrange(self.to_v(kv), "b n (h d) -> b h n d", h=self.heads)  # (B, heads, N_k, d)
        if self.fused and self.controller is None:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N_q, d)
        else:
            info = None if self.controller is None else self._info(t, resolution)
            if info is not None and callable(getattr(self.controller, "keys_values", None)):
                k, v = self._checked_keys_values(q, k, v, info)  # e.g. MasaCtrl: the source's K, V
            probs = self.attention_probs(q, k)  # (B, heads, N_q, N_k)
            if info is not None:
                probs = self._apply_controller(probs, info)
            out = probs @ v  # (B, heads, N_q, d)
        out = rearrange(out, "b h n d -> b n (h d)")  # (B, N_q, heads*d)
        return self.to_out(out)

    @staticmethod
    def attention_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """P = softmax(Q K^T / sqrt(d)) over the keys (Vaswani et al. 2017, eq. 1).

        q: (B, heads, N_q, d), k: (B, heads, N_k, d) -> (B, heads, N_q, N_k).
        """
        # (Q / sqrt(d)) K^T: scaling the (N_q, d) queries is cheaper than the (N_q, N_k) scores
        scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)  # (B, heads, N_q, N_k)
        return scores.softmax(dim=-1)

    def _info(self, t: torch.Tensor | None, resolution: tuple[int, int] | None) -> AttentionInfo:
        if t is None or resolution is None:
            raise ValueError(
                f"attention layer '{self.layer_name}' has a controller but was called "
                "without t and resolution (the UNet passes both)"
            )
        return AttentionInfo(self.kind, self.layer_name, tuple(resolution), self.heads, t)

    def _checked_keys_values(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             info: AttentionInfo) -> tuple[torch.Tensor, torch.Tensor]:
        new_k, new_v = self.controller.keys_values(q, k, v, info)
        if new_k.shape != k.shape or new_v.shape != v.shape:
            raise ValueError(f"controller.keys_values must return K, V of shapes {tuple(k.shape)}, {tuple(v.shape)} "
                             f"for layer '{self.layer_name}', got {tuple(new_k.shape)}, {tuple(new_v.shape)}")
        return new_k, new_v

    def _apply_controller(self, probs: torch.Tensor, info: AttentionInfo) -> torch.Tensor:
        new = self.controller(probs, info)
        if not isinstance(new, torch.Tensor) or new.shape != probs.shape:
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(
                f"controller must return probs of shape {tuple(probs.shape)} "
                f"(B, heads, N_q, N_k) for layer '{self.layer_name}', got {got}"
            )
        return new


def attention_layers(model: nn.Module) -> list[Attention]:
    """All `Attention` modules of a model, in registration order."""
    return [m for m in model.modules() if isinstance(m, Attention)]
