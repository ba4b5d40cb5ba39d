"""Lecture 7's tables: the DDPM noise space (`noise_space`) on held-out images.

- `noise_reconstruction_table`: x_0 -> encoder -> G -> x_0 for DDIM inversion (eta = 0), CycleDiffusion's
  DPM-Encoder and edit-friendly DDPM inversion (eta = 1), decoding with the encoding's own condition. The two
  stochastic encoders reproduce x_0 up to the final sigma = 0 step's residual (`NoiseLatent.residual`), reported
  separately; latent models add the autoencoder's floor.
- `translation_table`: zero-shot unpaired translation of CIFAR-10 test images, "a photo of a SRC" -> "a photo of
  a TGT" (CycleDiffusion sec. 4.1): each method encodes with the source caption and decodes with the target one,
  both under classifier-free guidance w, from `skip` steps into the grid:

  | method | encode (source caption) | decode (target caption) |
  |---|---|---|
  | CycleDiffusion | `dpm_encode` | `generate` (G, the encoder's noise injected) |
  | edit-friendly | `edit_friendly_invert` | `generate` |
  | edit-friendly + P2P | `edit_friendly_invert` | `edit_friendly_p2p`, word swap (`TRANSLATION_P2P`) |
  | DDIM inversion | `ddim_invert` to tau_skip | `ddim_sample` (eta = 0) |
  | SDEdit | q(x_tau_skip given x_0), no encoder | `ddim_sample` (eta = 0) from that noisy image |

  Judged like the paper, with the project's own classifier in place of CLIP (no CLIP weights exist offline):
  target-class accuracy, classifier-FID / -KID to real test images of the target class, and PSNR / SSIM to the
  source (how much of it is kept). `translation_tradeoff` sweeps skip, guidance w and eta for one pair, one at a
  time: accuracy against PSNR, the papers' CLIP-vs-LPIPS curves with this project's judges.
- `langevin_table`: plug-and-play guidance towards a class with `classifier_energy`, optionally averaged over
  differentiable augmentations (`diff_augment`, `augmented_log_probs`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..datasets import load_dataset, to_float
from ..datasets.real import CIFAR10_CLASSES, cifar10_caption
from ..guidance import Guidance
from ..inversion import ddim_invert, sdedit
from ..metrics import feature_fid, kernel_distance, psnr, ssim
from ..nn.classifiers import features, predict
from ..noise_space import G, dpm_encode, edit_friendly_invert, edit_friendly_p2p, generate, langevin_guidance
from ..p2p import Replace
from ..samplers import ddim_sample
from ..schedule import standard_normal, timesteps
from .latent import model_and_judge
from .tables import BenchCommand, model_heldout, print_table, reconstruction_mse

METHODS = ("CycleDiffusion", "edit-friendly", "edit-friendly + P2P", "DDIM inversion", "SDEdit")
STOCHASTIC = METHODS[:3]  # the methods with an eta (DDIM inversion and SDEdit decode with eta = 0)
# P2P word swap for a class swap: the swapped words take the source's cross-attention for the first 40% of the steps,
# the other words for 80%; self-attention injected for the first 20% (the shapes benchmark's "shape" edit keeps 20%;
# a class changes more than a shape, so the swapped word is held a little longer). Not tuned on the test images.
TRANSLATION_P2P = dict(word=0.4, default=0.8, self_steps=0.2)
PAIRS = (("cat", "dog"), ("dog", "cat"), ("automobile", "truck"), ("horse", "deer"), ("airplane", "bird"))


def caption(label: str) -> str:
    """The CIFAR-10 caption of a class name: 'a photo of a cat', 'a photo of an airplane'."""
    return cifar10_caption(CIFAR10_CLASSES.index(label))


def translate(model, method: str, x: Tensor, src: str, tgt: str, steps: int = 50, w: float = 3.0, eta: float = 1.0,
              skip: int = 10, seed: int = 0) -> Tensor:
    """Images x (B, 3, H, W) in [-1, 1] captioned `src` -> the same images captioned `tgt` by `method` (module
    docstring), in the model's space (latent models encode x and decode the result). skip: steps of the
    `steps`-step grid left out at its noisy end (0: start from tau_S = T)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    S, B = model.schedule, len(x)
    x0 = model.encode(x) if model.latent else x
    c_src, c_tgt, g = model.encode_text([src] * B), model.encode_text([tgt] * B), Guidance.of(model, w)
    grid, gen = timesteps(S.T, steps), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if method in STOCHASTIC:
            encoder = dpm_encode if method == "CycleDiffusion" else edit_friendly_invert
            z = encoder(model, S, x0, eta=eta, context=c_src, guidance=g, grid=grid, generator=gen)
            if method == "edit-friendly + P2P":
                out = edit_friendly_p2p(model, translation_controller(model, src, tgt, B, grid[skip:]), z, g)[1]
            else:
                out = generate(model, S, z, context=c_tgt, guidance=g, skip=skip)
        elif method == "DDIM inversion":
            x_t = ddim_invert(model, S, x0, context=c_src, guidance=g, grid=grid[skip:])
            out = ddim_sample(model, S, x_t, context=c_tgt, guidance=g, grid=grid[skip:])
        else:
            out = sdedit(model, S, x0, int(grid[skip]), steps=steps - skip, context=c_tgt, generator=gen, guidance=g)
        return model.decode(out) if model.latent else out


