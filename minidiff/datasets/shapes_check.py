"""A rule-based checker for `shapes` images: does an image show what its caption says?

Used to measure generated images (prompt accuracy of a text-to-image model, success of an
edit), so it must tolerate slightly blurry or noisy model outputs, not only clean renders.
Per prompted object: a blob of the prompted colour must exist (`colour`), lie at the
prompted place (`position`), and have the prompted outline (`shape`, best template IoU);
the background is the palette colour nearest the median border pixel.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .shapes import (
    ANCHORS,
    BACKGROUND_COLOURS,
    KINDS,
    OBJECT_COLOURS,
    SHAPES,
    SIZE,
    SQUARE_HALF,
    TRIANGLE_HALF_BASE,
    TRIANGLE_HEIGHT,
    parse_caption,
    shape_coverage,
)

MIN_BLOB = 12  # pixels: smaller same-coloured blobs do not count as an object
COLOUR_TOLERANCE = 0.25  # max RGB distance of a pixel from a palette colour's brightness line


def position_of(x: float, y: float) -> str:
    """The position word of a point (e.g. an object's centroid): the nearest anchor."""
    return min(ANCHORS, key=lambda p: (ANCHORS[p][0] - x) ** 2 + (ANCHORS[p][1] - y) ** 2)


def _line_distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Distance (H, W) of each pixel of rgb (3, H, W) to the segment a * colour, 0.7 <= a <= 1.3."""
    a = np.clip(np.einsum("chw,c->hw", rgb, colour) / (colour @ colour), 0.7, 1.3)
    return np.linalg.norm(rgb - a * colour[:, None, None], axis=0)


def _labels(rgb: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Background word, its measured colour (3,), labels (32, 32): 0 background,
    k >= 1 the k-th object colour, -1 neither (e.g. a blurred edge between two colours).

    The background is the median border pixel. Lighting and shading scale colours by a
    factor near 1, so pixels are compared with the line through each palette colour.
    """
    border = np.concatenate([rgb[:, 0], rgb[:, -1], rgb[:, 1:-1, 0], rgb[:, 1:-1, -1]], axis=1)
    measured = np.median(border, axis=1)  # (3,)
    background = min(BACKGROUND_COLOURS,
                     key=lambda b: np.linalg.norm(measured - BACKGROUND_COLOURS[b]))
    dist = np.stack([np.linalg.norm(rgb - measured[:, None, None], axis=0)]
                    + [_line_distance(rgb, np.array(c)) for c in OBJECT_COLOURS.values()])
    labels = np.where(dist.min(axis=0) < COLOUR_TOLERANCE, dist.argmin(axis=0), -1)  # (H, W)
    return background, measured, labels


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean (H, W) mask, each a boolean (H, W) mask."""
    todo, (height, width), found = mask.copy(), mask.shape, []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if not todo[y0, x0]:
            continue
        blob, stack, todo[y0, x0] = np.zeros_like(mask), [(y0, x0)], False
        while stack:  # flood fill
            y, x = stack.pop()
            blob[y, x] = True
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and todo[ny, nx]:
                    todo[ny, nx] = False
                    stack.append((ny, nx))
        found.append(blob)
    return found


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) centroid of a boolean (H, W) mask in pixel coordinates."""
    ys, xs = np.nonzero(mask)
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def classify_shape(mask: np.ndarray) -> str:
    """The shape whose ideal mask, given the mask's centroid and area, has the highest IoU."""
    (cx, cy), area = centroid(mask), mask.sum()
    unit_area = {"circle": math.pi, "square": 4 * SQUARE_HALF**2,
                 "triangle": TRIANGLE_HEIGHT * TRIANGLE_HALF_BASE}  # area at size 1

    def iou(shape: str) -> float:
        ideal = shape_coverage(shape, cx, cy, math.sqrt(area / unit_area[shape])) >= 0.5
        return (ideal & mask).sum() / (ideal | mask).sum()
    return max(SHAPES, key=iou)


def _outline(rgb: np.ndarray, background: np.ndarray, labels: np.ndarray, k: int,
             blob: np.ndarray) -> np.ndarray:
    """The blob grown to its mixed edge pixels: those at least half way from the background
    to the blob's colour, t = (p - bg).(c - bg) / |c - bg|^2 >= 0.5 (like coverage >= 0.5)."""
    step = np.median(rgb[:, blob], axis=1) - background  # (3,)
    t = np.einsum("chw,c->hw", rgb - background[:, None, None], step) / (step @ step)
    grown = blob | ((t >= 0.5) & ((labels == k) | (labels == -1)))  # not another object
    return next(c for c in components(grown) if (c & blob).any())


def _check_object(rgb: np.ndarray, background: np.ndarray, labels: np.ndarray,
                  obj: dict) -> dict:
    k = KINDS["colour"].index(obj["colour"]) + 1
    blobs = [b for b in components(labels == k) if b.sum() >= MIN_BLOB]
    if not blobs:
        return dict(colour=False, shape=False, position=False, found=None)
    placed = [b for b in blobs if position_of(*centroid(b)) == obj["position"]]
    blob = max(placed or blobs, key=np.sum)  # prefer a blob at the prompted place
    found = dict(shape=classify_shape(_outline(rgb, background, labels, k, blob)),
                 position=position_of(*centroid(blob)), centroid=centroid(blob),
                 pixels=int(blob.sum()))
    return dict(colour=True, shape=found["shape"] == obj["shape"], position=bool(placed),
                found=found)


def check(image: torch.Tensor, prompt: str | dict) -> dict:
    """Judge whether an image (3, 32, 32) in [-1, 1] shows a caption (or `parse_caption` spec).

    Per prompted object (list `objects`): `colour` (a blob of >= MIN_BLOB pixels of that
    colour exists), `position` (such a blob's centroid is nearest the prompted anchor),
    `shape` (best template IoU of that blob's outline), `found` (what was measured).
    Top level: `background`, `colour`/`shape`/`position` for all objects, and `correct`
    (everything right).
    """
    spec = parse_caption(prompt) if isinstance(prompt, str) else prompt
    image = torch.as_tensor(image).cpu()  # the checker works on the CPU, wherever the image was made
    if tuple(image.shape) != (3, SIZE, SIZE):
        raise ValueError(f"expected one image of shape (3, {SIZE}, {SIZE}) in [-1, 1], "
                         f"got shape {tuple(image.shape)}")
    rgb = (image.detach().cpu().double().numpy() + 1) / 2  # [-1, 1] -> [0, 1]
    background, measured, labels = _labels(rgb)
    objects = [_check_object(rgb, measured, labels, o) for o in spec["objects"]]
    result = dict(background=background == spec["background"], objects=objects)
    result.update({k: all(o[k] for o in objects) for k in ("colour", "shape", "position")})
    result["correct"] = all(result[k] for k in ("background", "colour", "shape", "position"))
    return result


def check_batch(images: torch.Tensor, prompts: list) -> dict[str, float]:
    """Accuracies: colour/shape/position per prompted object, background/correct per image."""
    results = [check(image, p) for image, p in zip(images, prompts, strict=True)]
    objects = [o for r in results for o in r["objects"]]
    accuracy = {k: float(np.mean([o[k] for o in objects])) for k in ("colour", "shape",
                                                                     "position")}
    accuracy.update({k: float(np.mean([r[k] for r in results])) for k in ("background", "correct")})
    return accuracy


def background_of(image: torch.Tensor) -> str:
    """The background word of an image (3, 32, 32) in [-1, 1]: the palette colour nearest its median border pixel."""
    return _labels((image.detach().cpu().double().numpy() + 1) / 2)[0]
