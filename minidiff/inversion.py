"""Editing by inversion (lecture 3): SDEdit's naive noising and deterministic DDIM inversion.

Both are pure functions over an eps-model callable `eps_model(x_t, t, context)` and reuse the
samplers' timestep grids (`schedule.timesteps`, descending, ending at t = 0 where alpha_bar = 1).

- `sdedit`: x_{t0} ~ q(x_{t0} | x_0), then DDIM from t0 down to 0 (Meng et al. 2022).
- `ddim_invert`: run deterministic DDIM (eta = 0) backwards, x_0 -> x_T, so that
  `ddim_sample(ddim_invert(x0))` ~= x0 (Song et al. 2021, sec. 4.3 / 5.4; Dhariwal & Nichol 2021).
  The model is evaluated at the *target* timestep on the *current* point, eps(x_{t_prev}, t),
  in place of the unknown eps(x_t, t): the local-linearity approximation. See `ddim_invert`.

Null-text inversion (Mokady et al. 2023), which builds on `ddim_invert`, is in `null_text`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_data
from .gaussian import q_sample
from .guidance import Guidance, guided
from .protocols import EpsModel
from .samplers import ddim_sample
from .schedule import (
    Schedule,
    inversion_pairs,
    per_row,
    resolve_grid,
    standard_normal,
    t_batch,
    timestep_pair,
    timesteps,
)


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
    x0_pred = (x_prev - per_row((1 - ab_prev).sqrt(), x_prev) * eps) / per_row(ab_prev.sqrt(), x_prev)
    return per_row(ab.sqrt(), x_prev) * x0_pred + per_row((1 - ab).sqrt(), x_prev) * eps


@torch.no_grad()
def ddim_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, steps: int = 50, context: Tensor | None = None,
                guidance: Guidance | None = None, spacing: str = "leading", grid: Tensor | None = None,
                callback: Callable[[dict], None] | None = None, progress: bool = False) -> Tensor:
    """DDIM inversion x_0 -> x_T over the sampler's grid walked upwards: (0, tau_1), (tau_1, tau_2), ...

        eps = eps_model(x_{t_prev}, t, context)       model at the TARGET t, on the current x_{t_prev}
        x_t = sqrt(ab_t) (x_{t_prev} - sqrt(1 - ab_prev) eps) / sqrt(ab_prev) + sqrt(1 - ab_t) eps

    The sampling step t -> t_prev uses eps(x_t, t); x_t is what we are solving for, so inversion
    uses eps(x_{t_prev}, t) ~= eps(x_t, t): the local-linearity approximation (eps changes little
    over one step). Evaluating at the target t (as diffusers' DDIMInverseScheduler and null-text
    inversion do) makes the only approximation the x argument: the round trip is exact for any
    eps-model that does not depend on x, and the model is never asked about t = 0, where it was
    not trained. The error grows with the step size and with guidance w (`bench.roundtrip`).

    x0: (B, ...). `guidance` inverts the classifier-free-guided model.
    `callback` gets {"i", "t_prev", "t", "x_prev", "eps", "x0_pred", "x_t"} after each step:
    the inversion trajectory. Returns x_T (B, ...) at t = grid[0].
    """
    check_data(x0, "x0")
    grid = resolve_grid(sched.T, steps, spacing, grid)
    model, x = guided(eps_model, guidance), x0
    for i, (t_prev, t_int) in enumerate(tqdm(inversion_pairs(grid), disable=not progress, desc="DDIM inversion")):
        t = t_batch(t_int, x)
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
           noise: Tensor | None = None, generator: torch.Generator | None = None, guidance: Guidance | None = None,
           callback: Callable[[dict], None] | None = None, progress: bool = False) -> Tensor:
    """SDEdit (Meng et al. 2022) with a DDIM sampler: noise the input, then denoise it under `context`.

        x_{t0} = sqrt(ab_{t0}) x_0 + sqrt(1 - ab_{t0}) eps,   eps ~ N(0, I)       (a draw from q(x_{t0} | x_0))
        x_0'   = ddim_sample(x_{t0}) over sdedit_grid(T, t0, steps, spacing)

    Small t0 keeps x_0' close to x_0 (faithful, little edit); t0 = T forgets x_0 entirely.
    x0: (B, ...); `eps` (x0's shape) is the forward noise; `noise` (n_steps, *x0.shape) the per-step
    noise of eta > 0, with n_steps = len(sdedit_grid(...)) - 1; `guidance` guides the denoising.
    Returns x_0' (B, ...).
    """
    check_data(x0, "x0")
    grid = sdedit_grid(sched.T, t0, steps, spacing)
    if eps is None:
        eps = standard_normal(x0.shape, x0, generator)
    elif eps.shape != x0.shape:
        raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}, got {tuple(eps.shape)}")
    x_t0 = q_sample(sched, x0, t_batch(t0, x0), eps)
    return ddim_sample(eps_model, sched, x_t0, eta=eta, context=context, grid=grid, noise=noise,
                       generator=generator, guidance=guidance, callback=callback, progress=progress)