def translation_controller(model, src: str, tgt: str, batch: int, grid: Tensor) -> Replace:
    """The P2P word swap src -> tgt (`TRANSLATION_P2P`) for a batch of images on `grid` (the decoding's)."""
    changed = {b for a, b in zip(src.split(), tgt.split(), strict=False) if a != b}
    cross = {"default": TRANSLATION_P2P["default"], **dict.fromkeys(changed, TRANSLATION_P2P["word"])}
    return Replace(model.tokenizer, [src] * batch, [tgt] * batch, grid, cross_steps=cross,
                   self_steps=TRANSLATION_P2P["self_steps"])


def class_images(ds, label: str, n: int | None, device: str | torch.device = "cpu") -> Tensor:
    """Up to n images of the loaded data set `ds` captioned `caption(label)` (the first n in its order), in [-1, 1],
    on `device`. Load the split once (`datasets.load_dataset`) and pass it to every call."""
    idx = [i for i, c in enumerate(ds.captions) if c == caption(label)][:n]
    if not idx:
        raise ValueError(f"no image of the data set is captioned {caption(label)!r}")
    return to_float(ds.images[idx]).to(device)


def judge(clf, x: Tensor, x_src: Tensor, f_ref: Tensor, tgt: str) -> dict:
    """Target-class accuracy, classifier-FID / -KID to the target's real images (features f_ref), PSNR / SSIM to
    the sources."""
    f = features(clf, x)
    mu, sd = f_ref.mean(0), f_ref.std(0).clamp_min(1e-8)
    kid, _ = kernel_distance((f - mu) / sd, (f_ref - mu) / sd, subset_size=min(len(f), len(f_ref)) // 2)
    return {"accuracy": (predict(clf, x) == clf.cfg.labels.index(tgt)).double().mean().item(),
            "fid": feature_fid(f, f_ref), "kid": kid, "psnr": psnr(x, x_src).mean().item(),
            "ssim": ssim(x, x_src).mean().item()}


def translation_table(checkpoint: str = "cifar10", classifier: str = "cifar10_classifier", n: int = 64,
                      steps: int = 50, w: float = 3.0, eta: float = 1.0, skip: int = 10,
                      pairs: tuple[tuple[str, str], ...] = PAIRS, seed: int = 0,
                      device: str | torch.device = "cpu") -> list[dict]:
    """Every method on every pair (module docstring), n source images each; metrics averaged over the pairs, with
    the untouched sources as the reference row (what no edit scores)."""
    model, clf = model_and_judge(checkpoint, classifier, device)
    test = load_dataset(model.data["name"], "test")
    rows: dict[str, list[dict]] = {m: [] for m in ("sources (no edit)", *METHODS)}
    for src, tgt in pairs:
        x = class_images(test, src, n, device)
        f_ref = features(clf, class_images(test, tgt, None, device))
        rows["sources (no edit)"].append({**judge(clf, x, x, f_ref, tgt), "seconds": 0.0, "pair": f"{src}->{tgt}"})
        for m in METHODS:
            t0 = time.perf_counter()
            y = translate(model, m, x, caption(src), caption(tgt), steps, w, eta, skip, seed)
            seconds = time.perf_counter() - t0
            rows[m].append({**judge(clf, y, x, f_ref, tgt), "seconds": seconds, "pair": f"{src}->{tgt}"})
    out = [{"method": m, **{k: sum(r[k] for r in rs) / len(rs) for k in ("accuracy", "fid", "kid", "psnr", "ssim",
                                                                       "seconds")}, "pairs": rs}
           for m, rs in rows.items()]
    _print_translation(out, checkpoint, n, steps, w, eta, skip, pairs)
    return out


def _print_translation(rows: list[dict], checkpoint: str, n: int, steps: int, w: float, eta: float, skip: int,
                       pairs) -> None:
    names = [f"{s}->{t}" for s, t in pairs]
    print_table(f"Zero-shot translation on {checkpoint!r}: {n} test images per pair, {len(pairs)} pairs, DDIM grid of "
                f"{steps} steps from skip = {skip}, w = {w}, eta = {eta} (stochastic encoders); means over pairs",
                ["method", "target-class accuracy", "classifier-FID to target", "classifier-KID x 1e3",
                 "PSNR to source (dB)", "SSIM to source", "s per pair"],
                [[r["method"], f"{r['accuracy']:.3f}", f"{r['fid']:.1f}", f"{1e3 * r['kid']:.0f}",
                  "inf" if r["method"].startswith("sources") else f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
                  f"{r['seconds']:.0f}"] for r in rows])
    print_table("Target-class accuracy by pair", ["method", *names],
                [[r["method"], *(f"{p['accuracy']:.3f}" for p in r["pairs"])] for r in rows])


SWEPT = {"skip": "skip (start t)", "w": "guidance w", "eta": "eta"}


def tradeoff_settings(skips: tuple[int, ...], ws: tuple[float, ...], etas: tuple[float, ...]) -> list[dict]:
    """One parameter at a time around the first values: {"swept", "skip", "w", "eta"} for every value of every
    parameter given more than one value (skip alone when none is)."""
    base, values = {"skip": skips[0], "w": ws[0], "eta": etas[0]}, {"skip": skips, "w": ws, "eta": etas}
    swept = [k for k in values if len(values[k]) > 1] or ["skip"]
    return [{**base, "swept": k, k: v} for k in swept for v in sorted(values[k])]


def translation_tradeoff(checkpoint: str = "cifar10", classifier: str = "cifar10_classifier", n: int = 32,
                         steps: int = 50, skips: tuple[int, ...] = (10, 0, 20, 30), ws: tuple[float, ...] = (3.0,),
                         etas: tuple[float, ...] = (1.0,), pair: tuple[str, str] = ("cat", "dog"), seed: int = 0,
                         out: str | None = None, device: str | torch.device = "cpu") -> list[dict]:
    """Target-class accuracy vs PSNR to the source for each method as skip, w and eta move one at a time around
    (skips[0], ws[0], etas[0]) (`tradeoff_settings`; eta only for the `STOCHASTIC` methods), on one pair; one figure
    panel per swept parameter in `out`. A setting shared by two sweeps is computed once."""
    model, clf = model_and_judge(checkpoint, classifier, device)
    (src, tgt), test = pair, load_dataset(model.data["name"], "test")
    x = class_images(test, src, n, device)
    f_ref, cache, rows = features(clf, class_images(test, tgt, None, device)), {}, []
    for st in tradeoff_settings(skips, ws, etas):
        for m in STOCHASTIC if st["swept"] == "eta" else METHODS:
            key = (m, st["skip"], st["w"], st["eta"] if m in STOCHASTIC else None)
            if key not in cache:
                y = translate(model, m, x, caption(src), caption(tgt), steps, st["w"], st["eta"], st["skip"], seed)
                cache[key] = judge(clf, y, x, f_ref, tgt)
            rows.append({"method": m, **st, **cache[key]})
    _print_tradeoff(rows, f"{src} -> {tgt} on {checkpoint!r} ({n} images, {steps}-step grid)", model.schedule.T, steps)
    if out is not None:
        tradeoff_figure(rows, f"{src} -> {tgt}", Path(out) / "translation_tradeoff.png")
    return rows


def _print_tradeoff(rows: list[dict], title: str, T: int, steps: int) -> None:
    grid = timesteps(T, steps)
    for k in dict.fromkeys(r["swept"] for r in rows):
        rs = [r for r in rows if r["swept"] == k]
        fixed = ", ".join(f"{p} = {rs[0][p]:g}" for p in SWEPT if p != k)
        values = [f"{r['skip']} ({int(grid[r['skip']])})" if k == "skip" else f"{r[k]:g}" for r in rs]
        print_table(f"{title}: the trade-off as {SWEPT[k]} moves ({fixed})",
                    ["method", SWEPT[k], "target-class accuracy", "PSNR to source (dB)", "SSIM"],
                    [[r["method"], v, f"{r['accuracy']:.3f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}"]
                     for r, v in zip(rs, values, strict=True)])


def tradeoff_figure(rows: list[dict], title: str, path: Path) -> None:
    """Accuracy against PSNR, one panel per swept parameter, one line per method, points labelled by value."""
    import matplotlib.pyplot as plt

    sweeps = list(dict.fromkeys(r["swept"] for r in rows))
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4), squeeze=False)
    for ax, k in zip(axes[0], sweeps, strict=True):
        for m in METHODS:
            rs = [r for r in rows if r["method"] == m and r["swept"] == k]
            if rs:
                ax.plot([r["psnr"] for r in rs], [r["accuracy"] for r in rs], "o-", label=m)
            for r in rs:
                ax.annotate(f"{r[k]:g}", (r["psnr"], r["accuracy"]), fontsize=7)
        ax.set(xlabel="PSNR to the source (dB): structure kept", ylabel="target-class accuracy",
               title=f"{title}: {SWEPT[k]} moves")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")


