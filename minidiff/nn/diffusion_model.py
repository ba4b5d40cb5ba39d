"""A trained diffusion model as one object: eps-network, text encoder, tokenizer, schedule.

`DiffusionModel` is itself an eps-model callable, `model(x_t, t, context) -> eps`
(README.md, Notation), so every sampler, inversion and editor takes it directly. Prompts are
turned into `context` once, outside the sampling loop:

    context = model.encode_text(["a red circle on the left on a gray background"])  # (B, L, D)
    null = model.encode_text([""])                                                  # CFG's null condition

Its whole architecture is described by `config()` (plain JSON), and rebuilt by
`DiffusionModel.from_config`; `minidiff.training.checkpoint` stores config + weights.
`generate(model, prompts, w)` samples it with DDIM and classifier-free guidance.

A *latent* diffusion model (Rombach et al. 2022) is the same object working on the
scaled latents z = scale_factor * E(x) of a KL autoencoder. The autoencoder is its own
checkpoint, named in `data["autoencoder"]` with its sha256, and is attached (not owned:
its weights are not in this model's state_dict) by `training.pretrained.load`:

    model = pretrained.load("cifar10")            # attaches data/cifar10_ae
    z0 = ddim_sample(model, model.schedule, z_T, ...)  # (B, 4, 8, 8) latents
    x0 = model.decode(z0)                          # (B, 3, 32, 32) images; identity for pixel models
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checks import check_images
from ..guidance import Guidance
from ..samplers import ddim_sample
from ..schedule import Schedule, standard_normal
from .text import TextEncoder, TextEncoderConfig, Tokenizer
from .unet import UNet, UNetConfig


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
        if tokenizer is not None and text_cfg is not None and (tokenizer.vocab_size, tokenizer.max_len) != (
                text_cfg.vocab_size, text_cfg.max_len):
            raise ValueError(f"the tokenizer's vocabulary and length ({tokenizer.vocab_size}, {tokenizer.max_len}) do "
                             f"not match the text encoder's ({text_cfg.vocab_size}, {text_cfg.max_len})")
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

    # ---- latent diffusion: images <-> the space the UNet works in ------------------------------
    @property
    def latent(self) -> bool:
        """True if the UNet works on autoencoder latents (`data["autoencoder"]` is set)."""
        return bool(self.data.get("autoencoder"))

    @property
    def autoencoder(self):
        return self.__dict__.get("_autoencoder")

    def attach_autoencoder(self, ae, sha256: str | None = None) -> DiffusionModel:
        """Attach the autoencoder this latent model was trained on (kept out of state_dict).

        `sha256` is the weights hash of the autoencoder checkpoint; it must equal the one
        recorded at training time, else the latents would not be the ones the UNet knows.
        """
        want = self.data.get("autoencoder")
        if not want:
            raise ValueError("this is a pixel-space model; it has no autoencoder")
        if sha256 is not None and want.get("sha256") and sha256 != want["sha256"]:
            raise ValueError(f"autoencoder checkpoint sha256 {sha256[:12]}... is not the one this model "
                             f"was trained on ({want['name']!r}, {want['sha256'][:12]}...)")
        shape = (ae.cfg.latent_channels, self.unet.cfg.image_size)
        if shape != (self.unet.cfg.in_channels, self.data["image_size"] // ae.cfg.factor):
            raise ValueError(f"autoencoder latents (channels, size) = {shape} do not fit this UNet "
                             f"({self.unet.cfg.in_channels}, {self.unet.cfg.image_size})")
        self.__dict__["_autoencoder"] = ae  # plain attribute: not a registered submodule
        return self

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> the UNet's space: z = scale_factor * mean of q(z|x),
        or x itself for a pixel model."""
        if not self.latent:
            check_images(x, "images")
            return x
        return self._need_ae().to_latent(x)  # checks the images

    def decode(self, z: Tensor) -> Tensor:
        """The UNet's space -> images: decode(z / scale_factor), or z itself for a pixel model."""
        if not self.latent:
            return z
        return self._need_ae().from_latent(z)

    def _apply(self, fn, *args, **kwargs):
        """.to(device), .float(), .cuda(), ... also move the attached autoencoder (not a registered submodule)."""
        super()._apply(fn, *args, **kwargs)
        if self.autoencoder is not None:
            self.autoencoder._apply(fn, *args, **kwargs)
        return self

    def _need_ae(self):
        if self.autoencoder is None:
            name = self.data["autoencoder"]["name"]
            raise ValueError(f"this latent model needs its autoencoder {name!r}: load it with "
                             f"minidiff.training.pretrained.load, or call model.attach_autoencoder(ae)")
        return self.autoencoder

    def encode_text(self, prompts: list[str] | str) -> Tensor:
        """Prompts -> token embeddings (B, L, D). Unknown words raise a ValueError naming them."""
        if not self.conditional:
            raise ValueError("this model is unconditional; it takes context=None, not prompts")
        if not (isinstance(prompts, str) or (isinstance(prompts, (list, tuple))
                                             and all(isinstance(p, str) for p in prompts))):
            raise TypeError(f"prompts must be a string or a list of strings, got {prompts!r}")
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


@torch.no_grad()
def generate(model: DiffusionModel, prompts: list[str], w: float = 3.0, steps: int = 50, seed: int = 0,
             batch: int = 50, eta: float = 0.0, progress: bool = True, decode: bool = True) -> Tensor:
    """DDIM samples of a text-conditional model for `prompts` with classifier-free guidance scale w
    (`Guidance.of(model, w)`): images (N, 3, H, W); for a latent model the decoded latents, or the latents
    themselves (N, C, h, w) with decode=False. x_T is drawn from `seed` in the model's dtype and moved to its device
    (`schedule.standard_normal`: the same noise on every device)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.unet.cfg
    x_T = standard_normal((len(prompts), cfg.in_channels, cfg.image_size, cfg.image_size), next(model.parameters()), g)
    guidance, out = Guidance.of(model, w), []
    for i in tqdm(range(0, len(prompts), batch), disable=not progress, desc=f"sampling w={w}"):
        ctx = model.encode_text(prompts[i:i + batch])
        z0 = ddim_sample(model, model.schedule, x_T[i:i + batch], steps, eta, ctx, generator=g, guidance=guidance)
        out.append(model.decode(z0) if decode else z0)
    return torch.cat(out)
