"""Latent diffusion (lecture 6): training on autoencoder latents, loading with the autoencoder attached,
refusing a mismatched autoencoder; the evaluation classifier's pieces; the shipped latent checkpoints."""

import shutil

import pytest
import torch

from minidiff.datasets.real import caption_attributes
from minidiff.datasets.shapes import shapes_tensors
from minidiff.nn.classifiers import ImageClassifier, ImageClassifierConfig
from minidiff.nn.diffusion_model import DiffusionModel, generate
from minidiff.training import pretrained
from minidiff.training.checkpoint import load_model
from minidiff.training.classifiers import augment
from minidiff.training.loop import TrainConfig
from minidiff.training.tasks import encode_latents, train

TINY = dict(n_train=64, batch_size=8, warmup=1, sample_every=0, text_dim=16, text_depth=1)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    """A tiny autoencoder, then a tiny latent_small diffusion model trained for 3 steps on its latents."""
    root = tmp_path_factory.mktemp("latent")
    train(TrainConfig(task="autoencoder", steps=2, ckpt_every=2, ae_channels=8, out=str(root / "ae_run"), **TINY),
          progress=False)
    shutil.copy(root / "ae_run" / "model.json", root / "tiny_ae.json")
    shutil.copy(root / "ae_run" / "model.safetensors", root / "tiny_ae.safetensors")
    train(TrainConfig(unet="latent_small", autoencoder=str(root / "tiny_ae.json"), steps=3, ckpt_every=3,
                      out=str(root / "ldm_run"), **TINY), progress=False)
    shutil.copy(root / "ldm_run" / "model.json", root / "tiny_ldm.json")
    shutil.copy(root / "ldm_run" / "model.safetensors", root / "tiny_ldm.safetensors")
    return root


def test_latent_model_records_its_autoencoder_and_loads_with_it_attached(latent_run):
    model = pretrained.load(str(latent_run / "tiny_ldm.json"))
    ae = load_model(latent_run / "tiny_ae")
    assert model.latent and model.data["autoencoder"]["name"] == "tiny_ae"
    assert model.data["autoencoder"]["sha256"] == ae.sha256
    assert (model.unet.cfg.in_channels, model.unet.cfg.image_size) == (4, 8)
    assert not any(k.startswith("_autoencoder") for k in model.state_dict())  # not part of the checkpoint
    x = shapes_tensors(3, seed=1, split="test")[0]
    with torch.no_grad():
        assert torch.equal(model.encode(x), ae.to_latent(x))
        assert torch.equal(model.decode(model.encode(x)), ae.from_latent(ae.to_latent(x)))
        images = generate(model, ["a red circle in the center on a gray background"] * 2, steps=3, progress=False)
        latents = generate(model, ["a red circle in the center on a gray background"] * 2, steps=3,
                           progress=False, decode=False)
    assert images.shape == (2, 3, 32, 32) and latents.shape == (2, 4, 8, 8)
    assert torch.equal(images, ae.from_latent(latents))


def test_training_encoded_the_posterior_means(latent_run):
    ae = load_model(latent_run / "tiny_ae")
    x = shapes_tensors(10, seed=0, split="train")[0]
    with torch.no_grad():
        z = encode_latents(ae, x, batch=4, progress=False)
    assert torch.equal(z, ae.scale_factor * ae.encode(x).mean)


def test_a_different_autoencoder_is_refused(latent_run, tmp_path):
    model = load_model(latent_run / "tiny_ldm")
    other = load_model(latent_run / "tiny_ae")
    with pytest.raises(ValueError, match="not the one this model was trained on"):
        model.attach_autoencoder(other, sha256="0" * 64)
    with pytest.raises(ValueError, match="needs its autoencoder 'tiny_ae'"):
        model.decode(torch.zeros(1, 4, 8, 8))
    pixel = DiffusionModel.from_config({**model.config(), "data": {"name": "shapes", "image_size": 32}})
    with pytest.raises(ValueError, match="pixel-space model"):
        pixel.attach_autoencoder(other)


def test_latent_preset_needs_an_autoencoder(tmp_path):
    with pytest.raises(ValueError, match="latent presets need --autoencoder"):
        train(TrainConfig(unet="latent_small", steps=1, out=str(tmp_path), **TINY), progress=False)


def test_augment_is_a_crop_and_flip_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    for b in range(2):
        crops = [padded[b, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], c) or torch.equal(out[b], c.flip(-1)) for c in crops)


def test_caption_attributes_read_back_the_celeba_grammar():
    from minidiff.datasets.real import celeba_caption

    row = {name: 0 for name in ("Smiling", "Young", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair", "Brown_Hair",
                                "Gray_Hair")}
    for change in ({}, {"Smiling": 1, "Male": 1}, {"Young": 1, "Black_Hair": 1, "Eyeglasses": 1}, {"Eyeglasses": 1}):
        attrs = {**row, **change}
        got = caption_attributes(celeba_caption(attrs))
        assert all(got[k] == attrs[k] for k in got)
        assert ("Blond_Hair" in got) == any(attrs[h] for h in ("Blond_Hair", "Black_Hair", "Brown_Hair", "Gray_Hair"))


def test_classifier_rejects_wrong_image_size():
    clf = ImageClassifier(ImageClassifierConfig(tuple("abc")))
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 32, 32\)"):
        clf(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["cifar10", "celeba"])
