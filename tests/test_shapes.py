"""The shapes data set: determinism, caption grammar, masks as ground truth, exact edits,
and a checker that accepts the truth, tolerates noise and blur, and rejects wrong captions."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minidiff.datasets import shapes as S
from minidiff.datasets import shapes_check as C

N_CHECK = 500  # scenes for the checker accuracy tests


@pytest.fixture(scope="module")
def test_renders():
    images, captions = S.shapes_tensors(N_CHECK, seed=1, split="test")
    return images, captions


def _blur(images: torch.Tensor) -> torch.Tensor:
    """A mild blur: the 3x3 binomial kernel [1, 2, 1] x [1, 2, 1] / 16 (sigma ~ 0.7 px)."""
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)


def _wrong_spec(text: str, attribute: str, rng: np.random.Generator) -> tuple[dict, int]:
    """The caption's spec with one object's colour/shape/position changed to a wrong one
    (a colour not in the scene, another shape, the opposite position)."""
    spec = S.parse_caption(text)
    k = int(rng.integers(len(spec["objects"])))
    obj = dict(spec["objects"][k])
    if attribute == "colour":
        used = {o["colour"] for o in spec["objects"]}
        obj["colour"] = str(rng.choice([c for c in S.OBJECT_COLOURS if c not in used]))
    elif attribute == "shape":
        obj["shape"] = str(rng.choice([s for s in S.SHAPES if s != obj["shape"]]))
    else:
        obj["position"] = {"left": "right", "right": "left", "top": "bottom",
                           "bottom": "top", "center": "left"}[obj["position"]]
    spec["objects"][k] = obj
    return spec, k


def test_same_seed_gives_identical_pixels_and_other_seeds_or_splits_differ():
    a, caps_a = S.shapes_tensors(40, seed=3)
    b, caps_b = S.shapes_tensors(40, seed=3)
    assert torch.equal(a, b) and caps_a == caps_b
    for other, _ in (S.shapes_tensors(40, seed=4), S.shapes_tensors(40, seed=3, split="test")):
        per_image_diff = (a - other).abs().flatten(1).amax(1)
        assert (per_image_diff > 0.1).all()  # no scene is shared
    assert S.sample_scene(7) == S.sample_scene(np.random.default_rng(7))


def test_dataset_items_equal_shapes_tensors_and_lie_in_minus_one_one():
    data = S.ShapesDataset(20, seed=0)
    images, captions = S.shapes_tensors(20, seed=0)
    for i in range(20):
        item = data[i]
        assert item["index"] == i and item["caption"] == captions[i]
        assert torch.equal(item["image"], images[i])
    assert images.dtype == torch.float32 and images.shape == (20, 3, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    with pytest.raises(IndexError):
        data[20]


def test_palettes_are_well_separated():
    objects = np.array(list(S.OBJECT_COLOURS.values()))  # (6, 3)
    backgrounds = np.array(list(S.BACKGROUND_COLOURS.values()))  # (4, 3)
    between = np.linalg.norm(objects[:, None] - objects[None], axis=-1)
    assert between[~np.eye(6, dtype=bool)].min() > 0.5  # blue-purple 0.52 is the closest pair
    assert np.linalg.norm(objects[:, None] - backgrounds[None], axis=-1).min() > 0.5
    assert not set(S.OBJECT_COLOURS) & set(S.BACKGROUND_COLOURS)


def test_one_and_two_object_scenes_are_equally_likely_and_two_objects_never_touch():
    data = S.ShapesDataset(1000, seed=0)
    scenes = [data.scene(i) for i in range(1000)]
    two = [s for s in scenes if len(s.objects) == 2]
    assert 0.45 < len(two) / 1000 < 0.55
    for scene in two[:200]:
        cover = S.coverage(scene)
        a, b = np.argwhere(cover[0] > 0), np.argwhere(cover[1] > 0)
        gap = np.abs(a[:, None, :] - b[None, :, :]).max(-1).min()  # Chebyshev pixel distance
        assert gap >= 2  # at least one untouched pixel between the two objects
        assert scene.objects[0].colour != scene.objects[1].colour


def test_captions_round_trip_through_parse_caption_with_a_closed_vocabulary():
    data = S.ShapesDataset(500, seed=0)
    used = set()
    for i in range(500):
        scene = data.scene(i)
        text = S.caption(scene)
        used.update(text.split(" "))
        spec = S.parse_caption(text)
        assert spec["background"] == scene.background
        assert spec["objects"] == [dict(colour=o.colour, shape=o.shape, position=o.position)
                                   for o in scene.objects]
    assert used == set(S.VOCABULARY)  # every word is used and no other
    assert S.VOCABULARY == sorted(S.VOCABULARY) and len(S.VOCABULARY) == 24
    assert S.caption(S.Scene((S.ShapeObject("circle", "red", "center"),), "gray")) == (
        "a red circle in the center on a gray background")


def test_masks_agree_with_captions_in_position_colour_and_shape():
    data = S.ShapesDataset(300, seed=0)
    fill = {shape: [] for shape in S.SHAPES}
    unit_area = {"circle": math.pi, "square": 4 * S.SQUARE_HALF**2,
                 "triangle": S.TRIANGLE_HEIGHT * S.TRIANGLE_HALF_BASE}
    for i in range(300):
        scene = data.scene(i)
        image, masks = S.render(scene)
        rgb = (image.numpy() + 1) / 2
        assert masks.dtype == torch.bool and masks.shape == (len(scene.objects), 32, 32)
        for obj, mask in zip(scene.objects, masks.numpy(), strict=True):
            assert C.position_of(*C.centroid(mask)) == obj.position
            mean = rgb[:, mask].mean(axis=1)
            distance = {c: np.linalg.norm(mean - rgb_c) for c, rgb_c in S.OBJECT_COLOURS.items()}
            assert min(distance, key=distance.get) == obj.colour
            assert distance[obj.colour] < 0.2  # lighting, shading, texture, mixed edge pixels
            assert abs(mask.sum() / (unit_area[obj.shape] * obj.size**2) - 1) < 0.2
            ys, xs = np.nonzero(mask)
            fill[obj.shape].append(mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
            assert mask[0].sum() + mask[-1].sum() + mask[:, 0].sum() + mask[:, -1].sum() == 0
    # bounding-box fill ratio: square 1, circle pi/4 = 0.785, triangle 0.5 (+ pixelation)
    assert min(fill["square"]) > 0.95
    assert 0.74 < np.median(fill["circle"]) < 0.82 and max(fill["circle"]) < 0.9
    assert 0.5 < np.median(fill["triangle"]) < 0.62 and max(fill["triangle"]) < 0.72


def test_editing_a_colour_changes_only_pixels_the_object_covers():
    data = S.ShapesDataset(100, seed=0)
    for i in range(100):
        scene = data.scene(i)
        k = i % len(scene.objects)
        old = scene.objects[k].colour
        new = next(c for c in S.OBJECT_COLOURS if c not in {o.colour for o in scene.objects})
        edited = S.replace_word(scene, old, new)
        before, masks = S.render(scene)
        after, masks_after = S.render(edited)
        covered = torch.from_numpy(S.coverage(scene)[k] > 0)
        assert torch.equal(before[:, ~covered], after[:, ~covered])  # bit-identical outside
        assert torch.equal(masks, masks_after)
        inside = (before - after).abs().amax(0)[masks[k]]
        assert inside.min() > 0.2  # every masked pixel visibly changed colour
        assert S.caption(edited) == S.caption(scene).replace(f" {old} ", f" {new} ")


def test_replace_word_changes_shape_and_background_and_rejects_wrong_words():
    scene = S.Scene((S.ShapeObject("circle", "red", "left"),
                     S.ShapeObject("circle", "blue", "right")), "gray", texture_seed=5)
    assert [o.shape for o in S.replace_word(scene, "circle", "square").objects] == ["square"] * 2
    one = S.replace_word(scene, "circle", "triangle", object_index=1)
    assert [o.shape for o in one.objects] == ["circle", "triangle"]
    assert S.replace_word(scene, "gray", "white").background == "white"
    with pytest.raises(ValueError, match="'green' is not in the scene"):
        S.replace_word(scene, "green", "yellow")
    with pytest.raises(ValueError, match="cannot replace the colour 'red' by 'square'"):
        S.replace_word(scene, "red", "square")
    with pytest.raises(ValueError, match="can only replace colour, shape or background"):
        S.replace_word(scene, "left", "right")


def test_parse_errors_name_the_problem_and_the_grammar():
    with pytest.raises(ValueError, match=r"\['zebra'\] are not in the shapes vocabulary.*red"):
        S.parse_caption("a zebra circle on the left on a gray background")
    with pytest.raises(ValueError, match="expected 'left' or 'right' or 'top' or 'bottom' at "
                                         "word 6, got 'center'"):
        S.parse_caption("a red circle on the center on a gray background")
    with pytest.raises(ValueError, match="expected .*'background' at word 10, got '<end"):
        S.parse_caption("a red circle in the center on a gray")
    with pytest.raises(ValueError, match="two on the left and right or on the top and bottom"):
        S.parse_caption("a red circle on the left and a blue square on the top on a "
                        "gray background")
    with pytest.raises(ValueError, match="unknown colour 'pink'; expected one of red"):
        S.ShapeObject("circle", "pink", "left")


def test_checker_accepts_at_least_99_percent_of_clean_renders(test_renders):
    accuracy = C.check_batch(*test_renders)
    for attribute in ("colour", "shape", "position", "background"):
        assert accuracy[attribute] >= 0.99, accuracy


def test_checker_accepts_at_least_95_percent_of_noisy_blurred_renders(test_renders):
    images, captions = test_renders
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    degraded = (_blur(images) + 0.1 * noise).clamp(-1, 1)  # noise std 0.1 in [-1, 1] units
    accuracy = C.check_batch(degraded, captions)
    for attribute in ("colour", "shape", "position", "background"):
        assert accuracy[attribute] >= 0.95, accuracy


@pytest.mark.parametrize("attribute", ["colour", "shape", "position"])
def test_checker_rejects_captions_with_a_wrong_attribute(test_renders, attribute):
    rng = np.random.default_rng(0)
    images, captions = test_renders
    passed = []
    for image, text in zip(images, captions, strict=True):
        spec, k = _wrong_spec(text, attribute, rng)
        passed.append(C.check(image, spec)["objects"][k][attribute])
    assert np.mean(passed) <= 0.10


def test_checker_rejects_wrong_backgrounds_and_empty_or_random_images(test_renders):
    images, captions = test_renders
    wrong = [c.replace(f" {S.parse_caption(c)['background']} background",
                       " white background" if " white " not in c else " black background")
             for c in captions[:100]]
    assert C.check_batch(images[:100], wrong)["background"] <= 0.10
    blank = -torch.ones(3, 32, 32)  # a black image: no object at all
    assert not C.check(blank, "a red circle on the left on a black background")["colour"]
    noise = torch.rand(100, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert C.check_batch(noise, captions[:100])["correct"] == 0.0
    with pytest.raises(ValueError, match=r"shape \(3, 32, 32\).*got shape \(1, 3, 32, 32\)"):
        C.check(images[:1], captions[0])
