"""The DDPM noise space (lecture 7): stochastic samplers as deterministic generators, and their two encoders.

DDIM with eta > 0 (DDPM at eta = 1) injects fresh noise at every step,

    x_{t_prev} = mu(x_t, t) + sigma_t z_t,    mu = the DDIM step's mean (`samplers.ddim_update` without noise),

so the sampler is a deterministic function x_0 = G(z) of the latent z = (x_T, z_S, ..., z_1) ~ N(0, I)
(CycleDiffusion: Wu & De la Torre, "A latent space of stochastic diffusion models for zero-shot image editing and
guidance", ICCV 2023, sec. 3). `generate` is G: `samplers.ddim_sample` with the noise injected.

Two encoders x_0 -> z make G reproduce a given image; both read each step's noise off as

    z_t = (x_{t_prev} - mu(x_t, t)) / sigma_t                                       (CycleDiffusion eq. 5)

and differ in where the x_t come from:

- `dpm_encode` (CycleDiffusion's DPM-Encoder): a chain, x_T ~ q(x_T | x_0), then x_{t_prev} ~ q_sigma(x_{t_prev} |
  x_t, x_0), the DDIM posterior (DDIM eq. 7), which is the DDIM step taken with the *true* eps of (x_t, x_0)
  (`q_sigma_sample`). With the exact eps-model, mu is q_sigma's mean and z ~ N(0, I).
- `edit_friendly_invert` (Huberman-Spiegelglas, Kulikov & Michaeli, "An Edit Friendly DDPM Noise Space", CVPR
  2024; inbarhub/DDPM_inversion): each x_t drawn *independently*, x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps~_t.
  Consecutive x_t are then less correlated than the model expects, so the z_t are larger than N(0, I) (on the
  shipped `shapes` model: median std 1.38 on a 10-step grid, 2.75 on 50; notebook 07); the paper finds they carry
  the image's structure, which is why edits decoded from them keep the layout.

Both follow the reference code in recomputing x_{t_prev} = mu + sigma_t z_t after reading z_t off (it stops
round-off from accumulating) and in storing every x_t, so decoding may start `skip` steps into the grid.

The final step (t_1 -> 0) has sigma = 0 (alpha_bar_0 = 1): there is no noise to recover, z_1 = 0, and G ends on that
step's x0_pred(x_{t_1}), not on x_0. `NoiseLatent.residual` = x_0 - x0_pred(x_{t_1}) is what is left (the model's
one-step prediction error at t_1, small on fine grids); G(z) + residual = x_0 to round-off. With eta = 0 every step
has sigma = 0 and there is nothing to encode: both encoders refuse it (`inversion.ddim_invert` is that encoder).

Plug-and-play guidance (CycleDiffusion sec. 4.2) samples z from N(0, I) exp(-E(G(z))) by Langevin dynamics
(`langevin_guidance`, `langevin_step`; the discretisation's stationary variance: `langevin_stationary_var`), over
the latent packed into one tensor (`pack`) and a G that autograd can differentiate (`G`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_data
from .gaussian import predict_eps, q_sample
from .guidance import Guidance, guided
from .p2p import p2p_sample
from .protocols import EpsModel
from .samplers import ddim_coefficients, ddim_sample, ddim_update
from .schedule import Schedule, resolve_grid, standard_normal, step_pairs, t_batch


@dataclass
class NoiseLatent:
    """What the encoders return, and all that G needs.

    x_t:      (S, B, ...) the encoder's x at each step's start, x_t[0] = x_T (decoding with `skip` starts at x_t[skip])
    noise:    (S, B, ...) z of each step i (i = 0 is the noisiest), injected by G; the last row (sigma = 0) is zero
    residual: (B, ...) x_0 - x0_pred(x_{t_1}): what the final sigma = 0 step leaves (G(z) + residual = x_0)
    grid:     the descending grid tau_S > ... > 0
    eta:      the DDIM eta of the steps' sigma_t (> 0)
    """

    x_t: Tensor
    noise: Tensor
    residual: Tensor
    grid: Tensor
    eta: float

    @property
    def x_T(self) -> Tensor:
        return self.x_t[0]


def q_sigma_sample(sched: Schedule, x_t: Tensor, x0: Tensor, t: int, t_prev: int, eta: float, n: Tensor) -> Tensor:
    """x_{t_prev} ~ q_sigma(x_{t_prev} | x_t, x_0), DDIM eq. 7, with n ~ N(0, I):

        mean = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev - sigma_t^2) (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t),  std sigma_t

    which is the DDIM step (eq. 12) taken with the true eps = (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t): its x0_pred is
    x_0 itself."""
    eps_true = predict_eps(sched, x_t, t_batch(t, x_t), x0)
    return ddim_update(x_t, eps_true, ddim_coefficients(sched, t, t_prev, eta)[0].tolist(), n)


def _check_eta(eta: float) -> None:
    if not eta > 0:  # also catches NaN
        raise ValueError(f"eta must be > 0 to have noise to encode, got {eta}: at eta = 0 every sigma_t is 0 and DDIM "
                         "is deterministic (invert it with inversion.ddim_invert)")


def _encode(eps_model: EpsModel, sched: Schedule, x0: Tensor, x_T: Tensor, grid: Tensor, eta: float,
            next_x: Callable[[Tensor, int, int], Tensor], context: Tensor | None, guidance: Guidance | None,
            callback: Callable[[dict], None] | None, progress: bool, desc: str) -> NoiseLatent:
    """The loop both encoders share, from x_T: z_t = (x_{t_prev} - mu(x_t, t)) / sigma_t, with x_{t_prev} =
    next_x(x_t, t, t_prev) for the steps with sigma > 0; then x_{t_prev} = mu + sigma z_t (the reference's round-off
    correction)."""
    model, coefs = guided(eps_model, guidance), ddim_coefficients(sched, grid[:-1], grid[1:], eta).tolist()
    x, xs, zs = x_T, [], []
    for i, (t_int, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc=desc)):
        eps = model(x, t_batch(t_int, x), context)
        mu, sigma = ddim_update(x, eps, coefs[i]), coefs[i][4]
        z = (next_x(x, t_int, t_prev) - mu) / sigma if sigma > 0 else torch.zeros_like(x)
        x_prev = mu + sigma * z
        if callback is not None:
            callback({"i": i, "t": t_int, "t_prev": t_prev, "x_t": x, "eps": eps, "mu": mu, "z": z, "x_prev": x_prev})
        xs.append(x)
        zs.append(z)
        x = x_prev
    return NoiseLatent(torch.stack(xs), torch.stack(zs), x0 - x, grid, eta)


def dpm_encode(eps_model: EpsModel, sched: Schedule, x0: Tensor, steps: int = 50, eta: float = 1.0,
               context: Tensor | None = None, guidance: Guidance | None = None, spacing: str = "leading",
               grid: Tensor | None = None, generator: torch.Generator | None = None,
               callback: Callable[[dict], None] | None = None, progress: bool = False) -> NoiseLatent:
    """CycleDiffusion's DPM-Encoder (module docstring): x_T ~ q(x_T | x_0), x_{t_prev} ~ q_sigma(. | x_t, x_0) down the
    grid (`q_sigma_sample`), z_t = (x_{t_prev} - mu(x_t, t)) / sigma_t. x0: (B, ...); `context` / `guidance` are the
    condition G will decode with to reconstruct (decode with another to translate). The draws use `generator`.
    `callback` gets {"i", "t", "t_prev", "x_t", "eps", "mu", "z", "x_prev"} after each step."""
    check_data(x0, "x0")
    _check_eta(eta)
    grid = resolve_grid(sched.T, steps, spacing, grid)

    def next_x(x_t: Tensor, t: int, t_prev: int) -> Tensor:
        return q_sigma_sample(sched, x_t, x0, t, t_prev, eta, standard_normal(x0.shape, x0, generator))

    x_T = q_sample(sched, x0, t_batch(int(grid[0]), x0), standard_normal(x0.shape, x0, generator))  # q(x_T | x_0)
    return _encode(eps_model, sched, x0, x_T, grid, eta, next_x, context, guidance, callback, progress, "DPM-Encoder")


def edit_friendly_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, steps: int = 50, eta: float = 1.0,
                         context: Tensor | None = None, guidance: Guidance | None = None, spacing: str = "leading",
                         grid: Tensor | None = None, generator: torch.Generator | None = None,
                         callback: Callable[[dict], None] | None = None, progress: bool = False) -> NoiseLatent:
    """Edit-friendly DDPM inversion (module docstring): every x_t on the grid drawn independently,
    x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps~_t (inbarhub/DDPM_inversion's `sample_xts_from_x0`), then
    z_t = (x_{t_prev} - mu(x_t, t)) / sigma_t, recomputing x_{t_prev} = mu + sigma_t z_t before the next step (its
    `inversion_forward_process`). Arguments and callback as `dpm_encode`."""
    check_data(x0, "x0")
    _check_eta(eta)
    grid = resolve_grid(sched.T, steps, spacing, grid)
    draws = {int(t): q_sample(sched, x0, t_batch(int(t), x0), standard_normal(x0.shape, x0, generator))
             for t in grid[:-1]}  # x_T, x_{tau_{S-1}}, ..., x_{tau_1}: drawn up front, independently

    return _encode(eps_model, sched, x0, draws[int(grid[0])], grid, eta, lambda x_t, t, t_prev: draws[t_prev], context,
                   guidance, callback, progress, "edit-friendly")


@torch.no_grad()
def generate(eps_model: EpsModel, sched: Schedule, z: NoiseLatent, context: Tensor | None = None,
             guidance: Guidance | None = None, skip: int = 0, callback: Callable[[dict], None] | None = None,
             progress: bool = False) -> Tensor:
    """G(z): DDIM with eta = z.eta on z.grid, injecting z.noise, from z.x_t[skip] (`skip` steps into the grid: the
    edit-friendly paper's T - skip start). With the encoder's condition it returns x_0 - z.residual (to round-off);
    with another `context` it translates (CycleDiffusion's zero-shot editing)."""
    S = len(z.grid) - 1
    if not 0 <= skip < S:
        raise ValueError(f"skip must be in [0, {S - 1}] (steps of the {S}-step grid to leave out), got {skip}")
    return ddim_sample(eps_model, sched, z.x_t[skip], eta=z.eta, context=context, grid=z.grid[skip:],
                       noise=z.noise[skip:], guidance=guidance, callback=callback, progress=progress)


def edit_friendly_p2p(model, controller, z: NoiseLatent, guidance: Guidance | None = None,
                      progress: bool = False) -> tuple[Tensor, Tensor]:
    """Edit-friendly DDPM inversion + Prompt-to-Prompt (Huberman-Spiegelglas et al., sec. 4; inbarhub/DDPM_inversion
    with a P2P controller): decode each source/target pair from z.x_t[skip] with z's noise maps, under `controller`
    (`p2p.Replace`, `Refine`, `Reweight`) built on the grid z.grid[skip:] (skip = the steps it leaves out). Returns
    (sources, targets); with the encoder's condition and guidance the sources are x_0 - z.residual."""
    S = len(controller.grid)
    skip = len(z.grid) - S
    if skip < 0 or not torch.equal(controller.grid.cpu(), z.grid[skip:].cpu()):
        raise ValueError(f"the controller's grid must be the tail of the latent's grid (z.grid[skip:]); got "
                         f"{controller.grid.tolist()} for {z.grid.tolist()}")
    return p2p_sample(model, controller, z.x_t[skip], guidance, progress=progress, noise=z.noise[skip:], eta=z.eta)


def pack(z: NoiseLatent, skip: int = 0) -> Tensor:
    """The latent of G as one tensor (B, S + 1 - skip, ...): x_{tau_skip} = z.x_t[skip], then the noises z.noise[skip:]
    of the steps G takes. What plug-and-play guidance moves (`langevin_guidance` over `G`)."""
    return torch.cat([z.x_t[skip][:, None], z.noise[skip:].transpose(0, 1)], 1)


def G(eps_model: EpsModel, sched: Schedule, z: Tensor, grid: Tensor, eta: float, context: Tensor | None = None,
      guidance: Guidance | None = None) -> Tensor:
    """G(z) for a packed z (B, S + 1, ...) (`pack`) on the S-step `grid`, differentiable in z (autograd runs through
    every step): x = z[:, 0], then x <- mu(x, t) + sigma_t z[:, 1 + i] at step i. Equals `generate` on the same
    latent; the last step's sigma is 0, so its noise has no effect (and gets zero gradient)."""
    if z.shape[1] != len(grid):
        raise ValueError(f"a packed latent for the {len(grid) - 1}-step grid has {len(grid)} entries along dim 1, "
                         f"got {z.shape[1]}")
    model, coefs = guided(eps_model, guidance), ddim_coefficients(sched, grid[:-1], grid[1:], eta).tolist()
    x = z[:, 0]
    for i, (t, _) in enumerate(step_pairs(grid)):
        x = ddim_update(x, model(x, t_batch(t, x), context), coefs[i], z[:, 1 + i])
    return x


def langevin_step(z: Tensor, grad_energy: Tensor, step_size: float, omega: Tensor) -> Tensor:
    """One unadjusted Langevin step on p(z) ~ N(z; 0, I) exp(-E(z)) (CycleDiffusion sec. 4.2, plug-and-play guidance):

        z <- z + (s / 2) grad_z (log N(z; 0, I) - E(z)) + sqrt(s) omega = z - (s / 2) (z + grad_z E) + sqrt(s) omega,

    omega ~ N(0, I). For a Gaussian target the chain's stationary law is Gaussian with the target's mean and a
    variance inflated by the discretisation: with E = 0 it is 1 / (1 - s / 4), not 1 (`langevin_stationary_var`)."""
    return z - 0.5 * step_size * (z + grad_energy) + step_size**0.5 * omega


def langevin_stationary_var(step_size: float, curvature: float = 1.0) -> float:
    """The stationary variance of `langevin_step` on a Gaussian target of precision `curvature` (1 + lambda for the
    tilt E = lambda / 2 |z - a|^2): the chain is z' = r z + c + sqrt(s) omega with r = 1 - s curvature / 2, so
    Var = s / (1 - r^2) (-> 1 / curvature as s -> 0)."""
    r = 1 - 0.5 * step_size * curvature
    if not abs(r) < 1:
        raise ValueError(f"step size {step_size} is too large for curvature {curvature}: the chain diverges "
                         f"(need step_size * curvature < 4)")
    return step_size / (1 - r * r)


def langevin_guidance(energy: Callable[[Tensor], Tensor], z: Tensor, steps: int = 200, step_size: float = 0.05,
                      generator: torch.Generator | None = None,
                      callback: Callable[[dict], None] | None = None) -> Tensor:
    """Plug-and-play guidance in the noise space: `steps` Langevin steps (CycleDiffusion's n = 200, sigma = 0.05) from
    z (B, ...) towards N(0, I) exp(-energy(z)). `energy(z)` returns per-sample energies (B,), e.g.
    lambda * E(G(z) | C) with G = `generate` over a packed latent; its gradient is taken here by autograd.
    `callback` gets {"i", "z", "energy"} after each step. Returns the final z (detached)."""
    if steps < 1 or not step_size > 0:
        raise ValueError(f"need steps >= 1 and step_size > 0, got {steps} and {step_size}")
    z = z.detach()
    for i in range(steps):
        with torch.enable_grad():
            zg = z.requires_grad_(True)
            e = energy(zg)
            if e.shape != (z.shape[0],):
                raise ValueError(f"energy(z) must return one energy per sample, shape ({z.shape[0]},); got "
                                 f"{tuple(e.shape)}")
            (grad,) = torch.autograd.grad(e.sum(), [zg]) if e.requires_grad else (torch.zeros_like(z),)
        z = langevin_step(z.detach(), grad, step_size, standard_normal(z.shape, z, generator))
        if callback is not None:
            callback({"i": i, "z": z, "energy": e.detach()})
    return z
