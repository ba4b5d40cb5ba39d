"""Hidden tests of homework 8: the library's asymmetric step and direction loss on random inputs and dtypes, and
the power iteration against the SVD of the explicit Jacobian of a small nonlinear map in float64."""

import hw8
import pytest
import torch

from minidiff import hspace, samplers
from minidiff.schedule import Schedule

SCHED = Schedule.cosine(200)


@pytest.mark.question("q1", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q1_matches_the_library(dtype):
    g = torch.Generator().manual_seed(0)
    for t in (1, 77, SCHED.T):
        x, eps = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
        c = samplers.ddim_coefficients(SCHED, t, t - 1).tolist()[0]
        got = hw8.P_t(SCHED, x, eps, t)
        assert got.dtype == dtype and torch.allclose(got, hspace.P_t(x, eps, c), rtol=1e-5, atol=1e-5)


@pytest.mark.question("q2", points=2)
def test_q2_matches_the_library_and_is_ddim_without_an_edit():
    g = torch.Generator().manual_seed(1)
    for t, t_prev in [(SCHED.T, 0), (SCHED.T, 150), (20, 19), (1, 0)]:
        x, eps, eps_e = (torch.randn(3, 2, 5, generator=g, dtype=torch.float64) for _ in range(3))
        c = samplers.ddim_coefficients(SCHED, t, t_prev).tolist()[0]
        assert torch.allclose(hw8.asyrp_step(SCHED, x, eps, eps_e, t, t_prev), hspace.asyrp_update(x, eps, eps_e, c),
                              atol=1e-10)
        assert torch.allclose(hw8.asyrp_step(SCHED, x, eps, eps, t, t_prev), samplers.ddim_step(SCHED, x, eps, t,
                                                                                                t_prev), atol=1e-10)


@pytest.mark.question("q3", points=2)
def test_q3_matches_the_library_on_random_features():
    g = torch.Generator().manual_seed(2)
    fe, fs = (torch.randn(7, 16, generator=g, dtype=torch.float64) for _ in range(2))
    dT = torch.randn(16, generator=g, dtype=torch.float64)
    assert torch.allclose(hw8.direction_loss(fe, fs, dT), hspace.direction_loss(fe, fs, dT), atol=1e-12)
    assert torch.allclose(hw8.direction_loss(fe, fs, 5 * dT), hspace.direction_loss(fe, fs, dT), atol=1e-12)


@pytest.mark.question("q4", points=3)
def test_q4_matches_the_svd_of_the_explicit_jacobian():
    g = torch.Generator().manual_seed(3)
    W1, W2 = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    f = lambda x: W2 @ torch.tanh(W1 @ x.flatten()) + 0.1 * x.flatten()[:4] ** 2  # noqa: E731
    x = torch.randn(5, generator=g, dtype=torch.float64).view(1, 5)
    J = torch.autograd.functional.jacobian(f, x).reshape(4, 5)
    U, S, Vh = torch.linalg.svd(J)
    v, s = hw8.top_singular_vector(f, x, iters=60, seed=1)
    assert v.shape == x.shape and abs(v.norm().item() - 1) < 1e-9
    assert abs(s - S[0].item()) < 1e-8 * S[0].item()
    assert min((v.flatten() - Vh[0]).norm(), (v.flatten() + Vh[0]).norm()) < 1e-6
