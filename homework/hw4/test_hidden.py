"""Hidden tests of homework 4: the library's EDICT on a nonlinear model, schedules, p and dtypes; exact inversion of
the library's step in float64."""

import hw4
import pytest
import torch

from minidiff import edict
from minidiff.schedule import Schedule

SCHEDULES = [Schedule.linear(1000), Schedule.cosine(200)]


def model(x, t, context=None):
    """Nonlinear in x, depends on t: an inverse that evaluates eps at the wrong point cannot pass."""
    return torch.tanh(1.7 * x + 0.3) * (1 + t.view(-1, *([1] * (x.ndim - 1))).to(x.dtype) / 500)


def pairs(sched):
    return [(sched.T, sched.T - 1), (sched.T // 2, 1), (5, 0), (1, 0)]


@pytest.mark.question("q1", points=1)
def test_q1_matches_the_library():
    for sched in SCHEDULES:
        for t, t_prev in pairs(sched):
            a, b = edict.edict_coefficients(sched, t, t_prev)
            got = hw4.edict_coefficients(sched, t, t_prev)
            assert abs(got[0] - a.item()) < 1e-12 and abs(got[1] - b.item()) < 1e-12


@pytest.mark.question("q2", points=2)
def test_q2_mix_follows_the_equations_and_unmix_inverts_it_for_every_p():
    """For p in (0, 1] on random tensors: mix follows eqs. 10-11 (the second line reads the new x), and unmix
    inverts it to 1e-12."""
    g = torch.Generator().manual_seed(0)
    for p in (1.0, 0.93, 0.5, 0.1):
        xi, yi = (torch.randn(3, 4, 5, generator=g, dtype=torch.float64) for _ in range(2))
        x, y = hw4.mix(xi, yi, p)
        x_ref = p * xi + (1 - p) * yi
        assert torch.allclose(x, x_ref) and torch.allclose(y, p * yi + (1 - p) * x_ref)
        xb, yb = hw4.unmix(x, y, p)
        assert torch.allclose(xb, xi, atol=1e-12) and torch.allclose(yb, yi, atol=1e-12)


@pytest.mark.question("q3", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q3_matches_the_library_step(dtype):
    g = torch.Generator().manual_seed(1)
    for sched in SCHEDULES:
        for t, t_prev in pairs(sched):
            x, y = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
            got = hw4.edict_step(model, sched, x, y, t, t_prev, 0.93)
            ref = edict.edict_step(model, sched, x, y, t, t_prev, 0.93, first="x")
            tol = 1e-10 if dtype == torch.float64 else 1e-4
            for u, v in zip(got, ref, strict=True):
                assert u.dtype == dtype and torch.allclose(u, v, rtol=tol, atol=tol)


@pytest.mark.question("q3", points=1)
def test_q3_p_1_is_two_ddim_steps_coupled_without_mixing():
    sched = SCHEDULES[1]
    x, y = (torch.randn(4, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (2, 3))
    a, b = hw4.edict_coefficients(sched, 50, 40)
    tb = torch.full((4,), 50)
    xn, yn = hw4.edict_step(model, sched, x, y, 50, 40, 1.0)
    assert torch.allclose(xn, a * x + b * model(y, tb)) and torch.allclose(yn, a * y + b * model(xn, tb))


@pytest.mark.question("q4", points=1)
@pytest.mark.parametrize("p", [0.93, 0.6])
def test_q4_inverts_the_library_step_exactly_in_float64(p):
    g = torch.Generator().manual_seed(4)
    for sched in SCHEDULES:
        for t, t_prev in pairs(sched):
            x, y = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
            x_prev, y_prev = edict.edict_step(model, sched, x, y, t, t_prev, p, first="x")
            xb, yb = hw4.edict_step_inverse(model, sched, x_prev, y_prev, t, t_prev, p)
            assert torch.allclose(xb, x, atol=1e-9) and torch.allclose(yb, y, atol=1e-9), (t, t_prev, p)
