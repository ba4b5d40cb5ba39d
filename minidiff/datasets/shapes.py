"""The built-in offline data set "shapes": 32x32 scenes with captions, masks and exact edit targets.

A scene is one or two coloured shapes on a coloured background. Its caption follows a
fixed grammar over a closed vocabulary (lowercase, single spaces, no punctuation):

    caption := object ["and" object] "on a" BACKGROUND "background"
    object  := "a" COLOUR SHAPE place
    place   := "on the" ("left" | "right" | "top" | "bottom") | "in the center"

e.g. "a red circle in the center on a gray background" or "a blue square on the top
and a yellow triangle on the bottom on a black background". Two objects always sit at
an opposite pair (left/right or top/bottom), so they never overlap.

Every pixel is a function of the `Scene` fields (object size and jitter, a linear
lighting gradient, object shading, seeded texture noise). Re-rendering a scene with one
word changed (`replace_word`) therefore gives the exact ground truth of an edit.
`minidiff.shapes_check.check` judges whether a (generated) image shows a caption.

Coordinates: x grows to the right, y downwards; pixel (row i, column j) covers
[j, j+1] x [i, i+1], so its centre is (j + 0.5, i + 0.5). Images are (3, 32, 32) in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

SIZE = 32  # image side in pixels
SUPERSAMPLE = 4  # anti-aliasing: 4x4 samples per pixel, averaged
OBJECT_COLOURS = {  # RGB in [0, 1]; saturated, pairwise >= 0.5 apart
    "red": (0.90, 0.10, 0.10), "green": (0.10, 0.75, 0.15), "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10), "purple": (0.60, 0.15, 0.85), "cyan": (0.10, 0.85, 0.90),
}
BACKGROUND_COLOURS = {  # dark, light and muted tones, >= 0.5 from every object colour
    "black": (0.08, 0.08, 0.08), "white": (0.92, 0.92, 0.92),
    "gray": (0.50, 0.50, 0.50), "brown": (0.40, 0.25, 0.12),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom", "center")
ANCHORS = {"left": (8.0, 16.0), "right": (24.0, 16.0), "top": (16.0, 8.0),
           "bottom": (16.0, 24.0), "center": (16.0, 16.0)}  # (x, y) of an object's centre
JITTER = {"left": (1.0, 2.0), "right": (1.0, 2.0), "top": (2.0, 1.0), "bottom": (2.0, 1.0),
          "center": (2.0, 2.0)}  # max |dx|, |dy|: small along the axis separating two objects
PAIRS = (("left", "right"), ("top", "bottom"))  # the layouts of two-object scenes
SIZE_RANGE = (5.0, 6.0)  # circle radius in pixels; never in the caption
SQUARE_HALF = 0.9  # square half-side / size
TRIANGLE_HEIGHT, TRIANGLE_HALF_BASE = 1.7, 1.0  # upward triangle / size, centroid at the centre
LIGHT_MAX = 0.08  # lighting gradient: brightness 1 +- LIGHT_MAX from image centre to edge
SHADE = 0.08  # objects are slightly brighter at their top-left than their bottom-right
TEXTURE_STD = 0.025  # per-pixel texture noise, [0, 1] units

KINDS = {"colour": tuple(OBJECT_COLOURS), "shape": SHAPES, "position": POSITIONS,
         "background": tuple(BACKGROUND_COLOURS)}
VOCABULARY = sorted({"a", "and", "background", "in", "on", "the", *sum(KINDS.values(), ())})
GRAMMAR = ("a COLOUR SHAPE (on the left|right|top|bottom | in the center) "
           "[and a COLOUR SHAPE PLACE] on a BACKGROUND background")


def _require(kind: str, word: str) -> None:
    if word not in KINDS[kind]:
        raise ValueError(f"unknown {kind} {word!r}; expected one of {', '.join(KINDS[kind])}")


def _require_layout(positions: tuple[str, ...], where: str) -> None:
    if not (len(positions) == 1 or tuple(sorted(positions, key=POSITIONS.index)) in PAIRS):
        raise ValueError(f"{where}: expected one object, or two on the left and right or on the "
                         f"top and bottom; got positions {positions}")


@dataclass(frozen=True)
class ShapeObject:
    """One object: what the caption says (shape, colour, position) and what it does not."""

    shape: str
    colour: str
    position: str
    size: float = 5.5  # circle radius in pixels (the other shapes scale with it)
    dx: float = 0.0  # jitter of the centre around the position's anchor, pixels
    dy: float = 0.0

    def __post_init__(self) -> None:
        for kind in ("shape", "colour", "position"):
            _require(kind, getattr(self, kind))

    @property
    def centre(self) -> tuple[float, float]:
        ax, ay = ANCHORS[self.position]
        return ax + self.dx, ay + self.dy


@dataclass(frozen=True)
class Scene:
    """A full scene description; `render(scene)` is a pure function of it."""

    objects: tuple[ShapeObject, ...]
    background: str
    light_angle: float = 0.0  # direction of the lighting gradient, radians
    light_strength: float = 0.0  # in [0, LIGHT_MAX]
    texture_seed: int = 0

    def __post_init__(self) -> None:
        _require("background", self.background)
        _require_layout(tuple(o.position for o in self.objects), "Scene")


def sample_scene(rng: np.random.Generator | int, n_objects: int | None = None) -> Scene:
    """A random scene: 1 or 2 objects (50/50 unless `n_objects`) with distinct colours;
    two objects are listed left before right, top before bottom.

    The order of the random draws defines the data set: do not change it.
    """
    rng = np.random.default_rng(rng)
    n = int(rng.integers(1, 3)) if n_objects is None else n_objects
    if n not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2, got {n}")
    positions = [POSITIONS[rng.integers(5)]] if n == 1 else PAIRS[rng.integers(2)]
    colours = rng.choice(len(OBJECT_COLOURS), size=n, replace=False)
    objects = []
    for position, colour in zip(positions, colours, strict=True):
        jx, jy = JITTER[position]
        objects.append(ShapeObject(
            SHAPES[rng.integers(3)], KINDS["colour"][colour], position,
            size=float(rng.uniform(*SIZE_RANGE)), dx=float(rng.uniform(-jx, jx)),
            dy=float(rng.uniform(-jy, jy))))
    return Scene(tuple(objects), KINDS["background"][rng.integers(4)],
                 light_angle=float(rng.uniform(0, 2 * math.pi)),
                 light_strength=float(rng.uniform(0, LIGHT_MAX)),
                 texture_seed=int(rng.integers(2**31)))


# --------------------------------------------------------------------------- rendering

def _pixel_centres(scale: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(SIZE * scale) + 0.5) / scale
    return tuple(np.meshgrid(c, c))  # x, y: (SIZE*scale, SIZE*scale); x varies along columns


_X_FINE, _Y_FINE = _pixel_centres(SUPERSAMPLE)
_X, _Y = _pixel_centres(1)


def _inside(shape: str, cx: float, cy: float, size: float, x: np.ndarray, y: np.ndarray):
    """Boolean: which points (x, y) lie inside the shape whose centroid is (cx, cy)."""
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= size**2
    if shape == "square":
        half = SQUARE_HALF * size
        return (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    height, half_base = TRIANGLE_HEIGHT * size, TRIANGLE_HALF_BASE * size
    apex = cy - 2 * height / 3  # a triangle's centroid is 2/3 of the way from apex to base
    return (y <= apex + height) & (np.abs(x - cx) <= half_base * (y - apex) / height)


def shape_coverage(shape: str, cx: float, cy: float, size: float) -> np.ndarray:
    """Fraction (32, 32) of each pixel covered by the shape, by 4x4 supersampling."""
    fine = _inside(shape, cx, cy, size, _X_FINE, _Y_FINE)  # (128, 128)
    return fine.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def coverage(scene: Scene) -> np.ndarray:
    """Per-object pixel coverage, (n_objects, 32, 32) in [0, 1]; masks are coverage >= 0.5."""
    return np.stack([shape_coverage(o.shape, *o.centre, o.size) for o in scene.objects])


def _render01(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Image (3, 32, 32) in [0, 1] and coverage (n, 32, 32)."""
    cover = coverage(scene)
    rgb = np.array(BACKGROUND_COLOURS[scene.background])[:, None, None] * np.ones((SIZE, SIZE))
    for obj, cov in zip(scene.objects, cover, strict=True):
        cx, cy = obj.centre
        shade = 1 - SHADE * ((_X - cx) + (_Y - cy)) / (2 * obj.size)  # lit from the top-left
        colour = np.array(OBJECT_COLOURS[obj.colour])[:, None, None] * shade  # (3, 32, 32)
        rgb = rgb * (1 - cov) + colour * cov  # "over" compositing of anti-aliased coverage
    # brightness 1 + strength * (light direction . offset from the centre) / half the side
    c, s = math.cos(scene.light_angle), math.sin(scene.light_angle)
    light = 1 + scene.light_strength * ((_X - SIZE / 2) * c + (_Y - SIZE / 2) * s) / (SIZE / 2)
    texture = np.random.default_rng(scene.texture_seed).normal(0, TEXTURE_STD, (3, SIZE, SIZE))
    return np.clip(rgb * light + texture, 0, 1), cover