def test_shipped_latent_models_load_and_sample(name):
    if not pretrained.available(name):
        pytest.skip(f"data/{name} not shipped yet")
    model = pretrained.load(name)
    assert model.latent and model.autoencoder is not None
    prompt = "a photo of a cat" if name == "cifar10" else "a photo of a smiling young woman with blond hair"
    with torch.no_grad():
        x = generate(model, [prompt] * 2, steps=5, progress=False)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()


class FixedClassifier(ImageClassifier):
    """Returns preset logits: a classifier whose answers the test controls."""

    def __init__(self, cfg, logits):
        super().__init__(cfg)
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def test_conditional_accuracy_counts_agreement_with_the_caption():
    from minidiff.bench.latent import conditional_accuracy
    from minidiff.datasets.real import CELEBA_ATTRIBUTES, CIFAR10_CLASSES

    logits = torch.full((3, 10), -5.0)
    logits[0, 3], logits[1, 5], logits[2, 0] = 5.0, 5.0, 5.0  # cat, dog, airplane
    clf = FixedClassifier(ImageClassifierConfig(CIFAR10_CLASSES), logits)
    caps = ["a photo of a cat", "a photo of a cat", "a photo of a airplane"]
    assert conditional_accuracy(clf, torch.zeros(3, 3, 32, 32), caps) == pytest.approx(2 / 3)
    # CelebA: says smiling, not young, male, no glasses, black hair (logit sign = prediction)
    signs = torch.tensor([[1, -1, 1, -1, -1, 1, -1, -1]], dtype=torch.float32)
    clf = FixedClassifier(ImageClassifierConfig(CELEBA_ATTRIBUTES, "multilabel"), signs)
    # caption states Smiling=1, Young=1, Male=1, Eyeglasses=0 and the four hair colours (black): 7 of 8 agree
    acc = conditional_accuracy(clf, torch.zeros(1, 3, 32, 32), ["a photo of a smiling young man with black hair"])
    assert acc == pytest.approx(7 / 8)


def _cifar10_test():
    from minidiff.datasets import load_dataset, missing

    if (why := missing("cifar10")) is not None:
        pytest.skip(why)
    return load_dataset("cifar10", "test", progress=False)


def test_shipped_cifar10_classifier_reaches_80_percent_on_held_out_images():
    """Measured on the 2,000 evenly spaced test images used here: 0.8395 (all 10,000: 0.8483)."""
    if not pretrained.available("cifar10_classifier"):
        pytest.skip("data/cifar10_classifier not shipped")
    from minidiff.datasets import to_float
    from minidiff.nn.classifiers import accuracy

    ds = _cifar10_test()
    clf = pretrained.load("cifar10_classifier")
    idx = torch.linspace(0, len(ds) - 1, 2000).long()
    acc = accuracy(clf, to_float(ds.images[idx]), ds.extras["label"][idx]).item()
    assert acc >= 0.80, acc


def _identity_autoencoder(x):
    """A lossless 'autoencoder': the reconstruction is the input."""
    return x


def test_latent_floor_is_the_real_floor_for_a_lossless_autoencoder_and_44_7_for_cifar10_ae():
    """The latent floor (bench autoencoder / quality) judges training images through an autoencoder. Through a
    lossless one it must equal the real floor row (training vs held-out, classifier-FID 11.05); through the shipped
    cifar10_ae it measured accuracy 0.650 and FID 44.67 (500 images, 2026-12-07): 4x8x8 latents lose detail."""
    if not (pretrained.available("cifar10_classifier") and pretrained.available("cifar10_ae")):
        pytest.skip("data/cifar10_classifier or data/cifar10_ae not shipped")
    _cifar10_test()
    from minidiff.bench.latent import latent_floor

    clf = pretrained.load("cifar10_classifier")
    lossless = latent_floor(_identity_autoencoder, clf, "cifar10", 32, n=500)
    assert lossless["fid"] == pytest.approx(11.05, abs=0.01) and lossless["accuracy"] == pytest.approx(0.908)
    shipped = latent_floor(pretrained.load("cifar10_ae"), clf, "cifar10", 32, n=500)
    assert 42.0 <= shipped["fid"] <= 47.0 and 0.62 <= shipped["accuracy"] <= 0.68, shipped


def test_candidate_cifar10_ae_lowers_the_latent_floor_below_issue_15s_fid_target():
    """data/candidates/cifar10_ae (8x8x8, trained 2.5x longer; data/README.md) measured a latent floor of accuracy
    0.842 and classifier-FID 16.80 on 2026-12-07, under the target of 30 that the shipped cifar10_ae (44.67) ruled
    out; a cifar10 trained on it can reach the target, one on the shipped autoencoder cannot."""
    path = pretrained.checkpoint_dir() / "candidates" / "cifar10_ae.json"
    if not (path.exists() and pretrained.available("cifar10_classifier")):
        pytest.skip("data/candidates/cifar10_ae or data/cifar10_classifier not present")
    _cifar10_test()
    from minidiff.bench.latent import latent_floor

    ae = pretrained.load(str(path), kind="Autoencoder")
    assert ae.cfg.latent_channels == 8 and ae.cfg.factor == 4
    floor = latent_floor(ae, pretrained.load("cifar10_classifier"), "cifar10", 32, n=500)
    assert floor["fid"] <= 18.5 and floor["accuracy"] >= 0.82, floor
