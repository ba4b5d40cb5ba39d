"""Prompt-to-Prompt (Hertz et al., ICLR 2023): edit by re-using the cross-attention maps.

A cross-attention layer computes, for every pixel i and text token j,

    M_t[i, j] = softmax_j( Q_i . K_j / sqrt(d) )        Q from the image, K from the prompt

so M_t says *where* each word is drawn. Denoise the source prompt P and the target
prompt P* from the same x_T side by side, and in the target's pass replace its maps
M*_t by an edit of the source's M_t (the attention hook of `nn.attention`):

    word swap (Replace):  Edit(M_t, M*_t, t) = M_t  for t in the injection window, else M*_t
    refinement (Refine):  (Edit)_{i,j} = (M*_t)_{i,j} if A(j) = None else (M_t)_{i,A(j)}
                          A(j): the source token aligned with target token j (added words: None)
    re-weighting:         (Edit)_{i,j} = c * (M_t)_{i,j} if j is a re-weighted word else (M_t)_{i,j}
    self-attention:       the target's self-attention maps are replaced by the source's for the
                          first `self_steps` of the steps (keeps the layout; reference code option)
    local blend:          after each step, x*_t <- x_t + m * (x*_t - x_t), m a binary mask from the
                          (accumulated) cross-attention maps of chosen words in P and P*

The injection window (paper's tau) is a fraction of the sampling steps, counted from the
first (noisiest) step: cross_steps = 0.8 injects during the first 80% of the steps. It may
be given per word ({"default": 0.8, "square": 0.3}) and as (start, end) fractions. Windows, batch
rows and token alignments are computed in `p2p_alignment`.

Batch layout. A controller edits G independent (source, target) pairs at once. The
conditional rows of a UNet call are [source_1..source_G, target_1..target_G]; under
classifier-free guidance the UNet batch is [null rows; conditional rows] (2 * 2G rows,
`guidance.classifier_free_guidance` order) and only the conditional half is edited, as in
the reference implementation. Maps are averaged over heads where they are *stored*; edits
act per head.

    ctrl = Replace(model.tokenizer, ["a red circle ..."], ["a green circle ..."], grid=timesteps(1000, 50))
    x_src, x_tgt = p2p_sample(model, ctrl, x_T, guidance=Guidance.of(model, 3.0))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .attention_control import AttentionController, AttentionInfo, attention_control
from .checks import check_number
from .guidance import Guidance, cfg_eps, check_guidance
from .p2p_alignment import (
    Window,
    conditional_rows,
    cross_alphas,
    refinement_mapper,
    window_mask,
    word_columns,
    word_swap_mapper,
)
from .samplers import ddim_coefficients, ddim_update
from .schedule import check_grid, step_pairs, t_batch

if TYPE_CHECKING:  # annotations only: p2p works with any tokenizer of that interface
    from .nn.text import Tokenizer

# ---- storing maps -----------------------------------------------------------------------------

class AttentionStore(AttentionController):
    """Records cross-attention maps, averaged over heads, summed over the steps seen.

    `n_prompts` conditional rows are kept (the conditional half under CFG). After sampling,
    `maps(resolution)` is the average over layers at that resolution and over the steps:
    (n_prompts, r, r, L), each pixel's row a distribution over the L tokens.
    """

    def __init__(self, n_prompts: int, self_attention: bool = False):
        self.n = n_prompts
        self.keep_self = self_attention
        self.sums: dict[tuple[str, int], Tensor] = {}  # (kind, resolution) -> (n, HW, N_k) summed
        self.counts: dict[tuple[str, int], int] = {}

    def observe(self, probs: Tensor, info: AttentionInfo) -> None:
        if info.kind == "self" and not self.keep_self:
            return
        rows = probs[conditional_rows(probs.shape[0], self.n)].mean(dim=1)  # (n, HW, N_k)
        key = (info.kind, info.resolution[0])
        rows = rows.detach().to(torch.promote_types(rows.dtype, torch.float32))  # sums over steps: >= float32
        self.sums[key] = self.sums.get(key, 0) + rows
        self.counts[key] = self.counts.get(key, 0) + 1

    def __call__(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        self.observe(probs, info)
        return probs

    def resolutions(self, kind: str = "cross") -> list[int]:
        return sorted(r for k, r in self.sums if k == kind)

    def maps(self, resolution: int, kind: str = "cross") -> Tensor:
        """Mean map over layers and steps at `resolution`: (n, r, r, N_k)."""
        key = (kind, resolution)
        if key not in self.sums:
            raise ValueError(f"no {kind}-attention maps at resolution {resolution}; stored: {self.resolutions(kind)}")
        m = self.sums[key] / self.counts[key]  # (n, r*r, N_k)
        return m.view(self.n, resolution, resolution, -1)


def word_maps(store: AttentionStore, tokenizer: Tokenizer, prompt: str, row: int = 0,
              resolution: int | None = None) -> tuple[list[str], Tensor]:
    """Per-word heat maps of one stored prompt: (words, (n_words, r, r)); r defaults to the
    largest stored cross-attention resolution."""
    r = resolution if resolution is not None else max(store.resolutions("cross"))
    positions = tokenizer.word_positions(prompt)
    m = store.maps(r)[row]  # (r, r, L)
    return [w for w, _ in positions], torch.stack([m[..., i] for _, i in positions])


# ---- editing controllers ----------------------------------------------------------------------

def word_weights(tokenizer: Tokenizer, prompts: list[str], words: list[list[str]],
                 device: torch.device | str | None = None) -> Tensor:
    """(B, L) indicator of the tokens of `words[b]` in prompts[b]: which maps make row b's mask. On `device` (the
    maps' device where they exist; controllers built before any map keep it on the CPU and `word_mask` moves it)."""
    weights = torch.zeros(len(prompts), tokenizer.max_len, device=device)
    for b, (prompt, ws) in enumerate(zip(prompts, words, strict=True)):
        for w in ws:
            weights[b, tokenizer.token_index(prompt, w)] = 1.0
    return weights


