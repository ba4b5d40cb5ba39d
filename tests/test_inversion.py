"""Derivation checks for lecture 3: DDIM inversion, its local-linearity error, and SDEdit.

Exactness claims are checked to float64 round-off (relative 1e-12-ish, with the amplification by
1/sqrt(alpha_bar_T) stated where it matters); approximation claims with measured numbers against
closed forms for Gaussian data (the probability-flow map of N(m, s^2) is affine).
"""

import math

import pytest
import torch

from minidiff.guidance import Guidance, cfg_eps
from minidiff.inversion import ddim_invert, ddim_invert_step, sdedit, sdedit_grid
from minidiff.null_text import optimize_null
from minidiff.oracles import gaussian_eps, two_gaussians_eps
from minidiff.samplers import ddim_sample, ddim_step
from minidiff.schedule import SPACINGS, Schedule, t_batch, timesteps
from tests.test_experiments import CAPTIONS, images, tiny_model

F64 = torch.float64
SCHEDULES = {"linear": Schedule.linear(1000), "cosine": Schedule.cosine(1000)}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def x_independent_eps(T: int, dim: int, seed: int = 0):
    """eps(x_t, t, c) = f(t, c): a fixed random vector per timestep (and per context 0 / nonzero)."""
    table = torch.randn(2, T + 1, dim, generator=gen(seed), dtype=F64)

    def eps_model(x, t, context=None):
        cond = torch.zeros_like(t) if context is None else (context.view(len(t), -1)[:, 0] != 0).long()
        return table[cond, t].to(x)
    return eps_model


def test_the_inverse_step_undoes_the_ddim_step_for_the_same_eps():
    """ddim_invert_step(ddim_step(x_t)) = x_t for every pair tested (relative 1e-12: 1/sqrt(ab) amplifies)."""
    sched = SCHEDULES["cosine"]
    x_t, eps = torch.randn(4, 5, generator=gen(1), dtype=F64), torch.randn(4, 5, generator=gen(2), dtype=F64)
    for t, t_prev in [(1000, 980), (981, 961), (500, 0), (2, 1), (1, 0), (1000, 0)]:
        back = ddim_invert_step(sched, ddim_step(sched, x_t, eps, t, t_prev), eps, t_prev, t)
        torch.testing.assert_close(back, x_t, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="0 <= t_prev < t"):
        ddim_invert_step(sched, x_t, eps, 10, 5)  # arguments in the sampler's order


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 10, 50, 1000])
def test_invert_then_sample_is_exact_for_an_eps_model_that_ignores_x(name, spacing, steps):
    """If eps does not depend on x_t, eps(x_{t_prev}, t) = eps(x_t, t): the local-linearity approximation is
    exact and so is the round trip. Measured worst max abs error 1.2e-12 (cosine, whose ab_T = 2.4e-9
    amplifies round-off by 1/sqrt(ab_T) ~ 2e4 at the first sampling step); asserted below 1e-11."""
    sched = SCHEDULES[name]
    model = x_independent_eps(sched.T, 3)
    x0 = torch.rand(8, 3, generator=gen(3), dtype=F64) * 2 - 1
    x_T = ddim_invert(model, sched, x0, steps=steps, spacing=spacing)
    back = ddim_sample(model, sched, x_T, steps=steps, spacing=spacing)
    assert (back - x0).abs().max() < 1e-11


def test_round_trip_with_classifier_free_guidance_and_a_custom_grid_is_exact_for_an_x_independent_model():
    """guidance=Guidance(null, w) inverts the CFG-combined model, which still ignores x: exact (< 1e-11) on an uneven
    custom grid with a unit step (300 -> 299) and a step to t = 1, for w = 1 and 7.5."""
    sched = SCHEDULES["linear"]
    model, null = x_independent_eps(sched.T, 2, seed=4), torch.zeros(1, 1, dtype=F64)
    x0, context = torch.randn(6, 2, generator=gen(5), dtype=F64), torch.ones(6, 1, dtype=F64)
    grid = torch.tensor([1000, 700, 300, 299, 20, 1, 0])
    for w in (1.0, 7.5):
        x_T = ddim_invert(model, sched, x0, context=context, guidance=Guidance(null, w), grid=grid)
        back = ddim_sample(model, sched, x_T, context=context, grid=grid, guidance=Guidance(null, w))
        assert (back - x0).abs().max() < 1e-11
    with pytest.raises(TypeError, match="null_context, w"):
        ddim_invert(model, sched, x0, context=context, guidance=7.5)
    with pytest.raises(TypeError, match="null_context, w"):
        ddim_invert(model, sched, x0, context=context, guidance=(null, 7.5))  # the old tuple form


