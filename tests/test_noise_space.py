"""Lecture 7's noise space: the generator G and its two encoders (CycleDiffusion's DPM-Encoder, edit-friendly DDPM
inversion), checked against exact identities and the closed-form optimal eps of Gaussian data."""

import pytest
import torch
from torch.testing import assert_close

from minidiff.gaussian import predict_x0
from minidiff.guidance import Guidance
from minidiff.noise_space import (
    G,
    dpm_encode,
    edit_friendly_invert,
    edit_friendly_p2p,
    generate,
    langevin_guidance,
    langevin_stationary_var,
    pack,
    q_sigma_sample,
)
from minidiff.oracles import gaussian_eps, two_gaussians_eps
from minidiff.samplers import ddim_sigma
from minidiff.schedule import Schedule, t_batch, timesteps
from tests.test_experiments import CAPTIONS, images, tiny_model

F64 = torch.float64
ENCODERS = {"dpm_encode": dpm_encode, "edit_friendly": edit_friendly_invert}
SCHED = Schedule.linear(1000)
MEAN = torch.tensor([0.5, -0.3], dtype=F64)
L = torch.tensor([[0.6, 0.0], [0.3, 0.2]], dtype=F64)  # data covariance L L^T, eigenvalues 0.41 and 0.02


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    return MEAN + torch.randn(n, 2, generator=gen(seed), dtype=F64) @ L.T


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_g_of_the_encoding_is_the_image_up_to_the_final_step_residual_for_a_nonlinear_model(name, eta, spacing):
    """G(Enc(x_0)) + residual = x_0 to float64 round-off on strided grids: the optimal eps of a two-Gaussian mixture
    (tanh: nonlinear), cosine schedule, 10 steps. The residual is the final sigma = 0 step's x_0 - x0_pred."""
    sched = Schedule.cosine(1000)
    model = two_gaussians_eps(sched, torch.tensor([1.0, 0.5], dtype=F64), 0.3)
    x0 = torch.randn(64, 2, generator=gen(1), dtype=F64)
    grid = timesteps(sched.T, 10, spacing)
    z = ENCODERS[name](model, sched, x0, eta=eta, grid=grid, generator=gen(2))
    assert z.x_t.shape == z.noise.shape == (10, 64, 2) and torch.equal(z.noise[-1], torch.zeros(64, 2, dtype=F64))
    assert_close(generate(model, sched, z) + z.residual, x0, rtol=0, atol=1e-12)
    t_1 = int(grid[-2])  # the residual is the final step's miss: x_0 - x0_pred(x_{t_1}), not zero
    x0_pred = predict_x0(sched, z.x_t[-1], t_batch(t_1, x0), model(z.x_t[-1], t_batch(t_1, x0)))
    assert_close(z.residual, x0 - x0_pred, rtol=0, atol=1e-12)
    assert z.residual.abs().max().item() > 1e-3


@pytest.mark.parametrize("name", ENCODERS)
def test_the_round_trip_is_exact_for_a_text_conditional_unet_under_guidance_and_from_a_skip(name):
    """The tiny UNet in float64 with classifier-free guidance w = 3: G decodes to x_0 - residual, also when it starts
    `skip` steps into the grid from the stored x_t (the edit-friendly paper's T - skip)."""
    model = tiny_model().double()
    x0, ctx = images(2, F64), model.encode_text(CAPTIONS)
    guidance = Guidance(model.null_context(), 3.0)
    z = ENCODERS[name](model, model.schedule, x0, steps=8, eta=1.0, context=ctx, guidance=guidance, generator=gen(3))
    for skip in (0, 3):
        assert_close(generate(model, model.schedule, z, ctx, guidance, skip=skip) + z.residual, x0, rtol=0,
                     atol=1e-10)
    other = generate(model, model.schedule, z, ctx.flip(0), guidance)  # decoded with the other caption: translated
    assert (other + z.residual - x0).abs().max().item() > 1e-4
    with pytest.raises(ValueError, match="skip must be in"):
        generate(model, model.schedule, z, ctx, guidance, skip=8)


