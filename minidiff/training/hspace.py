"""Training Asyrp's implicit function f_t (lecture 8; `hspace`, `nn.hspace.ImplicitDelta`).

For each batch of inverted latents x_T (Asyrp sec. 4.1 and kwonminki/Asyrp_official's `run_training`: DDIM
inversion of about a hundred real images, then the editing interval [T, t_edit] of the reverse process):

    x <- x_T;  for t in the grid while t >= t_edit:
        eps, h = eps_theta(x_t);   eps~ = eps_theta(x_t | h + f_t(h))
        L^(t) = loss(P_t(eps~), P_t(eps))                     (Asyrp eq. 6: direction + reconstruction)
        one optimiser step on f
        x <- sqrt(ab_prev) P_t(eps~) + D_t(eps)                  (the asymmetric step, no gradient)

Only f's parameters are trained; the UNet is frozen for the duration and restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..hspace import P_t, asyrp_update
from ..samplers import ddim_coefficients
from ..schedule import Schedule, resolve_grid, step_pairs, t_batch

AsyrpLoss = Callable[[Tensor, Tensor, Tensor], Tensor]  # (P_edit, P_source, t) -> per-sample loss (B,)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """`module` with requires_grad off for every parameter inside the block (restored on exit)."""
    saved = [(p, p.requires_grad) for p in module.parameters()]
    try:
        module.requires_grad_(False)
        yield module
    finally:
        for p, r in saved:
            p.requires_grad_(r)


def batch_context(context: Tensor | None, idx: Tensor) -> Tensor | None:
    """The context rows of a batch: one shared (1, L, D) context expanded, or per-image (N, L, D) rows indexed."""
    if context is None:
        return None
    return context.expand(len(idx), -1, -1) if len(context) == 1 else context[idx.to(context.device)]


def train_implicit_delta(model: nn.Module, sched: Schedule, f: nn.Module, x_T: Tensor, loss: AsyrpLoss, t_edit: int,
                         steps: int = 40, context: Tensor | None = None, epochs: int = 1, batch_size: int = 16,
                         lr: float = 1e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Train f_t in place on the latents x_T (N, ...) by the module docstring's loop; returns the loss of every
    optimiser step (one per editing step per batch). `context`: (1, L, D) shared by every image, (N, L, D) one per
    image, or None."""
    grid, context = resolve_grid(sched.T, steps, "leading", None), None if context is None else context.detach()
    coefs = ddim_coefficients(sched, grid[:-1], grid[1:], 0.0).tolist()
    pairs = [(i, t) for i, (t, _) in enumerate(step_pairs(grid)) if t >= t_edit]
    opt, g, losses = torch.optim.Adam(f.parameters(), lr=lr), torch.Generator().manual_seed(seed), []
    f.train()
    with frozen(model), tqdm(total=epochs * len(range(0, len(x_T), batch_size)), disable=not progress,
                              desc="Asyrp f_t") as bar:
        for _ in range(epochs):
            for idx in torch.randperm(len(x_T), generator=g).split(batch_size):
                x, ctx = x_T[idx.to(x_T.device)], batch_context(context, idx)
                for i, t_int in pairs:
                    t = t_batch(t_int, x)
                    with torch.no_grad():
                        eps, h = model(x, t, ctx, return_h=True)
                    eps_edit = model(x, t, ctx, h_delta=f(h, t))
                    value = loss(P_t(x, eps_edit, coefs[i]), P_t(x, eps, coefs[i]), t).mean()
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    opt.step()
                    losses.append(value.item())
                    x = asyrp_update(x, eps, eps_edit.detach(), coefs[i])
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    f.eval()
    return losses