def test_round_trip_error_of_a_nonlinear_model_falls_as_the_steps_grow():
    """Optimal eps of a two-Gaussian mixture (nonlinear: tanh), data from the mixture, cosine schedule,
    leading grid. Mean squared round-trip error measured: 6.8e-3, 1.9e-3, 3.2e-4, 8.4e-5 at 10, 20, 50, 100
    steps (2.1e-5 at 200): ~ 1/steps^2 for the squared error, i.e. first order in the step for the error
    itself. Asserted: each at most 0.5x the previous, > 3e-3 at 10 and < 2e-4 at 100 steps."""
    sched, mu, s = SCHEDULES["cosine"], torch.tensor([1.0, 0.5], dtype=F64), 0.3
    model = two_gaussians_eps(sched, mu, s)
    y = torch.randint(0, 2, (512, 1), generator=gen(6)).to(F64) * 2 - 1
    x0 = y * mu + s * torch.randn(512, 2, generator=gen(7), dtype=F64)
    mse = []
    for steps in (10, 20, 50, 100):
        back = ddim_sample(model, sched, ddim_invert(model, sched, x0, steps=steps), steps=steps)
        mse.append((back - x0).pow(2).mean().item())
    assert all(b < 0.5 * a for a, b in zip(mse, mse[1:], strict=False)), mse
    assert mse[-1] < 2e-4 and mse[0] > 3e-3, mse


def test_ddim_invert_evaluates_the_model_at_the_target_timestep_and_never_at_zero():
    """The callback trajectory: pairs (0, tau_1), ..., (tau_{S-1}, tau_S) of the sampler's grid; the model is
    called with t = the target of each step; the first x0_pred is x0 itself (ab_0 = 1); x_t chains on."""
    sched = SCHEDULES["linear"]
    calls, traj = [], []

    def model(x, t, c):
        calls.append(int(t[0]))
        return torch.sin(x) + t.view(-1, 1) / 1000
    x0 = torch.randn(3, 2, generator=gen(8), dtype=F64)
    x_T = ddim_invert(model, sched, x0, steps=20, callback=traj.append)
    up = timesteps(1000, 20).flip(0).tolist()
    assert calls == up[1:] and [d["t_prev"] for d in traj] == up[:-1] and [d["t"] for d in traj] == up[1:]
    assert torch.equal(traj[0]["x0_pred"], x0) and torch.equal(traj[-1]["x_t"], x_T)
    assert all(torch.equal(a["x_t"], b["x_prev"]) for a, b in zip(traj, traj[1:], strict=False))


def test_ddim_inversion_of_gaussian_data_lands_on_the_probability_flow_encoding():
    """For x_0 ~ N(m, s^2) the probability-flow ODE maps x_0 to x_T = sqrt(ab_T) m + sqrt(v_T) (x_0 - m)/s,
    v_T = ab_T s^2 + 1 - ab_T (the monotone map between the two Gaussians). 100 inversion steps with the
    optimal eps reach it within a max abs error of 0.03 over x_0 in m +- 3s (measured 0.024; first order in
    the step: 0.19, 0.043, 0.0028 at 10, 50, 1000 steps), so inverted data are ~ N(0, 1), as sampling expects."""
    sched, m, s = SCHEDULES["linear"], 0.3, 0.5
    x0 = m + s * torch.linspace(-3, 3, 13, dtype=F64).view(-1, 1)
    ab = sched.alpha_bar[1000].item()
    expected = math.sqrt(ab) * m + math.sqrt(ab * s**2 + 1 - ab) * (x0 - m) / s
    model = gaussian_eps(sched, torch.tensor([m], dtype=F64), torch.tensor([[s**2]], dtype=F64))
    err = {S: (ddim_invert(model, sched, x0, steps=S, spacing="trailing") - expected).abs().max().item()
           for S in (10, 100)}
    assert err[100] < 0.03 and err[10] > 3 * err[100], err


# ---- SDEdit ------------------------------------------------------------------------------------------