def render(scene: Scene) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (3, 32, 32) float32 in [-1, 1] and masks (n_objects, 32, 32) bool."""
    rgb, cover = _render01(scene)
    return torch.from_numpy(rgb * 2 - 1).float(), torch.from_numpy(cover >= 0.5)


# --------------------------------------------------------------------------- captions

def caption(scene: Scene) -> str:
    """The scene's caption, e.g. 'a red circle on the left ... on a gray background'."""
    def phrase(o: ShapeObject) -> str:
        place = "in the center" if o.position == "center" else f"on the {o.position}"
        return f"a {o.colour} {o.shape} {place}"
    return " and ".join(map(phrase, scene.objects)) + f" on a {scene.background} background"


def _take(words: list[str], i: int, allowed: tuple[str, ...], text: str) -> tuple[str, int]:
    got = words[i] if i < len(words) else "<end of caption>"
    if got not in allowed:
        raise ValueError(f"caption {text!r}: expected {' or '.join(map(repr, allowed))} at word "
                         f"{i + 1}, got {got!r}; grammar: {GRAMMAR}")
    return got, i + 1


def _parse_object(words: list[str], i: int, text: str) -> tuple[dict, int]:
    _, i = _take(words, i, ("a",), text)
    colour, i = _take(words, i, KINDS["colour"], text)
    shape, i = _take(words, i, SHAPES, text)
    preposition, i = _take(words, i, ("on", "in"), text)
    _, i = _take(words, i, ("the",), text)
    position, i = _take(words, i, ("center",) if preposition == "in" else POSITIONS[:4], text)
    return dict(colour=colour, shape=shape, position=position), i


