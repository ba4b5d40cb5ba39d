"""EDICT: exact diffusion inversion via coupled transformations (Wallace, Gokul & Naik, CVPR 2023), lecture 4.

A deterministic DDIM step (Song et al. 2021, eq. 12 with eta = 0) is affine in x_t for a given eps,

    x_{t_prev} = a_t x_t + b_t eps,   a_t = sqrt(ab_prev / ab_t),
                                      b_t = sqrt(1 - ab_prev) - sqrt(ab_prev (1 - ab_t) / ab_t)    (ab = alpha_bar)

but eps = eps(x_t, t) is evaluated at the very point being updated, so undoing the step needs the x_t we are
solving for (DDIM inversion guesses eps(x_t, t) ~= eps(x_{t_prev}, t)). EDICT keeps two sequences x and y and
updates each with eps evaluated at the *other* one: an affine coupling layer (RealNVP, Dinh et al. 2017),
invertible in closed form whatever the network. Mixing layers with weight p keep x and y close:

    x_inter = a_t x_t + b_t eps(y_t, t)          inverse, in reverse order:
    y_inter = a_t y_t + b_t eps(x_inter, t)          y_inter = (y_{t-1} - (1 - p) x_{t-1}) / p
    x_{t-1} = p x_inter + (1 - p) y_inter            x_inter = (x_{t-1} - (1 - p) y_inter) / p
    y_{t-1} = p y_inter + (1 - p) x_{t-1}            y_t     = (y_inter - b_t eps(x_inter, t)) / a_t
                                                     x_t     = (x_inter - b_t eps(y_t, t)) / a_t

Sampling starts from x_T = y_T; inversion from x_0 = y_0 = the image. The mixing shrinks x - y by exactly p^2
per step while the coupled step stretches it: p = 1 (no mixing) lets x and y drift apart, and a smaller p ties
them together but makes the inversion stretch x - y by 1/p^2 per step, amplifying round-off. The paper uses
p = 0.93 and runs in float64.

Update order. The equations above update x first (the paper's eq. 8-10). The paper's reference code
(salesforce/EDICT, `coupled_stablediffusion` with its default `leapfrog_steps=True`) alternates: on generation
step i (i = 0 the noisiest) x is updated first when i is even and y first when i is odd,

    y_inter = a_t y_t + b_t eps(x_t, t),   x_inter = a_t x_t + b_t eps(y_inter, t)      (i odd)

while the mixing layer keeps its order (x, then y). Inversion mirrors each step exactly. Alternation is the
default here (`leapfrog=True`); `leapfrog=False` always updates x first. Both are exact; they differ in how far
x and y drift apart, and so in edit quality (data/README.md, notebook 04).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_data
from .gaussian import predict_x0
from .guidance import Guidance, guided
from .protocols import EpsModel
from .schedule import Schedule, inversion_pairs, per_row, resolve_grid, step_pairs, t_batch, timestep_pair, timesteps


def edict_coefficients(sched: Schedule, t: int | Tensor, t_prev: int | Tensor) -> tuple[Tensor, Tensor]:
    """(a_t, b_t) of the DDIM step written as x_{t_prev} = a_t x_t + b_t eps, float64 of shape (B,):

        a_t = sqrt(ab_prev / ab_t),   b_t = sqrt(1 - ab_prev) - sqrt(ab_prev (1 - ab_t) / ab_t)

    (expand sqrt(ab_prev) (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) + sqrt(1 - ab_prev) eps). t, t_prev: ints or
    (B,) integer tensors with 0 <= t_prev < t <= T; B = 1 for ints.
    """
    t, t_prev = timestep_pair(sched, t, t_prev)
    ab, ab_prev = sched.alpha_bar[t], sched.alpha_bar[t_prev]  # (B,) float64
    return (ab_prev / ab).sqrt(), (1 - ab_prev).sqrt() - (ab_prev * (1 - ab) / ab).sqrt()


def _check_p(p: float) -> None:
    if not 0 < p <= 1:  # also catches NaN
        raise ValueError(f"the mixing weight p must lie in (0, 1] (1 = no mixing; the paper uses 0.93), got {p!r}")


def _check_pair(x: Tensor, y: Tensor, names: str) -> None:
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"{names} must have the same shape and dtype, got {tuple(x.shape)} {x.dtype} "
                         f"and {tuple(y.shape)} {y.dtype}")


def _step_setup(sched: Schedule, x: Tensor, t: int | Tensor, t_prev: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """t as a (B,) long tensor for the model, and a_t, b_t shaped (B, 1, ...) in x's dtype and device."""
    t_idx, t_prev_idx = timestep_pair(sched, t, t_prev)
    B = x.shape[0]
    if len(t_idx) not in (1, B) or len(t_prev_idx) not in (1, B):
        raise ValueError(f"t and t_prev must be ints or have shape (B,) = ({B},), "
                         f"got {len(t_idx)} and {len(t_prev_idx)} values")
    a, b = edict_coefficients(sched, t_idx, t_prev_idx)
    return t_idx.expand(B).to(x.device), per_row(a, x), per_row(b, x)


