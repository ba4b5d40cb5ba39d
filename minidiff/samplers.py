"""Samplers: DDPM ancestral sampling (Algorithm 2) and the DDIM sigma-family.

Every sampler is a pure function over an eps-model callable `eps_model(x_t, t, context)`
(`protocols.EpsModel`), takes `guidance: Guidance | None` (classifier-free guidance, `guidance.Guidance`),
takes injectable noise (a tensor holding one draw per step) or a torch.Generator, and calls
`callback(dict)` after every step with the intermediates (k-diffusion style):
{"i", "t", "t_prev", "x_t", "eps", "x0_pred", "x_prev"}.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .gaussian import posterior_mean_from_eps, predict_x0, sigma2
from .guidance import Guidance, guided
from .protocols import EpsModel
from .schedule import Schedule, per_row, resolve_grid, standard_normal, step_pairs, t_batch, timestep_pair


def _draw(noise: Tensor | None, i: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """The i-th injected noise draw (noise has shape (steps, *like.shape)), or a fresh N(0, I) one."""
    if noise is not None:
        return noise[i].to(like)
    return standard_normal(like.shape, like, generator)


def _check_noise(noise: Tensor | None, steps: int, x: Tensor) -> None:
    if noise is not None and tuple(noise.shape) != (steps, *x.shape):
        raise ValueError(f"noise must have shape (steps, *x.shape) = {(steps, *x.shape)}, got {tuple(noise.shape)}")


@torch.no_grad()
def ddpm_sample(eps_model: EpsModel, sched: Schedule, x_T: Tensor, context: Tensor | None = None,
                var: str = "beta", noise: Tensor | None = None, generator: torch.Generator | None = None,
                guidance: Guidance | None = None, callback: Callable[[dict], None] | None = None,
                progress: bool = False) -> Tensor:
    """DDPM Algorithm 2 (ancestral sampling), t = T..1:

        x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z,

    z ~ N(0, I) for t > 1 and z = 0 at t = 1; sigma_t^2 = beta_t or beta~_t (`var`).
    `noise`, if given, has shape (T, *x_T.shape); row i is used at t = T - i. `guidance` runs every
    model call through classifier-free guidance.
    """
    _check_noise(noise, sched.T, x_T)
    s2, model = sigma2(sched, var), guided(eps_model, guidance)
    x = x_T
    for i, t_int in enumerate(tqdm(range(sched.T, 0, -1), disable=not progress, desc="DDPM")):
        t = t_batch(t_int, x)
        eps = model(x, t, context)
        mean = posterior_mean_from_eps(sched, x, t, eps)
        z = _draw(noise, i, x, generator) if t_int > 1 else torch.zeros_like(x)
        x_prev = mean + s2[t_int].sqrt().to(x) * z
        if callback is not None:
            callback({"i": i, "t": t_int, "t_prev": t_int - 1, "x_t": x, "eps": eps,
                      "x0_pred": predict_x0(sched, x, t, eps), "x_prev": x_prev})
        x = x_prev
    return x


def ddim_sigma(sched: Schedule, t: int | Tensor, t_prev: int | Tensor, eta: float) -> Tensor:
    """DDIM eq. 16: sigma_t(eta) = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev),
    with ab = alpha_bar. eta = 1 gives the DDPM posterior std sqrt(beta~_t) when t_prev = t - 1;
    eta = 0 the deterministic DDIM. Returns float64 of shape (B,) (B = 1 for integer t)."""
    if not eta >= 0:  # also catches NaN
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    t, t_prev = timestep_pair(sched, t, t_prev)
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]
    return eta * ((1 - ab_prev) / (1 - ab)).sqrt() * (1 - ab / ab_prev).sqrt()


def ddim_coefficients(sched: Schedule, t: int | Tensor, t_prev: int | Tensor, eta: float = 0.0) -> Tensor:
    """The five coefficients of the DDIM step (eq. 12) for each pair (t, t_prev), in float64, shape (B, 5):

        [sqrt(ab_t), sqrt(1 - ab_t), sqrt(ab_prev), sqrt(1 - ab_prev - sigma_t^2), sigma_t]

    Checked once here (0 <= t_prev < t <= T, eta >= 0, sigma_t^2 <= 1 - ab_prev), so a sampler computes its whole
    grid's table before the first step (`ddim_coefficients(sched, grid[:-1], grid[1:], eta)`) and each step is
    only tensor arithmetic (`ddim_update`)."""
    sigma = ddim_sigma(sched, t, t_prev, eta)  # (B,) float64; checks eta and the pairs
    t, t_prev = timestep_pair(sched, t, t_prev)
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]  # (B,) float64
    dir_var = 1 - ab_prev - sigma**2
    if bool((dir_var < -1e-12).any()):
        raise ValueError(f"eta = {eta} is too large: sigma_t^2 > 1 - alpha_bar_prev at t = {t.tolist()}, "
                         f"t_prev = {t_prev.tolist()}; use eta <= 1")
    cols = torch.broadcast_tensors(ab.sqrt(), (1 - ab).sqrt(), ab_prev.sqrt(), dir_var.clamp(min=0).sqrt(), sigma)
    return torch.stack(cols, dim=1)


def ddim_update(x_t: Tensor, eps: Tensor, c, noise: Tensor | None = None) -> Tensor:
    """Eq. 12 with the coefficients c = (sqrt(ab_t), sqrt(1 - ab_t), sqrt(ab_prev), dir, sigma_t) of
    `ddim_coefficients`, each a Python float or a (B, 1, ...) tensor in x_t's dtype and device:

        x0_pred = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t);   x_prev = sqrt(ab_prev) x0_pred + dir eps + sigma_t noise
    """
    if eps.shape != x_t.shape:
        raise ValueError(f"eps shape {tuple(eps.shape)} must equal x_t shape {tuple(x_t.shape)}")
    x0_pred = (x_t - c[1] * eps) / c[0]
    x_prev = c[2] * x0_pred + c[3] * eps
    return x_prev + c[4] * noise if noise is not None else x_prev


def ddim_step(sched: Schedule, x_t: Tensor, eps: Tensor, t: int | Tensor, t_prev: int | Tensor,
              eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """One step of the DDIM sigma-family (Song et al. 2021, eq. 12), ab = alpha_bar:

        x_{t_prev} = sqrt(ab_prev) * x0_pred                       "predicted x_0"
                   + sqrt(1 - ab_prev - sigma_t^2) * eps           "direction pointing to x_t"
                   + sigma_t * noise                               "random noise"
        x0_pred    = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t),      sigma_t = ddim_sigma(t, t_prev, eta)

    x_t, eps, noise: (B, ...); t, t_prev: ints or (B,) integer tensors with 0 <= t_prev < t <= T.
    Coefficients are computed in float64 (`ddim_coefficients`) and cast to x_t's dtype. At t_prev = 0
    (ab_prev = 1) the step returns x0_pred exactly. eta > 1 is allowed only while sigma_t^2 <= 1 - ab_prev.
    """
    if noise is not None and noise.shape != x_t.shape:  # eps's shape is checked by ddim_update
        raise ValueError(f"noise shape {tuple(noise.shape)} must equal x_t shape {tuple(x_t.shape)}")
    t_idx, t_prev_idx = timestep_pair(sched, t, t_prev)
    if len(t_idx) not in (1, x_t.shape[0]) or len(t_prev_idx) not in (1, x_t.shape[0]):
        raise ValueError(f"t and t_prev must be ints or have shape (B,) = ({x_t.shape[0]},), "
                         f"got {tuple(t_idx.shape)} and {tuple(t_prev_idx.shape)}")
    c = ddim_coefficients(sched, t_idx, t_prev_idx, eta)  # (B or 1, 5) float64
    if noise is None and bool((c[:, 4] > 0).any()):
        raise ValueError(f"eta = {eta} > 0 makes the step stochastic: pass noise ~ N(0, I) of x_t's shape")
    return ddim_update(x_t, eps, [per_row(col, x_t) for col in c.T], noise)


@torch.no_grad()
def ddim_sample(eps_model: EpsModel, sched: Schedule, x_T: Tensor, steps: int = 50, eta: float = 0.0,
                context: Tensor | None = None, spacing: str = "leading", grid: Tensor | None = None,
                noise: Tensor | None = None, generator: torch.Generator | None = None,
                guidance: Guidance | None = None, callback: Callable[[dict], None] | None = None,
                progress: bool = False) -> Tensor:
    """DDIM sampling (Song et al. 2021) over the grid tau_S > ... > tau_1 > 0 (`timesteps`).

    eta = 0 is deterministic; eta = 1 with steps = T is DDPM's ancestral sampler with
    sigma_t^2 = beta~_t. `noise` (steps, *x_T.shape) is only read when eta > 0. A custom
    `grid` (descending integers ending at 0, see `schedule.check_grid`) replaces steps and spacing.
    `guidance` runs every model call through classifier-free guidance. The last step goes to t = 0
    (alpha_bar = 1), so its output is that step's x0_pred.
    """
    grid = resolve_grid(sched.T, steps, spacing, grid)
    _check_noise(noise, len(grid) - 1, x_T)
    model, x = guided(eps_model, guidance), x_T
    coefs = ddim_coefficients(sched, grid[:-1], grid[1:], eta).tolist()  # (S, 5): checked once, not per step
    for i, (t_int, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc="DDIM")):
        t = t_batch(t_int, x)
        eps = model(x, t, context)
        z = _draw(noise, i, x, generator) if eta > 0 else None
        x_prev = ddim_update(x, eps, coefs[i], z)
        if callback is not None:
            callback({"i": i, "t": t_int, "t_prev": t_prev, "x_t": x, "eps": eps,
                      "x0_pred": predict_x0(sched, x, t, eps), "x_prev": x_prev})
        x = x_prev
    return x
