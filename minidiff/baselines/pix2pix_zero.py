"""Pix2Pix-Zero (Parmar, Kumar Singh, Zhang, Li, Lu & Zhu, "Zero-shot Image-to-Image Translation", SIGGRAPH 2023),
a course-project baseline: edit with a direction in text-embedding space, keep the structure with cross-attention
guidance, no prompt for the target and no training.

1. Inversion with noise regularisation (sec. 3.1). DDIM inversion with the source caption c, where every
   predicted eps is first pushed towards white Gaussian noise by a few gradient steps on

       L_pair = sum_levels sum_shifts ( mean_{x,y} eta(x, y) eta(x - d, y) )^2 + (same along y)      (eq. 2-3)
       L_KL   = var(eta) + mean(eta)^2 - 1 - log var(eta)
       eta <- eta - lambda_ac grad L_pair / rolls  (`rolls` random shifts d),  eta <- eta - lambda_kl grad L_KL

   over a pyramid of 2x average-pooled copies down to 8x8 (the reference's defaults: lambda_ac = lambda_kl = 20,
   5 rounds of 5 shifts). Shifts here are drawn from 1..H/2 - 1 (the reference's randrange(H/2) can draw 0, which
   measures the variance, L_KL's job).
2. The edit direction (sec. 3.2): Delta c = mean_j E(target sentence_j) - mean_i E(source sentence_i), over many
   sentences with the source and the target word (here generated from the shapes grammar:
   `datasets.shapes.swap_sentences`); the edit uses c_edit = c + Delta c.
3. Cross-attention guidance (sec. 3.3). Reconstruct with c from x_T and keep its cross-attention maps M^ref_t;
   then denoise with c_edit, and before each guided DDIM step move x_t down the gradient of

       L_xa = || M_t(x_t, c_edit) - M^ref_t ||^2          x_t <- x_t - lambda_xa grad L_xa     (lambda_xa = 0.1)

   The reference code batches the null and conditional rows into the gradient step and keeps the null row's update;
   here the step is on the conditional maps only (the ones c_edit changes), once per image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..attention_control import AttentionController, AttentionInfo, attention_control
from ..checks import check_data
from ..guidance import Guidance, guided
from ..inversion import ddim_invert_step
from ..p2p_alignment import conditional_rows
from ..protocols import EpsModel
from ..samplers import ddim_coefficients, ddim_sample, ddim_update
from ..schedule import Schedule, inversion_pairs, resolve_grid, step_pairs, t_batch


def auto_corr_loss(eta: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """L_pair per image (B,) of eta (B, C, H, W): squared mean products with a randomly shifted copy along H and W,
    summed over channels and over the pyramid of 2x average-pooled levels down to 8x8."""
    loss, x = 0.0, eta
    while True:
        d = int(torch.randint(1, max(2, x.shape[-1] // 2), (1,), generator=generator))
        loss = loss + (x * x.roll(d, dims=-2)).mean((-2, -1)).pow(2).sum(1)  # (B,)
        loss = loss + (x * x.roll(d, dims=-1)).mean((-2, -1)).pow(2).sum(1)
        if x.shape[-1] <= 8:
            return loss
        x = torch.nn.functional.avg_pool2d(x, 2)


def kl_loss(eta: Tensor) -> Tensor:
    """L_KL per image (B,): KL(N(mean, var) || N(0, 1)) x 2 of eta's values, var + mean^2 - 1 - log var."""
    flat = eta.flatten(1)
    var = flat.var(1)
    return var + flat.mean(1).pow(2) - 1 - torch.log(var + 1e-7)


def regularize_noise(eta: Tensor, lambda_ac: float = 20.0, lambda_kl: float = 20.0, rounds: int = 5,
                     rolls: int = 5, generator: torch.Generator | None = None) -> Tensor:
    """Step 1's gradient steps on a predicted eps (B, C, H, W) (module docstring); identity at lambda = 0."""
    with torch.enable_grad():
        for _ in range(rounds if lambda_ac or lambda_kl else 0):
            for _ in range(rolls if lambda_ac else 0):
                x = eta.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(auto_corr_loss(x, generator).sum(), [x])
                eta = eta.detach() - lambda_ac * g / rolls
            if lambda_kl:
                x = eta.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(kl_loss(x).sum(), [x])
                eta = eta.detach() - lambda_kl * g
    return eta.detach()


