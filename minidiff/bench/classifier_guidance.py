"""Classifier guidance on `shapes` (lecture 3): the fraction of samples with the requested background, per scale."""

from __future__ import annotations

import torch

from ..datasets.shapes_check import background_of
from ..guidance import classifier_guidance
from ..samplers import ddim_sample
from ..schedule import standard_normal
from ..training import pretrained
from .tables import BenchCommand, diffusion_model, print_table


@torch.no_grad()
def classifier_guidance_table(model, classifier, label_names: list[str], scales: tuple[float, ...] = (0.0, 1.0, 3.0),
                              n: int = 64, steps: int = 50, seed: int = 0) -> list[dict]:
    """Classifier guidance (Dhariwal & Nichol 2021) on the *unconditional* model (the null prompt): for each
    background label y and scale s, sample n images with eps~ = eps - s sqrt(1 - ab_t) grad log p(y | x_t) and
    report the fraction whose background (measured by `shapes_check.background_of`) is y. s = 0 is the
    unguided model: the base rate of each background. Rows: {"scale", "label", "hit_rate"}."""
    null = model.null_context(n)
    unconditional = lambda x, t, c: model(x, t, null[: x.shape[0]])  # noqa: E731
    rows = []
    for s in scales:
        for k, name in enumerate(label_names):
            g = torch.Generator().manual_seed(seed)
            x_T = standard_normal((n, 3, 32, 32), null, g)
            eps = classifier_guidance(unconditional, classifier, k, s, model.schedule)
            x = ddim_sample(eps, model.schedule, x_T, steps).cpu()
            rows.append({"scale": s, "label": name, "hit_rate": sum(background_of(xi) == name for xi in x) / n})
    print_table(f"Classifier guidance on the unconditional model: fraction of {n} samples with the requested "
                 f"background (DDIM {steps} steps)", ["scale", *label_names, "mean"],
                 [[f"{s:g}", *[f"{r['hit_rate']:.2f}" for r in rows if r["scale"] == s],
                   f"{sum(r['hit_rate'] for r in rows if r['scale'] == s) / len(label_names):.2f}"] for s in scales])
    return rows


def _cli(o: dict) -> list[dict]:
    model = diffusion_model(o)
    clf = pretrained.load(o["classifier"], kind="NoisyClassifier", device=o["device"])
    if clf.info.get("kind") != "background":
        raise ValueError(f"{o['classifier']} predicts {clf.info.get('kind')!r}; this table needs a background "
                         "classifier")
    return classifier_guidance_table(model, clf, clf.info["labels"], tuple(o["scales"]), n=o["n"],
                                     steps=o["steps"][0], seed=o["seed"])


CLASSIFIER_GUIDANCE = BenchCommand("classifier-guidance", "background hit rate vs classifier-guidance scale", _cli,
                                   dict(n=64, steps=[50], classifier="shapes_classifier",
                                        scales=[0.0, 1.0, 3.0, 10.0]), lists=("scales",))