@torch.no_grad()
def noise_reconstruction_rows(model, x: Tensor, captions: list[str], steps: tuple[int, ...] = (10, 50),
                              eta: float = 1.0, seed: int = 0) -> list[dict]:
    """Per-image-mean MSE (pixels in [0, 1]) of x -> encode -> G -> x with the captions as condition, no guidance, for
    DDIM inversion and the two stochastic encoders (also with the final step's residual added back)."""
    x0 = model.encode(x) if model.latent else x
    dec = model.decode if model.latent else (lambda z: z)
    S, ctx, rows = model.schedule, model.encode_text(captions), []
    for k in steps:
        grid, gen = timesteps(S.T, k), torch.Generator().manual_seed(seed)
        ddim = ddim_sample(model, S, ddim_invert(model, S, x0, context=ctx, grid=grid), context=ctx, grid=grid)
        row = {"steps": k, "DDIM inversion": reconstruction_mse(dec(ddim), x).mean().item()}
        for name, encoder in (("DPM-Encoder", dpm_encode), ("edit-friendly", edit_friendly_invert)):
            z = encoder(model, S, x0, eta=eta, context=ctx, grid=grid, generator=gen)
            g = generate(model, S, z, context=ctx)
            row[name] = reconstruction_mse(dec(g), x).mean().item()
            row[name + " + residual"] = reconstruction_mse(dec(g + z.residual), x).mean().item()
        if model.latent:
            row["AE floor"] = reconstruction_mse(dec(x0), x).mean().item()
        rows.append(row)
    return rows


