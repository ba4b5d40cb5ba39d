"""Measured tables for the latent models on CIFAR-10 and CelebA (lecture 6).

- `autoencoder_table`: reconstruction PSNR / SSIM of the shipped KL-f4 autoencoders on held-out
  images, beside the latent-diffusion paper's f = 4 KL autoencoder (PSNR 27.5 on 256 px ImageNet).
- `quality_table`: samples judged by the project's own classifier (`nn.classifiers.ImageClassifier`):
  accuracy of the conditional samples (does the sample show its caption's class / attributes),
  and classifier-FID / classifier-KID against the held-out set, in that classifier's feature
  space. Two reference rows bracket the model: real training images vs the held-out set (the
  floor: what a perfect model would score with this many images) and samples of a freshly
  initialised model of the same architecture (the ceiling). For a latent model a third row, the latent
  floor: the same training images encoded and decoded by its autoencoder, which is what a latent model
  that sampled the latent distribution exactly would produce (`latent_floor`, also a column of
  `autoencoder_table`).

KID's kernel (x . y / D + 1)^3 assumes features of order one; the classifier's max-pooled ReLU
features are not, so both feature sets are standardised per dimension by the held-out set's mean
and std before KID (FID is computed on the raw features, as usual).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from ..datasets import heldout, load_dataset, to_float
from ..datasets.real import caption_attributes
from ..metrics import feature_fid, kernel_distance, psnr, ssim
from ..nn.classifiers import features, predict
from ..nn.diffusion_model import generate
from ..training import pretrained
from .tables import BenchCommand, model_heldout, print_table

LDM_F4_KL_PSNR = 27.5  # Rombach et al. 2022, Table 8: KL-regularised f = 4 autoencoder, 256x256 ImageNet


@torch.no_grad()
def autoencoder_table(names: tuple[str, ...] = ("cifar10_ae", "celeba_ae"), n: int = 1000,
                      device: str | torch.device = "cpu") -> list[dict]:
    """PSNR / SSIM (mean +- std over images) of each autoencoder's reconstruction of n held-out images, and,
    where the data set's evaluation classifier is shipped, its latent floor (`latent_floor`, 500 images)."""
    rows = []
    for name in names:
        if not (pretrained.available(name) or Path(name).with_suffix(".json").exists()):
            print(f"{name}: not in {pretrained.checkpoint_dir()} and not a checkpoint path; skipped")
            continue
        ae = pretrained.load(name, kind="Autoencoder", device=device)
        dataset = ae.info.get("train_config", {}).get("dataset", Path(name).stem.removesuffix("_ae"))
        size = ae.info.get("train_config", {}).get("image_size", 32)
        x = heldout(dataset, n, size)[0].to(device)
        rec = reconstruct(ae, x)
        p, s = psnr(rec, x), ssim(rec, x)
        row = {"row": f"{name} ({dataset} test, {len(x)} images, {size}x{size})", "psnr": p.mean().item(),
               "psnr_std": p.std().item(), "ssim": s.mean().item(), "ssim_std": s.std().item(),
               "params": ae.num_params(), "latent": f"{ae.cfg.latent_channels}x{size // ae.cfg.factor}^2"}
        if pretrained.available(f"{dataset}_classifier"):
            clf = pretrained.load(f"{dataset}_classifier", kind="ImageClassifier", device=device)
            row.update(latent_floor(ae, clf, dataset, size, n=500, device=device))
        rows.append(row)
    body = [[r["row"], f"{r['psnr']:.2f} +- {r['psnr_std']:.2f}", f"{r['ssim']:.3f} +- {r['ssim_std']:.3f}",
             r["latent"], f"{r['params']:,}", f"{r['accuracy']:.3f}" if "fid" in r else "",
             f"{r['fid']:.2f}" if "fid" in r else ""] for r in rows]
    body.append(["LDM KL-f4 (paper, ImageNet 256x256)", f"{LDM_F4_KL_PSNR}", "", "3x64^2", "", "", ""])
    print_table("Autoencoder reconstruction on held-out images; latent floor: 500 training images through it",
                ["autoencoder", "PSNR (dB)", "SSIM", "latent", "params", "floor accuracy", "floor classifier-FID"],
                body)
    return rows


@torch.no_grad()
def latent_floor(ae, clf, dataset: str, size: int, n: int = 500, seed: int = 0,
                 device: str | torch.device = "cpu") -> dict:
    """The best a latent model on `ae` can score in `quality_table`: the same n training images as the table's
    floor row, encoded to posterior means and decoded (a model that samples the latent distribution exactly
    produces these), judged by `clf` against the same n held-out images."""
    x_test, _ = heldout(dataset, n, size, seed=seed)
    x, caps = training_sample(dataset, size, n, seed)
    rec = reconstruct(ae, x.to(device))
    return {"accuracy": conditional_accuracy(clf, rec, caps),
            "fid": feature_fid(features(clf, rec), features(clf, x_test.to(device)))}


