"""Noise schedules and timestep grids, in the papers' indexing.

Paper indexing (README.md, Notation): x_0 is data and t = 1..T. Every schedule tensor has
length T+1 and index 0 means "data":

    beta[0] = 0,   alpha[0] = 1,   alpha_bar[0] = 1,
    alpha_t = 1 - beta_t,          alpha_bar_t = prod_{s<=t} alpha_s.

diffusers' index k is our t = k + 1. DDIM's "alpha_t" is our alpha_bar_t.
Schedules are float64 so that the derivation checks can go to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Schedule:
    """A variance schedule beta_1..beta_T (stored with beta[0] = 0 in front).

    Build one with `Schedule.linear(...)` or `Schedule.cosine(...)`;
    `spec` records how, so the schedule can be saved in a checkpoint's JSON.
    """

    beta: Tensor  # (T+1,) float64, beta[0] = 0
    spec: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = self.beta
        if b.ndim != 1 or len(b) < 2:
            raise ValueError(f"beta must be a 1-D tensor of length T+1 >= 2, got shape {tuple(b.shape)}")
        if b[0] != 0:
            raise ValueError(f"beta[0] must be 0 (index 0 is the data), got {b[0].item()}")
        if not bool(((b[1:] > 0) & (b[1:] < 1)).all()):
            raise ValueError("beta_t must lie in (0, 1) for t = 1..T")
        object.__setattr__(self, "beta", b.to(torch.float64))

    @property
    def T(self) -> int:
        return len(self.beta) - 1

    @cached_property
    def alpha(self) -> Tensor:
        """alpha_t = 1 - beta_t, shape (T+1,)."""
        return 1.0 - self.beta

    @cached_property
    def alpha_bar(self) -> Tensor:
        """alpha_bar_t = prod_{s=1}^t alpha_s, shape (T+1,), alpha_bar[0] = 1."""
        return torch.cumprod(self.alpha, dim=0)

    @cached_property
    def beta_tilde(self) -> Tensor:
        """Posterior variance beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t (DDPM eq. 7).

        beta_tilde[0] = 0 by convention, and beta_tilde[1] = 0 because x_0 is known given x_1 and x_0.
        """
        ab = self.alpha_bar
        bt = torch.zeros_like(self.beta)
        bt[1:] = (1.0 - ab[:-1]) / (1.0 - ab[1:]) * self.beta[1:]
        return bt

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
        """DDPM's linear schedule: beta_t evenly spaced from beta_1 to beta_T (Ho et al. 2020, sec. 4)."""
        _check_T(T)
        beta = torch.zeros(T + 1, dtype=torch.float64)
        beta[1:] = torch.linspace(beta_1, beta_T, T, dtype=torch.float64)
        return cls(beta, {"kind": "linear", "T": T, "beta_1": beta_1, "beta_T": beta_T})

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """Nichol & Dhariwal (2021) eq. 17: alpha_bar_t = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2).

        beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, clipped at max_beta to avoid the singularity at t = T.
        """
        _check_T(T)
        t = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        beta = torch.zeros(T + 1, dtype=torch.float64)
        beta[1:] = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        return cls(beta, {"kind": "cosine", "T": T, "s": s, "max_beta": max_beta})

    @classmethod
    def from_spec(cls, spec: dict) -> Schedule:
        """Rebuild a schedule from `spec` (what a checkpoint's JSON stores)."""
        kinds = {"linear": cls.linear, "cosine": cls.cosine}
        kind = spec.get("kind")
        if kind not in kinds:
            raise ValueError(f"unknown schedule kind {kind!r}; expected one of {sorted(kinds)}")
        return kinds[kind](**{k: v for k, v in spec.items() if k != "kind"})

    def at(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """Gather schedule tensor `name` at integer timesteps t (B,), shaped to broadcast against
        `like` (B, ...) and cast to its dtype/device."""
        return per_row(getattr(self, name)[t.to(torch.long).cpu()], like)  # (B,) -> (B, 1, ...)


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")


SPACINGS = ("leading", "trailing", "linspace")


def timesteps(T: int, steps: int, spacing: str = "leading") -> Tensor:
    """A strided sub-sequence tau_S > ... > tau_1 >= 1 of 1..T, followed by 0.

    Returns a descending long tensor of length steps + 1 that always ends at t = 0
    (alpha_bar = 1, the data), so a sampler walks the pairs (grid[i], grid[i+1]) with
    no special case for the first or last step. Spacings (Lin et al. 2024, table 2,
    translated to t = k + 1):

    - "leading":  tau_i = 1 + (i-1) * (T // S)              (DDIM's choice; starts at t = 1)
    - "trailing": tau_i = T - (S - i) * (T / S), rounded      (always includes t = T)
    - "linspace": tau_i = 1 + round(linspace(0, T - 1, S))    (includes both 1 and T; ties round to even
                  in diffusers' index k = t - 1, as numpy does, so the grids are identical)
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if steps > T:
        raise ValueError(f"cannot take {steps} steps on a schedule with T = {T} timesteps; use steps <= {T}")
    if spacing == "leading":
        tau = 1 + torch.arange(steps) * (T // steps)
    elif spacing == "trailing":
        # T - j T/S for j = 0..S-1, with the step rounded as numpy.arange(T, 0, -T/S) rounds it (exact .5 ties
        # then break as in diffusers)
        step = (T - T / steps) - T
        tau = torch.round(T + torch.arange(steps, dtype=torch.float64) * step).long().flip(0)
    elif spacing == "linspace":
        # k_i = i (T - 1) / (S - 1) computed as numpy.linspace does (torch.linspace breaks some .5 ties differently)
        k = torch.arange(steps, dtype=torch.float64) * ((T - 1) / max(steps - 1, 1))
        k[-1] = T - 1 if steps > 1 else 0
        tau = 1 + torch.round(k).long()
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    grid = torch.cat([tau.long().flip(0), torch.zeros(1, dtype=torch.long)])
    assert bool((grid[:-1] > grid[1:]).all()), grid  # strictly decreasing
    return grid


def _as_index(t: int | Tensor) -> Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"timesteps must be integers (int or an integer tensor), got dtype {t.dtype}")
    return t.to(torch.long).reshape(-1).cpu()


def timestep_pair(sched: Schedule, t: int | Tensor, t_prev: int | Tensor) -> tuple[Tensor, Tensor]:
    """(t, t_prev) as long index tensors of shape (B,) (B = 1 for ints), checked: 0 <= t_prev < t <= T."""
    t, t_prev = _as_index(t), _as_index(t_prev)
    if bool((t_prev >= t).any()) or bool((t_prev < 0).any()) or bool((t > sched.T).any()):
        raise ValueError(f"need 0 <= t_prev < t <= T = {sched.T}, got t = {t.tolist()}, t_prev = {t_prev.tolist()}")
    return t, t_prev


def check_grid(grid: Tensor, T: int) -> Tensor:
    """Validate a timestep grid: 1-D integers, strictly decreasing, grid[0] <= T, ending at 0."""
    grid = _as_index(grid)
    if len(grid) < 2 or grid[-1] != 0 or grid[0] > T or not bool((grid[:-1] > grid[1:]).all()):
        raise ValueError(f"a grid must be strictly decreasing from at most T = {T} down to 0 "
                         f"(see schedule.timesteps), got {grid.tolist()}")
    return grid


def resolve_grid(T: int, steps: int = 50, spacing: str = "leading", grid: Tensor | None = None) -> Tensor:
    """The grid a sampler walks: `timesteps(T, steps, spacing)`, or a custom `grid` (checked by `check_grid`),
    which then replaces steps and spacing. Descending, ends at 0."""
    return timesteps(T, steps, spacing) if grid is None else check_grid(grid, T)


def step_pairs(grid: Tensor) -> list[tuple[int, int]]:
    """The sampling steps t -> t_prev of a descending grid, noisiest first:
    [(grid[0], grid[1]), (grid[1], grid[2]), ..., (tau_1, 0)]."""
    ts = grid.tolist()
    return list(zip(ts[:-1], ts[1:], strict=True))


def inversion_pairs(grid: Tensor) -> list[tuple[int, int]]:
    """The same steps walked upwards, as inversions take them, data first:
    [(0, tau_1), (tau_1, tau_2), ..., (grid[1], grid[0])], each as (t_prev, t)."""
    return [(t_prev, t) for t, t_prev in reversed(step_pairs(grid))]


def t_batch(t: int, like: Tensor) -> Tensor:
    """The timestep t repeated for every row of `like`: a (B,) long tensor on like's device (what an
    eps-model's `t` argument is)."""
    return torch.full((like.shape[0],), t, dtype=torch.long, device=like.device)


def per_row(c: Tensor, like: Tensor) -> Tensor:
    """A (B,) (or (1,)) coefficient shaped (B, 1, ...) to broadcast against `like` (B, ...), cast to its dtype and
    device: coefficients are computed from the float64 schedule, then applied in the images' precision."""
    return c.to(like).view(-1, *([1] * (like.ndim - 1)))


def standard_normal(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """eps ~ N(0, I) of `shape` in like's dtype, on like's device. With a generator the draw is made where the
    generator lives (a CPU generator: the same noise from a seed on every device) and moved; without one it is made
    on like's device directly."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)
