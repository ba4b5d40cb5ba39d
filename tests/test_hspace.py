"""Lecture 8's derivation checks (hspace.py, nn/hspace.py, training/hspace.py): the asymmetric step, the editing
loop, the Jacobian's singular vectors by power iteration, the direction loss and f_t's training."""

import pytest
import torch
from torch.testing import assert_close

from minidiff.hspace import (
    D_t,
    P_t,
    applied_deltas,
    asyrp_edit,
    asyrp_loss,
    asyrp_sample,
    asyrp_update,
    constant_delta,
    direction_loss,
    explicit_attention,
    feature_direction,
    scale_delta,
    sum_deltas,
    t_edit_by_threshold,
    top_singular_vectors,
)
from minidiff.nn.hspace import ImplicitDelta
from minidiff.nn.unet import UNet, UNetConfig
from minidiff.samplers import ddim_coefficients, ddim_sample, ddim_update
from minidiff.schedule import timesteps
from minidiff.training.hspace import train_implicit_delta
from tests.test_experiments import CAPTIONS, images, tiny_model

F64 = torch.float64


def setting(n: int = 2, dtype=torch.float32):
    model = tiny_model().to(dtype)
    x_T = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=dtype)
    return model, x_T, model.encode_text(CAPTIONS[:1] * n)


def h_shape(model, x, ctx):
    return model(x, torch.full((len(x),), 50), ctx, return_h=True)[1].shape


def test_a_zero_delta_h_reproduces_ddim_exactly():
    """delta h = 0 (an explicit zero, an untrained f_t, or a scale of 0) gives DDIM bit for bit: the UNet decodes
    h + 0 = h, and the asymmetric step with eps~ = eps is the DDIM step operation for operation."""
    model, x_T, ctx = setting()
    ddim = ddim_sample(model, model.schedule, x_T, 10, context=ctx)
    zero = lambda h, t: torch.zeros_like(h)  # noqa: E731
    f = ImplicitDelta(h_shape(model, x_T, ctx)[1])
    for delta in (zero, f, scale_delta(constant_delta(torch.randn(h_shape(model, x_T, ctx)[1:])), 0.0)):
        assert torch.equal(asyrp_sample(model, model.schedule, x_T, delta, t_edit=0, steps=10, context=ctx), ddim)
    assert torch.equal(asyrp_sample(model, model.schedule, x_T, None, t_edit=0, steps=10, context=ctx), ddim)


def test_the_asymmetric_step_moves_only_the_predicted_x0_term():
    """x_prev(eps, eps~) - x_prev(eps, eps) = sqrt(ab_prev) (P_t(eps~) - P_t(eps)) = -sqrt(ab_prev) sqrt(1 - ab_t) /
    sqrt(ab_t) (eps~ - eps) (float64), D_t keeps the unshifted eps; the symmetric shift adds D_t's change, whose
    coefficient nearly cancels (Asyrp's Theorem 1)."""
    g = torch.Generator().manual_seed(0)
    x, eps, eps_e = (torch.randn(2, 3, 4, 4, generator=g, dtype=F64) for _ in range(3))
    sched = tiny_model().schedule
    c = ddim_coefficients(sched, 60, 50).tolist()[0]
    assert torch.equal(asyrp_update(x, eps, eps, c), ddim_update(x, eps, c))
    assert_close(asyrp_update(x, eps, eps_e, c) - ddim_update(x, eps, c), -c[2] * c[1] / c[0] * (eps_e - eps),
                 rtol=0, atol=1e-13)
    assert_close(asyrp_update(x, eps, eps_e, c) - c[2] * P_t(x, eps_e, c), D_t(eps, c), rtol=0, atol=1e-13)
    sym = ddim_update(x, eps_e, c) - ddim_update(x, eps, c)
    assert_close(sym, (-c[2] * c[1] / c[0] + c[3]) * (eps_e - eps), rtol=0, atol=1e-13)
    ratio = lambda c: abs(-c[2] * c[1] / c[0] + c[3]) / (c[2] * c[1] / c[0])  # symmetric / asymmetric shift  # noqa: E731
    fine = ddim_coefficients(sched, 51, 50).tolist()[0]  # the cancellation is first order in the step size
    assert ratio(fine) < 0.05 and ratio(fine) < 0.15 * ratio(c)


