"""Null-text inversion (Mokady, Hertz, Aberman, Pritch & Cohen-Or, CVPR 2023), lecture 3.

DDIM inversion is accurate for the conditional model (w = 1) but not under classifier-free guidance with w > 1,
which editing needs. Null-text inversion keeps the w = 1 inversion as a *pivot* trajectory x*_0, ..., x*_T and
then, step by step from x~_T = x*_T, tunes the unconditional ("null-text") embedding so that the guided DDIM step
lands on the pivot (Algorithm 1):

    for each sampling step t -> t_prev:                                    (outer loop, `null_text_invert`)
        null_t <- null_{t+1}
        repeat N times: null_t <- null_t - lr grad || x*_{t_prev} - ddim_step(x~_t, eps~(null_t)) ||^2
                                                                           (inner loop, `optimize_null`)
        x~_{t_prev} = ddim_step(x~_t, eps~(null_t))

with eps~(null) = cfg_eps(eps(x~_t, t, null), eps(x~_t, t, C), w). The model's weights never change; what is
learnt is one embedding per step, which guided sampling then uses in place of the encoded "" (`null_text_sample`,
and `p2p.p2p_sample(null_embeddings=...)` for editing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_data
from .guidance import Guidance, cfg_eps
from .inversion import ddim_invert
from .protocols import EpsModel
from .samplers import ddim_coefficients, ddim_step, ddim_update
from .schedule import Schedule, resolve_grid, step_pairs, t_batch


@dataclass
class NullTextInversion:
    """What `null_text_invert` returns, and what reconstruction and editing need.

    x_T:             (B, ...) the pivot's noisy end, the start of reconstruction / editing
    null_embeddings: (S, B, L, D) the optimised null-text embedding of each sampling step i
                     (i = 0 is the first, noisiest step), for `null_text_sample` / `p2p_sample`
    pivots:          (S + 1, B, ...) the w = 1 DDIM inversion trajectory, pivots[0] = x_0 ... pivots[S] = x_T
    losses:          (S,) the final inner loss of each step (max over the batch)
    iterations:      (S,) inner iterations used at each step (early stop)
    grid:            the descending sampling grid
    w:               the guidance scale the embeddings were tuned for
    """

    x_T: Tensor
    null_embeddings: Tensor
    pivots: Tensor
    losses: Tensor
    iterations: Tensor
    grid: Tensor
    w: float


def optimize_null(eps_model: EpsModel, sched: Schedule, x_t: Tensor, t_int: int, t_prev: int, eps_c: Tensor,
                  null: Tensor, target: Tensor, w: float, lr: float, inner_steps: int,
                  threshold: float) -> tuple[Tensor, float, int]:
    """Algorithm 1's inner loop at one step: Adam on the null embedding (B, L, D), at most `inner_steps` times,

        minimise  || x*_{t_prev} - ddim_step(x~_t, cfg_eps(eps(x~_t, t, null), eps_c, w)) ||^2   (per image)

    stopping once every image's loss is below `threshold`. eps_c = eps(x~_t, t, C) (B, ...) does not depend on
    the embedding, so it is computed once by the caller; target = x*_{t_prev}. Each image's loss is summed into
    one scalar, so each image's embedding gets its own gradient. Returns (null, max loss, iterations used).
    """
    if inner_steps < 1:
        raise ValueError(f"inner_steps must be >= 1 (Adam iterations per step), got {inner_steps}")
    t, c = t_batch(t_int, x_t), ddim_coefficients(sched, t_int, t_prev)[0].tolist()  # the step's 5 coefficients
    null = null.detach().requires_grad_(True)
    opt = torch.optim.Adam([null], lr=lr)
    with torch.enable_grad():  # works inside a caller's torch.no_grad()
        for used in range(1, inner_steps + 1):  # noqa: B007 (`used` is returned)
            x_prev = ddim_update(x_t, cfg_eps(eps_model(x_t, t, null), eps_c, w), c)  # = ddim_step(x~_t, eps~)
            per_image = F.mse_loss(x_prev, target, reduction="none").flatten(1).mean(1)  # (B,)
            (null.grad,) = torch.autograd.grad(per_image.sum(), [null])
            opt.step()
            if per_image.max().item() < threshold:
                break
    return null.detach(), per_image.max().item(), used


def null_text_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor, guidance: Guidance,
                     steps: int = 50, inner_steps: int = 10, lr: float = 1e-2, early_stop: float = 1e-5,
                     spacing: str = "leading", grid: Tensor | None = None, progress: bool = False) -> NullTextInversion:
    """Null-text inversion, Algorithm 1 (module docstring), as the reference code runs it:

    1. Pivot: DDIM inversion with w = 1 (conditional model only): x*_0 = x0, x*_1, ..., x*_T.
    2. From x~_T = x*_T, for each sampling step i = 0..S-1 start from the previous step's embedding (the first from
       `guidance.null_context`) and run `optimize_null` with Adam at lr * (1 - i / (2 S)) (the reference's
       1e-2 * (1 - i / 100) at S = 50) and threshold early_stop + 2e-5 * i * 50 / S (its epsilon + i * 2e-5);
       then take the guided step with the final embedding.

    x0: (B, ...); context: (B, L, D) the source prompt; `guidance` = Guidance(encoded "", w). Each image gets its
    own embedding; the early stop waits for the slowest image. The model's weights are not trained; gradients are
    enabled inside, so it may be called under `torch.no_grad()`.
    """
    check_data(x0, "x0")
    grid = resolve_grid(sched.T, steps, spacing, grid)
    S, B, w = len(grid) - 1, x0.shape[0], guidance.w
    trajectory: list[Tensor] = [x0]
    x_T = ddim_invert(eps_model, sched, x0, context=context, grid=grid,
                      callback=lambda d: trajectory.append(d["x_t"]), progress=progress)
    null = guidance.null_context.detach().expand(B, *guidance.null_context.shape[1:]).clone()  # (B, L, D)
    x, nulls, losses, iters = x_T, [], [], []
    for i, (t_int, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc="null-text inversion")):
        t = t_batch(t_int, x)
        with torch.no_grad():
            eps_c = eps_model(x, t, context)
        null, loss, used = optimize_null(eps_model, sched, x, t_int, t_prev, eps_c, null, trajectory[S - 1 - i], w,
                                         lr * (1 - i / (2 * S)), inner_steps, early_stop + 2e-5 * i * 50 / S)
        with torch.no_grad():
            x = ddim_step(sched, x, cfg_eps(eps_model(x, t, null), eps_c, w), t_int, t_prev)
        nulls.append(null)
        losses.append(loss)
        iters.append(used)
    return NullTextInversion(x_T, torch.stack(nulls), torch.stack(trajectory), torch.tensor(losses),
                             torch.tensor(iters), grid, w)


@torch.no_grad()
def null_text_sample(eps_model: EpsModel, sched: Schedule, inversion: NullTextInversion, context: Tensor) -> Tensor:
    """Guided DDIM sampling from `inversion.x_T` with its per-step null embeddings (S, B, L, D) and its w: the
    reconstruction when `context` is the source prompt (or a plain edit with another prompt of the same shape)."""
    x, grid = inversion.x_T, inversion.grid
    if inversion.null_embeddings.shape[0] != len(grid) - 1:
        raise ValueError(f"{inversion.null_embeddings.shape[0]} null embeddings for a grid of {len(grid) - 1} steps")
    for i, (t_int, t_prev) in enumerate(step_pairs(grid)):
        t = t_batch(t_int, x)
        eps_u, eps_c = eps_model(torch.cat([x, x]), torch.cat([t, t]),
                                 torch.cat([inversion.null_embeddings[i], context])).chunk(2)
        x = ddim_step(sched, x, cfg_eps(eps_u, eps_c, inversion.w), t_int, t_prev)
    return x