def test_sdedit_grid_starts_at_t0_and_continues_on_the_full_sampling_grid():
    assert sdedit_grid(1000, 1000, 10, "trailing").tolist() == timesteps(1000, 10, "trailing").tolist()
    assert sdedit_grid(1000, 1000, 10, "leading").tolist() == [1000, *timesteps(1000, 10, "leading").tolist()]
    assert sdedit_grid(1000, 450, 10, "leading").tolist() == [450, 401, 301, 201, 101, 1, 0]
    assert sdedit_grid(1000, 401, 10, "leading").tolist() == [401, 301, 201, 101, 1, 0]
    assert sdedit_grid(1000, 1, 10).tolist() == [1, 0]
    for bad in (0, 1001, 3.5):
        with pytest.raises(ValueError, match="t0 must be an integer timestep in 1..T"):
            sdedit_grid(1000, bad, 10)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sdedit_from_t0_equal_T_on_the_full_grid_is_plain_ddim_sampling(eta):
    """Same forward noise eps (x_T = q_sample(x0, T, eps)) and step noise: bit-identical outputs."""
    sched = SCHEDULES["linear"]
    model = two_gaussians_eps(sched, torch.tensor([1.0, -1.0], dtype=F64), 0.4)
    x0, eps = torch.randn(5, 2, generator=gen(9), dtype=F64), torch.randn(5, 2, generator=gen(10), dtype=F64)
    noise = torch.randn(50, 5, 2, generator=gen(11), dtype=F64)
    ab = sched.alpha_bar[1000]
    x_T = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    plain = ddim_sample(model, sched, x_T, steps=50, eta=eta, spacing="trailing", noise=noise)
    edited = sdedit(model, sched, x0, 1000, steps=50, eta=eta, spacing="trailing", eps=eps, noise=noise)
    assert torch.equal(edited, plain)


def test_sdedit_stays_close_to_x0_at_small_t0_as_the_probability_flow_map_predicts():
    """Gaussian data N(m, s^2), optimal eps, eta = 0, unit steps below t0. The ODE maps x_{t0} to
    x0' = m + s (sqrt(ab) (x0 - m) + sqrt(1-ab) e) / sqrt(v), v = ab s^2 + 1 - ab, so in closed form
    E(x0' - x0)^2 = s^2 (s sqrt(ab/v) - 1)^2 + s^2 (1 - ab) / v. 20,000 samples agree with it within 4 SE
    + 2% (unit-step discretisation: measured deviations 0.9%, 0.7%, 0.5%, 0.5%), at t0 = 10, 100, 300, 1000
    (closed form 1.9e-3, 0.086, 0.31, 0.498): close to x0 at small t0, a fresh sample (2 s^2 = 0.5) at T."""
    sched, m, s, N = SCHEDULES["linear"], 0.3, 0.5, 20_000
    model = gaussian_eps(sched, torch.tensor([m], dtype=F64), torch.tensor([[s**2]], dtype=F64))
    x0 = m + s * torch.randn(N, 1, generator=gen(12), dtype=F64)
    measured = []
    for t0 in (10, 100, 300, 1000):
        ab = sched.alpha_bar[t0].item()
        v = ab * s**2 + 1 - ab
        exact = s**2 * (s * math.sqrt(ab / v) - 1) ** 2 + s**2 * (1 - ab) / v
        d2 = (sdedit(model, sched, x0, t0, steps=1000, generator=gen(13)) - x0).pow(2)
        measured.append(d2.mean().item())
        assert abs(d2.mean().item() - exact) < 4 * d2.std().item() / math.sqrt(N) + 0.02 * exact, (t0, d2.mean(), exact)
    assert measured[0] < 5e-3 and all(a < b for a, b in zip(measured, measured[1:], strict=False))


def test_null_text_inner_loop_lowers_its_loss_and_stops_at_the_threshold():
    """Algorithm 1's inner loop (`null_text.optimize_null`) on a tiny random model in float64: the target is the
    guided step taken with a perturbed null embedding, so a zero loss exists; 20 Adam steps from the encoded ""
    lower the loss by more than 10x, a threshold above the first loss stops after one iteration, and
    inner_steps = 0 is refused."""
    model = tiny_model().double()
    sched, x = model.schedule, images(2, torch.float64)
    ctx, null = model.encode_text(CAPTIONS), model.null_context(2)
    t = t_batch(60, x)
    with torch.no_grad():
        eps_c = model(x, t, ctx)
        target = ddim_step(sched, x, cfg_eps(model(x, t, null + 0.05), eps_c, 3.0), 60, 40)
        first = (ddim_step(sched, x, cfg_eps(model(x, t, null), eps_c, 3.0), 60, 40) - target).pow(2).flatten(1)
    _, loss, used = optimize_null(model, sched, x, 60, 40, eps_c, null, target, 3.0, 1e-2, 20, 0.0)
    assert used == 20 and loss < first.mean(1).max().item() / 10, (loss, first.mean(1).max().item())
    _, _, used = optimize_null(model, sched, x, 60, 40, eps_c, null, target, 3.0, 1e-2, 20, 1.0)
    assert used == 1
    with pytest.raises(ValueError, match="inner_steps"):
        optimize_null(model, sched, x, 60, 40, eps_c, null, target, 3.0, 1e-2, 0, 0.0)