def word_mask(maps: Tensor, weights: Tensor, size: tuple[int, int], threshold: float = 0.3) -> Tensor:
    """The binary mask of chosen words' cross-attention, P2P's local blend (`LocalBlend`):

        m = threshold( minmax( upsample( maxpool3x3( sum_w weights[w] * M_w ) ) ) )

    maps: (B, r, r, L) attention maps; weights: (B, L) (`word_weights`) -> (B, 1, H, W) in maps' dtype, 0 or 1.
    Min-max per image, not the reference's max-only normalisation (see `LocalBlend`)."""
    m = (maps * weights.to(maps)[:, None, None, :]).sum(-1)[:, None]  # (B, 1, r, r)
    m = F.max_pool2d(m, kernel_size=3, stride=1, padding=1)
    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    lo, hi = m.amin(dim=(1, 2, 3), keepdim=True), m.amax(dim=(1, 2, 3), keepdim=True)
    return ((m - lo) / (hi - lo).clamp_min(1e-12) > threshold).to(maps.dtype)


class LocalBlend:
    """Local blend: keep the target equal to the source outside the edited words' mask.

        m_g = threshold( minmax( maxpool3x3( sum_{w in words_g} M_w ) ) ) for source and target,
        mask = m_source OR m_target,    x*_t <- x_t + mask * (x*_t - x_t)

    M_w are the cross-attention maps at `resolution` (`LocalBlend.for_model` takes the largest
    attention resolution of the model's UNet config; never hard-coded) summed over all steps so far,
    upsampled to x_t's size. Applied after each step from `start` (fraction of steps) on.
    `source_words[g]` / `target_words[g]` are the words of pair g whose maps make the mask
    (an empty list: that row's mask is the whole image, so the pair is not blended).

    The reference divides by the max only. The small models here attend diffusely (a word's
    map rarely falls below ~0.25 of its max, measured on `shapes`), so that left masks of the
    whole image; min-max normalisation keeps the threshold meaningful. Words whose maps are
    localised make good masks: on `shapes` the colour words are, the shape words much less.
    """

    def __init__(self, tokenizer: Tokenizer, sources: list[str], targets: list[str],
                 source_words: list[list[str]], target_words: list[list[str]], resolution: int,
                 threshold: float = 0.3, start: float = 0.2):
        if not (len(sources) == len(targets) == len(source_words) == len(target_words)):
            raise ValueError("LocalBlend needs one list of words per (source, target) pair")
        self.weights = word_weights(tokenizer, sources + targets, source_words + target_words)  # (2G, L)
        self.G, self.resolution, self.threshold, self.start = len(sources), resolution, threshold, start
        self.store = AttentionStore(2 * len(sources))
        self.last_mask: Tensor | None = None

    @classmethod
    def for_model(cls, model, sources: list[str], targets: list[str], source_words: list[list[str]],
                  target_words: list[list[str]], **kwargs) -> LocalBlend:
        """A LocalBlend at the largest cross-attention resolution of `model.unet.cfg`."""
        return cls(model.tokenizer, sources, targets, source_words, target_words,
                   resolution=max(model.unet.cfg.attention_resolutions), **kwargs)

    def observe(self, probs: Tensor, info: AttentionInfo) -> None:
        if info.kind == "cross" and info.resolution[0] == self.resolution:
            self.store.observe(probs, info)

    def mask(self, size: tuple[int, int]) -> Tensor:
        """(G, 1, H, W) binary mask, the union of each pair's source and target masks."""
        m = word_mask(self.store.maps(self.resolution), self.weights, size, self.threshold).float()  # (2G, 1, H, W)
        m[self.weights.sum(1) == 0] = 1.0  # a row without blend words: no blending (mask of ones)
        return ((m[:self.G] + m[self.G:]) > 0).float()

    def __call__(self, x: Tensor, i: int, n_steps: int) -> Tensor:
        """x: (2G, C, H, W) rows [sources; targets] after step i -> blended x."""
        if i < int(self.start * n_steps):
            return x
        mask = self.mask(tuple(x.shape[-2:])).to(x)  # (G, 1, H, W)
        self.last_mask = mask
        src, tgt = x[:self.G], x[self.G:]
        return torch.cat([src, src + mask * (tgt - src)])


