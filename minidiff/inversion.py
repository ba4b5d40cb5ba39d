"""Editing by inversion (lecture 3): SDEdit's naive noising and deterministic DDIM inversion.

Both are pure functions over an eps-model callable `eps_model(x_t, t, context)` and reuse the
samplers' timestep grids (`schedule.timesteps`, descending, ending at t = 0 where alpha_bar = 1).

- `sdedit`: x_{t0} ~ q(x_{t0} | x_0), then DDIM from t0 down to 0 (Meng et al. 2022).
- `ddim_invert`: run deterministic DDIM (eta = 0) backwards, x_0 -> x_T, so that
  `ddim_sample(ddim_invert(x0))` ~= x0 (Song et al. 2021, sec. 4.3 / 5.4; Dhariwal & Nichol 2021).
  The model is evaluated at the *target* timestep on the *current* point, eps(x_{t_prev}, t),
  in place of the unknown eps(x_t, t): the local-linearity approximation. See `ddim_invert`.
- `null_text_invert`: DDIM inversion at w = 1 gives a pivot trajectory; then, step by step, the
  null-text embedding is optimised so that guided sampling at w > 1 follows it (Mokady et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .gaussian import q_sample
from .samplers import EpsModel, check_grid, ddim_sample, ddim_step, timestep_pair, with_guidance
from .schedule import Schedule, timesteps


def ddim_invert_step(sched: Schedule, x_prev: Tensor, eps: Tensor, t_prev: int | Tensor, t: int | Tensor) -> Tensor:
    """The deterministic DDIM step (eq. 12, eta = 0) taken upwards, from t_prev to t > t_prev:

        x0_pred = (x_{t_prev} - sqrt(1 - ab_prev) eps) / sqrt(ab_prev)
        x_t     = sqrt(ab_t) * x0_pred + sqrt(1 - ab_t) * eps

    It is the exact inverse of `ddim_step(sched, x_t, eps, t, t_prev, eta=0)` for the same eps.
    x_prev, eps: (B, ...); t_prev, t: ints or (B,) integer tensors, 0 <= t_prev < t <= T.
    """
    if eps.shape != x_prev.shape:
        raise ValueError(f"eps shape {tuple(eps.shape)} must equal x_prev shape {tuple(x_prev.shape)}")
    t_idx, t_prev_idx = timestep_pair(sched, t, t_prev)
    ab, ab_prev = sched.alpha_bar[t_idx], sched.alpha_bar[t_prev_idx]  # (B,) float64
    shape = (-1, *([1] * (x_prev.ndim - 1)))

    def coef(c: Tensor) -> Tensor:  # (B,) float64 -> (B, 1, ...) in x_prev's dtype and device
        return c.to(x_prev).view(shape)

    x0_pred = (x_prev - coef((1 - ab_prev).sqrt()) * eps) / coef(ab_prev.sqrt())
    return coef(ab.sqrt()) * x0_pred + coef((1 - ab).sqrt()) * eps


@torch.no_grad()
def ddim_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, steps: int = 50, context: Tensor | None = None,
                guidance: tuple[Tensor, float] | None = None, spacing: str = "leading", grid: Tensor | None = None,
                callback: Callable[[dict], None] | None = None, progress: bool = False) -> Tensor:
    """DDIM inversion x_0 -> x_T over the sampler's grid walked upwards: (0, tau_1), (tau_1, tau_2), ...

        eps = eps_model(x_{t_prev}, t, context)       model at the TARGET t, on the current x_{t_prev}
        x_t = sqrt(ab_t) (x_{t_prev} - sqrt(1 - ab_prev) eps) / sqrt(ab_prev) + sqrt(1 - ab_t) eps

    The sampling step t -> t_prev uses eps(x_t, t); x_t is what we are solving for, so inversion
    uses eps(x_{t_prev}, t) ~= eps(x_t, t): the local-linearity approximation (eps changes little
    over one step). Evaluating at the target t (as diffusers' DDIMInverseScheduler and null-text
    inversion do) makes the only approximation the x argument: the round trip is exact for any
    eps-model that does not depend on x, and the model is never asked about t = 0, where it was
    not trained. The error grows with the step size and with guidance w (see experiments).

    x0: (B, ...). `guidance = (null_context, w)` inverts the classifier-free-guided model.
    `callback` gets {"i", "t_prev", "t", "x_prev", "eps", "x0_pred", "x_t"} after each step:
    the inversion trajectory. Returns x_T (B, ...) at t = grid[0].
    """
    grid = timesteps(sched.T, steps, spacing) if grid is None else check_grid(grid, sched.T)
    model = with_guidance(eps_model, guidance)
    up = grid.flip(0).tolist()  # 0 = t_0 < tau_1 < ... < tau_S
    x = x0
    for i, (t_prev, t_int) in enumerate(tqdm(list(zip(up[:-1], up[1:], strict=True)), disable=not progress,
                                             desc="DDIM inversion")):
        t = torch.full((x.shape[0],), t_int, dtype=torch.long, device=x.device)
        eps = model(x, t, context)
        x_next = ddim_invert_step(sched, x, eps, t_prev, t_int)
        if callback is not None:
            ab_prev = sched.alpha_bar[t_prev].item()
            callback({"i": i, "t_prev": t_prev, "t": t_int, "x_prev": x, "eps": eps,
                      "x0_pred": (x - (1 - ab_prev) ** 0.5 * eps) / ab_prev**0.5, "x_t": x_next})
        x = x_next
    return x


def sdedit_grid(T: int, t0: int, steps: int = 50, spacing: str = "leading") -> Tensor:
    """SDEdit's grid: t0 followed by the part below t0 of the full sampling grid `timesteps(T, steps, spacing)`.

    So the step size is that of a plain `steps`-step DDIM run, and about steps * t0 / T steps are taken
    (the same convention as diffusers' img2img strength = t0 / T). Descending, ends at 0.
    """
    if not isinstance(t0, int) or not 1 <= t0 <= T:
        raise ValueError(f"t0 must be an integer timestep in 1..T = 1..{T}, got {t0!r}")
    full = timesteps(T, steps, spacing)
    return torch.cat([torch.tensor([t0]), full[full < t0]])


@torch.no_grad()
def sdedit(eps_model: EpsModel, sched: Schedule, x0: Tensor, t0: int, steps: int = 50,
           context: Tensor | None = None, eta: float = 0.0, spacing: str = "leading", eps: Tensor | None = None,
           noise: Tensor | None = None, generator: torch.Generator | None = None,
           callback: Callable[[dict], None] | None = None, progress: bool = False) -> Tensor:
    """SDEdit (Meng et al. 2022) with a DDIM sampler: noise the input, then denoise it under `context`.

        x_{t0} = sqrt(ab_{t0}) x_0 + sqrt(1 - ab_{t0}) eps,   eps ~ N(0, I)       (a draw from q(x_{t0} | x_0))
        x_0'   = ddim_sample(x_{t0}) over sdedit_grid(T, t0, steps, spacing)

    Small t0 keeps x_0' close to x_0 (faithful, little edit); t0 = T forgets x_0 entirely.
    x0: (B, ...); `eps` (x0's shape) is the forward noise; `noise` (n_steps, *x0.shape) the per-step
    noise of eta > 0, with n_steps = len(sdedit_grid(...)) - 1. Returns x_0' (B, ...).
    """
    grid = sdedit_grid(sched.T, t0, steps, spacing)
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    elif eps.shape != x0.shape:
        raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
    x_t0 = q_sample(sched, x0, torch.full((x0.shape[0],), t0, dtype=torch.long), eps)
    return ddim_sample(eps_model, sched, x_t0, eta=eta, context=context, grid=grid, noise=noise,
                       generator=generator, callback=callback, progress=progress)


@dataclass
class NullTextInversion:
    """What `null_text_invert` returns, and what editing needs.

    x_T:             (B, ...) the pivot's noisy end, the start of reconstruction / editing
    null_embeddings: (S, B, L, D) the optimised null-text embedding of each sampling step i
                     (i = 0 is the first, noisiest step), for `p2p_sample` / `sample`
    pivots:          (S + 1, B, ...) the w = 1 DDIM inversion trajectory, pivots[0] = x_0 ... pivots[S] = x_T
    losses:          (S,) the final inner loss of each step (max over the batch)
    iterations:      (S,) inner iterations used at each step (early stop)
    grid:            the descending sampling grid
    """

    x_T: Tensor
    null_embeddings: Tensor
    pivots: Tensor
    losses: Tensor
    iterations: Tensor
    grid: Tensor


def null_text_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor, null_context: Tensor,
                     w: float = 7.5, steps: int = 50, inner_steps: int = 10, lr: float = 1e-2,
                     early_stop: float = 1e-5, spacing: str = "leading", grid: Tensor | None = None,
                     progress: bool = False) -> NullTextInversion:
    """Null-text inversion (Mokady et al., CVPR 2023, Algorithm 1).

    1. Pivot: DDIM inversion with w = 1 (conditional model only, where it is accurate):
       x*_0 = x0, x*_1, ..., x*_T.
    2. x~_T = x*_T; for each sampling step t -> t_prev (i = 0..S-1), starting from the previous
       step's embedding (the first from `null_context`), minimise over the null embedding
       null_t, with Adam (lr * (1 - i / (2 S)): the reference's 1e-2 * (1 - i / 100) at S = 50),
       for at most `inner_steps` iterations:

           || x*_{t_prev} - ddim_step( x~_t, eps_u(null_t) + w (eps_c - eps_u(null_t)) ) ||^2

       stopping early once every image's loss is below early_stop + 2e-5 * i * 50 / S (the
       reference's epsilon + i * 2e-5), then x~_{t_prev} = that step with the final null_t.
    eps_c = eps(x~_t, t, context) is computed once per step (it does not depend on null_t).

    x0: (B, ...); context: (B, L, D) the source prompt; null_context: (1 or B, L, D), the encoded "".
    Each image gets its own embedding; the losses are summed over the batch (so each image's
    gradient is its own) and the early stop waits for the slowest image. The model's weights
    are not trained (gradients are taken w.r.t. the embeddings only); gradients are enabled inside,
    so it may be called under `torch.no_grad()`.
    """
    grid = timesteps(sched.T, steps, spacing) if grid is None else check_grid(grid, sched.T)
    S, B = len(grid) - 1, x0.shape[0]
    trajectory: list[Tensor] = [x0]
    x_T = ddim_invert(eps_model, sched, x0, context=context, grid=grid,
                      callback=lambda d: trajectory.append(d["x_t"]), progress=progress)
    null = null_context.detach().expand(B, *null_context.shape[1:]).clone()  # (B, L, D)
    x, nulls, losses, iters = x_T, [], [], []
    pairs = list(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True))
    for i, (t_int, t_prev) in enumerate(tqdm(pairs, disable=not progress, desc="null-text inversion")):
        t = torch.full((B,), t_int, dtype=torch.long, device=x.device)
        target = trajectory[S - 1 - i]  # x*_{t_prev}
        with torch.no_grad():
            eps_c = eps_model(x, t, context)
        null = null.detach().requires_grad_(True)
        opt = torch.optim.Adam([null], lr=lr * (1 - i / (2 * S)))
        threshold = early_stop + 2e-5 * i * 50 / S
        used = 0
        with torch.enable_grad():  # works inside a caller's torch.no_grad()
            for _ in range(inner_steps):
                used += 1
                eps_u = eps_model(x, t, null)
                x_prev = ddim_step(sched, x, eps_u + w * (eps_c - eps_u), t_int, t_prev)
                per_image = F.mse_loss(x_prev, target, reduction="none").flatten(1).mean(1)  # (B,)
                (null.grad,) = torch.autograd.grad(per_image.sum(), [null])
                opt.step()
                if per_image.max().item() < threshold:
                    break
        losses.append(per_image.max().item())
        iters.append(used)
        null = null.detach()
        with torch.no_grad():
            eps_u = eps_model(x, t, null)
            x = ddim_step(sched, x, eps_u + w * (eps_c - eps_u), t_int, t_prev)
        nulls.append(null)
    return NullTextInversion(x_T, torch.stack(nulls), torch.stack(trajectory), torch.tensor(losses),
                             torch.tensor(iters), grid)


@torch.no_grad()
def null_text_sample(eps_model: EpsModel, sched: Schedule, x_T: Tensor, context: Tensor, null_embeddings: Tensor,
                     w: float, grid: Tensor) -> Tensor:
    """Guided DDIM sampling with per-step null embeddings (S, B, L, D): the reconstruction of a
    null-text inversion (or any edit that keeps the source's embeddings)."""
    grid = check_grid(grid, sched.T)
    if null_embeddings.shape[0] != len(grid) - 1:
        raise ValueError(f"{null_embeddings.shape[0]} null embeddings for a grid of {len(grid) - 1} steps")
    x = x_T
    for i, (t_int, t_prev) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
        t = torch.full((x.shape[0],), t_int, dtype=torch.long, device=x.device)
        eps_u, eps_c = eps_model(torch.cat([x, x]), torch.cat([t, t]),
                                 torch.cat([null_embeddings[i], context])).chunk(2)
        x = ddim_step(sched, x, eps_u + w * (eps_c - eps_u), t_int, t_prev)
    return x
