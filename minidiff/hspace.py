"""Lecture 8: h-space, the UNet's bottleneck as a semantic latent space.

DDIM's step in three parts (Song et al. 2021, eq. 12; Asyrp eq. 2), with the coefficients c of
`samplers.ddim_coefficients`, c = (sqrt(ab_t), sqrt(1 - ab_t), sqrt(ab_prev), sqrt(1 - ab_prev - sigma_t^2), sigma_t):

    x_{t_prev} = sqrt(ab_prev) P_t(eps) + D_t(eps) + sigma_t z_t
    P_t(eps)   = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)            the predicted x_0                  (`P_t`)
    D_t(eps)   = sqrt(1 - ab_prev - sigma_t^2) eps                   the direction pointing to x_t      (`D_t`)

Asyrp's asymmetric reverse process (Kwon, Jeong & Uh, "Diffusion models already have a semantic latent space",
ICLR 2023, eq. 4; kwonminki/Asyrp_official) shifts the bottleneck feature h_t of the UNet
(`UNet(..., return_h=True)`, `h_delta=`) and uses the shifted prediction in P_t only:

    x_{t_prev} = sqrt(ab_prev) P_t(eps~) + D_t(eps) + sigma_t z_t,    eps~ = eps_theta(x_t | h_t + delta h_t)

for t in the editing interval [T, t_edit]; below t_edit the steps are plain DDIM (`asyrp_update`, `asyrp_sample`).
Shifting eps in both terms ("symmetric", `asyrp_sample(symmetric=True)`) moves x_{t_prev} by
(sqrt(ab_prev) (-sqrt(1 - ab_t) / sqrt(ab_t)) + sqrt(1 - ab_prev)) (eps~ - eps), nearly zero for small steps: the
paper's Theorem 1 says the two shifts cancel; the asymmetric step keeps only the P_t part.

Where delta h comes from: a `DeltaH` is any function (h (B, C, H, W), t (B,)) -> delta h of h's shape:
- an implicit function f_t(h_t) (Asyrp sec. 3.3; the network is `nn.hspace.ImplicitDelta`), trained on
  `asyrp_loss` = lambda_dir `direction_loss` + lambda_recon |P_t^edit - P_t^source| (Asyrp eq. 6);
- one global delta h, the average of f_t(h_t) over samples and t (`constant_delta`; Asyrp sec. 5.2 finds
  delta h_t nearly constant in t);
- the top right singular vectors of the Jacobian of the map h -> output at one t (`top_singular_vectors`: block
  power iteration with `torch.func.jvp` / `vjp`; Park et al., "Unsupervised discovery of semantic latent directions
  in diffusion models", NeurIPS 2023, who take the Jacobian of the encoder x_t -> h_t, the pullback metric; the
  function here takes any map, so both variants are one call).
Edits scale (`scale_delta`, negative scales reverse the attribute) and add (`sum_deltas`).

`t_edit` by rule (Asyrp sec. 4.2): the last t at which the distance between x_0 and P_t(x_t) along the reverse
process still reaches a threshold (LPIPS 0.33 in the official code; `t_edit_by_threshold` takes any distance).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .attention_control import hooked_layers
from .inversion import ddim_invert
from .protocols import EpsModel
from .samplers import ddim_coefficients, ddim_update
from .schedule import Schedule, resolve_grid, standard_normal, step_pairs, t_batch

DeltaH = Callable[[Tensor, Tensor], Tensor]  # (h (B, C, H, W), t (B,)) -> delta h (B, C, H, W)


def P_t(x_t: Tensor, eps: Tensor, c) -> Tensor:
    """The predicted x_0, (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) (DDIM eq. 12's first term before sqrt(ab_prev))."""
    return (x_t - c[1] * eps) / c[0]


def D_t(eps: Tensor, c) -> Tensor:
    """The direction pointing to x_t, sqrt(1 - ab_prev - sigma_t^2) eps (DDIM eq. 12's second term)."""
    return c[3] * eps


def asyrp_update(x_t: Tensor, eps: Tensor, eps_edit: Tensor, c, noise: Tensor | None = None) -> Tensor:
    """Asyrp eq. 4: x_{t_prev} = sqrt(ab_prev) P_t(eps_edit) + D_t(eps) + sigma_t noise. With eps_edit = eps it is
    `samplers.ddim_update` operation for operation (bitwise equal)."""
    x_prev = c[2] * P_t(x_t, eps_edit, c) + D_t(eps, c)
    return x_prev + c[4] * noise if noise is not None else x_prev


def eps_pair(eps_model: EpsModel, x_t: Tensor, t: Tensor, context: Tensor | None,
             delta: DeltaH) -> tuple[Tensor, Tensor, Tensor]:
    """(eps, eps~, h): eps_theta(x_t) with its bottleneck h, and eps_theta(x_t | h + delta(h, t))."""
    eps, h = eps_model(x_t, t, context, return_h=True)
    return eps, eps_model(x_t, t, context, h_delta=delta(h, t)), h


def constant_delta(dh: Tensor) -> DeltaH:
    """One delta h (C, H, W) for every sample and step (Asyrp's global direction)."""
    return lambda h, t: dh.to(h).expand_as(h)


def scale_delta(delta: DeltaH, scale: float) -> DeltaH:
    """scale * delta h (Asyrp sec. 5.1: the attribute scales with it; negative scales reverse it)."""
    return lambda h, t: scale * delta(h, t)


def sum_deltas(*deltas: DeltaH) -> DeltaH:
    """delta h_1 + delta h_2 + ...: several attributes at once (Asyrp sec. 5.1, linear combination)."""
    return lambda h, t: sum(d(h, t) for d in deltas)


def asyrp_sample(eps_model: EpsModel, sched: Schedule, x_T: Tensor, delta: DeltaH | None, t_edit: int,
                 steps: int = 40, context: Tensor | None = None, grid: Tensor | None = None,
                 symmetric: bool = False, t_boost: int = 0, generator: torch.Generator | None = None,
                 callback: Callable[[dict], None] | None = None, progress: bool = False) -> Tensor:
    """The asymmetric reverse process (module docstring) from x_T down the DDIM grid: steps with t >= t_edit use
    eps~ = eps_theta(x_t | h_t + delta(h_t, t)) in P_t only (`symmetric`: in both terms, the paper's ablation),
    the others plain DDIM (eta = 0); steps with t <= t_boost add noise as DDPM does (eta = 1: the official code's
    "quality boosting", drawn from `generator`; 0 = off). delta = None is plain DDIM. `callback` gets {"i", "t",
    "t_prev", "x_t", "eps", "eps_edit", "h", "x_prev"} after each step (eps_edit and h are None outside the
    interval)."""
    grid = resolve_grid(sched.T, steps, "leading", grid)
    c0, c1 = (ddim_coefficients(sched, grid[:-1], grid[1:], e).tolist() for e in (0.0, 1.0))
    x = x_T
    for i, (t_int, t_prev) in enumerate(tqdm(step_pairs(grid), disable=not progress, desc="Asyrp")):
        t, boost = t_batch(t_int, x), 0 < t_int <= t_boost
        c = c1[i] if boost else c0[i]
        noise = standard_normal(x.shape, x, generator) if boost else None
        eps_edit = h = None
        with torch.no_grad():
            if delta is not None and t_int >= t_edit:
                eps, eps_edit, h = eps_pair(eps_model, x, t, context, delta)
                x_prev = ddim_update(x, eps_edit, c, noise) if symmetric else asyrp_update(x, eps, eps_edit, c, noise)
            else:
                eps = eps_model(x, t, context)
                x_prev = ddim_update(x, eps, c, noise)
        if callback is not None:
            callback({"i": i, "t": t_int, "t_prev": t_prev, "x_t": x, "eps": eps, "eps_edit": eps_edit, "h": h,
                      "x_prev": x_prev})
        x = x_prev
    return x


@torch.no_grad()
def applied_deltas(eps_model: EpsModel, sched: Schedule, x_T: Tensor, delta: DeltaH, t_edit: int, steps: int = 40,
                   context: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The delta h_t = delta(h_t, t) that `asyrp_sample` applies at each step of the editing interval, (S_edit, B, C,
    H, W), and those steps' t (S_edit,). Their mean over samples and steps is Asyrp's global delta h
    (`constant_delta`); the cosine of each step's mean with it measures how constant delta h_t is in t."""
    kept: list[tuple[int, Tensor]] = []

    def keep(d: dict) -> None:
        if d["h"] is not None:
            kept.append((d["t"], delta(d["h"], t_batch(d["t"], d["h"]))))

    asyrp_sample(eps_model, sched, x_T, delta, t_edit, steps, context, callback=keep)
    return torch.stack([d for _, d in kept]), torch.tensor([t for t, _ in kept])


def asyrp_edit(eps_model: EpsModel, sched: Schedule, x0: Tensor, delta: DeltaH | None, t_edit: int, steps: int = 40,
               context: Tensor | None = None, **kwargs) -> Tensor:
    """Edit real data x0 (in the model's space): DDIM inversion to x_T with `context` (`inversion.ddim_invert`), then
    `asyrp_sample` on the same grid; delta = None gives the plain DDIM reconstruction to compare with."""
    grid = resolve_grid(sched.T, steps, "leading", kwargs.pop("grid", None))
    x_T = ddim_invert(eps_model, sched, x0, context=context, grid=grid)
    return asyrp_sample(eps_model, sched, x_T, delta, t_edit, context=context, grid=grid, **kwargs)


def direction_loss(f_edit: Tensor, f_source: Tensor, delta_T: Tensor) -> Tensor:
    """1 - cos(Delta I, Delta T) per sample (Asyrp eq. 6's L_direction, StyleGAN-NADA's directional loss), with
    Delta I = f_edit - f_source the change of the images' features (B, D) and Delta T (D,) the target direction in
    the same feature space (CLIP's text direction in the paper; here a data direction, `feature_direction`)."""
    return 1 - torch.nn.functional.cosine_similarity(f_edit - f_source, delta_T.expand_as(f_edit), dim=1)


def feature_direction(f_with: Tensor, f_without: Tensor) -> Tensor:
    """Delta T from data: the mean feature of images with the attribute minus the mean of those without (D,)."""
    return f_with.mean(0) - f_without.mean(0)


def asyrp_loss(p_edit: Tensor, p_source: Tensor, direction: Tensor, lambda_recon: float) -> Tensor:
    """Asyrp eq. 6 per sample: direction (B,) (lambda_dir folded in) + lambda_recon * mean |P_t^edit - P_t^source|."""
    return direction + lambda_recon * (p_edit - p_source).abs().flatten(1).mean(1)


def t_edit_by_threshold(grid: Tensor, distances: Tensor, threshold: float) -> int:
    """The smallest grid timestep t (excluding 0) with distance(x_0, P_t) >= threshold: Asyrp's rule, edit over
    [T, t_edit] while P_t is still far from x_0 (the official code: LPIPS 0.33). distances (S,) are measured at
    grid[:-1] (descending t). If none reaches the threshold, the first step T."""
    ts, d = grid[:-1], torch.as_tensor(distances)
    if d.shape != ts.shape:
        raise ValueError(f"need one distance per step of the grid ({len(ts)}), got shape {tuple(d.shape)}")
    far = (d >= threshold).nonzero().flatten()
    return int(ts[far.max()]) if len(far) else int(ts[0])


@contextlib.contextmanager
def explicit_attention(model) -> Iterator[None]:
    """Run the attention layers of `model` on their explicit path, softmax(Q K^T / sqrt(d)) V, inside the block
    (forward-mode AD, `torch.func.jvp`, has no rule for the fused CPU kernel; the two paths compute the same maps)."""
    layers = [m for m in hooked_layers(model) if hasattr(m, "fused")]
    saved = [m.fused for m in layers]
    try:
        for m in layers:
            m.fused = False
        yield
    finally:
        for m, f in zip(layers, saved, strict=True):
            m.fused = f


def _orthonormal_rows(V: Tensor) -> Tensor:
    """Rows of V (k, ...) orthonormalised (QR of the flattened rows), shape kept."""
    q, _ = torch.linalg.qr(V.flatten(1).T)  # (n, k)
    return q.T.reshape(V.shape)


def top_singular_vectors(f: Callable[[Tensor], Tensor], x: Tensor, k: int = 3, iters: int = 30, oversample: int = 5,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The top-k right singular vectors v_i (k, *x.shape) and singular values s_i (k,) of J = df/dx at x, without
    forming J: block power (subspace) iteration V <- orth(J^T J V) on k + `oversample` vectors, with J v from
    `torch.func.jvp` and J^T u from `torch.func.vjp`, then Rayleigh-Ritz (SVD of the small matrix J V) to order
    and separate them (Halko, Martinsson & Tropp 2011, sec. 4.5); the error of v_i shrinks like
    (s_{k + oversample + 1} / s_i)^(2 iters). v_1 maximises |J v| over unit v, v_2 does among the v orthogonal to
    v_1, ... (Park et al., sec. 3)."""
    if k < 1 or iters < 1 or oversample < 0:
        raise ValueError(f"need k >= 1, iters >= 1 and oversample >= 0, got k = {k}, iters = {iters}, "
                         f"oversample = {oversample}")
    _, vjp = torch.func.vjp(f, x)
    jvp = lambda v: torch.func.jvp(f, (x,), (v,))[1]  # noqa: E731
    V = _orthonormal_rows(standard_normal((min(k + oversample, x.numel()), *x.shape), x, generator))
    for _ in range(iters):
        V = _orthonormal_rows(torch.stack([vjp(jvp(v))[0] for v in V]))  # J^T J V
    JV = torch.stack([jvp(v) for v in V]).flatten(1)  # (k + p, m)
    _, s, Rh = torch.linalg.svd(JV.T, full_matrices=False)  # J V = U diag(s) Rh
    return (Rh[:k] @ V.flatten(1)).reshape(k, *x.shape).detach(), s[:k].detach()
