"""Guidance: classifier guidance and classifier-free guidance checked against closed forms.

The oracle is two Gaussian classes, x_0 | y ~ N(y mu, s^2 I), y = +-1 with equal priors: the optimal
unconditional and class-conditional eps-models and the exact noisy classifier log p(y | x_t) are all
closed-form (minidiff.oracles), so the guidance identities hold to float64 round-off.
"""

import math

import pytest
import torch

from minidiff.datasets.shapes import shapes_labels
from minidiff.guidance import (
    Guidance,
    cfg_eps,
    classifier_free_guidance,
    classifier_guidance,
    guided,
    ho_salimans_from_w,
    w_from_ho_salimans,
)
from minidiff.nn.classifiers import NoisyClassifier, NoisyClassifierConfig
from minidiff.oracles import two_gaussians_eps, two_gaussians_logits
from minidiff.samplers import ddim_sample
from minidiff.schedule import Schedule
from minidiff.training.classifiers import noisy_classifier_accuracy, train_noisy_classifier

F64 = torch.float64
SCHED = Schedule.cosine(1000)
MU, S = torch.tensor([1.2, -0.5, 0.3], dtype=F64), 0.6


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n noisy points and timesteps spread over 1..T."""
    return 2 * torch.randn(n, 3, generator=gen(seed), dtype=F64), torch.linspace(1, 1000, n).round().long()


def conditional_by_context(sched):
    """An eps-model of the two classes whose context says which: 0 = null (the mixture), +1 / -1 = the class."""
    eps_u, eps_pos, eps_neg = (two_gaussians_eps(sched, MU, S, label) for label in (None, 0, 1))

    def eps_model(x, t, context):
        c = context.view(-1, 1)
        return torch.where(c == 0, eps_u(x, t), torch.where(c > 0, eps_pos(x, t), eps_neg(x, t)))
    return eps_model


def test_the_oracle_mixture_eps_is_the_posterior_average_of_the_class_eps():
    """Consistency of the oracles: E[eps | x_t] = sum_y p(y | x_t) E[eps | x_t, y] (round-off)."""
    x, t = points()
    p = torch.softmax(two_gaussians_logits(SCHED, MU, S)(x, t), dim=1)  # (B, 2)
    mix = p[:, :1] * two_gaussians_eps(SCHED, MU, S, 0)(x, t) + p[:, 1:] * two_gaussians_eps(SCHED, MU, S, 1)(x, t)
    torch.testing.assert_close(two_gaussians_eps(SCHED, MU, S)(x, t), mix, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("label", [0, 1])
def test_classifier_guidance_at_scale_1_with_the_exact_classifier_gives_the_class_conditional_model(label):
    """eps_u - sqrt(1-ab) grad log p(y|x_t) = -sqrt(1-ab) grad [log p_t(x) + log p(y|x)] = -sqrt(1-ab) grad log
    p_t(x|y) = eps_y: the optimal unconditional model plus exact guidance IS the optimal conditional model."""
    x, t = points(seed=1)
    eps_u, exact_classifier = two_gaussians_eps(SCHED, MU, S), two_gaussians_logits(SCHED, MU, S)
    guided = classifier_guidance(eps_u, exact_classifier, label, 1.0, SCHED)
    torch.testing.assert_close(guided(x, t, None), two_gaussians_eps(SCHED, MU, S, label)(x, t), rtol=1e-12, atol=1e-12)
    unguided = classifier_guidance(eps_u, exact_classifier, label, 0.0, SCHED)
    torch.testing.assert_close(unguided(x, t, None), eps_u(x, t), rtol=0, atol=0)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, 7.5])
def test_classifier_free_guidance_with_w_is_classifier_guidance_with_scale_w_on_the_unconditional_model(w):
    """eps_c - eps_u = -sqrt(1-ab) grad log p(y|x_t), so eps_u + w (eps_c - eps_u) is classifier guidance of
    eps_u at scale w with the exact classifier (round-off); w = 1 is the conditional model, w = 0 the null one."""
    x, t = points(seed=2)
    cfg = classifier_free_guidance(conditional_by_context(SCHED), Guidance(torch.zeros(1, 1, dtype=F64), w))
    context = torch.ones(len(x), 1, dtype=F64)  # class +1 = label 0
    cg = classifier_guidance(two_gaussians_eps(SCHED, MU, S), two_gaussians_logits(SCHED, MU, S), 0, w, SCHED)
    torch.testing.assert_close(cfg(x, t, context), cg(x, t, None), rtol=1e-12, atol=1e-12)
    if w == 1.0:
        torch.testing.assert_close(cfg(x, t, context), two_gaussians_eps(SCHED, MU, S, 0)(x, t), rtol=0, atol=1e-15)


def test_the_two_guidance_scale_conventions_convert_into_each_other():
    """Ho & Salimans' (1 + w') eps_c - w' eps_u equals minidiff's eps_u + w (eps_c - eps_u) at w = 1 + w'."""
    x, t = points(seed=3)
    model, null = conditional_by_context(SCHED), torch.zeros(1, 1, dtype=F64)
    context = -torch.ones(len(x), 1, dtype=F64)  # class -1
    for w_prime in (0.0, 0.5, 2.0):
        eps_c, eps_u = model(x, t, context), model(x, t, torch.zeros_like(context))
        ho = (1 + w_prime) * eps_c - w_prime * eps_u
        ours = classifier_free_guidance(model, Guidance(null, w_from_ho_salimans(w_prime)))(x, t, context)
        torch.testing.assert_close(ours, ho, rtol=1e-12, atol=1e-12)
        assert ho_salimans_from_w(w_from_ho_salimans(w_prime)) == w_prime