def test_q_sigma_is_the_ddim_step_with_the_true_eps_and_has_ddim_eq7_moments():
    """x_{t_prev} ~ q_sigma(. | x_t, x_0) drawn by `q_sigma_sample`: mean sqrt(ab_prev) x_0 + sqrt(1 - ab_prev -
    sigma^2) (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t) (DDIM eq. 7, written out here) and std sigma_t."""
    x0, x_t = torch.randn(3, 2, generator=gen(4), dtype=F64), torch.randn(3, 2, generator=gen(5), dtype=F64)
    t, t_prev, eta = 600, 400, 0.7
    ab, ab_prev, sigma = SCHED.alpha_bar[t], SCHED.alpha_bar[t_prev], ddim_sigma(SCHED, t, t_prev, eta).item()
    mean = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).sqrt() * (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    assert_close(q_sigma_sample(SCHED, x_t, x0, t, t_prev, eta, torch.zeros_like(x0)), mean, rtol=1e-12, atol=1e-12)
    n = torch.randn(3, 2, generator=gen(6), dtype=F64)
    assert_close(q_sigma_sample(SCHED, x_t, x0, t, t_prev, eta, n), mean + sigma * n, rtol=1e-12, atol=1e-12)


def test_dpm_encoder_noise_of_gaussian_data_is_standard_normal_where_beta_tilde_is_the_true_reverse_variance():
    """CycleDiffusion's claim with the exact eps of x_0 ~ N(m, L L^T), DDPM (eta = 1, all 1000 steps), 20,000 points.
    The true reverse conditional q(x_{t-1} | x_t) has variance between beta~_t and beta_t (Ho et al. 2020, sec. 3.2)
    while G injects beta~_t, so Var(z_t) lies in [1, beta_t / beta~_t]: measured 0.99-1.01 at t >= 100 (there
    beta / beta~ <= 1.02) rising to 2.21 at t = 2 (beta / beta~ = 2.20). Asserted: for t >= 100 every mean within
    0.04 of 0 and every covariance entry within 0.06 of I (standard errors 0.007 and 0.01; measured maxima 0.025 and
    0.038), and at every t each variance within [1, beta_t / beta~_t] +- 0.05."""
    z = dpm_encode(gaussian_eps(SCHED, MEAN, L @ L.T), SCHED, gaussian_data(20_000), steps=1000, eta=1.0,
                   generator=gen(1))
    noise, t = z.noise[:-1], z.grid[:-2]  # the steps with sigma > 0, and their t (1000 .. 2)
    high = t >= 100
    covs = torch.stack([torch.cov(r.T) for r in noise[high]])
    assert noise[high].mean(1).abs().max().item() < 0.04
    assert (covs - torch.eye(2, dtype=F64)).abs().max().item() < 0.06
    var, ratio = noise.var(1), (SCHED.beta[t] / SCHED.beta_tilde[t])[:, None]
    assert bool((var > 1 - 0.05).all()) and bool((var < ratio + 0.05).all())
    assert var[-1].min().item() > 2.0  # at t = 2 the effect is large, not round-off


def test_edit_friendly_noise_maps_are_far_wider_than_standard_normal():
    """Independent x_t make consecutive states far apart: on the same data, model and grid the edit-friendly z_t have
    mean variance 144.6 against the DPM-Encoder's 1.008 (20,000 points; 15.0 against 1.26 on a 100-step grid).
    Asserted: edit-friendly > 10 x the DPM-Encoder's, on both grids."""
    model, x0 = gaussian_eps(SCHED, MEAN, L @ L.T), gaussian_data(20_000)
    for steps in (100, 1000):
        dpm = dpm_encode(model, SCHED, x0, steps=steps, generator=gen(1)).noise[:-1].var(1).mean().item()
        ef = edit_friendly_invert(model, SCHED, x0, steps=steps, generator=gen(1)).noise[:-1].var(1).mean().item()
        assert ef > 10 * dpm and dpm < 1.3, (steps, ef, dpm)


@pytest.mark.parametrize("name", ENCODERS)
def test_eta_zero_has_no_noise_to_encode_and_is_refused(name):
    """At eta = 0 every sigma_t = 0: z would be 0/0. Both encoders refuse, naming DDIM inversion."""
    model = gaussian_eps(SCHED, MEAN, L @ L.T)
    assert ddim_sigma(SCHED, 500, 480, 0.0).item() == 0.0
    with pytest.raises(ValueError, match="ddim_invert"):
        ENCODERS[name](model, SCHED, gaussian_data(4), steps=10, eta=0.0)


def test_the_encoders_reuse_the_callback_protocol_and_draw_from_the_generator():
    """Same generator seed, same z; the callback sees each step's x_t, eps, mu, z and x_prev = mu + sigma z."""
    model, x0 = gaussian_eps(SCHED, MEAN, L @ L.T), gaussian_data(8)
    seen = []
    a = dpm_encode(model, SCHED, x0, steps=5, eta=0.8, generator=gen(9), callback=seen.append)
    b = dpm_encode(model, SCHED, x0, steps=5, eta=0.8, generator=gen(9))
    assert torch.equal(a.noise, b.noise) and torch.equal(a.x_t, b.x_t)
    assert [d["t"] for d in seen] == timesteps(SCHED.T, 5)[:-1].tolist()
    for d in seen[:-1]:
        sigma = ddim_sigma(SCHED, d["t"], d["t_prev"], 0.8).item()
        assert_close(d["x_prev"], d["mu"] + sigma * d["z"], rtol=0, atol=0)
        assert_close(d["eps"], model(d["x_t"], t_batch(d["t"], d["x_t"])), rtol=0, atol=0)


@pytest.mark.parametrize("step_size", [0.05, 0.5])
def test_langevin_without_energy_keeps_n01_up_to_the_discretisation_variance(step_size):
    """E = 0: from z ~ N(0, I) the unadjusted chain stays centred with variance 1 / (1 - s / 4) (1.013 at s = 0.05,
    1.143 at s = 0.5; `langevin_stationary_var`). 100,000 1-D chains, 200 steps: mean within 0.02 (SE 0.003), variance
    within 0.02 of the formula (SE 0.005), and at s = 0.5 measurably above 1. Measured: variance 1.0117 and 1.1410."""
    z0 = torch.randn(100_000, 1, generator=gen(10), dtype=F64)
    z = langevin_guidance(lambda z: torch.zeros(len(z), dtype=F64), z0, steps=200, step_size=step_size,
                          generator=gen(11))
    v = langevin_stationary_var(step_size)
    assert abs(z.mean().item()) < 0.02 and abs(z.var().item() - v) < 0.02, (z.mean(), z.var(), v)
    if step_size == 0.5:
        assert z.var().item() > 1.1


def test_langevin_with_a_quadratic_energy_converges_to_the_tilted_gaussian():
    """E(z) = lambda / 2 |z - a|^2 tilts N(0, I) to N(lambda a / (1 + lambda), 1 / (1 + lambda)). From z = 0, 300 steps
    of s = 0.05, 100,000 2-D chains: the mean matches lambda a / (1 + lambda) within 0.01 and the variance the
    chain's stationary value s / (1 - (1 - s (1 + lambda) / 2)^2) (0.2632 for lambda = 3; 0.25 in the s -> 0 limit)
    within 0.01. Measured: mean (0.748, -1.498), variance (0.2638, 0.2636)."""
    lam, a = 3.0, torch.tensor([1.0, -2.0], dtype=F64)
    seen = []
    z = langevin_guidance(lambda z: 0.5 * lam * (z - a).pow(2).sum(1), torch.zeros(100_000, 2, dtype=F64),
                          steps=300, step_size=0.05, generator=gen(12), callback=seen.append)
    assert_close(z.mean(0), lam * a / (1 + lam), rtol=0, atol=0.01)
    assert_close(z.var(0), torch.full((2,), langevin_stationary_var(0.05, 1 + lam), dtype=F64), rtol=0, atol=0.01)
    assert len(seen) == 300 and seen[-1]["energy"].mean() < seen[0]["energy"].mean()


def test_langevin_refuses_bad_energies_and_steps():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="one energy per sample"):
        langevin_guidance(lambda z: z.sum(), z, steps=1)
    with pytest.raises(ValueError, match="steps >= 1"):
        langevin_guidance(lambda z: z.sum(1), z, steps=0)
    with pytest.raises(ValueError, match="diverges"):
        langevin_stationary_var(4.0)


