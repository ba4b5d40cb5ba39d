"""Hidden tests of homework 5: the library's P2P edits and local blend (its methods called on the same tensors),
and null-text inversion's inner loss and its gradient."""

from types import SimpleNamespace

import hw5
import pytest
import torch

from minidiff import guidance, null_text, p2p, samplers
from minidiff.schedule import Schedule

SCHED = Schedule.cosine(200)


def attention(seed, shape=(2, 3, 16, 7)):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1) for _ in range(2))


@pytest.mark.question("q1", points=1)
def test_q1_fractional_windows_and_float32():
    M, Mt = attention(0)
    a = torch.tensor([1.0, 0.0, 0.25, 1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(hw5.word_swap(M, Mt, a), a * M + (1 - a) * Mt)
    out = hw5.word_swap(M.float(), Mt.float(), a.float())
    assert out.dtype == torch.float32


@pytest.mark.question("q2", points=2)
def test_q2_matches_the_library_refine():
    M, Mt = attention(1)
    g = torch.Generator().manual_seed(2)
    mapper = torch.stack([torch.randperm(7, generator=g) for _ in range(2)])
    aligned = (torch.rand(2, 7, generator=g) > 0.3).long()
    ref = p2p.Refine.edit_cross(SimpleNamespace(mapper=mapper, aligned=aligned), M, Mt, 0)
    assert torch.equal(hw5.refine(M, Mt, mapper, aligned), ref)


@pytest.mark.question("q3", points=1)
def test_q3_matches_the_library_reweight_per_row():
    M, _ = attention(3)
    c = torch.rand(2, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 3
    ref = p2p.Reweight.edit_cross(SimpleNamespace(base_edit=None, equalizer=c), M, M, 0)
    assert torch.allclose(hw5.reweight(M, c), ref)


@pytest.mark.question("q4", points=1)
@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_q4_matches_the_library_local_blend(threshold):
    """LocalBlend.mask unions each pair's source and target masks; here both rows' masks come from yours."""
    g = torch.Generator().manual_seed(5)
    maps = torch.rand(4, 8, 8, 7, generator=g, dtype=torch.float64)
    weights = torch.zeros(4, 7, dtype=torch.float64)
    weights[0, 2] = weights[1, 3] = weights[2, 2] = weights[3, 1] = weights[3, 5] = 1.0
    blend = SimpleNamespace(store=SimpleNamespace(maps=lambda r: maps), weights=weights, resolution=8,
                            threshold=threshold, G=2)
    ref = p2p.LocalBlend.mask(blend, (32, 32))
    mine = hw5.local_blend_mask(maps, weights, (32, 32), threshold)
    assert mine.shape == (4, 1, 32, 32) and torch.equal(((mine[:2] + mine[2:]) > 0).to(ref), ref)


def null_setup(seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64)
    model = lambda x, t, c: torch.tanh(x @ W.T @ W / 3 + c.mean((1, 2))[:, None]) * (1 + t[:, None] / 400)  # noqa
    x_t, target = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g,
                                                                                     dtype=torch.float64)
    null = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    return model, x_t, target, null


@pytest.mark.question("q5", points=1)
def test_q5_matches_the_library_inner_loss():
    model, x_t, target, null = null_setup(6)
    eps_c = model(x_t, torch.full((2,), 150), torch.ones(2, 5, 6, dtype=torch.float64))
    loss = hw5.null_text_loss(model, SCHED, x_t, 150, 140, null, eps_c, target, 7.5)
    _, ref_max, _ = null_text.optimize_null(model, SCHED, x_t, 150, 140, eps_c, null, target, 7.5, 1e-2, 1, 0.0)
    assert abs(loss.max().item() - ref_max) < 1e-12


@pytest.mark.question("q5", points=1)
def test_q5_gradient_reaches_the_null_embedding():
    model, x_t, target, null = null_setup(7)
    eps_c = model(x_t, torch.full((2,), 60), torch.ones(2, 5, 6, dtype=torch.float64))
    u = null.clone().requires_grad_(True)
    hw5.null_text_loss(model, SCHED, x_t, 60, 50, u, eps_c, target, 3.0).sum().backward()
    v = null.clone().requires_grad_(True)
    c = samplers.ddim_coefficients(SCHED, 60, 50)[0].tolist()
    eps = guidance.cfg_eps(model(x_t, torch.full((2,), 60), v), eps_c, 3.0)
    ((samplers.ddim_update(x_t, eps, c) - target) ** 2).mean(1).sum().backward()
    assert u.grad is not None and torch.allclose(u.grad, v.grad, atol=1e-12)