def test_the_editing_loop_shifts_h_only_inside_t_edit_and_uses_the_shifted_eps_in_p_t_only():
    model, x_T, ctx = setting()
    dh = 0.5 * torch.randn(h_shape(model, x_T, ctx)[1:], generator=torch.Generator().manual_seed(1))
    seen = []

    def check(d):
        if d["eps_edit"] is None:
            assert d["t"] < 40
            return
        seen.append(d["t"])
        c = ddim_coefficients(model.schedule, d["t"], d["t_prev"]).tolist()[0]
        t = torch.full((2,), d["t"])
        assert torch.equal(d["eps"], model(d["x_t"], t, ctx))  # D_t's eps is the unshifted prediction
        assert_close(d["eps_edit"], model(d["x_t"], t, ctx, h_delta=dh.expand(2, -1, -1, -1)))
        assert_close(d["x_prev"], c[2] * P_t(d["x_t"], d["eps_edit"], c) + D_t(d["eps"], c))

    out = asyrp_sample(model, model.schedule, x_T, constant_delta(dh), t_edit=40, steps=10, context=ctx,
                       callback=check)
    assert seen == [t for t in timesteps(100, 10).tolist() if t >= 40] and len(seen) == 6
    assert (out - ddim_sample(model, model.schedule, x_T, 10, context=ctx)).abs().max() > 1e-3


def test_deltas_scale_and_add_linearly_and_applied_deltas_reports_the_interval():
    h, t = torch.randn(2, 4, 3, 3), torch.tensor([5, 5])
    a, b = constant_delta(torch.randn(4, 3, 3)), constant_delta(torch.randn(4, 3, 3))
    assert_close(sum_deltas(a, scale_delta(b, -2.0))(h, t), a(h, t) - 2 * b(h, t))
    model, x_T, ctx = setting()
    ones = constant_delta(torch.ones(h_shape(model, x_T, ctx)[1:]))
    d, ts = applied_deltas(model, model.schedule, x_T, ones, t_edit=50, steps=10, context=ctx)
    assert ts.tolist() == [t for t in timesteps(100, 10).tolist() if t >= 50]
    assert d.shape == (len(ts), 2, *h_shape(model, x_T, ctx)[1:]) and (d == 1).all()


def test_asyrp_edit_with_no_delta_is_the_ddim_reconstruction():
    from minidiff.inversion import ddim_invert

    model, _, ctx = setting()
    x0 = images(2)
    rec = ddim_sample(model, model.schedule, ddim_invert(model, model.schedule, x0, 10, ctx), 10, context=ctx)
    assert torch.equal(asyrp_edit(model, model.schedule, x0, None, t_edit=30, steps=10, context=ctx), rec)


def test_quality_boosting_adds_noise_only_below_t_boost():
    model, x_T, ctx = setting()
    kw = dict(t_edit=50, steps=10, context=ctx, delta=None)
    plain = asyrp_sample(model, model.schedule, x_T, **kw)
    boosted = [asyrp_sample(model, model.schedule, x_T, t_boost=20, generator=torch.Generator().manual_seed(s),
                            callback=None, **kw) for s in (0, 1)]
    assert (boosted[0] - boosted[1]).abs().max() > 1e-4 and (boosted[0] - plain).abs().max() > 1e-4
    same = asyrp_sample(model, model.schedule, x_T, t_boost=0, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(same, plain)


def small_unet():
    """A float64 UNet on 2x8x8 inputs with attention at 4x4 (h: 16 x 4 x 4 = 256 numbers, output 128), weights
    perturbed so that eps depends on h."""
    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=2, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                           attention_resolutions=(4,), heads=2, dim_head=4, context_dim=None, norm_groups=4,
                           fused_attention=True)).double()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return unet.eval()