def noise_reconstruction_table(checkpoint: str = "shapes", n: int = 32, steps: tuple[int, ...] = (10, 50),
                               eta: float = 1.0, seed: int = 0, device: str | torch.device = "cpu") -> list[dict]:
    """`noise_reconstruction_rows` on n held-out images of the model's data set, printed."""
    from ..training import pretrained

    model = pretrained.load(checkpoint, kind="DiffusionModel", device=device)
    rows = noise_reconstruction_rows(model, *model_heldout(model, n), steps=steps, eta=eta, seed=seed)
    cols = [c for c in rows[0] if c != "steps"]
    print_table(f"Reconstruction through the noise space on {checkpoint!r} ({n} held-out images, captions, no "
                f"guidance, eta = {eta}): MSE of pixels in [0, 1]", ["steps", *cols],
                [[str(r["steps"]), *(f"{r[c]:.2e}" for c in cols)] for r in rows])
    return rows


def null_prompt_image(model, z: Tensor, grid: Tensor, eta: float = 1.0) -> Tensor:
    """x(z) = G(z) of the null-prompt sampler for packed latents z (B, S + 1, ...) on `grid`, decoded for latent
    models: images (B, 3, H, W), differentiable in z."""
    x = G(model, model.schedule, z, grid, eta, model.null_context(len(z)))
    return model.decode(x) if model.latent else x


