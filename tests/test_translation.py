"""Lecture 7's tables (bench/translation.py): zero-shot translation through the noise space and the reconstruction
table, on the tiny random model (the CIFAR-10 numbers themselves are in data/README.md)."""

import pytest
import torch
from torch.testing import assert_close

from minidiff.bench.translation import (
    METHODS,
    augmented_log_probs,
    classifier_energy,
    diff_augment,
    judge,
    noise_reconstruction_rows,
    tradeoff_settings,
    translate,
    translation_controller,
)
from minidiff.guidance import Guidance
from minidiff.nn.classifiers import ImageClassifier, ImageClassifierConfig
from minidiff.noise_space import dpm_encode, edit_friendly_invert
from minidiff.schedule import timesteps
from tests.test_experiments import CAPTIONS, images, tiny_model

SRC, TGT = CAPTIONS[0], CAPTIONS[1]


@pytest.mark.parametrize("method,encoder", [("CycleDiffusion", dpm_encode), ("edit-friendly", edit_friendly_invert),
                                            ("edit-friendly + P2P", edit_friendly_invert)])
def test_translating_to_the_source_caption_gives_back_the_image_up_to_the_final_step_residual(method, encoder):
    """Encode and decode with the same caption: G(z) + residual = x_0 (to round-off), so `translate` must encode with
    the source caption, decode with the target's, and draw the encoder's noise from `seed`. With P2P the target
    branch of an identical prompt pair is the source branch. In float64, so that round-off (1e-5 in float32, where
    the P2P pair's batch of 2 and the plain batch of 1 take different matmul paths) cannot hide a wrong noise."""
    model, x = tiny_model().double(), images(2).double()
    c, g = model.encode_text([SRC] * 2), Guidance.of(model, 3.0)
    z = encoder(model, model.schedule, x, eta=1.0, context=c, guidance=g, grid=timesteps(model.schedule.T, 8),
                generator=torch.Generator().manual_seed(5))
    same = translate(model, method, x, SRC, SRC, steps=8, w=3.0, skip=0, seed=5)
    assert_close(same + z.residual, x, atol=1e-10, rtol=0)
    other = translate(model, method, x, SRC, TGT, steps=8, w=3.0, skip=0, seed=5)
    assert (other - same).abs().max() > 1e-3  # the target caption changes the decoding


def test_later_starts_keep_more_of_the_source():
    """The larger the skip, the fewer noisy steps are re-drawn: every method moves the image less."""
    model, x = tiny_model(), images(2)
    for m in METHODS:
        near = [(translate(model, m, x, SRC, TGT, steps=10, skip=k) - x).pow(2).mean().item() for k in (0, 8)]
        assert near[1] < near[0], m


def test_translate_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="expected one of"):
        translate(tiny_model(), "pix2pix", images(1), SRC, TGT)


def test_judge_scores_the_sources_themselves():
    clf = ImageClassifier(ImageClassifierConfig(("cat", "dog"))).eval()
    x = images(4)
    with torch.no_grad():
        row = judge(clf, x, x, torch.randn(6, clf.head.in_features), "dog")
    assert row["psnr"] == float("inf") and row["ssim"] == pytest.approx(1.0) and 0 <= row["accuracy"] <= 1


def test_noise_reconstruction_is_exact_once_the_residual_is_added():
    r = noise_reconstruction_rows(tiny_model(), images(2), CAPTIONS[:2], steps=(5,))[0]
    assert r["DPM-Encoder + residual"] < 1e-12 and r["edit-friendly + residual"] < 1e-12
    assert r["DPM-Encoder"] > 1e-6 and r["DDIM inversion"] > 1e-6  # the residual and DDIM's drift are real