def test_classifier_guided_ddim_samples_land_in_the_requested_class():
    """Inside ddim_sample (which runs under no_grad) the guidance gradient still flows. 2,000 samples of
    the mixture with 50 DDIM steps: unguided ~50% on the +mu side; guided at s = 1 toward label 0 the
    fraction on the +mu side is P(N(|mu|, s^2) > 0) = Phi(|mu|/s) = 0.987 within 4 SE (+ 0.01 for the
    50-step discretisation; measured 0.9855), and at s = 4 it is above that (measured 1.0)."""
    N = 2000
    x_T = torch.randn(N, 3, generator=gen(4), dtype=F64)
    side = lambda x: (x @ MU > 0).double().mean().item()
    eps_u, clf = two_gaussians_eps(SCHED, MU, S), two_gaussians_logits(SCHED, MU, S)
    free = side(ddim_sample(eps_u, SCHED, x_T, steps=50))
    assert abs(free - 0.5) < 4 * math.sqrt(0.25 / N)
    expected = 0.5 * (1 + math.erf(MU.norm().item() / S / math.sqrt(2)))
    guided = side(ddim_sample(classifier_guidance(eps_u, clf, 0, 1.0, SCHED), SCHED, x_T, steps=50))
    assert abs(guided - expected) < 4 * math.sqrt(expected * (1 - expected) / N) + 0.01
    assert side(ddim_sample(classifier_guidance(eps_u, clf, 0, 4.0, SCHED), SCHED, x_T, steps=50)) >= guided


def test_classifier_guidance_rejects_bad_labels_and_scales():
    x, t = points(8, seed=5)
    eps_u, clf = two_gaussians_eps(SCHED, MU, S), two_gaussians_logits(SCHED, MU, S)
    with pytest.raises(ValueError, match="classes in 0..1"):
        classifier_guidance(eps_u, clf, 2, 1.0, SCHED)(x, t, None)
    with pytest.raises(ValueError, match=">= 0"):
        classifier_guidance(eps_u, clf, 0, -1.0, SCHED)


# ---- the noisy classifier for `shapes` ---------------------------------------------------------------

def test_shapes_labels_read_the_background_or_the_first_object_colour():
    captions = ["a red circle on the left and a blue square on the right on a gray background",
                "a cyan triangle in the center on a black background"]
    labels, names = shapes_labels(captions, "background")
    assert [names[i] for i in labels] == ["gray", "black"] and len(names) == 4
    labels, names = shapes_labels(captions, "colour")
    assert [names[i] for i in labels] == ["red", "cyan"] and len(names) == 6
    with pytest.raises(ValueError, match="background"):
        shapes_labels(captions, "shape")