def _check_first(first: str) -> None:
    if first not in ("x", "y"):
        raise ValueError(f"first must be 'x' or 'y' (the sequence the coupled step updates first), got {first!r}")


def _finite(x: Tensor, y: Tensor, what: str, p: float) -> tuple[Tensor, Tensor]:
    """(x, y), after checking that EDICT did not blow up: the inverse mixing layer divides by p at every step."""
    if not (x.isfinite().all() and y.isfinite().all()):
        raise ValueError(f"EDICT {what} diverged to NaN/inf with p = {p}: each inverse mixing layer divides by p, so "
                         f"a small p amplifies round-off exponentially; use p near 0.93, fewer steps or float64")
    return x, y


def first_updated(i: int, leapfrog: bool = True) -> str:
    """The sequence updated first on generation step i (i = 0 the noisiest): "x" on even i and "y" on odd i with
    leapfrog (the reference code's `leapfrog_steps=True`), always "x" without."""
    return "y" if leapfrog and i % 2 == 1 else "x"


def edict_step(eps_model: EpsModel, sched: Schedule, x: Tensor, y: Tensor, t: int | Tensor, t_prev: int | Tensor,
               p: float = 0.93, context: Tensor | None = None, first: str = "x",
               trace: dict | None = None) -> tuple[Tensor, Tensor]:
    """One EDICT denoising step (x_t, y_t) -> (x_{t_prev}, y_{t_prev}): two coupled DDIM steps and two mixing layers
    (module docstring). `first` = "x" updates x first (the paper's equations), "y" updates y first:

        first = "x":  x_inter = a_t x_t + b_t eps(y_t, t);      y_inter = a_t y_t + b_t eps(x_inter, t)
        first = "y":  y_inter = a_t y_t + b_t eps(x_t, t);      x_inter = a_t x_t + b_t eps(y_inter, t)
        then always:  x_{t-1} = p x_inter + (1 - p) y_inter;    y_{t-1} = p y_inter + (1 - p) x_{t-1}

    x, y: (B, ...); t, t_prev: ints or (B,) with 0 <= t_prev < t <= T; p in (0, 1]. Two model calls. If `trace`
    is a dict it receives x_inter, y_inter, eps_x and eps_y (the model at the x and y point it was called on).
    """
    _check_p(p)
    _check_first(first)
    _check_pair(x, y, "x and y")
    t_vec, a, b = _step_setup(sched, x, t, t_prev)
    u, v = (x, y) if first == "x" else (y, x)  # u is updated first, with eps at v
    eps_v = eps_model(v, t_vec, context)
    u_inter = a * u + b * eps_v  # u_inter = a_t u_t + b_t eps(v_t, t)
    eps_u = eps_model(u_inter, t_vec, context)
    v_inter = a * v + b * eps_u  # v_inter = a_t v_t + b_t eps(u_inter, t)
    x_inter, y_inter = (u_inter, v_inter) if first == "x" else (v_inter, u_inter)
    x_prev = p * x_inter + (1 - p) * y_inter  # x_{t-1} = p x_inter + (1 - p) y_inter
    y_prev = p * y_inter + (1 - p) * x_prev  # y_{t-1} = p y_inter + (1 - p) x_{t-1}
    if trace is not None:
        eps_x, eps_y = (eps_u, eps_v) if first == "x" else (eps_v, eps_u)
        trace.update(x_inter=x_inter, y_inter=y_inter, eps_x=eps_x, eps_y=eps_y)
    return x_prev, y_prev


