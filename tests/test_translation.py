"""Lecture 7's tables (bench/translation.py): zero-shot translation through the noise space and the reconstruction
table, on the tiny random model (the CIFAR-10 numbers themselves are in data/README.md)."""

import pytest
import torch
from torch.testing import assert_close

from minidiff.bench.translation import METHODS, judge, noise_reconstruction_rows, translate
from minidiff.guidance import Guidance
from minidiff.nn.classifiers import ImageClassifier, ImageClassifierConfig
from minidiff.noise_space import dpm_encode, edit_friendly_invert
from minidiff.schedule import timesteps
from tests.test_experiments import CAPTIONS, images, tiny_model

SRC, TGT = CAPTIONS[0], CAPTIONS[1]


@pytest.mark.parametrize("method,encoder", [("CycleDiffusion", dpm_encode), ("edit-friendly", edit_friendly_invert)])
def test_translating_to_the_source_caption_gives_back_the_image_up_to_the_final_step_residual(method, encoder):
    """Encode and decode with the same caption: G(z) + residual = x_0 (to round-off), so `translate` must encode with
    the source caption, decode with the target's, and draw the encoder's noise from `seed`."""
    model, x = tiny_model(), images(2)
    c, g = model.encode_text([SRC] * 2), Guidance.of(model, 3.0)
    z = encoder(model, model.schedule, x, eta=1.0, context=c, guidance=g, grid=timesteps(model.schedule.T, 8),
                generator=torch.Generator().manual_seed(5))
    same = translate(model, method, x, SRC, SRC, steps=8, w=3.0, skip=0, seed=5)
    assert_close(same + z.residual, x, atol=1e-5, rtol=0)
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
    from minidiff.bench.translation import classifier_energy
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
