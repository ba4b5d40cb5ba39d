"""Direct Inversion (Ju, Zeng, Bian, Liu & Xu, "PnP Inversion: Boosting Diffusion-based Editing with 3 Lines of
Code", ICLR 2024), a course-project baseline.

Null-text inversion (`null_text`) optimises one null embedding per step so that guided DDIM sampling from x*_T
lands back on the w = 1 inversion trajectory x*_0, ..., x*_T. Direct Inversion gets there without optimising:
run the guided step from the pivot and add what it missed,

    x~_{t_prev} = ddim_step(x*_t, cfg_eps(eps(x*_t, t, null), eps(x*_t, t, C_src), w))
    d_t = x*_{t_prev} - x~_{t_prev}                                   (Algorithm 1, "offset")

and then, while editing, add d_t to the *source* branch after every step, so it stays on x*_t exactly and its
attention maps (which P2P injects into the target branch) are those of the source image. The target branch is
not corrected (the reference's default; `offset_target=True` is its "add-target" ablation). Cost: one extra
guided pass per step and no gradients, against null-text inversion's inner Adam loop (`bench edit` times both).

    inv = direct_invert(model, model.schedule, x0, model.encode_text(src), Guidance.of(model, 3.0), steps=25)
    x_src, x_tgt = direct_inversion_p2p(model, Replace(tok, src, tgt, inv.grid), inv, Guidance.of(model, 3.0))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import check_data
from ..guidance import Guidance, check_guidance, guided
from ..inversion import ddim_invert
from ..p2p import AttentionEdit, p2p_sample
from ..protocols import EpsModel
from ..samplers import ddim_coefficients, ddim_update
from ..schedule import Schedule, resolve_grid, step_pairs, t_batch


@dataclass
class DirectInversion:
    """What `direct_invert` returns.

    x_T:     (B, ...) the pivot's noisy end, where reconstruction and editing start
    offsets: (S, B, ...) d_t of each sampling step i (i = 0 is the noisiest)
    pivots:  (S + 1, B, ...) the w = 1 DDIM inversion trajectory, pivots[0] = x_0 ... pivots[S] = x_T
    grid:    the descending sampling grid
    w:       the guidance scale the offsets were computed for
    """

    x_T: Tensor
    offsets: Tensor
    pivots: Tensor
    grid: Tensor
    w: float

    def select(self, idx) -> DirectInversion:
        """The inversion of images idx only (a list, slice or index tensor), for editing them alone."""
        return DirectInversion(self.x_T[idx], self.offsets[:, idx], self.pivots[:, idx], self.grid, self.w)


@torch.no_grad()
def direct_invert(eps_model: EpsModel, sched: Schedule, x0: Tensor, context: Tensor, guidance: Guidance,
                  steps: int = 50, spacing: str = "leading", grid: Tensor | None = None) -> DirectInversion:
    """The pivot x*_0..x*_T (DDIM inversion with the conditional model, w = 1, as null-text inversion's), then the
    offsets d_t = x*_{t_prev} - ddim_step(x*_t, eps~(x*_t)) of the module docstring, one guided pass per step.

    x0: (B, ...); context: (B, L, D) the source prompt; `guidance` = Guidance(encoded "", w)."""
    check_data(x0, "x0")
    check_guidance(guidance)
    if guidance is None:
        raise ValueError("Direct Inversion corrects the guided step: pass guidance=Guidance(null_context, w)")
    grid = resolve_grid(sched.T, steps, spacing, grid)
    S, trajectory = len(grid) - 1, [x0]
    ddim_invert(eps_model, sched, x0, context=context, grid=grid, callback=lambda d: trajectory.append(d["x_t"]))
    coefs, model = ddim_coefficients(sched, grid[:-1], grid[1:]).tolist(), guided(eps_model, guidance)  # (S, 5)
    offsets = []
    for i, (t_int, _) in enumerate(step_pairs(grid)):
        x_t = trajectory[S - i]  # x*_t
        offsets.append(trajectory[S - 1 - i] - ddim_update(x_t, model(x_t, t_batch(t_int, x0), context), coefs[i]))
    return DirectInversion(trajectory[S], torch.stack(offsets), torch.stack(trajectory), grid, guidance.w)


@torch.no_grad()
def direct_sample(eps_model: EpsModel, sched: Schedule, inversion: DirectInversion, context: Tensor,
                  guidance: Guidance) -> Tensor:
    """Guided DDIM from inversion.x_T with d_t added after every step: x0 again (to round-off) when `context` is the
    source prompt and `guidance` the one of `direct_invert`."""
    x, grid, model = inversion.x_T, inversion.grid, guided(eps_model, guidance)
    coefs = ddim_coefficients(sched, grid[:-1], grid[1:]).tolist()
    for i, (t_int, _) in enumerate(step_pairs(grid)):
        x = ddim_update(x, model(x, t_batch(t_int, x), context), coefs[i]) + inversion.offsets[i]
    return x


def direct_inversion_p2p(model, controller: AttentionEdit, inversion: DirectInversion, guidance: Guidance,
                         offset_target: bool = False, callback=None, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Direct Inversion + Prompt-to-Prompt: `p2p_sample` from inversion.x_T with d_t added to the source rows (and
    to the targets with `offset_target`) after every step, before the local blend. The controller's pairs are
    the inverted images in order and its grid must be the inversion's; `callback` as `p2p_sample`'s. Returns
    (x0_sources, x0_targets)."""
    if not torch.equal(controller.grid.cpu(), inversion.grid.cpu()):
        raise ValueError("the controller's grid must be the inversion's grid (build it with grid=inversion.grid)")
    if guidance.w != inversion.w:
        raise ValueError(f"the offsets were computed for w = {inversion.w}; sample with the same w, got {guidance.w}")
    d = inversion.offsets  # (S, G, ...)
    offsets = torch.cat([d, d if offset_target else torch.zeros_like(d)], dim=1)  # (S, 2G, ...) [sources; targets]
    return p2p_sample(model, controller, inversion.x_T, guidance, offsets=offsets, callback=callback,
                      progress=progress)