def test_power_iteration_matches_the_svd_of_the_explicit_jacobian_in_float64():
    """The top-3 right singular vectors and values of J = d eps / d h (h -> eps at fixed x_t, t) from jvp/vjp power
    iteration equal torch.linalg.svd of the explicit Jacobian (float64; vectors up to sign); the fused attention
    is switched off for the jvp and back on after."""
    unet = small_unet()
    x, t = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64), torch.tensor([50])
    h0 = torch.zeros_like(unet(x, t, return_h=True)[1])
    f = lambda dh: unet(x, t, h_delta=dh)  # noqa: E731
    J = torch.autograd.functional.jacobian(f, h0, vectorize=True).reshape(x.numel(), h0.numel())
    _, s, Vh = torch.linalg.svd(J, full_matrices=False)
    assert s[2] > 1.05 * s[3] and s[8] < 0.75 * s[2]  # the top 3 are well defined; angle error < (s_9 / s_3)^40 < 1e-5
    with explicit_attention(unet):
        V, sv = top_singular_vectors(f, h0, k=3, iters=20, generator=torch.Generator().manual_seed(0))
    assert_close(sv, s[:3], rtol=1e-8, atol=0)
    cos = (V.flatten(1) @ Vh[:3].T).abs().diagonal()
    assert_close(cos, torch.ones(3, dtype=F64), rtol=0, atol=1e-8)
    assert all(m.fused for m in unet.modules() if hasattr(m, "fused"))  # restored after the block
    with pytest.raises(NotImplementedError):  # why explicit_attention exists
        torch.func.jvp(f, (h0,), (h0,))


def test_power_iteration_refuses_bad_arguments():
    with pytest.raises(ValueError, match="k >= 1"):
        top_singular_vectors(lambda x: x, torch.zeros(3), k=0)
    with pytest.raises(ValueError, match="oversample >= 0"):
        top_singular_vectors(lambda x: x, torch.zeros(3), oversample=-1)


def test_direction_loss_has_the_right_sign_and_value_on_constructed_features():
    f_src = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    d_T = torch.tensor([1.0, 2, 0, 0, 0, 0], dtype=F64)
    ortho = torch.tensor([0.0, 0, 3, 0, 0, 0], dtype=F64)
    assert_close(direction_loss(f_src + 0.3 * d_T, f_src, d_T), torch.zeros(4, dtype=F64), rtol=0, atol=1e-12)
    assert_close(direction_loss(f_src - 5 * d_T, f_src, d_T), torch.full((4,), 2.0, dtype=F64))
    assert_close(direction_loss(f_src + ortho, f_src, d_T), torch.ones(4, dtype=F64))
    with_, without = torch.ones(3, 6, dtype=F64), torch.zeros(5, 6, dtype=F64)
    assert_close(feature_direction(with_, without), torch.ones(6, dtype=F64))


def test_t_edit_by_threshold_picks_the_last_step_still_far_from_x0():
    grid = torch.tensor([90, 70, 50, 30, 10, 0])
    assert t_edit_by_threshold(grid, torch.tensor([0.9, 0.6, 0.4, 0.2, 0.1]), 0.33) == 50
    assert t_edit_by_threshold(grid, torch.tensor([0.2, 0.1, 0.1, 0.0, 0.0]), 0.33) == 90
    with pytest.raises(ValueError, match="one distance per step"):
        t_edit_by_threshold(grid, torch.zeros(3), 0.33)


def test_training_f_t_lowers_its_loss_on_a_tiny_model():
    """A direction loss in a toy feature space (the mean of each channel of P_t): after a few epochs the loss on the
    same images is lower than at the start, where f = 0 and Delta I = 0 (loss 1 + recon 0)."""
    model, x_T, ctx = setting(4)
    f = ImplicitDelta(h_shape(model, x_T, ctx)[1], hidden=16)
    d_T = torch.tensor([1.0, -1.0, 0.0])

    def loss(p_edit, p_src, t):
        return asyrp_loss(p_edit, p_src, direction_loss(p_edit.mean((2, 3)), p_src.mean((2, 3)), d_T), 0.1)

    losses = train_implicit_delta(model, model.schedule, f, x_T, loss, t_edit=50, steps=10, context=ctx[:1],
                                  epochs=6, batch_size=4, lr=1e-2, progress=False)
    per_epoch = torch.tensor(losses).view(6, -1).mean(1)
    assert losses[0] == pytest.approx(1.0) and per_epoch[-1] < 0.2, (losses[0], per_epoch)
    assert all(p.grad is None for p in model.parameters())  # the UNet stayed frozen