def edict_step_inverse(eps_model: EpsModel, sched: Schedule, x_prev: Tensor, y_prev: Tensor, t: int | Tensor,
                       t_prev: int | Tensor, p: float = 0.93, context: Tensor | None = None, first: str = "x",
                       trace: dict | None = None) -> tuple[Tensor, Tensor]:
    """The exact inverse of `edict_step` with the same (t, t_prev, p, context, first): (x_{t_prev}, y_{t_prev}) ->
    (x_t, y_t). Undoes the four lines in reverse order; each inverse evaluates the model at the point the forward
    line used (u = the sequence updated first, v = the other; u = x for first = "x"):

        y_inter = (y_{t-1} - (1 - p) x_{t-1}) / p
        x_inter = (x_{t-1} - (1 - p) y_inter) / p
        v_t     = (v_inter - b_t eps(u_inter, t)) / a_t
        u_t     = (u_inter - b_t eps(v_t, t)) / a_t

    Note the argument order (t, t_prev) is the forward step's (unlike `ddim_invert_step`). `trace` receives
    x_inter, y_inter, eps_x, eps_y as `edict_step`'s.
    """
    _check_p(p)
    _check_first(first)
    _check_pair(x_prev, y_prev, "x_prev and y_prev")
    t_vec, a, b = _step_setup(sched, x_prev, t, t_prev)
    y_inter = (y_prev - (1 - p) * x_prev) / p  # inverts y_{t-1} = p y_inter + (1 - p) x_{t-1}
    x_inter = (x_prev - (1 - p) * y_inter) / p  # inverts x_{t-1} = p x_inter + (1 - p) y_inter
    u_inter, v_inter = (x_inter, y_inter) if first == "x" else (y_inter, x_inter)
    eps_u = eps_model(u_inter, t_vec, context)
    v = (v_inter - b * eps_u) / a  # inverts v_inter = a_t v_t + b_t eps(u_inter, t)
    eps_v = eps_model(v, t_vec, context)
    u = (u_inter - b * eps_v) / a  # inverts u_inter = a_t u_t + b_t eps(v_t, t)
    if trace is not None:
        eps_x, eps_y = (eps_u, eps_v) if first == "x" else (eps_v, eps_u)
        trace.update(x_inter=x_inter, y_inter=y_inter, eps_x=eps_x, eps_y=eps_y)
    return (u, v) if first == "x" else (v, u)


@torch.no_grad()
def edict_sample(eps_model: EpsModel, sched: Schedule, x_T: Tensor, y_T: Tensor | None = None, steps: int = 50,
                 p: float = 0.93, context: Tensor | None = None, guidance: Guidance | None = None,
                 spacing: str = "leading", grid: Tensor | None = None, leapfrog: bool = True,
                 callback: Callable[[dict], None] | None = None, progress: bool = False) -> tuple[Tensor, Tensor]:
    """EDICT sampling: `edict_step` over the grid tau_S > ... > tau_1 > 0 from (x_T, y_T), y_T = x_T by default.

    x_T, y_T: (B, ...). `guidance` runs every model call through classifier-free guidance.
    A custom `grid` (descending, ending at 0, see `check_grid`) replaces steps and spacing. `leapfrog` alternates
    the sequence updated first (`first_updated`; the reference code's default), else x is always first.
    `callback` gets {"i", "t", "t_prev", "first", "x_t", "y_t", "x_inter", "y_inter", "eps_x", "eps_y", "x_prev",
    "y_prev", "x0_pred"} after every step; x0_pred is predicted from the step's first model call (at y_t when x is
    updated first, at x_t when y is). Returns (x_0, y_0); the paper reports x_0.
    """
    grid = resolve_grid(sched.T, steps, spacing, grid)
    _check_p(p)
    x, y = x_T, (x_T if y_T is None else y_T)
    _check_pair(x, y, "x_T and y_T")
    model = guided(eps_model, guidance)
    for i, (t, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc="EDICT")):
        trace: dict = {}
        first = first_updated(i, leapfrog)
        x_prev, y_prev = edict_step(model, sched, x, y, t, t_prev, p, context, first, trace)
        if callback is not None:
            v, eps_v = (y, trace["eps_y"]) if first == "x" else (x, trace["eps_x"])
            callback({"i": i, "t": t, "t_prev": t_prev, "first": first, "x_t": x, "y_t": y, **trace,
                      "x_prev": x_prev, "y_prev": y_prev, "x0_pred": predict_x0(sched, v, t_batch(t, v), eps_v)})
        x, y = x_prev, y_prev
    return _finite(x, y, "sampling", p)