class AttentionEdit(AttentionController):
    """Base of the P2P edits: injection schedules, batch layout, stores and local blend.

    Subclasses define `edit_cross(base, target, i)`: base (G, heads, HW, L) source maps,
    target (G, heads, HW, L) the target's own maps -> the injected maps. Outside the cross
    window (per token, `cross_alphas`) the target keeps its own maps:

        M*_t <- alpha * edit_cross(M_t, M*_t) + (1 - alpha) * M*_t      alpha in {0, 1}

    Self-attention: for steps inside `self_steps` and resolutions <= `self_max_resolution`
    (None: all), the target's self-attention maps are the source's.
    """

    def __init__(self, tokenizer: Tokenizer, sources: list[str] | str, targets: list[str] | str, grid: Tensor,
                 cross_steps: Window | dict[str, Window] = 0.8, self_steps: Window = 0.0,
                 self_max_resolution: int | None = None, local_blend: LocalBlend | None = None,
                 store: AttentionStore | None = None):
        self.sources = [sources] if isinstance(sources, str) else list(sources)
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        if len(self.sources) != len(self.targets) or not self.sources:
            raise ValueError(f"need one target prompt per source prompt, got {len(self.sources)} sources and "
                             f"{len(self.targets)} targets")
        self.tokenizer = tokenizer
        tokenizer.encode(self.sources + self.targets)  # unknown words -> a clear error now, not mid-sampling
        self.grid = check_grid(torch.as_tensor(grid), 10**9)
        self.n_steps = len(self.grid) - 1
        self.step_of = {t: i for i, t in enumerate(self.grid[:-1].tolist())}
        self.alpha = cross_alphas(tokenizer, self.targets, cross_steps, self.n_steps)  # (S, G, L)
        self.self_mask = window_mask(self_steps, self.n_steps, "self_steps")  # (S,)
        self.self_max_resolution = self_max_resolution
        self.local_blend, self.store = local_blend, store
        self.G = len(self.sources)

    @property
    def prompts(self) -> list[str]:
        """The conditional rows: sources then targets."""
        return self.sources + self.targets

    def step(self, info: AttentionInfo) -> int:
        t = int(info.t[0])
        if t not in self.step_of:
            raise ValueError(f"timestep {t} is not on this controller's grid {self.grid.tolist()}")
        return self.step_of[t]

    def edit_cross(self, base: Tensor, target: Tensor, i: int) -> Tensor:
        """The injected maps; the base class injects nothing (the target keeps its own maps)."""
        return target

    def cross(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        for observer in (self.store, self.local_blend):
            if observer is not None:
                observer.observe(probs, info)
        i, rows = self.step(info), conditional_rows(probs.shape[0], 2 * self.G)
        cond = probs[rows]  # (2G, heads, HW, L)
        base, target = cond[:self.G], cond[self.G:]
        alpha = self.alpha[i].to(probs.device)[:, None, None, :] > 0  # (G, 1, 1, L), binary
        if not alpha.any():
            return probs
        new = torch.where(alpha, self.edit_cross(base, target, i), target)
        out = probs.clone()
        out[rows] = torch.cat([base, new])
        return out

    def self_attention(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        if self.store is not None:
            self.store.observe(probs, info)
        i = self.step(info)
        small = self.self_max_resolution is None or info.resolution[0] <= self.self_max_resolution
        if not (self.self_mask[i] and small):
            return probs
        rows = conditional_rows(probs.shape[0], 2 * self.G)
        out = probs.clone()
        cond = out[rows]
        cond[self.G:] = cond[:self.G]
        out[rows] = cond
        return out

    def after_step(self, x: Tensor, i: int) -> Tensor:
        """Called by `p2p_sample` with x_{t_prev} (2G, ...) after step i: applies the local blend."""
        return x if self.local_blend is None else self.local_blend(x, i, self.n_steps)


class Replace(AttentionEdit):
    """Word swap: the target uses the source's maps, M*_t <- M_t (prompts of equal word count)."""

    def __init__(self, tokenizer: Tokenizer, sources, targets, grid: Tensor, **kwargs):
        super().__init__(tokenizer, sources, targets, grid, **kwargs)
        for s, t in zip(self.sources, self.targets, strict=True):
            word_swap_mapper(tokenizer, s, t)  # raises on different word counts

    def edit_cross(self, base: Tensor, target: Tensor, i: int) -> Tensor:
        return base


class Refine(AttentionEdit):
    """Refinement: aligned target tokens take their source token's maps, added words keep their own."""

    def __init__(self, tokenizer: Tokenizer, sources, targets, grid: Tensor, **kwargs):
        super().__init__(tokenizer, sources, targets, grid, **kwargs)
        pairs = [refinement_mapper(tokenizer, s, t) for s, t in zip(self.sources, self.targets, strict=True)]
        self.mapper = torch.stack([m for m, _ in pairs])  # (G, L)
        self.aligned = torch.stack([a for _, a in pairs])  # (G, L)

    def edit_cross(self, base: Tensor, target: Tensor, i: int) -> Tensor:
        idx = self.mapper.to(base.device)[:, None, None, :].expand(-1, *base.shape[1:3], -1)  # (G, heads, HW, L)
        moved = base.gather(-1, idx)  # moved[..., j] = base[..., mapper[j]]
        return torch.where(self.aligned.to(base.device)[:, None, None, :] > 0, moved, target)


class Reweight(AttentionEdit):
    """Re-weighting: scale the maps of chosen target words by c, (Edit)_{i,j} = c_j * (M_t)_{i,j}.

    `weights` = {word: c}, applied wherever the word occurs in a target. `base_edit` (a Replace or
    Refine built for the same prompts) is applied first, as the reference's `prev_controller`;
    without it the target starts from
    the source maps, so re-weighting a copy of the source prompt with c = 1 changes nothing.
    """

    def __init__(self, tokenizer: Tokenizer, sources, targets, grid: Tensor, weights: dict[str, float],
                 base_edit: AttentionEdit | None = None, **kwargs):
        super().__init__(tokenizer, sources, targets, grid, **kwargs)
        self.equalizer = torch.ones(self.G, tokenizer.max_len)  # (G, L)
        for word, c in weights.items():
            check_number(c, f"the re-weighting factor of {word!r}", lo=0)
            for g, idx in enumerate(word_columns(tokenizer, self.targets, word, "re-weighting")):
                self.equalizer[g, idx] = float(c)
        if base_edit is not None and base_edit.prompts != self.prompts:
            raise ValueError("base_edit must be built for the same source and target prompts")
        self.base_edit = base_edit

    def edit_cross(self, base: Tensor, target: Tensor, i: int) -> Tensor:
        m = base if self.base_edit is None else self.base_edit.edit_cross(base, target, i)
        return m * self.equalizer.to(base)[:, None, None, :]


# ---- sampling ---------------------------------------------------------------------------------

@torch.no_grad()
def p2p_sample(model, controller: AttentionEdit, x_T: Tensor, guidance: Guidance | None = None,
               null_embeddings: Tensor | None = None,
               callback: Callable[[dict], None] | None = None, progress: bool = False,
               noise: Tensor | None = None, eta: float = 0.0, offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Denoise sources and targets side by side from the same x_T under `controller` (DDIM, eta = 0; with `noise`
    (S, G, C, h, w) and eta > 0, DDIM with eta injecting noise[i] into both rows of pair g at step i: the decoder of
    edit-friendly DDPM inversion + P2P, `noise_space.edit_friendly_p2p`).

        eps~ = cfg_eps(eps(x_t, t, null_i), eps(x_t, t, c), w)          rows [sources; targets]
        x_{t_prev} = ddim_step(x_t, eps~);  x_{t_prev} = controller.after_step(x_{t_prev}, i)   (local blend)

    x_T: (G, C, h, w), the starting noise (or inverted latents) of each pair, shared by source and target.
    `guidance`: Guidance(null_context, w), or None for the conditional model alone. `null_embeddings`: None
    (guidance.null_context at every step) or (S, G, L, D) per-step null embeddings from `null_text_invert`,
    used for the pair's source and target rows (as the reference). `offsets`: None or (S, 2G, C, h, w) added to
    the rows [sources; targets] after step i, before the local blend (Direct Inversion, `baselines.direct_inversion`).
    Returns (x0_sources, x0_targets), each (G, C, h, w), in the model's space (`model.decode` for latent models).
    """
    G, grid = controller.G, controller.grid
    _check_p2p_inputs(model, controller, x_T, guidance, null_embeddings, offsets)
    _check_noise(noise, eta, (controller.n_steps, *x_T.shape))
    context = model.encode_text(controller.prompts)  # (2G, L, D)
    x = torch.cat([x_T, x_T])  # (2G, C, h, w)
    coefs = ddim_coefficients(model.schedule, grid[:-1], grid[1:], eta).tolist()  # (S, 5): the DDIM steps
    with attention_control(model.unet, controller):
        for i, (t_int, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc="P2P")):
            t = t_batch(t_int, x)
            if guidance is None:
                eps = model(x, t, context)
            else:
                null = _null_rows(guidance, null_embeddings, i, 2 * G).to(context)
                eps_u, eps_c = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, context])).chunk(2)
                eps = cfg_eps(eps_u, eps_c, guidance.w)
            n = None if noise is None else torch.cat([noise[i], noise[i]])  # one noise per pair, both rows
            x_prev = ddim_update(x, eps, coefs[i], n)  # ddim_step
            x_prev = controller.after_step(x_prev if offsets is None else x_prev + offsets[i], i)  # local blend
            if callback is not None:
                callback({"i": i, "t": t_int, "t_prev": t_prev, "x_t": x, "eps": eps, "x_prev": x_prev})
            x = x_prev
    return x[:G], x[G:]


def _check_noise(noise: Tensor | None, eta: float, shape: tuple) -> None:
    if (noise is None) != (eta == 0):
        raise ValueError(f"p2p_sample needs noise with eta > 0 and no noise at eta = 0, got eta = {eta} and "
                         f"{'no noise' if noise is None else 'noise'}")
    if noise is not None and tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape (steps, G, ...) = {shape}, got {tuple(noise.shape)}")


def _null_rows(guidance: Guidance, null_embeddings: Tensor | None, i: int, rows: int) -> Tensor:
    """The null condition of step i for the `rows` = 2G conditional rows [sources; targets]."""
    if null_embeddings is not None:
        return null_embeddings[i].repeat(2, 1, 1)  # (2G, L, D): pair g's embedding for its source and target
    null = guidance.null_context
    return null.expand(rows, *null.shape[1:])


def _check_p2p_inputs(model, controller: AttentionEdit, x_T: Tensor, guidance: Guidance | None,
                      null_embeddings: Tensor | None, offsets: Tensor | None = None) -> None:
    G, grid, S = controller.G, controller.grid, controller.n_steps
    if offsets is not None and tuple(offsets.shape) != (S, 2 * G, *x_T.shape[1:]):
        raise ValueError(f"offsets must be (steps, 2G, ...) = {(S, 2 * G, *x_T.shape[1:])}, got {tuple(offsets.shape)}")
    if x_T.shape[0] != G:
        raise ValueError(f"x_T has {x_T.shape[0]} rows but the controller has {G} (source, target) pairs")
    if int(grid[0]) > model.schedule.T:
        raise ValueError(f"the controller's grid starts at t = {int(grid[0])} > T = {model.schedule.T}")
    check_guidance(guidance)
    if null_embeddings is not None and guidance is None:
        raise ValueError("null_embeddings replace the null condition of classifier-free guidance; pass guidance too")
    if null_embeddings is not None and null_embeddings.shape[:2] != (S, G):
        raise ValueError(f"null_embeddings must be (steps={S}, pairs={G}, L, D), got {tuple(null_embeddings.shape)}")