@torch.no_grad()
def pix2pix_zero_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor, steps: int = 50,
                        grid: Tensor | None = None, lambda_ac: float = 20.0, lambda_kl: float = 20.0,
                        seed: int = 0) -> Tensor:
    """DDIM inversion of x0 (B, ...) with the conditional model (w = 1) and `regularize_noise` on every eps: x_T.
    With lambda_ac = lambda_kl = 0 it is `inversion.ddim_invert`."""
    check_data(x0, "x0")
    grid, g, x = resolve_grid(sched.T, steps, "leading", grid), torch.Generator().manual_seed(seed), x0
    for t_prev, t_int in inversion_pairs(grid):  # upwards: t_prev -> t, eps at t as `ddim_invert`
        eps = eps_model(x, t_batch(t_int, x), context)
        x = ddim_invert_step(sched, x, regularize_noise(eps, lambda_ac, lambda_kl, generator=g), t_prev, t_int)
    return x


def edit_direction(encode_text, sources: list[str], targets: list[str]) -> Tensor:
    """Delta c = mean_j E(targets_j) - mean_i E(sources_i): (1, L, D), `encode_text` a model's prompt encoder."""
    if not sources or not targets:
        raise ValueError("the edit direction needs at least one source and one target sentence")
    return encode_text(targets).mean(0, keepdim=True) - encode_text(sources).mean(0, keepdim=True)


class CrossMaps(AttentionController):
    """Records the conditional rows' cross-attention maps per (t, layer) (`reference` None), or adds
    sum_images mean_heads sum_{HW, L} (M - M^ref)^2 over the layers to `loss`, with gradients (L_xa)."""

    def __init__(self, n: int, reference: dict | None = None):
        self.n, self.reference, self.maps, self.loss = n, reference, {}, 0.0

    def cross(self, probs: Tensor, info: AttentionInfo) -> Tensor:
        m = probs[conditional_rows(probs.shape[0], self.n)]  # (n, heads, HW, L)
        key = (int(info.t[0]), info.layer)
        if self.reference is None:
            self.maps[key] = m.detach()
        else:
            self.loss = self.loss + (m - self.reference[key]).pow(2).sum((-2, -1)).mean(1).sum()
        return probs


def xa_guidance_step(eps_model: EpsModel, x_t: Tensor, t_int: int, context: Tensor, reference: dict,
                     lambda_xa: float) -> tuple[Tensor, float]:
    """x_t - lambda_xa grad L_xa(x_t) (step 3) and L_xa before the step."""
    x = x_t.detach().requires_grad_(True)
    maps = CrossMaps(x.shape[0], reference)
    with torch.enable_grad(), attention_control(eps_model, maps):
        eps_model(x, t_batch(t_int, x), context)
        (g,) = torch.autograd.grad(maps.loss, [x])
    return (x - lambda_xa * g).detach(), float(maps.loss.detach())


@torch.no_grad()
def pix2pix_zero_edit(model, x_T: Tensor, context: Tensor, direction: Tensor, guidance: Guidance | None,
                      steps: int = 50, grid: Tensor | None = None, lambda_xa: float = 0.1) -> tuple[Tensor, Tensor]:
    """Steps 2-3: the reconstruction with c (its maps kept) and the edit with c + direction under cross-attention
    guidance, both guided DDIM from x_T (B, ...). Returns (reconstruction, edit)."""
    sched, B = model.schedule, x_T.shape[0]
    grid = resolve_grid(sched.T, steps, "leading", grid)
    recorder = CrossMaps(B)
    with attention_control(model, recorder):
        x_rec = ddim_sample(model, sched, x_T, context=context, guidance=guidance, grid=grid)
    c_edit, eps_model, x = context + direction.to(context), guided(model, guidance), x_T
    coefs = ddim_coefficients(sched, grid[:-1], grid[1:]).tolist()  # (S, 5)
    for i, (t_int, _) in enumerate(step_pairs(grid)):
        if lambda_xa > 0:
            x, _ = xa_guidance_step(model, x, t_int, c_edit, recorder.maps, lambda_xa)
        x = ddim_update(x, eps_model(x, t_batch(t_int, x), c_edit), coefs[i])
    return x_rec, x
