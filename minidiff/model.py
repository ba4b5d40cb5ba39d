"""A trained diffusion model as one object: eps-network, text encoder, tokenizer, schedule.

`DiffusionModel` is itself an eps-model callable, `model(x_t, t, context) -> eps`
(DESIGN.md), so every sampler, inversion and editor takes it directly. Prompts are
turned into `context` once, outside the sampling loop:

    context = model.encode_text(["a red circle on the left on a gray background"])  # (B, L, D)
    null = model.encode_text([""])                                                  # CFG's null condition

Its whole architecture is described by `config()` (plain JSON), and rebuilt by
`DiffusionModel.from_config`; `minidiff.checkpoint` stores config + weights.
"""

from __future__ import annotations

from dataclasses import asdict

from torch import Tensor, nn

from .nn.unet import UNet, UNetConfig
from .schedule import Schedule
from .text import TextEncoder, TextEncoderConfig, Tokenizer


class DiffusionModel(nn.Module):
    """UNet eps-network (+ text encoder and tokenizer when conditional) with its noise schedule."""

    def __init__(self, unet_cfg: UNetConfig, schedule: Schedule, tokenizer: Tokenizer | None = None,
                 text_cfg: TextEncoderConfig | None = None, data: dict | None = None):
        super().__init__()
        if (unet_cfg.context_dim is None) != (tokenizer is None):
            raise ValueError("a text-conditional UNet (context_dim set) needs a tokenizer, and an "
                             "unconditional one must not have one")
        if text_cfg is not None and text_cfg.dim != unet_cfg.context_dim:
            raise ValueError(f"text encoder dim {text_cfg.dim} != UNet context_dim {unet_cfg.context_dim}")
        self.unet = UNet(unet_cfg)
        self.schedule, self.tokenizer = schedule, tokenizer
        self.text_encoder = TextEncoder(text_cfg) if text_cfg is not None else None
        self.data = dict(data or {})  # what it was trained on: name, image size, caption grammar

    @property
    def conditional(self) -> bool:
        return self.text_encoder is not None

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor | None = None, **kwargs) -> Tensor:
        """The eps-model: eps_theta(x_t, t, context); kwargs go to the UNet (h_delta, return_h)."""
        return self.unet(x_t, t, context, **kwargs)

    def encode_text(self, prompts: list[str] | str) -> Tensor:
        """Prompts -> token embeddings (B, L, D). Unknown words raise a ValueError naming them."""
        if not self.conditional:
            raise ValueError("this model is unconditional; it takes context=None, not prompts")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        device = next(self.parameters()).device
        return self.text_encoder(self.tokenizer.encode(prompts).to(device))

    def null_context(self, batch: int = 1) -> Tensor:
        """The encoded empty prompt "" repeated to (batch, L, D): the null condition of CFG."""
        return self.encode_text([""] * batch)

    # ---- (de)serialisation of the architecture --------------------------------------------------
    def config(self) -> dict:
        return {
            "unet": asdict(self.unet.cfg),
            "schedule": self.schedule.spec,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer is not None else None,
            "text_encoder": asdict(self.text_encoder.cfg) if self.text_encoder is not None else None,
            "data": self.data,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> DiffusionModel:
        unet = dict(cfg["unet"])
        for k in ("channel_mults", "attention_resolutions"):
            unet[k] = tuple(unet[k])
        tok = Tokenizer.from_dict(cfg["tokenizer"]) if cfg.get("tokenizer") else None
        text = TextEncoderConfig(**cfg["text_encoder"]) if cfg.get("text_encoder") else None
        return cls(UNetConfig(**unet), Schedule.from_spec(cfg["schedule"]), tok, text, cfg.get("data"))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

