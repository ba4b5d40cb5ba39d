"""Hidden tests of homework 3: the library on random inputs, schedules, grids and dtypes; exact invertibility; and
classifier guidance with the exact classifier of two Gaussians, which must give the class-conditional model."""

import hw3
import pytest
import torch

from minidiff import guidance, inversion, oracles, samplers
from minidiff.schedule import Schedule

SCHED = Schedule.cosine(200)


def gaussian_model(seed=0, d=3):
    g = torch.Generator().manual_seed(seed)
    mean, A = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    return oracles.gaussian_eps(SCHED, mean, A @ A.T + 0.1 * torch.eye(d, dtype=torch.float64))


@pytest.mark.question("q1", points=1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_q1_matches_the_library_and_inverts_its_step_exactly(dtype):
    g = torch.Generator().manual_seed(1)
    for sched in (SCHED, Schedule.linear(1000)):
        for t_prev, t in [(0, 1), (0, sched.T), (17, 18), (3, sched.T // 2)]:
            x, eps = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
            got = hw3.ddim_invert_step(sched, x, eps, t_prev, t)
            tol = 1e-10 if dtype == torch.float64 else 1e-4
            assert got.dtype == dtype
            assert torch.allclose(got, inversion.ddim_invert_step(sched, x, eps, t_prev, t), rtol=tol, atol=tol)
            if dtype == torch.float64:
                assert torch.allclose(samplers.ddim_step(sched, got, eps, t, t_prev), x, atol=1e-9)


@pytest.mark.question("q2", points=2)
def test_q2_matches_the_library_on_a_gaussian_model_and_other_grids():
    model = gaussian_model()
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for steps in (1, 7, 50):
        got = hw3.ddim_invert(lambda x, t: model(x, t), SCHED, x0, steps)
        assert torch.allclose(got, inversion.ddim_invert(model, SCHED, x0, steps), atol=1e-10), steps


@pytest.mark.question("q3", points=2)
def test_q3_matches_the_library_for_small_middle_and_full_t0():
    model = gaussian_model(3)
    g = torch.Generator().manual_seed(4)
    x0, eps = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    for t0 in (1, 37, 100, SCHED.T):
        got = hw3.sdedit(lambda x, t: model(x, t), SCHED, x0, t0, 20, eps)
        assert torch.allclose(got, inversion.sdedit(model, SCHED, x0, t0, 20, eps=eps), atol=1e-10), t0


@pytest.mark.question("q4", points=1)
def test_q4_matches_the_library_and_keeps_the_dtype():
    g = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, torch.float64):
        u, c = (torch.randn(3, 2, 5, generator=g).to(dtype) for _ in range(2))
        for w in (0.0, 1.0, 1.5, 7.5):
            got = hw3.cfg_eps(u, c, w)
            assert got.dtype == dtype and torch.allclose(got, guidance.cfg_eps(u, c, w))


@pytest.mark.question("q5", points=2)
def test_q5_the_exact_classifier_at_s_1_gives_the_class_conditional_model():
    mu = torch.tensor([1.5, -0.5], dtype=torch.float64)
    mixture, logits = oracles.two_gaussians_eps(SCHED, mu, 0.5), oracles.two_gaussians_logits(SCHED, mu, 0.5)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    t = torch.randint(1, SCHED.T + 1, (8,), generator=g)
    for label in (0, 1):
        y = torch.full((8,), label)
        got = hw3.classifier_guided_eps(lambda x, t: mixture(x, t), logits, SCHED, x, t, y, 1.0)
        assert not got.requires_grad
        assert torch.allclose(got, oracles.two_gaussians_eps(SCHED, mu, 0.5, label)(x, t), atol=1e-10)


@pytest.mark.question("q5", points=1)
def test_q5_matches_the_library_at_other_scales_and_per_example_labels():
    g = torch.Generator().manual_seed(7)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64)
    clf = lambda x, t: torch.tanh(x @ W) * (1 + t.view(-1, 1) / 100)  # noqa: E731
    model = lambda x, t, c=None: 0.3 * x  # noqa: E731
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    t, y = torch.tensor([1, 5, 50, 100, 150, 200]), torch.tensor([0, 1, 2, 2, 1, 0])
    for s in (0.0, 2.5):
        ref = guidance.classifier_guidance(model, clf, y, s, SCHED)(x, t)
        assert torch.allclose(hw3.classifier_guided_eps(model, clf, SCHED, x, t, y, s), ref, atol=1e-10)