def parse_caption(text: str) -> dict:
    """Inverse of `caption`: {'objects': [{'colour', 'shape', 'position'}, ...], 'background'}."""
    words = text.split(" ")
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        known = "; ".join(f"{kind}s: {', '.join(ws)}" for kind, ws in KINDS.items())
        raise ValueError(f"caption {text!r}: words {unknown} are not in the shapes vocabulary "
                         f"({known})")
    objects, i = [], 0
    while not objects or (i < len(words) and words[i] == "and" and len(objects) < 2):
        obj, i = _parse_object(words, i + bool(objects), text)  # skip "and" before the second
        objects.append(obj)
    _require_layout(tuple(o["position"] for o in objects), f"caption {text!r}")
    for allowed in (("on",), ("a",), KINDS["background"], ("background",)):
        _, i = _take(words, i, allowed, text)
    if i != len(words):
        raise ValueError(f"caption {text!r}: unexpected words after 'background': {words[i:]}")
    return dict(objects=objects, background=words[i - 2])


def replace_word(scene: Scene, old: str, new: str, object_index: int | None = None) -> Scene:
    """The scene with a colour, shape or background word replaced (in every object, or one)."""
    kind = next((k for k, ws in KINDS.items() if old in ws), None)
    if kind not in ("colour", "shape", "background"):
        raise ValueError(f"can only replace colour, shape or background words, got {old!r}")
    if new not in KINDS[kind]:
        raise ValueError(f"cannot replace the {kind} {old!r} by {new!r}: expected one of "
                         f"{', '.join(KINDS[kind])}")
    if kind == "background":
        if scene.background != old:
            raise ValueError(f"background {old!r} is not in the scene {caption(scene)!r}")
        return dataclasses.replace(scene, background=new)
    hits = [k for k, o in enumerate(scene.objects)
            if getattr(o, kind) == old and object_index in (None, k)]
    if not hits:
        raise ValueError(f"{kind} {old!r} is not in the scene {caption(scene)!r}"
                         + ("" if object_index is None else f" at object {object_index}"))
    objects = tuple(dataclasses.replace(o, **{kind: new}) if k in hits else o
                    for k, o in enumerate(scene.objects))
    return dataclasses.replace(scene, objects=objects)