def test_the_classifier_energy_is_lambda_times_the_negative_log_probability_and_has_a_gradient():
    """E(z) = -lambda log p(label | G(z)): zero at lambda = 0, linear in lambda, differentiable in the packed z."""
    from minidiff.noise_space import G

    model, grid = tiny_model(), timesteps(100, 4)
    clf = ImageClassifier(ImageClassifierConfig(("a", "b", "c"))).eval()
    z = torch.randn(2, len(grid), 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    e1, e3 = classifier_energy(model, clf, grid, 1, 1.0)(z), classifier_energy(model, clf, grid, 1, 3.0)(z)
    x = G(model, model.schedule, z, grid, 1.0, model.null_context(2))
    assert_close(e1, -torch.log_softmax(clf(x), -1)[:, 1])
    assert_close(e3, 3 * e1)
    assert e1.shape == (2,) and (classifier_energy(model, clf, grid, 1, 0.0)(z) == 0).all()
    (grad,) = torch.autograd.grad(e1.sum(), [z])
    assert grad[:, 0].abs().max() > 0


def test_edit_friendly_p2p_translation_differs_from_plain_decoding_and_swaps_only_the_changed_word():
    """P2P holds the target to the source's attention: the result lies between the plain target decoding and the
    source; the controller's cross window is shorter for the swapped word than for the others."""
    model, x = tiny_model(), images(2)
    grid = timesteps(model.schedule.T, 10)
    src, tgt = "a red circle", "a blue circle"
    alpha = translation_controller(model, src, tgt, 2, grid).alpha[:, 1]  # (S, L): 1 where the source's maps go in
    pos = dict(model.tokenizer.word_positions(tgt))
    assert alpha[:, pos["blue"]].sum() == 4 and alpha[:, pos["circle"]].sum() == 8  # 0.4 and 0.8 of 10 steps
    plain = translate(model, "edit-friendly", x, src, tgt, steps=10, skip=2)
    p2p = translate(model, "edit-friendly + P2P", x, src, tgt, steps=10, skip=2)
    same = translate(model, "edit-friendly", x, src, src, steps=10, skip=2)
    assert (p2p - plain).abs().max() > 1e-4
    assert (p2p - same).pow(2).mean() < (plain - same).pow(2).mean()


def test_translation_controller_refuses_prompts_of_different_word_counts():
    model = tiny_model()
    with pytest.raises(ValueError, match="word"):
        translation_controller(model, "a red circle", "a red circle square", 1, timesteps(100, 4))


def test_tradeoff_settings_move_one_parameter_at_a_time_around_the_first_values():
    s = tradeoff_settings((10, 0, 20), (3.0,), (1.0, 0.5))
    assert [(r["swept"], r["skip"], r["w"], r["eta"]) for r in s] == [
        ("skip", 0, 3.0, 1.0), ("skip", 10, 3.0, 1.0), ("skip", 20, 3.0, 1.0), ("eta", 10, 3.0, 0.5),
        ("eta", 10, 3.0, 1.0)]
    assert [r["swept"] for r in tradeoff_settings((10,), (3.0,), (1.0,))] == ["skip"]


def test_diff_augment_views_are_exact_shifted_flipped_brightened_copies_with_zero_fill():
    """Every view equals brightness + shift(flip?(x)) for some offset within round(shift * H) and zero fill
    outside: found by brute force over the candidates."""
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = diff_augment(x, torch.Generator().manual_seed(1), shift=0.125, brightness=0.0)
    for xi, vi in zip(x, v, strict=True):
        found = []
        for flip in (False, True):
            src = xi.flip(-1) if flip else xi
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    cand = torch.zeros_like(src)
                    cand[:, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)] = \
                        src[:, max(0, dy):16 + min(0, dy), max(0, dx):16 + min(0, dx)]
                    found.append(torch.equal(cand, vi))
        assert sum(found) == 1
    sym = x + x.flip(-1)  # a flip changes nothing: what is left is the brightness offset, one per image
    b = diff_augment(sym, torch.Generator().manual_seed(1), shift=0.0, brightness=0.2) - sym
    offset = b[:, :1, :1, :1]
    assert_close(b, offset.expand_as(b))
    assert 0 < offset.abs().min() and offset.abs().max() <= 0.2 and len(set(offset.flatten().tolist())) == 6


def test_diff_augment_is_differentiable_and_the_augmented_energy_averages_its_views():
    model, grid = tiny_model(), timesteps(100, 3)
    clf = ImageClassifier(ImageClassifierConfig(("a", "b", "c"))).eval()
    z = torch.randn(2, len(grid), 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    e = classifier_energy(model, clf, grid, 2, 1.5, views=3, generator=torch.Generator().manual_seed(7))(z)
    from minidiff.bench.translation import null_prompt_image

    x = null_prompt_image(model, z, grid)
    v = diff_augment(x.repeat(3, 1, 1, 1), torch.Generator().manual_seed(7))
    by_hand = -1.5 * torch.log_softmax(clf(v), -1)[:, 2].view(3, 2).mean(0)
    assert_close(e, by_hand)
    assert not torch.allclose(e, classifier_energy(model, clf, grid, 2, 1.5)(z))  # the views change the energy
    (grad,) = torch.autograd.grad(e.sum(), [z])
    assert grad[:, 0].abs().max() > 0
    assert_close(augmented_log_probs(clf, x, 0)[:, 1], torch.log_softmax(clf(x), -1)[:, 1])
