"""Prompt-to-Prompt's bookkeeping (lecture 5): which rows of a UNet batch are conditional, when to inject
(per-step windows, per-word schedules), and which target token reads which source token (word swap, refinement
by the reference code's global alignment). The controllers that use them are in `p2p`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only: any tokenizer of that interface works
    from .nn.text import Tokenizer

Window = float | tuple[float, float]


def conditional_rows(batch: int, n: int) -> slice:
    """Rows of a UNet batch of size `batch` that carry the n conditional prompts: the second
    half under classifier-free guidance (batch = 2n), all of them without (batch = n)."""
    if batch == 2 * n:
        return slice(n, 2 * n)
    if batch == n:
        return slice(0, n)
    raise ValueError(f"attention batch of {batch} rows does not fit {n} prompts: expected {n} (no guidance) "
                     f"or {2 * n} ([null; conditional] rows of classifier-free guidance)")


def _window(w: Window, what: str) -> tuple[float, float]:
    start, end = (0.0, float(w)) if isinstance(w, (int, float)) else (float(w[0]), float(w[1]))
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1] or (start, end) with 0 <= start <= end <= 1, got {w!r}")
    return start, end


def window_mask(w: Window, n_steps: int, what: str = "window") -> Tensor:
    """(n_steps,) bool: step i is inside the window (fractions of the steps, first step = 0)."""
    start, end = _window(w, what)
    i = torch.arange(n_steps)
    return (i >= int(start * n_steps)) & (i < int(end * n_steps))


def word_columns(tokenizer: Tokenizer, prompts: list[str], word: str, what: str) -> list[list[int]]:
    """Token indices of `word` in each prompt (empty where it does not occur); a word that occurs in
    no prompt is an error naming `what` asked for it."""
    cols = [[i for x, i in tokenizer.word_positions(p) if x == word.lower()] for p in prompts]
    if not any(cols):
        raise ValueError(f"{what} names the word {word!r}, which is in no target prompt {prompts}")
    return cols


def cross_alphas(tokenizer: Tokenizer, targets: list[str], cross_steps: Window | dict[str, Window],
                 n_steps: int) -> Tensor:
    """alpha[i, g, j] in {0, 1}: inject the source's maps into target g's token j at step i.

    `cross_steps` is one window for all tokens, or {"default": window, word: window, ...}
    for per-word schedules (the words must occur in every target prompt that they concern).
    Returns (n_steps, G, L) float.
    """
    per_word = dict(cross_steps) if isinstance(cross_steps, dict) else {"default": cross_steps}
    default = per_word.pop("default", 1.0)
    alpha = window_mask(default, n_steps, "cross_steps")[:, None, None].float()
    alpha = alpha.repeat(1, len(targets), tokenizer.max_len)  # (n_steps, G, L)
    for word, w in per_word.items():
        mask = window_mask(w, n_steps, f"cross_steps[{word!r}]")[:, None].float()
        for g, idx in enumerate(word_columns(tokenizer, targets, word, "cross_steps")):
            alpha[:, g, idx] = mask
    return alpha


def word_swap_mapper(tokenizer: Tokenizer, source: str, target: str) -> Tensor:
    """Token map of a word swap: the identity (L,), after checking the prompts have the same
    number of words (P2P's Replace swaps tokens in place; added words need `Refine`)."""
    s, t = tokenizer.split(source), tokenizer.split(target)
    tokenizer.encode([source, target])  # unknown words / too long -> clear errors
    if len(s) != len(t):
        raise ValueError(f"a word swap needs prompts with the same number of words; source has {len(s)} {s}, "
                         f"target has {len(t)} {t} (use Refine for added words)")
    return torch.arange(tokenizer.max_len)


def global_alignment(source: list, target: list) -> list[int | None]:
    """Needleman-Wunsch global alignment of two token sequences, scored and traced back as Prompt-to-Prompt's
    reference code does it (google/prompt-to-prompt `seq_aligner.py`): match 1, mismatch -1, gap 0,

        S[i][j] = max(S[i][j-1] + 0,  S[i-1][j] + 0,  S[i-1][j-1] + (1 if source[i-1] == target[j-1] else -1))

    with S[0][.] = S[.][0] = 0; ties prefer, in this order, a target insertion (left), a source deletion (up),
    the diagonal; the path is traced back from (len(source), len(target)). With gap 0 a mismatch never wins, so
    only equal tokens are paired. Returns A with A[j] = the source position aligned with target position j, or
    None for an inserted target token.
    """
    n, m = len(source), len(target)
    S = [[0] * (m + 1) for _ in range(n + 1)]
    move = [["left"] * (m + 1)] + [["up"] + [""] * m for _ in range(n)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            left, up = S[i][j - 1], S[i - 1][j]
            diag = S[i - 1][j - 1] + (1 if source[i - 1] == target[j - 1] else -1)
            S[i][j] = max(left, up, diag)
            move[i][j] = "left" if S[i][j] == left else "up" if S[i][j] == up else "diag"
    A: list[int | None] = [None] * m
    i, j = n, m
    while i > 0 or j > 0:
        if move[i][j] == "diag":
            i, j = i - 1, j - 1
            A[j] = i
        elif move[i][j] == "left":
            j -= 1  # target token j inserted
        else:
            i -= 1  # source token i dropped
    return A


def refinement_mapper(tokenizer: Tokenizer, source: str, target: str) -> tuple[Tensor, Tensor]:
    """Alignment A of refinement: (mapper (L,), alpha (L,)), as the reference computes it.

    Target token j takes the source maps of token mapper[j] where alpha[j] = 1; target words absent from the
    source (alpha 0, mapper 0) keep their own maps. The token sequences [<bos>, words..., <end>] are aligned by
    `global_alignment` (the first <pad> plays the end token of the reference's CLIP tokenizer); every later
    position k maps to source position k (the reference's position-to-position padding). Among equally good
    alignments the traceback from the end takes target insertions first, so a repeated phrase aligns with its
    first occurrence ("a red circle" -> "a red circle AND A RED CIRCLE"), and a word repeated in the added
    phrase can take the source's maps while a later copy counts as new ("a red circle on the left on a white
    background" -> "a red circle on the left and a blue square on the right on a white background": the "on" of
    "on the right" gets the maps of the source's "on a white background", the "on" after "right" is new).
    """
    s, t = tokenizer.split(source), tokenizer.split(target)
    ids = tokenizer.encode([source, target])  # unknown words / too long -> clear errors
    L = tokenizer.max_len
    src, tgt = ids[0, : len(s) + 2].tolist(), ids[1, : len(t) + 2].tolist()  # with the end token, if it fits
    A = global_alignment(src, tgt)
    mapper = torch.tensor([0 if a is None else a for a in A] + list(range(len(tgt), L)), dtype=torch.long)
    alpha = torch.tensor([0.0 if a is None else 1.0 for a in A] + [1.0] * (L - len(tgt)))
    return mapper, alpha
