"""Text-conditioned UNet epsilon-model (DDPM/ADM UNet + latent-diffusion transformer blocks).

    eps = unet(x_t, t, context)                      (B, C, H, W)
    eps, h = unet(x_t, t, context, return_h=True)    h: bottleneck feature (Asyrp's h-space)
    eps = unet(x_t, t, context, h_delta=dh)          decoder sees h + dh

Layout (feature-map size in brackets, for image_size=32, channel_mults=(1, 2, 2)):

    conv_in [32] -> down: Blocks [32], Down, Blocks [16], Down, Blocks [8]
                 -> mid: ResBlock, SpatialTransformer, ResBlock [8]   (= h)
                 -> up:  Blocks [8], Up, Blocks [16], Up, Blocks [32]  (each Block eats a skip)
                 -> GroupNorm, SiLU, conv_out (zero-init)

A Block is a ResBlock followed, at `attention_resolutions`, by a SpatialTransformer.
Every Attention layer knows its qualified name (e.g. "down.1.attn.cross_attn"),
which is what attention controllers see in `AttentionInfo.layer`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Attention
from .layers import (
    Downsample,
    ResBlock,
    SpatialTransformer,
    Upsample,
    group_norm,
    timestep_embedding,
    zero_module,
)


@dataclass
class UNetConfig:
    """UNet hyper-parameters. `out_channels` equals `in_channels` (eps has x_t's shape).

    attention_resolutions: feature-map sizes (H = W) at which a SpatialTransformer
        follows each ResBlock; the middle block always has one.
    context_dim: width D of the text-token embeddings (B, L, D); None builds an
        unconditional model without cross-attention.
    fused_attention: use F.scaled_dot_product_attention when no controller is set
        (a controller always gets the explicit path). On by default: on the
        project's 2-core CPU (torch 2.14, 2 threads, best of 5) `shapes_small()`
        on a batch of 64 took 1.04 s fused vs 1.28 s explicit for forward+backward
        and 0.33 s vs 0.35 s for a no-grad forward.
    """

    in_channels: int = 3
    image_size: int = 32
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    heads: int = 4
    dim_head: int = 32
    context_dim: int | None = None
    dropout: float = 0.0
    norm_groups: int = 32
    fused_attention: bool = True
    position_gain: float | None = None  # None, or a 2D sin-cos position code in each SpatialTransformer, its
    # per-channel gain starting at this value (`shapes_pos`: 0, `shapes_pos1`: 1)
    cond_channels: int = 0  # channels of an image concatenated to x_t at the input (InstructPix2Pix; `nn.instruct`)

    @property
    def out_channels(self) -> int:
        return self.in_channels

    def feature_sizes(self) -> list[int]:
        """Feature-map size at each level, e.g. [32, 16, 8] for image_size 32, three levels."""
        return [self.image_size // 2**i for i in range(len(self.channel_mults))]

    def __post_init__(self):
        self.channel_mults = tuple(self.channel_mults)
        self.attention_resolutions = tuple(self.attention_resolutions)
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be divisible by 2^(levels-1) = {factor} for "
                f"channel_mults {self.channel_mults}, got {self.image_size}"
            )
        unused = set(self.attention_resolutions) - set(self.feature_sizes())
        if unused:
            raise ValueError(
                f"attention_resolutions {sorted(unused)} never occur; the feature-map "
                f"sizes of this UNet are {self.feature_sizes()}"
            )

    @classmethod
    def tiny(cls, context_dim: int | None = 16) -> UNetConfig:
        """A few-thousand-parameter 3x32x32 model for tests of training machinery (not for quality)."""
        return cls(
            in_channels=3, image_size=32, base_channels=8, channel_mults=(1, 2),
            num_res_blocks=1, attention_resolutions=(16,), heads=2, dim_head=4,
            context_dim=context_dim, norm_groups=4,
        )

    @classmethod
    def shapes_small(cls, context_dim: int = 64) -> UNetConfig:
        """Text-conditioned pixel model for 3x32x32 `shapes`, sized for ~50 min of 2-core CPU.

        1,687,075 parameters (context_dim=64); forward+backward on a batch of 64
        takes about 1.05 s with 2 threads on the project CPU (~3000 steps in 50 min).
        """
        return cls(
            in_channels=3, image_size=32, base_channels=32, channel_mults=(1, 2, 2),
            num_res_blocks=1, attention_resolutions=(16, 8), heads=4, dim_head=16,
            context_dim=context_dim, norm_groups=8,
        )


    @classmethod
    def shapes_attn32(cls, context_dim: int = 64) -> UNetConfig:
        """`shapes_small` with attention at 32x32 as well, so that every pixel can look up the words that name
        its object (binding colour and shape to position; issue 15's ablation). 1,948,867 parameters
        (context_dim=64): 261,792 more than `shapes_small`, in the two SpatialTransformers at 32x32."""
        return replace(cls.shapes_small(context_dim), attention_resolutions=(32, 16, 8))

    @classmethod
    def shapes_pos(cls, context_dim: int = 64) -> UNetConfig:
        """`shapes_small` with a 2D sin-cos position code added to the image tokens of every SpatialTransformer
        (`layers.sincos_2d`, scaled by a learned per-channel gain), so that a query at 16x16 knows where it is and
        can pick the words of the object drawn there (binding words to places; issue 15's ablation). 448 more
        parameters than `shapes_small` (7 blocks x 64 gains), all zero at the start: loaded with `shapes_small`
        weights it computes the same eps."""
        return replace(cls.shapes_small(context_dim), position_gain=0.0)

    @classmethod
    def shapes_pos1(cls, context_dim: int = 64) -> UNetConfig:
        """`shapes_pos` with the gains starting at 1 (the code at full strength from step 0, as ViT adds it): the
        variant to train from scratch, where a zero gain need not grow (issue 15: fine-tuned from `shapes`, the
        zero gains stayed below 0.02 in 600 steps)."""
        return replace(cls.shapes_small(context_dim), position_gain=1.0)

    @classmethod
    def latent_small(cls, context_dim: int = 64, latent_channels: int = 4, latent_size: int = 8) -> UNetConfig:
        """Text-conditioned latent model for 4x8x8 KL-f4 latents of 32x32 images (CIFAR-10, CelebA).

        3,205,252 parameters (context_dim=64), 166 MFLOP per forward pass: a quarter of
        `shapes_small` (658 MFLOP on 3x32x32), which is latent diffusion's point.
        """
        return cls(
            in_channels=latent_channels, image_size=latent_size, base_channels=64, channel_mults=(1, 2),
            num_res_blocks=1, attention_resolutions=(8, 4), heads=4, dim_head=16,
            context_dim=context_dim, norm_groups=16,
        )


class Block(nn.Module):
    """ResBlock, then (at attention resolutions) a SpatialTransformer."""

    def __init__(self, in_ch: int, out_ch: int, cfg: UNetConfig, emb_dim: int, attn: bool, size: int):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, cfg.dropout, cfg.norm_groups)
        self.attn = _transformer(out_ch, cfg, size) if attn else None

    def forward(
        self, x: Tensor, emb: Tensor, context: Tensor | None, t: Tensor
    ) -> Tensor:
        x = self.res(x, emb)  # (B, out_ch, H, W)
        return x if self.attn is None else self.attn(x, context, t)


class MiddleBlock(nn.Module):
    """ResBlock - SpatialTransformer - ResBlock at the lowest resolution."""

    def __init__(self, ch: int, cfg: UNetConfig, emb_dim: int, size: int):
        super().__init__()
        self.res1 = ResBlock(ch, ch, emb_dim, cfg.dropout, cfg.norm_groups)
        self.attn = _transformer(ch, cfg, size)
        self.res2 = ResBlock(ch, ch, emb_dim, cfg.dropout, cfg.norm_groups)

    def forward(
        self, x: Tensor, emb: Tensor, context: Tensor | None, t: Tensor
    ) -> Tensor:
        return self.res2(self.attn(self.res1(x, emb), context, t), emb)


def _transformer(ch: int, cfg: UNetConfig, size: int) -> SpatialTransformer:
    """A SpatialTransformer for size x size feature maps (with a position code if cfg.position_gain is set)."""
    return SpatialTransformer(
        ch, cfg.heads, cfg.dim_head, cfg.context_dim, cfg.norm_groups, cfg.fused_attention,
        None if cfg.position_gain is None else size, cfg.position_gain or 0.0,
    )


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) stored as (B, H, W, C) on the CPU and CUDA (same values, other strides): oneDNN's
    convolutions are faster in this layout (the shapes UNet's forward 1.18x at batch 64 on the project CPU, paired
    in one process, benchmarks/README.md) and the attention blocks' (B, C, H, W) -> (B, HW, C) becomes a view."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type in ("cpu", "cuda") else x


class UNet(nn.Module):
    """Epsilon-model eps_theta(x_t, t, context) (Ho et al. 2020; Rombach et al. 2022)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)
        skip_chs, sizes = [ch], cfg.feature_sizes()
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.channel_mults):
            attn = sizes[level] in cfg.attention_resolutions
            for _ in range(cfg.num_res_blocks):
                self.down.append(Block(ch, cfg.base_channels * mult, cfg, emb_dim, attn, sizes[level]))
                ch = cfg.base_channels * mult
                skip_chs.append(ch)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(Downsample(ch))
                skip_chs.append(ch)
        self.mid = MiddleBlock(ch, cfg, emb_dim, sizes[-1])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            attn = sizes[level] in cfg.attention_resolutions
            for _ in range(cfg.num_res_blocks + 1):
                out_ch = cfg.base_channels * mult
                self.up.append(Block(ch + skip_chs.pop(), out_ch, cfg, emb_dim, attn, sizes[level]))
                ch = out_ch
            if level > 0:
                self.up.append(Upsample(ch))
        self.norm_out = group_norm(ch, cfg.norm_groups)
        self.conv_out = zero_module(nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        for name, module in self.named_modules():  # controllers see these names
            if isinstance(module, Attention):
                module.layer_name = name

    def num_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None, *,
        h_delta: torch.Tensor | None = None, return_h: bool = False, cond: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x_t: (B, C, H, W), t: (B,) integer, context: (B, L, D) or None; cond (B, cond_channels, H, W) when the
        config has cond_channels (concatenated to x_t at the input).

        Returns eps (B, C, H, W), or (eps, h) if `return_h`, where h is the
        middle-block output (B, C_mid, H_mid, W_mid) *before* `h_delta` is added. eps has x_t's dtype also under
        autocast (`devices.autocast`), so the samplers' updates stay in the images' precision.
        """
        self._check_inputs(x_t, t, context)
        self._check_cond(x_t, cond)
        # the sinusoids are float32; cast them to the model dtype so that model.double() works
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels).to(x_t.dtype))  # (B, emb_dim)
        x_in = x_t if cond is None else torch.cat([x_t, cond.to(x_t.dtype)], dim=1)  # (B, C + cond_channels, H, W)
        x = self.conv_in(channels_last(x_in))  # (B, base, H, W), stored (B, H, W, base): see `channels_last`
        skips = [x]
        for module in self.down:
            x = module(x, emb, context, t) if isinstance(module, Block) else module(x)
            skips.append(x)
        h = self.mid(x, emb, context, t)  # (B, C_mid, H_mid, W_mid)
        x = h
        if h_delta is not None:
            if h_delta.shape != h.shape:
                raise ValueError(
                    f"h_delta must have the shape of h {tuple(h.shape)}, got {tuple(h_delta.shape)}"
                )
            x = h + h_delta
        for module in self.up:
            if isinstance(module, Block):
                x = torch.cat([x, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
                x = module(x, emb, context, t)
            else:
                x = module(x)  # (B, C, 2H, 2W)
        eps = self.conv_out(F.silu(self.norm_out(x))).to(x_t.dtype).contiguous()  # (B, C_out, H, W)
        return (eps, h) if return_h else eps

    def _check_cond(self, x_t: Tensor, cond: Tensor | None) -> None:
        c = self.cfg.cond_channels
        if (cond is None) != (c == 0) or (cond is not None and cond.shape != (x_t.shape[0], c, *x_t.shape[2:])):
            want = "no cond" if c == 0 else f"cond of shape ({x_t.shape[0]}, {c}, {x_t.shape[2]}, {x_t.shape[3]})"
            raise ValueError(f"this UNet takes {want} (cond_channels={c}), got "
                             f"{None if cond is None else tuple(cond.shape)}")

    def _check_inputs(self, x_t: Tensor, t: Tensor, context: Tensor | None) -> None:
        cfg, S = self.cfg, self.cfg.image_size
        expected = (cfg.in_channels, S, S)
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != expected:
            raise ValueError(
                f"x_t must have shape (B, {cfg.in_channels}, {S}, {S}) for this UNet "
                f"(in_channels={cfg.in_channels}, image_size={S}), got {tuple(x_t.shape)}"
            )
        dtype = self.conv_in.weight.dtype
        if x_t.dtype != dtype or (context is not None and context.dtype != dtype):
            got = x_t.dtype if x_t.dtype != dtype else context.dtype
            raise TypeError(f"the UNet's weights are {dtype} but it was given {got} inputs: convert them with "
                            f".to({dtype}) (images from uint8 with datasets.to_float), or the model with .to({got})")
        B = x_t.shape[0]
        if t.shape != (B,) or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(
                f"t must be an integer tensor of shape ({B},), got shape {tuple(t.shape)} "
                f"dtype {t.dtype}"
            )
        if cfg.context_dim is None:
            if context is not None:
                raise ValueError(
                    "this UNet is unconditional (context_dim=None) but a context was given"
                )
            return
        if context is None:
            raise ValueError(
                f"this UNet needs a context (B, L, {cfg.context_dim}); for the null "
                "condition pass the encoded empty prompt \"\", not None"
            )
        if context.ndim != 3 or context.shape[0] != B or context.shape[2] != cfg.context_dim:
            raise ValueError(
                f"context must have shape ({B}, L, {cfg.context_dim}), got {tuple(context.shape)}"
            )