@torch.no_grad()
def reconstruct(ae, x: Tensor, chunk: int = 250) -> Tensor:
    """decode(posterior mean of q(z|x)) of images x (B, 3, H, W), `chunk` images at a time."""
    return torch.cat([ae(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def training_sample(dataset: str, size: int, n: int, seed: int = 0) -> tuple[Tensor, list[str]]:
    """n training images (in [-1, 1]) and their captions, drawn by a seeded permutation (the floor rows' images)."""
    train = load_dataset(dataset, "train", image_size=size)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return to_float(train.images[idx]), [train.captions[i] for i in idx.tolist()]


def conditional_accuracy(clf, x: Tensor, captions: list[str]) -> float:
    """Fraction of (image, caption) pairs where the classifier agrees with the caption: the class for
    CIFAR-10, and for CelebA the mean over the attributes each caption states."""
    pred = predict(clf, x)
    if clf.cfg.kind == "multiclass":
        want = torch.tensor([clf.cfg.labels.index(c.split()[-1]) for c in captions], device=pred.device)
        return (pred == want).double().mean().item()
    hits, total = 0, 0
    for p, c in zip(pred.tolist(), captions, strict=True):
        for name, v in caption_attributes(c).items():
            hits += int(p[clf.cfg.labels.index(name)] == v)
            total += 1
    return hits / total


def model_and_judge(checkpoint: str, classifier: str, device: str | torch.device = "cpu"):
    """The latent model and its data set's evaluation classifier, or a clear error for any other pair."""
    model = pretrained.load(checkpoint, kind="DiffusionModel", device=device)
    clf = pretrained.load(classifier, kind="ImageClassifier", device=device)
    dataset = model.data.get("name")
    if dataset not in ("cifar10", "celeba") or clf.cfg.dataset != dataset:
        raise ValueError(f"the quality table judges a CIFAR-10 or CelebA model with that data set's classifier; got "
                         f"{checkpoint!r} (trained on {dataset}) and {classifier!r} (for {clf.cfg.dataset})")
    return model, clf


def quality_table(checkpoint: str, classifier: str, n: int = 500, w: float = 3.0, steps: int = 25,
                  seed: int = 0, device: str | torch.device = "cpu") -> list[dict]:
    """Classifier accuracy, classifier-FID and classifier-KID of samples vs the held-out set (see module doc)."""
    model, clf = model_and_judge(checkpoint, classifier, device)
    dataset = model.data["name"]
    x_test, captions = model_heldout(model, n)
    f_test = features(clf, x_test)
    x_train, train_captions = training_sample(dataset, model.data["image_size"], n, seed)
    x_train = x_train.to(device)
    rows = []

    def add(name: str, x: Tensor, caps: list[str], seconds: float = 0.0) -> None:
        f = features(clf, x)
        mu, sd = f_test.mean(0), f_test.std(0).clamp_min(1e-8)  # KID on standardised features (see module doc)
        kid, kid_std = kernel_distance((f - mu) / sd, (f_test - mu) / sd, subset_size=min(500, n // 2))
        rows.append({"row": name, "accuracy": conditional_accuracy(clf, x, caps), "fid": feature_fid(f, f_test),
                     "kid": kid, "kid_std": kid_std, "seconds": seconds})

    add(f"real training images vs held-out (floor), n = {n}", x_train, train_captions)
    if model.latent:  # the same images through the autoencoder: what an exact latent model would score
        add("the same images encoded and decoded by its autoencoder (latent floor)",
            reconstruct(model.autoencoder, x_train), train_captions)
    t0 = time.perf_counter()
    add(f"{checkpoint}: DDIM {steps} steps, w = {w}", generate(model, captions, w, steps, seed),
        captions, time.perf_counter() - t0)
    torch.manual_seed(seed)
    fresh = type(model).from_config(model.config()).eval().to(device)  # freshly initialised weights
    if model.latent:
        fresh.attach_autoencoder(model.autoencoder)
    add("untrained model of the same architecture (ceiling)", generate(fresh, captions, w, steps, seed,
                                                                       progress=False), captions)
    acc = clf.info.get("test_accuracy")
    print(f"\nclassifier {classifier!r}: held-out accuracy {acc}; features: {clf.head.in_features}-d penultimate")
    print_table(f"Sample quality of {checkpoint!r} judged by the project's {dataset} classifier "
                 f"({n} samples, captions of held-out images)",
                 ["row", "accuracy vs caption", "classifier-FID", "classifier-KID (x 1e3)", "s"],
                 [[r["row"], f"{r['accuracy']:.3f}", f"{r['fid']:.2f}",
                   f"{1e3 * r['kid']:.2f} +- {1e3 * r['kid_std']:.2f}", f"{r['seconds']:.0f}"] for r in rows])
    return rows


AUTOENCODER = BenchCommand("autoencoder", "held-out reconstruction PSNR/SSIM and latent floor of the shipped "
                           "autoencoders (or of --checkpoint PATH)",
                           lambda o: autoencoder_table(**({"names": (o["checkpoint"],)} if o["checkpoint"] else {}),
                                                       n=o["n"], device=o["device"]), dict(n=1000, checkpoint=None))
QUALITY = BenchCommand("quality", "classifier accuracy, classifier-FID and -KID of a latent model's samples "
                       "(e.g. --checkpoint cifar10 --classifier cifar10_classifier)",
                       lambda o: [quality_table(o["checkpoint"], o["classifier"], n=o["n"], w=w,
                                                steps=o["steps"][0], seed=o["seed"], device=o["device"])
                                  for w in o["w"]],
                       dict(n=500, w=[3.0], steps=[25], checkpoint="cifar10", classifier="cifar10_classifier"),
                       lists=("w",))
