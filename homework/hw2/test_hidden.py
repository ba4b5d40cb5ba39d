"""Hidden tests of homework 2: the library on random inputs, other shapes, dtypes, schedules, eta and grids, and
DDPM as the eta = 1 member of the family."""

import hw2
import pytest
import torch

from minidiff import gaussian, oracles, samplers, schedule
from minidiff.schedule import Schedule

SCHEDULES = [Schedule.linear(1000), Schedule.cosine(200)]


def pairs(sched, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(1, sched.T + 1, (n,), generator=g)
    t_prev = (torch.rand(n, generator=g, dtype=torch.float64) * t).long()  # 0 <= t_prev < t
    t[0], t_prev[0] = sched.T, sched.T - 1
    return t, t_prev


@pytest.mark.question("q1", points=1)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_q1_matches_the_library(eta):
    for sched in SCHEDULES:
        t, t_prev = pairs(sched)
        s = hw2.ddim_sigma(sched, t, t_prev, eta)
        assert s.dtype == torch.float64 and torch.allclose(s, samplers.ddim_sigma(sched, t, t_prev, eta), atol=1e-12)


@pytest.mark.question("q2", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q2_matches_the_library_with_and_without_noise(dtype):
    g = torch.Generator().manual_seed(1)
    for sched in SCHEDULES:
        for (t, t_prev) in [(sched.T, 0), (sched.T, sched.T // 2), (sched.T // 3, sched.T // 3 - 1), (1, 0)]:
            for eta in (0.0, 0.6, 1.0):
                x, eps, z = (torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))
                got = hw2.ddim_step(sched, x, eps, t, t_prev, eta, z)
                ref = samplers.ddim_step(sched, x, eps, t, t_prev, eta, z if eta > 0 else None)
                tol = 1e-10 if dtype == torch.float64 else 1e-4
                assert got.dtype == dtype and torch.allclose(got, ref, rtol=tol, atol=tol), (t, t_prev, eta)


@pytest.mark.question("q2", points=1)
def test_q2_eta_1_with_consecutive_steps_is_ddpm():
    """sigma_t(1) = sqrt(beta~_t) and the step's mean is the posterior mean from eps (DDPM eq. 11)."""
    sched = SCHEDULES[1]
    g = torch.Generator().manual_seed(2)
    for t in (2, 50, sched.T):
        x, eps, z = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
        tb = torch.full((4,), t)
        expected = gaussian.posterior_mean_from_eps(sched, x, tb, eps) + sched.beta_tilde[t].sqrt() * z
        assert torch.allclose(hw2.ddim_step(sched, x, eps, t, t - 1, 1.0, z), expected, atol=1e-10)


@pytest.mark.question("q3", points=2)
def test_q3_matches_the_library_on_other_grids():
    for T, steps in [(1000, 50), (1000, 1), (1000, 1000), (200, 7), (17, 5)]:
        g = hw2.leading_grid(T, steps)
        assert g.dtype == torch.long and g.tolist() == schedule.timesteps(T, steps, "leading").tolist(), (T, steps)


@pytest.mark.question("q4", points=1)
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_q4_matches_the_library_with_a_gaussian_oracle(eta):
    sched = SCHEDULES[1]
    g = torch.Generator().manual_seed(3)
    mean, A = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    model = oracles.gaussian_eps(sched, mean, A @ A.T + 0.1 * torch.eye(3, dtype=torch.float64))
    x_T = torch.randn(6, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(20, 6, 3, generator=g, dtype=torch.float64) if eta > 0 else None
    got = hw2.ddim_sample(lambda x, t: model(x, t), sched, x_T, 20, eta, noise)
    ref = samplers.ddim_sample(model, sched, x_T, 20, eta, noise=noise)
    assert torch.allclose(got, ref, atol=1e-10)