@torch.no_grad()
def edict_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, y0: Tensor | None = None, steps: int = 50,
                 p: float = 0.93, context: Tensor | None = None, guidance: Guidance | None = None,
                 spacing: str = "leading", grid: Tensor | None = None, leapfrog: bool = True,
                 callback: Callable[[dict], None] | None = None, progress: bool = False) -> tuple[Tensor, Tensor]:
    """EDICT inversion (x_0, y_0) -> (x_T, y_T): `edict_step_inverse` over the sampler's grid walked upwards,
    (0, tau_1), (tau_1, tau_2), ..., y_0 = x_0 by default. Inversion step k undoes generation step i = S - 1 - k
    with that step's update order, so with the same grid, p, context, guidance and `leapfrog`,
    `edict_sample(*edict_invert(x0))` returns x0 up to round-off, for any eps-model and any number of steps.

    x0, y0: (B, ...). `callback` gets {"i", "t_prev", "t", "first", "x_prev", "y_prev", "x_inter", "y_inter",
    "eps_x", "eps_y", "x_t", "y_t"} after every step. Returns (x_T, y_T) at t = grid[0].
    """
    grid = resolve_grid(sched.T, steps, spacing, grid)
    _check_p(p)
    x, y = x0, (x0 if y0 is None else y0)
    _check_pair(x, y, "x0 and y0")
    check_data(x, "x0")
    check_data(y, "y0")
    model, pairs = guided(eps_model, guidance), inversion_pairs(grid)
    for k, (t_prev, t) in enumerate(tqdm(pairs, disable=not progress, desc="EDICT inversion")):
        trace: dict = {}
        first = first_updated(len(pairs) - 1 - k, leapfrog)  # the generation step this one undoes
        x_t, y_t = edict_step_inverse(model, sched, x, y, t, t_prev, p, context, first, trace)
        if callback is not None:
            callback({"i": k, "t_prev": t_prev, "t": t, "first": first, "x_prev": x, "y_prev": y, **trace,
                      "x_t": x_t, "y_t": y_t})
        x, y = x_t, y_t
    return _finite(x, y, "inversion", p)


def edit_grid(T: int, steps: int = 50, strength: float = 0.8, spacing: str = "leading") -> Tensor:
    """The last n = int(steps * strength) steps of `timesteps(T, steps, spacing)`: edits invert only to
    t = grid[0] ~ strength * T (the reference's `init_image_strength`, as diffusers' img2img). Descending, ends at 0."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must lie in (0, 1] (1 = invert all the way to t ~ T), got {strength!r}")
    n = int(steps * strength)
    if n < 1:
        raise ValueError(f"strength {strength} of {steps} steps leaves no step; need steps * strength >= 1")
    return timesteps(T, steps, spacing)[-(n + 1):]


@torch.no_grad()
def edict_edit(eps_model: EpsModel, sched: Schedule, x0: Tensor, base_context: Tensor | None,
               target_context: Tensor | None, steps: int = 50, p: float = 0.93,
               guidance: Guidance | None = None, strength: float = 0.8, spacing: str = "leading",
               grid: Tensor | None = None, leapfrog: bool = True, encode: Callable[[Tensor], Tensor] | None = None,
               decode: Callable[[Tensor], Tensor] | None = None, callback: Callable[[dict], None] | None = None,
               progress: bool = False) -> tuple[Tensor, Tensor]:
    """EDICT editing: invert x0 under the base prompt, denoise the pair under the target prompt.

        (x_t0, y_t0) = edict_invert(x0, C_base)            t0 = edit_grid(T, steps, strength)[0]
        (x_0', y_0') = edict_sample(x_t0, y_t0, C_target)

    `guidance` (a `Guidance`) is used by both halves, as in the reference code (one guidance_scale, default 3,
    for the inversion under the base prompt and the generation under the target prompt); so base = target with any
    guidance returns x0 exactly. A `grid` replaces steps/strength/spacing. `leapfrog` (default, the reference's)
    alternates the update order from the edit's first step, i = 0 at t0 (`first_updated`). Latent diffusion: pass
    `encode=ae.to_latent, decode=ae.from_latent` (`nn.autoencoder.Autoencoder`); pixel space by default.
    `callback` gets the inversion's and the sampling's dicts with "phase": "invert" / "sample".
    x0: (B, C, H, W). Returns the edited (x_0', y_0'), decoded; the paper and its reference code show x_0'.
    """
    grid = edit_grid(sched.T, steps, strength, spacing) if grid is None else resolve_grid(sched.T, grid=grid)
    z0 = x0 if encode is None else encode(x0)

    def tagged(phase: str) -> Callable[[dict], None] | None:
        return None if callback is None else (lambda d: callback({**d, "phase": phase}))

    x_t, y_t = edict_invert(eps_model, sched, z0, p=p, context=base_context, guidance=guidance, grid=grid,
                            leapfrog=leapfrog, callback=tagged("invert"), progress=progress)
    x, y = edict_sample(eps_model, sched, x_t, y_t, p=p, context=target_context, guidance=guidance, grid=grid,
                        leapfrog=leapfrog, callback=tagged("sample"), progress=progress)
    return (x, y) if decode is None else (decode(x), decode(y))
