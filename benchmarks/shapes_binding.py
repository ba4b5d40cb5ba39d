"""Why does a `shapes` model get two-object prompts wrong?  Three measurements (issue 15).

1. Failure kinds: the held-out two-object prompts sampled (DDIM 25 steps, w = 3) and each picture sorted by
   `shapes_check.check`: correct; "swapped" (both colours found, each at the *other* object's place: the layout is
   right, the order is not); "places right, shape wrong"; "a colour missing"; "wrong layout".
2. Does the text encoder bind?  A linear probe (logistic regression, trained on 2,000 captions, tested on 500 others)
   reads the layout (left/right or top/bottom) from the context vector of each colour and shape word; the layout
   words come later in the caption, so only attention inside the encoder can put them there.
3. Do the UNet's cross-attention queries know where they are?  At every SpatialTransformer, the input of the
   cross-attention LN(u) at each token of held-out scenes noised to x_t; a linear probe (trained on half the
   scenes, tested on the other half) tells tokens of the left third from tokens of the right third. A query that
   cannot tell left from right cannot pick the words of the object drawn there.

Run:  python benchmarks/shapes_binding.py [--checkpoint shapes] [--n 200] [--threads 2]     (~2 min on 2 cores)
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch
import torch.nn.functional as F

from minidiff.datasets import heldout
from minidiff.datasets.shapes import caption, sample_scene
from minidiff.datasets.shapes_check import check
from minidiff.nn.diffusion_model import generate
from minidiff.nn.layers import SpatialTransformer
from minidiff.training import pretrained

PLACES = ("left", "right", "top", "bottom")
KINDS = ("correct", "swapped", "places right, shape wrong", "a colour missing", "wrong layout")


def probe_accuracy(x_train, y_train, x_test, y_test, steps: int = 300) -> float:
    """Test accuracy of a logistic-regression probe (Adam, full batch) on features (N, C), labels (N,) in {0, 1}."""
    w = torch.zeros(x_train.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(x_train @ w + b, y_train).backward()
        opt.step()
    return ((x_test @ w + b > 0).float() == y_test).float().mean().item()


def failure_kind(image: torch.Tensor, prompt: str) -> str:
    r = check(image, prompt)
    if r["correct"]:
        return "correct"
    found = [o["found"]["position"] if o["found"] else None for o in r["objects"]]
    wanted = [w for w in prompt.split() if w in PLACES]
    if None in found:
        return "a colour missing"
    if found == wanted[::-1]:
        return "swapped"
    return "places right, shape wrong" if found == wanted else "wrong layout"


def failure_kinds(model, n: int) -> collections.Counter:
    _, prompts = heldout("shapes", n, seed=0)
    two = [p for p in prompts if " and a " in p]
    x = generate(model, two, 3.0, 25, seed=0, progress=False).cpu()  # (N2, 3, 32, 32)
    return collections.Counter(failure_kind(img, p) for img, p in zip(x, two, strict=True))


@torch.no_grad()
def text_probe(model) -> dict[str, float]:
    """Layout probe on the context vectors of the words of each object (module docstring, 2)."""
    def words(seed: int, n: int):
        rng = np.random.default_rng(seed)
        scenes = [sample_scene(rng, 2) for _ in range(n)]
        ctx = model.encode_text([caption(s) for s in scenes])  # (n, L, D)
        # "<bos> a C S on the P and a C S on the P ...": tokens 2, 3 and 9, 10 name the two objects
        labels = torch.tensor([float(s.objects[0].position == "top") for s in scenes])
        tokens = (("colour 1", 2), ("shape 1", 3), ("colour 2", 9), ("shape 2", 10))
        return {name: ctx[:, i] for name, i in tokens}, labels

    (train, y_train), (test, y_test) = words(0, 2000), words(1, 500)
    with torch.enable_grad():
        return {k: probe_accuracy(train[k], y_train, test[k], y_test) for k in train}


def query_probe(model, t: int, n: int = 400) -> dict[str, float]:
    """Left-third vs right-third probe on each SpatialTransformer's cross-attention input (docstring, 3)."""
    x0, prompts = heldout("shapes", n, seed=1)
    feats, hooks = {}, []
    for name, m in model.unet.named_modules():
        if isinstance(m, SpatialTransformer):
            hooks.append(m.norm2.register_forward_hook(lambda mod, i, o, name=name: feats.__setitem__(name, o)))
    a = model.schedule.alpha_bar[t].float()
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.unet(x_t, torch.full((n,), t), model.encode_text(prompts))
    for h in hooks:
        h.remove()
    return {f"{name} ({int(f.shape[1] ** 0.5)}x{int(f.shape[1] ** 0.5)})": left_right_probe(f.detach(), n // 2)
            for name, f in feats.items()}


def left_right_probe(f: torch.Tensor, n_train: int) -> float:
    """f (n, S*S, C) row-major token features; probe trained on the first n_train scenes, tested on the rest."""
    n, S, C = f.shape[0], int(f.shape[1] ** 0.5), f.shape[2]
    f = f.view(n, S, S, C)
    left, right = f[:, :, : S // 3].reshape(n, -1, C), f[:, :, -(S // 3):].reshape(n, -1, C)  # (n, S*k, C) each

    def split(sl: slice):
        x = torch.cat([left[sl].reshape(-1, C), right[sl].reshape(-1, C)])
        return x, torch.cat([torch.zeros(len(x) // 2), torch.ones(len(x) // 2)])

    return probe_accuracy(*split(slice(0, n_train)), *split(slice(n_train, n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="shapes", help="shipped name or path to a model's .json")
    ap.add_argument("--n", type=int, default=200, help="held-out prompts (the two-object ones are sampled)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = pretrained.load(args.checkpoint, kind="DiffusionModel").eval()
    kinds = failure_kinds(model, args.n)
    print(f"two-object prompts of {args.checkpoint} (DDIM 25, w = 3), {sum(kinds.values())} pictures:")
    print("| " + " | ".join(KINDS) + " |\n|" + "---|" * len(KINDS))
    print("| " + " | ".join(str(kinds[k]) for k in KINDS) + " |")
    print("\ntext encoder, layout probe accuracy:", {k: round(v, 3) for k, v in text_probe(model).items()})
    for t in (900, 400):
        print(f"UNet queries at t = {t}, left/right probe accuracy:",
              {k: round(v, 3) for k, v in query_probe(model, t).items()})


if __name__ == "__main__":
    main()
