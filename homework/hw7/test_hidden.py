"""Hidden tests of homework 7: the library's DPM-Encoder and G on a Gaussian oracle, other grids, eta and shapes;
decode(encode(x_0)) retraces the encoder and lands on x_0 up to the last step's residual."""

import hw7
import pytest
import torch

from minidiff import noise_space, oracles, schedule
from minidiff.schedule import Schedule

SCHED = Schedule.cosine(200)


def oracle(seed=0, d=3):
    g = torch.Generator().manual_seed(seed)
    mean, A = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    return oracles.gaussian_eps(SCHED, mean, A @ A.T + 0.1 * torch.eye(d, dtype=torch.float64))


@pytest.mark.question("q1", points=2)
def test_q1_matches_the_library_q_sigma_with_zero_noise():
    g = torch.Generator().manual_seed(1)
    for t, t_prev in [(SCHED.T, 0), (SCHED.T, 150), (20, 19), (5, 1)]:
        for eta in (0.3, 1.0):
            x_t, x0 = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) for _ in range(2))
            ref = noise_space.q_sigma_sample(SCHED, x_t, x0, t, t_prev, eta, torch.zeros_like(x0))
            assert torch.allclose(hw7.q_sigma_mean(SCHED, x_t, x0, t, t_prev, eta), ref, atol=1e-10), (t, eta)


@pytest.mark.question("q2", points=1)
@pytest.mark.parametrize("steps,eta", [(10, 1.0), (25, 0.5)])
def test_q2_matches_the_library_encoder_with_the_same_draws(steps, eta):
    model = oracle()
    grid = schedule.timesteps(SCHED.T, steps)
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = noise_space.dpm_encode(model, SCHED, x0, grid=grid, eta=eta, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    draws = torch.stack([torch.randn(x0.shape, generator=g, dtype=torch.float64) for _ in range(steps)]
                        + [torch.zeros_like(x0)])  # the last step (sigma = 0) draws nothing
    x_T, z = hw7.dpm_encode(lambda x, t: model(x, t), SCHED, x0, grid.tolist(), eta, draws)
    assert torch.allclose(x_T, ref.x_T, atol=1e-10) and torch.allclose(z, ref.noise, atol=1e-8)


@pytest.mark.question("q3", points=1)
def test_q3_matches_the_library_generator():
    model = oracle(4)
    grid = schedule.timesteps(SCHED.T, 12)
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    lat = noise_space.dpm_encode(model, SCHED, x0, grid=grid, eta=0.8, generator=torch.Generator().manual_seed(6))
    got = hw7.decode(lambda x, t: model(x, t), SCHED, lat.x_T, lat.noise, grid.tolist(), 0.8)
    assert torch.allclose(got, noise_space.generate(model, SCHED, lat), atol=1e-10)
    assert torch.allclose(got + lat.residual, x0, atol=1e-10)


@pytest.mark.question("q3", points=1)
def test_q3_random_z_with_another_model_is_the_library_sampler():
    grid = schedule.timesteps(SCHED.T, 9)
    g = torch.Generator().manual_seed(7)
    x_T, z = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(9, 2, 3, generator=g, dtype=torch.float64)
    other = oracle(8)
    lat = noise_space.NoiseLatent(torch.stack([x_T] * 9), z, torch.zeros_like(x_T), grid, 1.0)
    got = hw7.decode(lambda x, t: other(x, t), SCHED, x_T, z, grid.tolist(), 1.0)
    assert torch.allclose(got, noise_space.generate(other, SCHED, lat), atol=1e-10)
