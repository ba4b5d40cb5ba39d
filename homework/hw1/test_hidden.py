"""Hidden tests of homework 1: the library's implementation on random inputs, other shapes, dtypes, schedules and
edge t, and Bayes' rule as an independent oracle."""

import hw1
import pytest
import torch

from minidiff import elbo, gaussian
from minidiff.schedule import Schedule

SCHEDULES = [Schedule.linear(1000), Schedule.cosine(200)]
SHAPES = [(4, 3, 8, 8), (5, 2)]


def inputs(sched, shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = (torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    t = torch.randint(1, sched.T + 1, (shape[0],), generator=g)
    t[0], t[-1] = 1, sched.T  # the edges
    return x0, x1, t


def close(a, b, dtype):
    return a.dtype == dtype and torch.allclose(a, b.to(dtype), rtol=1e-5 if dtype == torch.float32 else 1e-10,
                                               atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.question("q1", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q1_matches_the_library_on_every_shape_schedule_and_edge_t(dtype):
    for sched in SCHEDULES:
        for shape in SHAPES:
            x0, eps, t = inputs(sched, shape, dtype)
            assert close(hw1.q_sample(sched, x0, t, eps), gaussian.q_sample(sched, x0, t, eps), dtype)


@pytest.mark.question("q2", points=1)
def test_q2_is_bayes_rule_on_the_two_step_joint():
    """x_{t-1} = a x_0 + s e1, x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2: condition the Gaussian (x_{t-1}, x_t)
    on x_t directly (Schur complement) and compare."""
    sched = Schedule.cosine(50)
    x0, x_t, t = inputs(sched, (6, 3), torch.float64)
    t = t.clamp(min=2)
    alpha, beta = sched.alpha[t].view(-1, 1), sched.beta[t].view(-1, 1)
    ab_prev = sched.alpha_bar[t - 1].view(-1, 1)
    var_prev = 1 - ab_prev  # Var x_{t-1} | x_0
    cov = alpha.sqrt() * var_prev  # Cov(x_{t-1}, x_t | x_0)
    var_t = alpha * var_prev + beta  # Var x_t | x_0
    mean_prev, mean_t = ab_prev.sqrt() * x0, (alpha * ab_prev).sqrt() * x0
    mean, var = hw1.q_posterior(sched, x0, x_t, t)
    assert torch.allclose(mean, mean_prev + cov / var_t * (x_t - mean_t), atol=1e-12)
    assert torch.allclose(var.reshape(-1, 1), var_prev - cov ** 2 / var_t, atol=1e-12)


@pytest.mark.question("q2", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q2_matches_the_library_including_t_1_where_the_variance_is_zero(dtype):
    for sched in SCHEDULES:
        for shape in SHAPES:
            x0, x_t, t = inputs(sched, shape, dtype)
            mean, var = hw1.q_posterior(sched, x0, x_t, t)
            ref_mean, ref_var = gaussian.q_posterior(sched, x0, x_t, t)
            assert close(mean, ref_mean, dtype) and close(var.expand_as(x0), ref_var.expand_as(x0), dtype)
            assert var.shape == ref_var.shape


@pytest.mark.question("q3", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q3_matches_the_library_and_the_x0_form(dtype):
    for sched in SCHEDULES:
        for shape in SHAPES:
            x_t, eps, t = inputs(sched, shape, dtype)
            mu = hw1.posterior_mean_from_eps(sched, x_t, t, eps)
            assert close(mu, gaussian.posterior_mean_from_eps(sched, x_t, t, eps), dtype)
            if dtype == torch.float64:
                x0 = gaussian.predict_x0(sched, x_t, t, eps)
                assert torch.allclose(mu, gaussian.q_posterior(sched, x0, x_t, t)[0], atol=1e-8)


@pytest.mark.question("q4", points=1)
@pytest.mark.parametrize("var", ["beta", "beta_tilde"])
def test_q4_matches_the_library_for_both_variances(var):
    for sched in SCHEDULES:
        s2 = gaussian.sigma2(sched, var)
        lam = hw1.lambda_t(sched, s2.clone())
        ref = elbo.lambda_t(sched, var)
        assert lam.shape == ref.shape and torch.allclose(lam, ref, rtol=1e-10) and lam[:2].eq(0).all()


@pytest.mark.question("q5", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q5_matches_the_library(dtype):
    """float64 to 1e-10; float32 in its own dtype, to 1e-4 nats of the float64 value (v - 1 - log v cancels for
    v = 1 - alpha_bar_T near 1, whichever way it is written)."""
    for sched in SCHEDULES:
        for shape in SHAPES:
            x0, _, _ = inputs(sched, shape, torch.float64)
            got, ref = hw1.L_T(sched, x0.to(dtype)), elbo.L_T(sched, x0)
            assert got.dtype == dtype and got.shape == ref.shape
            assert torch.allclose(got.double(), ref, rtol=1e-10 if dtype == torch.float64 else 0,
                                  atol=1e-12 if dtype == torch.float64 else 1e-4)