def diff_augment(x: Tensor, generator: torch.Generator | None = None, shift: float = 0.125,
                 brightness: float = 0.2) -> Tensor:
    """One random view of each image (B, C, H, W), differentiable in x: DiffAugment's "color" and "translation"
    policies, reduced to a brightness offset uniform in [-brightness, brightness], a horizontal flip with probability
    1/2 and a shift by up to round(shift * H) pixels each way with zero fill (Zhao et al., "Differentiable
    Augmentation for Data-Efficient GAN Training", NeurIPS 2020). Draws on the CPU `generator`."""
    B, _, H, W = x.shape
    m = round(shift * H)
    r = torch.rand(B, 4, generator=generator)  # brightness, flip, dy, dx
    x = x + ((2 * r[:, 0] - 1) * brightness).to(x)[:, None, None, None]
    x = torch.where((r[:, 1] < 0.5).to(x.device)[:, None, None, None], x.flip(-1), x)
    d = (r[:, 2:] * (2 * m + 1)).long().clamp_max(2 * m).tolist()  # crop offsets in [0, 2m]
    padded = F.pad(x, (m, m, m, m))
    return torch.stack([padded[b, :, dy:dy + H, dx:dx + W] for b, (dy, dx) in enumerate(d)])


def augmented_log_probs(clf, x: Tensor, views: int, generator: torch.Generator | None = None) -> Tensor:
    """log p_clf(. | x) (B, K), averaged over `views` `diff_augment` views of each image (0: x itself)."""
    if views == 0:
        return torch.log_softmax(clf(x), -1)
    v = diff_augment(x.repeat(views, 1, 1, 1), generator)  # (views * B, ...): view-major
    return torch.log_softmax(clf(v), -1).view(views, len(x), -1).mean(0)


def classifier_energy(model, clf, grid: Tensor, label: int, lam: float, eta: float = 1.0, views: int = 0,
                      generator: torch.Generator | None = None):
    """E(z) = -lam log p_clf(label | x(z)), x(z) = `null_prompt_image`: plug-and-play guidance's energy
    (CycleDiffusion sec. 4.2) with the project's classifier standing in for CLIP; with views > 0 the log-probability
    is averaged over that many fresh `diff_augment` views per call (CycleDiffusion's guard against adversarial
    gradients). Returns z (B, S + 1, ...) -> (B,)."""
    def energy(z: Tensor) -> Tensor:
        return -lam * augmented_log_probs(clf, null_prompt_image(model, z, grid, eta), views, generator)[:, label]
    return energy


JUDGE_VIEWS = 8  # the augmented judge: p(target) averaged over this many `diff_augment` views (fixed seed)


def langevin_table(checkpoint: str = "cifar10", classifier: str = "cifar10_classifier", n: int = 32,
                   steps: int = 10, lambdas: tuple[float, ...] = (0.0, 3.0, 10.0), views: tuple[int, ...] = (0,),
                   langevin_steps: int = 20, step_size: float = 0.05, target: str = "dog", seed: int = 0,
                   device: str | torch.device = "cpu") -> list[dict]:
    """Plug-and-play guidance's hit rate and its quality cost: for each lambda and each number of augmented views in
    the energy, n latents z ~ N(0, I) of the null-prompt sampler (eta = 1, `steps`-step grid), `langevin_steps`
    Langevin steps (`langevin_guidance`, step size s) on N(0, I) exp(-E), E = `classifier_energy`; the hit rate (the
    classifier's argmax is `target`), the mean p(target), the hit rate of the augmented judge (argmax of the
    log-probability averaged over JUDGE_VIEWS fixed views: a perturbation that only fools the plain classifier
    rarely survives it), and classifier-FID / -KID to the real test images of `target`. lambda = 0 is the unguided
    rate. The classifier is both the energy and the judge, so the hit rates are optimistic."""
    model, clf = model_and_judge(checkpoint, classifier, device)
    label, grid = clf.cfg.labels.index(target), timesteps(model.schedule.T, steps)
    f_ref = features(clf, class_images(load_dataset(model.data["name"], "test"), target, None, device))
    cfg, rows = model.unet.cfg, []
    shape = (n, len(grid), cfg.in_channels, cfg.image_size, cfg.image_size)  # packed latents in the sampler's space
    for lam in lambdas:
        for k in views if lam > 0 else views[:1]:  # at lambda = 0 the energy is 0 whatever the views
            t0 = time.perf_counter()
            z0 = standard_normal(shape, next(model.parameters()), torch.Generator().manual_seed(seed))
            energy = classifier_energy(model, clf, grid, label, lam, views=k,
                                       generator=torch.Generator().manual_seed(seed + 2))
            z = langevin_guidance(energy, z0, langevin_steps, step_size, torch.Generator().manual_seed(seed + 1))
            with torch.no_grad():
                x = null_prompt_image(model, z, grid)
                p = torch.softmax(clf(x), -1)[:, label]
                aug = augmented_log_probs(clf, x, JUDGE_VIEWS, torch.Generator().manual_seed(99)).argmax(1) == label
            row = judge(clf, x, x, f_ref, target)
            rows.append({"lambda": lam, "views": k, "hit": row["accuracy"], "p": p.mean().item(),
                         "hit_aug": aug.double().mean().item(), "fid": row["fid"], "kid": row["kid"],
                         "seconds": time.perf_counter() - t0})
    _print_langevin(rows, checkpoint, classifier, n, steps, langevin_steps, step_size, target)
    return rows