def test_the_rule_distance_is_zero_for_identical_images_and_follows_the_reconstruction():
    """`bench.hspace.distance_curve`: one distance per step of the grid, each the feature distance between the
    images and that step's P_t; identical images are at distance 0."""
    from minidiff.bench.hspace import STEPS, distance_curve, feature_distance
    from minidiff.nn.classifiers import ImageClassifier, ImageClassifierConfig

    clf = ImageClassifier(ImageClassifierConfig(("a", "b"), kind="multilabel")).eval()
    model, x_T, _ = setting()
    x = images(2)
    assert_close(feature_distance(clf, x, x), torch.zeros(2), atol=1e-6, rtol=0)
    seen = []
    asyrp_sample(model, model.schedule, x_T, None, 0, STEPS, model.null_context(2), callback=seen.append)
    grid, d = distance_curve(model, clf, x, x_T)
    assert grid.tolist() == timesteps(model.schedule.T, STEPS).tolist() and d.shape == (len(grid) - 1,)
    last = seen[-1]
    c = ddim_coefficients(model.schedule, last["t"], last["t_prev"]).tolist()[0]
    assert_close(d[-1], feature_distance(clf, x, P_t(last["x_t"], last["eps"], c)).mean())
    assert t_edit_by_threshold(grid, d, float(d.max())) in grid.tolist()


def test_faces_keeps_the_first_n_with_every_requested_attribute_value():
    from minidiff.bench.hspace import faces
    from minidiff.datasets.real import CELEBA_ATTRIBUTES, ImageDataset, to_float

    attrs = torch.zeros(6, len(CELEBA_ATTRIBUTES), dtype=torch.long)
    attrs[[1, 2, 4], CELEBA_ATTRIBUTES.index("Smiling")] = 1
    attrs[[2, 5], CELEBA_ATTRIBUTES.index("Male")] = 1
    images = torch.arange(6, dtype=torch.uint8)[:, None, None, None].expand(6, 3, 2, 2).contiguous()
    ds = ImageDataset(images, [""] * 6, attributes=attrs)
    ds.attribute_names = list(CELEBA_ATTRIBUTES)
    assert torch.equal(faces(ds, {"Smiling": True, "Male": False}, 5, "cpu"), to_float(images[[1, 4]]))
    assert torch.equal(faces(ds, {"Smiling": False}, 2, "cpu"), to_float(images[[0, 3]]))


def test_the_shapes_table_judges_against_the_exact_rendered_target():
    from minidiff.bench.hspace_shapes import border_colour, judge_shapes, readings_moved, renders, scene_pairs
    pairs = scene_pairs(3, 0)
    src, tgt = renders([s for s, _ in pairs], "cpu"), renders([t for _, t in pairs], "cpu")
    assert all(s.background == "gray" and t.background == "black" and s.objects == t.objects for s, t in pairs)
    # the border colour is the background's wherever the object stays inside (texture and light average out)
    assert_close(border_colour(src).mean(0), torch.zeros(3), atol=0.05, rtol=0)
    assert_close(border_colour(tgt).mean(0), torch.full((3,), 0.08 * 2 - 1), atol=0.05, rtol=0)
    exact = judge_shapes(tgt, src, tgt, [t for _, t in pairs])
    assert exact["correct"] == exact["background"] == 1.0 and exact["psnr_target"] == float("inf")
    unedited = judge_shapes(src, src, tgt, [t for _, t in pairs])
    assert unedited["background"] == unedited["correct"] == 0.0 and unedited["colour"] == 1.0
    moved = readings_moved(src, tgt, [s for s, _ in pairs])
    assert moved["background"] == 1.0 and moved["colour"] == moved["shape"] == 0.0
    assert readings_moved(src, src, [s for s, _ in pairs]) == dict.fromkeys(moved, 0.0)