def test_the_differentiable_G_on_a_packed_latent_equals_generate_and_passes_gradients():
    model, x0 = tiny_model(), images(2)
    S, grid = model.schedule, timesteps(model.schedule.T, 6)
    ctx, g = model.encode_text(CAPTIONS[:2]), Guidance.of(model, 3.0)
    z = dpm_encode(model, S, x0, eta=0.7, context=ctx, guidance=g, grid=grid, generator=gen(4))
    packed = pack(z).requires_grad_(True)
    assert packed.shape == (2, 7, 3, 32, 32)
    out = G(model, S, packed, grid, 0.7, ctx, g)
    assert_close(out.detach(), generate(model, S, z, ctx, g), atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), [packed])
    assert grad[:, :-1].abs().amax(dim=(2, 3, 4)).min() > 0 and grad[:, -1].abs().max() == 0  # last sigma is 0
    with pytest.raises(ValueError, match="6-step grid has 7 entries"):
        G(model, S, packed[:, 1:], grid, 0.7, ctx, g)
    assert_close(G(model, S, pack(z, skip=2), grid[2:], 0.7, ctx, g), generate(model, S, z, ctx, g, skip=2),
                 atol=1e-6, rtol=0)


def test_edit_friendly_p2p_sources_reconstruct_and_targets_edit():
    """Edit-friendly inversion + P2P: the source rows decode to G(z) from any skip (x_0 - residual from skip 0), the
    attention edit leaves them alone, and the target rows differ."""
    from minidiff.p2p import Replace, p2p_sample

    model, x0 = tiny_model(), images(1)
    S, grid = model.schedule, timesteps(model.schedule.T, 6)
    src, tgt = ["a red circle"], ["a blue circle"]
    c_src, g = model.encode_text(src), Guidance.of(model, 3.0)
    z = edit_friendly_invert(model, S, x0, eta=1.0, context=c_src, guidance=g, grid=grid, generator=gen(2))
    for skip in (0, 2):
        sources, targets = edit_friendly_p2p(model, Replace(model.tokenizer, src, tgt, grid[skip:]), z, g)
        assert_close(sources, generate(model, S, z, c_src, g, skip=skip), atol=1e-5, rtol=0)
        assert (targets - sources).abs().max() > 1e-3
        if skip == 0:
            assert_close(sources + z.residual, x0, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tail of the latent's grid"):
        edit_friendly_p2p(model, Replace(model.tokenizer, src, tgt, timesteps(S.T, 5)), z, g)
    with pytest.raises(ValueError, match="needs noise with eta > 0"):
        p2p_sample(model, Replace(model.tokenizer, src, tgt, grid), z.x_T, g, eta=1.0)
