"""Equivalence with Hugging Face diffusers' schedulers on a fake eps-model (no training, no download).

Index map: our t = 1..T is diffusers' k = t - 1 (alpha_bar[t] = alphas_cumprod[k]); our t = 0
(alpha_bar = 1, the data) is their "final"/"initial" alpha_cumprod with set_alpha_to_one=True.
diffusers keeps its schedule in float32; the schedules are first compared at float32 accuracy,
then our float64 alpha_bar is put into the scheduler so the *update formulas and indexing* are
compared to float64 round-off. Skipped when diffusers is not installed.
"""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from minidiff.gaussian import posterior_mean_from_eps  # noqa: E402
from minidiff.inversion import ddim_invert  # noqa: E402
from minidiff.samplers import ddim_sample, ddim_step, ddpm_sample  # noqa: E402
from minidiff.schedule import Schedule, timesteps  # noqa: E402

F64 = torch.float64
T = 1000
SCHEDULES = {"linear": (Schedule.linear(T), {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}),
             "cosine": (Schedule.cosine(T), {"beta_schedule": "squaredcos_cap_v2"})}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fake_eps(x, t, context=None):
    """A nonlinear eps-model of (x_t, t); t is OUR index (1..T)."""
    return torch.tanh(1.5 * x) * torch.cos(t.view(-1, 1).to(x) / 137.0) + 0.1 * t.view(-1, 1).to(x) / T


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max(1, max |ref|): the fake model drives cosine chains to |x| ~ 3e4 (x0_pred divides
    by sqrt(ab_T) = 5e-5), so differences are measured relative to the size of the result."""
    return (ours - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def theirs(cls, name: str, float64: bool = True, **kw):
    sched, schedule_kw = SCHEDULES[name]
    s = cls(num_train_timesteps=T, clip_sample=False, **schedule_kw, **kw)
    if float64:  # same maths, our float64 schedule
        s.alphas_cumprod = sched.alpha_bar[1:].clone()
        for attr in ("final_alpha_cumprod", "initial_alpha_cumprod", "one"):
            if hasattr(s, attr):
                setattr(s, attr, torch.tensor(1.0, dtype=F64))
    return s


@pytest.mark.parametrize("name", SCHEDULES)
def test_our_schedules_are_diffusers_schedules_shifted_by_one_index(name):
    """alpha_bar[t] = alphas_cumprod[t - 1] for t = 1..T, to float32 accuracy (max abs diff: 2e-7 measured;
    their float32 cumulative product drifts, ours is float64), and alpha_bar[0] = 1 = final_alpha_cumprod."""
    sched = SCHEDULES[name][0]
    d = theirs(diffusers.DDIMScheduler, name, float64=False, set_alpha_to_one=True)
    torch.testing.assert_close(d.alphas_cumprod.double(), sched.alpha_bar[1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(d.betas.double(), sched.beta[1:], rtol=1e-5, atol=1e-7)
    assert sched.alpha_bar[0] == 1.0 == d.final_alpha_cumprod


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_our_timestep_grids_are_diffusers_grids_plus_one_for_every_step_count(spacing):
    """All S = 1..T: diffusers' DDIMScheduler.timesteps + 1 == timesteps(T, S, spacing) without its final 0,
    exact .5 ties included. Except, for 'trailing', the 62 step counts (61, 103, 121, ...) where diffusers'
    np.arange(T, 0, -T/S) overshoots by round-off and returns S + 1 timesteps ending at k = -1, which is not
    a timestep (a diffusers bug); our grid has S steps there."""
    d = theirs(diffusers.DDIMScheduler, "linear", timestep_spacing=spacing, steps_offset=0)
    mismatched, overshoot = [], []
    for steps in range(1, T + 1):
        d.set_timesteps(steps)
        ref, ours = (d.timesteps + 1).tolist(), timesteps(T, steps, spacing)[:-1].tolist()
        if len(ref) == steps + 1 and ref[-1] == 0 and spacing == "trailing":
            overshoot.append(steps)
            ref = ref[:-1]
        if ref != ours:
            mismatched.append(steps)
    assert mismatched == []
    assert len(overshoot) in ((0, 62) if spacing == "trailing" else (0,))  # 0 once diffusers fixes it


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_equals_DDIMScheduler_step_at_every_grid_point(name, spacing, eta):
    """Each of diffusers' steps k -> k - T // S (their previous timestep, which for 'linspace' is not the next
    grid point) equals our ddim_step(t = k + 1, t_prev = max(k + 1 - T // S, 0)) for the same eps and noise."""
    sched, steps = SCHEDULES[name][0], 50
    d = theirs(diffusers.DDIMScheduler, name, timestep_spacing=spacing, steps_offset=0, set_alpha_to_one=True)
    d.set_timesteps(steps)
    x = torch.randn(4, 3, generator=gen(0), dtype=F64)
    worst = 0.0
    for i, k in enumerate(d.timesteps.tolist()):
        t, t_prev = k + 1, max(k + 1 - T // steps, 0)
        eps, z = fake_eps(x, torch.full((4,), t)), torch.randn(4, 3, generator=gen(i + 1), dtype=F64)
        ref = d.step(eps, k, x, eta=eta, variance_noise=z if eta > 0 else None).prev_sample
        ours = ddim_step(sched, x, eps, t, t_prev, eta, z if eta > 0 else None)
        worst = max(worst, rel_err(ours, ref))
    assert worst < 1e-12


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_equals_a_DDIMScheduler_loop(name, spacing, eta):
    """Whole 50-step chains (T // 50 divides T, so diffusers' previous timestep is our next grid point).
    With our float64 schedule inside diffusers: round-off (relative error < 1e-12). With diffusers' own
    float32 schedule: relative error < 1e-4 on a float64 chain (measured up to 7e-6, cosine: float32
    alphas_cumprod, amplified by 1/sqrt(ab_T) at the first step)."""
    sched, steps = SCHEDULES[name][0], 50
    x_T = torch.randn(8, 3, generator=gen(10), dtype=F64)
    noise = torch.randn(steps, 8, 3, generator=gen(11), dtype=F64)
    ours = ddim_sample(fake_eps, sched, x_T, steps, eta, spacing=spacing, noise=noise)
    for float64, tol in ((True, 1e-12), (False, 1e-4)):
        d = theirs(diffusers.DDIMScheduler, name, float64, timestep_spacing=spacing, steps_offset=0,
                   set_alpha_to_one=True)
        d.set_timesteps(steps)
        x = x_T
        for i, k in enumerate(d.timesteps.tolist()):
            eps = fake_eps(x, torch.full((8,), k + 1))
            x = d.step(eps, k, x, eta=eta, variance_noise=noise[i] if eta > 0 else None).prev_sample
        assert rel_err(ours, x) < tol, (float64, rel_err(ours, x))


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("variance_type,var", [("fixed_large", "beta"), ("fixed_small", "beta_tilde")])
def test_ddpm_sample_equals_a_DDPMScheduler_loop(name, variance_type, var):
    """Algorithm 2 over all T = 1000 steps; diffusers draws z from a generator at k > 0 (our t > 1), so the
    same draws are injected into ddpm_sample (its row for t = 1 is unused). Float64 schedule: relative
    error < 1e-11 (measured 3.9e-13 after 1000 steps; their float32 schedule gives 3e-6 / 3e-4)."""
    sched = SCHEDULES[name][0]
    d = theirs(diffusers.DDPMScheduler, name, variance_type=variance_type)
    x_T = torch.randn(4, 2, generator=gen(20), dtype=F64)
    g = gen(21)
    x = x_T
    for k in range(T - 1, -1, -1):
        x = d.step(fake_eps(x, torch.full((4,), k + 1)), k, x, generator=g).prev_sample
    g = gen(21)
    draws = [torch.randn(4, 2, generator=g, dtype=F64) for _ in range(T - 1)]
    noise = torch.stack([*draws, torch.zeros(4, 2, dtype=F64)])
    ours = ddpm_sample(fake_eps, sched, x_T, var=var, noise=noise)
    assert rel_err(ours, x) < 1e-11
    # and one step in isolation, the posterior mean form (noise-free at k = 0)
    eps = fake_eps(x_T, torch.full((4,), 1))
    mean = posterior_mean_from_eps(sched, x_T, torch.ones(4, dtype=torch.long), eps)
    torch.testing.assert_close(d.step(eps, 0, x_T).prev_sample, mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_invert_equals_a_DDIMInverseScheduler_loop(name, spacing):
    """diffusers' inversion loop calls the model at its (ascending) timestep k on the current latent and steps
    from k - T // S to k: the same convention as ddim_invert (model at the target t = k + 1). Round-off."""
    sched, steps = SCHEDULES[name][0], 50
    x0 = torch.rand(8, 3, generator=gen(30), dtype=F64) * 2 - 1
    d = theirs(diffusers.DDIMInverseScheduler, name, timestep_spacing=spacing, steps_offset=0, set_alpha_to_one=True)
    d.set_timesteps(steps)
    x = x0
    for k in d.timesteps.tolist():
        x = d.step(fake_eps(x, torch.full((8,), k + 1)), k, x).prev_sample
    ours = ddim_invert(fake_eps, sched, x0, steps=steps, spacing=spacing)
    assert rel_err(ours, x) < 1e-12