def move_object(scene: Scene, position: str, object_index: int = 0) -> Scene:
    """The scene with one object moved to another position (size and jitter kept): the exact target of a
    position edit ("on the left" -> "on the right"). Two-object layouts must stay left/right or top/bottom."""
    _require("position", position)
    if not 0 <= object_index < len(scene.objects):
        raise ValueError(f"object_index {object_index} out of range for {len(scene.objects)} objects")
    objects = tuple(dataclasses.replace(o, position=position) if k == object_index else o
                    for k, o in enumerate(scene.objects))
    return dataclasses.replace(scene, objects=objects)  # Scene checks the layout


def swap_sentences(old: str, new: str, n: int = 32, seed: int = 0) -> tuple[list[str], list[str]]:
    """n captions that contain the word `old` and the same n with `new` (Pix2Pix-Zero's sentence sets, generated
    from the grammar instead of a language model): random scenes whose first object's colour, shape or position,
    or whose background, is set to `old`, then to `new` (position: one-object scenes)."""
    kind = next((k for k, ws in KINDS.items() if old in ws), None)
    if kind is None or new not in KINDS[kind]:
        raise ValueError(f"swap_sentences needs two words of one kind ({', '.join(KINDS)}), got {old!r}, {new!r}")
    pairs = []
    for k in range(n):
        scene = sample_scene(np.random.default_rng([seed, 13, k]), 1 if kind == "position" else None)
        if kind == "background":
            pairs.append([caption(dataclasses.replace(scene, background=w)) for w in (old, new)])
        else:
            first = scene.objects[0]
            pairs.append([caption(dataclasses.replace(scene, objects=(dataclasses.replace(first, **{kind: w}),
                                                                      *scene.objects[1:]))) for w in (old, new)])
    return [a for a, _ in pairs], [b for _, b in pairs]


# --------------------------------------------------------------------------- data set

def shapes_labels(captions: list[str], kind: str = "background") -> tuple[torch.Tensor, list[str]]:
    """Class labels (N,) of `shapes` captions and the class names.

    kind "background": the background colour (4 classes: black, white, gray, brown), the default,
    visible at every noise level since it fills most of the image; kind "colour": the colour of
    the first object of the caption (6 classes; the left/top one in two-object scenes).
    """
    if kind not in ("background", "colour"):
        raise ValueError(f"kind must be 'background' or 'colour' (of the first object), got {kind!r}")
    names = list(KINDS[kind])
    specs = [parse_caption(c) for c in captions]
    words = [s["background"] if kind == "background" else s["objects"][0]["colour"] for s in specs]
    return torch.tensor([names.index(w) for w in words], dtype=torch.long), names


class ShapesDataset(Dataset):
    """n deterministic scenes; item = dict(image=(3, 32, 32) in [-1, 1], caption=str, index=int).

    Scene i of a split is drawn from the seed sequence [seed, split id, i] (train 0, test 1):
    the splits are disjoint random streams and any item can be re-created alone.
    """

    SPLITS = {"train": 0, "test": 1}

    def __init__(self, n: int = 10_000, seed: int = 0, split: str = "train"):
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {list(self.SPLITS)}, got {split!r}")
        self.n, self.seed, self.split = n, seed, split

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> Scene:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} scenes")
        return sample_scene(np.random.default_rng([self.seed, self.SPLITS[self.split], index]))

    def __getitem__(self, index: int) -> dict:
        scene = self.scene(index)
        return dict(image=render(scene)[0], caption=caption(scene), index=index)


def shapes_tensors(n: int, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, list[str]]:
    """The scenes of `ShapesDataset(n, seed, split)` as one (n, 3, 32, 32) tensor + captions."""
    data = ShapesDataset(n, seed, split)
    scenes = [data.scene(i) for i in range(n)]
    images = np.stack([_render01(s)[0] for s in scenes])  # (n, 3, 32, 32) in [0, 1]
    return torch.from_numpy(images * 2 - 1).float(), [caption(s) for s in scenes]
