"""Small building blocks shared by the UNet and the autoencoder.

- `timestep_embedding`: sinusoidal features of the integer timestep t.
- `group_norm`, `zero_module`: normalisation helper and zero initialisation.
- `ResBlock`: GroupNorm-SiLU-Conv twice, optional time embedding, 1x1 skip.
- `Downsample` / `Upsample`: change the resolution by a factor 2.
- `FeedForward` (GEGLU) and `SpatialTransformer`: the latent-diffusion
  transformer block that holds the self- and cross-attention layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import Attention


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) -> (B, dim).

    Transformer positional encoding (Vaswani et al. 2017, sec. 3.5) as used by
    DDPM (Ho et al. 2020, appendix B):
        freq_i = max_period^(-i / (dim/2)),  emb = [cos(t * freq), sin(t * freq)].
    An odd `dim` gets one trailing zero.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    freq = torch.exp(-math.log(max_period) * i / half)  # (half,)
    args = t.float()[:, None] * freq[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # (B, dim)
    return emb


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, groups) groups, so any channel count works."""
    return nn.GroupNorm(math.gcd(channels, groups), channels, eps=1e-6)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` (the block starts as the identity/zero map)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block (DDPM/ADM style):

        h = Conv(SiLU(GN(x))) + Linear(SiLU(emb))      (time embedding, if any)
        h = Conv(Dropout(SiLU(GN(h))))                  (zero-initialised)
        out = skip(x) + h,   skip = 1x1 conv when channels change, else identity.
    """

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int | None = None,
        dropout: float = 0.0, groups: int = 32,
    ):
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch) if emb_dim is not None else None
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in_ch, H, W), emb: (B, emb_dim) or None -> (B, out_ch, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out_ch, H, W)
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("this ResBlock was built with a time embedding; emb is None")
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, out_ch, 1, 1) broadcast
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling then a 3x3 convolution."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)


class FeedForward(nn.Module):
    """GEGLU feed-forward (Shazeer 2020): W_out (a * GELU(g)), [a, g] = W_in x."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.proj_in(x).chunk(2, dim=-1)  # (B, N, mult*dim) each
        return self.proj_out(a * F.gelu(g))


def sincos_2d(size: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position code (ViT / MAE style) of a size x size grid, (size*size, dim), row-major tokens:
    [sin(w_k x), cos(w_k x), sin(w_k y), cos(w_k y)] for dim/4 frequencies w_k from pi/2 (a quarter period across
    the grid: sin is monotone in x, so "left of centre" is one linear read-out) up to pi * size / 2 (about a
    pixel's period), geometrically spaced; x, y are pixel centres in [-1, 1]."""
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 for a 2D sin-cos code, got {dim}")
    n = dim // 4
    w = (math.pi / 2) * size ** (torch.arange(n, dtype=torch.float64) / max(1, n - 1))  # (n,)
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1  # (size,) pixel centres in [-1, 1]
    y, x = torch.meshgrid(c, c, indexing="ij")  # (size, size) each
    x, y = x.reshape(-1, 1) * w, y.reshape(-1, 1) * w  # (size*size, n)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()  # (size*size, dim)


class SpatialTransformer(nn.Module):
    """Latent-diffusion transformer block on a feature map (Rombach et al. 2022).

        u = proj_in(GN(x))                       1x1 conv, C -> heads*dim_head, flattened to tokens
        u = u + g * E                            with `size`: E the fixed 2D sin-cos code of each token's (x, y)
                                                 (`sincos_2d`), g a learned per-channel gain starting at `gain0`
        u = u + SelfAttn(LN(u))
        u = u + CrossAttn(LN(u), context)        only when context_dim is set
        u = u + FF(LN(u))
        out = x + proj_out(u)                    1x1 conv, zero-initialised
    """

    def __init__(
        self, ch: int, heads: int, dim_head: int, context_dim: int | None = None,
        groups: int = 32, fused: bool = False, size: int | None = None, gain0: float = 0.0,
    ):
        super().__init__()
        inner = heads * dim_head
        self.norm = group_norm(ch, groups)
        self.proj_in = nn.Conv2d(ch, inner, 1)
        # gain0 = 0: a model with the code computes what the model without it computes (fine-tuning); gain0 = 1: the
        # code at full strength from step 0 (ViT; training from scratch). One gain per channel, not one vector per
        # position, so that every token's gradient trains it
        self.pos_gain = None if size is None else nn.Parameter(torch.full((inner,), float(gain0)))
        if size is not None:  # E is a function of (size, inner): rebuilt, not stored in checkpoints
            self.register_buffer("pos_code", sincos_2d(size, inner), persistent=False)
        self.norm1 = nn.LayerNorm(inner)
        self.self_attn = Attention(inner, None, heads, dim_head, fused=fused)
        self.cross_attn = None
        if context_dim is not None:
            self.norm2 = nn.LayerNorm(inner)
            self.cross_attn = Attention(inner, context_dim, heads, dim_head, fused=fused)
        self.norm3 = nn.LayerNorm(inner)
        self.ff = FeedForward(inner)
        self.proj_out = zero_module(nn.Conv2d(inner, ch, 1))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None, t: torch.Tensor
    ) -> torch.Tensor:
        """x: (B, C, H, W), context: (B, L, D) or None, t: (B,) -> (B, C, H, W)."""
        H, W = x.shape[-2:]
        u = self.proj_in(self.norm(x))  # (B, inner, H, W)
        u = rearrange(u, "b c h w -> b (h w) c")  # (B, HW, inner)
        if self.pos_gain is not None:
            if self.pos_code.shape[0] != H * W:
                raise ValueError(f"this block's positional code is for {self.pos_code.shape[0]} positions, "
                                 f"got a {H}x{W} feature map")
            u = u + self.pos_gain * self.pos_code.to(u.dtype)  # (B, HW, inner): each query knows where it is
        u = u + self.self_attn(self.norm1(u), t=t, resolution=(H, W))
        if self.cross_attn is not None:
            u = u + self.cross_attn(self.norm2(u), context, t=t, resolution=(H, W))
        u = u + self.ff(self.norm3(u))
        u = rearrange(u, "b (h w) c -> b c h w", h=H, w=W)  # (B, inner, H, W)
        return x + self.proj_out(u)
