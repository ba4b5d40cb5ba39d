"""Word-level tokenizer and a small transformer text encoder.

    tokens = tok.encode(["a red circle"])      (1, max_len): [<bos>, a, red, circle, <pad>, ...]
    context = encoder(tokens)                  (1, max_len, dim), the UNet's cross-attention keys

The empty prompt "" encodes to [<bos>, <pad>, ...]; its embedding is the null
condition of classifier-free guidance. There is no attention mask, as in Stable
Diffusion's CLIP text encoder usage: padding tokens get embeddings (which depend
on the prompt, since attention is bidirectional) and the UNet attends to all
`max_len` tokens. This keeps the context a plain (B, L, D) tensor, which is what
Prompt-to-Prompt's cross-attention maps are indexed by.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import Attention

BOS, PAD = "<bos>", "<pad>"


class Tokenizer:
    """Lower-cased, whitespace-split words; ids: <bos>=0, <pad>=1, then the sorted vocabulary."""

    def __init__(self, words: list[str], max_len: int = 24):
        words = sorted({w.lower() for w in words} - {BOS, PAD})
        self.itos = [BOS, PAD, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len
        self.bos_id, self.pad_id = 0, 1

    @classmethod
    def from_captions(cls, captions: list[str], max_len: int = 24) -> Tokenizer:
        """Build the vocabulary from the words of the training captions."""
        return cls(sorted({w for c in captions for w in cls.split(c)}), max_len)

    @staticmethod
    def split(prompt: str) -> list[str]:
        return prompt.lower().split()

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def words(self) -> list[str]:
        """The known words (sorted, without special tokens)."""
        return self.itos[2:]

    def _check(self, prompt: str) -> list[str]:
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt must be a str, got {type(prompt).__name__}")
        words = self.split(prompt)
        unknown = sorted({w for w in words if w not in self.stoi})
        if unknown:
            raise ValueError(
                f"prompt words {unknown} are not in the vocabulary; known words: {self.words}"
            )
        if len(words) > self.max_len - 1:
            raise ValueError(
                f"prompt has {len(words)} words but at most {self.max_len - 1} fit "
                f"(max_len={self.max_len} including <bos>): {prompt!r}"
            )
        return words

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """prompts (B strings) -> LongTensor (B, max_len): [<bos>, w_1, ..., w_n, <pad>, ...]."""
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts; wrap a single prompt: [prompt]")
        out = torch.full((len(prompts), self.max_len), self.pad_id, dtype=torch.long)
        out[:, 0] = self.bos_id
        for b, prompt in enumerate(prompts):
            ids = [self.stoi[w] for w in self._check(prompt)]
            out[b, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """LongTensor (B, L) -> B prompts (special tokens dropped, words joined by spaces)."""
        return [
            " ".join(self.itos[i] for i in row if i not in (self.bos_id, self.pad_id))
            for row in tokens.tolist()
        ]

    def word_positions(self, prompt: str) -> list[tuple[str, int]]:
        """[(word, token index)] for each word of the prompt; <bos> is index 0."""
        return [(w, i + 1) for i, w in enumerate(self._check(prompt))]

    def token_index(self, prompt: str, word: str) -> list[int]:
        """Token indices at which `word` occurs in `prompt` (Prompt-to-Prompt uses these)."""
        positions = self.word_positions(prompt)
        idx = [i for w, i in positions if w == word.lower()]
        if not idx:
            raise ValueError(f"word {word!r} is not in the prompt {[w for w, _ in positions]}")
        return idx

    def to_dict(self) -> dict:
        """JSON-serialisable form (stored in a checkpoint's config)."""
        return {"words": self.words, "max_len": self.max_len}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        return cls(d["words"], d["max_len"])


@dataclass
class TextEncoderConfig:
    vocab_size: int
    max_len: int = 24
    dim: int = 64
    depth: int = 2
    heads: int = 4


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x += Attn(LN(x)); x += MLP(LN(x)) (bidirectional, no mask)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, None, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))  # (B, L, dim)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Token + learned positional embeddings, `depth` pre-norm layers, final LayerNorm."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Parameter(0.02 * torch.randn(cfg.max_len, cfg.dim))
        self.layers = nn.ModuleList(EncoderLayer(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, L) long, L <= max_len -> (B, L, dim)."""
        if tokens.ndim != 2 or tokens.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"tokens must have shape (B, L) with L <= {self.cfg.max_len}, "
                f"got {tuple(tokens.shape)}"
            )
        x = self.tok_emb(tokens) + self.pos_emb[: tokens.shape[1]]  # (B, L, dim)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