def _print_langevin(rows, checkpoint, classifier, n, steps, langevin_steps, step_size, target) -> None:
    print_table(f"Plug-and-play guidance towards {target!r} on {checkpoint!r}: {n} null-prompt samples, {steps}-step "
                f"grid, eta = 1, {langevin_steps} Langevin steps of size {step_size}; judged by {classifier!r}",
                ["lambda", "augmented views in E", "hit rate", "mean p(target)",
                 f"hit rate, judge averaged over {JUDGE_VIEWS} views", "classifier-FID to target",
                 "classifier-KID x 1e3", "s"],
                [[f"{r['lambda']:g}", str(r["views"]), f"{r['hit']:.3f}", f"{r['p']:.3f}", f"{r['hit_aug']:.3f}",
                  f"{r['fid']:.1f}", f"{1e3 * r['kid']:.0f}", f"{r['seconds']:.0f}"] for r in rows])


TRANSLATION = BenchCommand(
    "translation", "zero-shot CIFAR-10 translation (cat -> dog and 4 more pairs): CycleDiffusion, edit-friendly "
    "(+ P2P), DDIM inversion and SDEdit judged by the project's classifier at the first --skip / --w / --eta, and the "
    "trade-off figure sweeping each of them in turn",
    lambda o: (translation_table(o["checkpoint"], o["classifier"], n=o["n"], steps=o["steps"][0], w=o["w"][0],
                                 eta=o["eta"][0], skip=o["skip"][0], seed=o["seed"], device=o["device"]),
               translation_tradeoff(o["checkpoint"], o["classifier"], n=max(2, o["n"] // 2), steps=o["steps"][0],
                                    skips=tuple(dict.fromkeys(o["skip"])), ws=tuple(dict.fromkeys(o["w"])),
                                    etas=tuple(dict.fromkeys(o["eta"])), seed=o["seed"], out=o["out"],
                                    device=o["device"])),
    dict(n=64, steps=[50], w=[3.0, 1.5, 5.0], eta=[1.0, 0.3, 0.6], skip=[10, 0, 20, 30], checkpoint="cifar10",
         classifier="cifar10_classifier"),
    lists=("skip", "w", "eta"))
NOISE_RECONSTRUCTION = BenchCommand(
    "noise-reconstruction", "reconstruction MSE through DDIM inversion, the DPM-Encoder and edit-friendly inversion "
    "(with and without the final step's residual; latent models add the autoencoder floor)",
    lambda o: noise_reconstruction_table(o["checkpoint"], n=o["n"], steps=tuple(o["steps"]), seed=o["seed"],
                                         device=o["device"]),
    dict(n=32, steps=[10, 50]), lists=("steps",))
LANGEVIN = BenchCommand(
    "langevin", "plug-and-play guidance in the noise space: hit rate of a CIFAR-10 class vs lambda (--scales), with "
    "the classifier-FID cost",
    lambda o: langevin_table(o["checkpoint"], o["classifier"], n=o["n"], steps=o["steps"][0],
                             lambdas=tuple(o["scales"]), views=tuple(o["augment"]), seed=o["seed"],
                             device=o["device"]),
    dict(n=32, steps=[10], scales=[0.0, 3.0, 10.0], augment=[0, 4], checkpoint="cifar10",
         classifier="cifar10_classifier"),
    lists=("scales", "augment"))