def test_train_classifier_lowers_the_noisy_cross_entropy_on_shapes():
    """An 8k-parameter NoisyClassifier, 60 steps on 64 `shapes` scenes (seconds): the cross-entropy on a fixed
    set of noisy copies (t <= 300) falls from chance, log 4 = 1.39 (measured 1.39 -> 0.63; asserted: by > 0.2),
    and the accuracy at t = 1 (measured 0.75) beats chance 0.25 by > 0.25. Plumbing, not quality."""
    from minidiff.datasets.shapes import shapes_tensors

    torch.manual_seed(0)
    images, captions = shapes_tensors(64, seed=0)
    labels, _ = shapes_labels(captions, "background")
    sched = Schedule.linear(1000)
    clf = NoisyClassifier(NoisyClassifierConfig(num_classes=4, base_channels=8, channel_mults=(1, 2), norm_groups=4))
    t = torch.randint(1, 301, (64,), generator=gen(6))
    x_t = torch.sqrt(sched.alpha_bar[t]).float().view(-1, 1, 1, 1) * images \
        + torch.sqrt(1 - sched.alpha_bar[t]).float().view(-1, 1, 1, 1) * torch.randn(images.shape, generator=gen(7))

    def ce() -> float:
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(clf(x_t, t), labels).item()
    before = ce()
    losses = train_noisy_classifier(clf, sched, images, labels, steps=60, batch_size=32, lr=3e-3, progress=False)
    after = ce()
    assert len(losses) == 60 and not clf.training
    assert before - after > 0.2, (before, after)
    assert noisy_classifier_accuracy(clf, sched, images, labels, ts=(1,))[1] > 0.5


def test_train_shapes_classifier_runs_end_to_end_and_reports_held_out_accuracy_per_t():
    """Plumbing for the real training command (3 steps here): accuracies are fractions for the default ts."""
    from minidiff.training.classifiers import train_shapes_classifier

    cfg = NoisyClassifierConfig(num_classes=6, base_channels=8, channel_mults=(1,), norm_groups=4)
    clf, losses, acc = train_shapes_classifier(Schedule.linear(1000), "colour", n=32, steps=3, batch_size=8,
                                               cfg=cfg, n_test=16, progress=False)
    assert len(losses) == 3 and sorted(acc) == [1, 250, 500, 750, 1000]
    assert all(0 <= a <= 1 for a in acc.values()) and clf.head.out_features == 6


def test_guidance_is_one_object_and_refuses_what_it_is_not():
    """`Guidance(null_context, w)` is the one way to ask for CFG: the old tuple, a bare float, a non-finite w or a
    null context without a batch dimension are refused with a message saying what to write instead."""
    null = torch.zeros(1, 1, dtype=F64)
    model = conditional_by_context(SCHED)
    for bad in ((null, 3.0), 3.0):
        with pytest.raises(TypeError, match=r"Guidance\(null_context, w\)"):
            guided(model, bad)
    for w in (float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match="finite number"):
            Guidance(null, w)
    with pytest.raises(TypeError, match="null_context"):
        Guidance(torch.zeros(3), 3.0)
    assert guided(model, None) is model


def test_cfg_eps_is_the_formula_every_guided_path_uses():
    """cfg_eps(eps_u, eps_c, w) = eps_u + w (eps_c - eps_u), and the wrapped model equals it on its two halves."""
    x, t = points(seed=4)
    model, null = conditional_by_context(SCHED), torch.zeros(1, 1, dtype=F64)
    context = torch.ones(len(x), 1, dtype=F64)
    eps_u, eps_c = model(x, t, torch.zeros_like(context)), model(x, t, context)
    torch.testing.assert_close(cfg_eps(eps_u, eps_c, 2.5), eps_u + 2.5 * (eps_c - eps_u), rtol=0, atol=0)
    torch.testing.assert_close(classifier_free_guidance(model, Guidance(null, 2.5))(x, t, context),
                               cfg_eps(eps_u, eps_c, 2.5), rtol=1e-12, atol=1e-12)
