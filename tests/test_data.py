"""Data loaders read the shared archives (never download) and give what the docs promise."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from minidiff.datasets import load_dataset
from minidiff.datasets import real as data
from minidiff.datasets.shapes import ShapesDataset, parse_caption

CIFAR_MISSING, CELEBA_MISSING = data.missing("cifar10"), data.missing("celeba")  # None: found
needs_cifar = pytest.mark.skipif(CIFAR_MISSING is not None, reason=f"{CIFAR_MISSING}")
needs_celeba = pytest.mark.skipif(CELEBA_MISSING is not None, reason=f"{CELEBA_MISSING}")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Decoded arrays go to a temporary cache, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIDIFF_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@needs_cifar
def test_cifar10_test_split_has_1000_images_per_class_in_minus_one_one():
    test = load_dataset("cifar10", "test", progress=False)
    assert len(test) == 10_000 and test.images.dtype == torch.uint8
    assert torch.bincount(test.extras["label"]).tolist() == [1000] * 10
    item = test[1234]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    images = data.to_float(test.images)
    assert images.min() == -1 and images.max() == 1
    assert item["caption"] == data.cifar10_caption(int(item["label"]))
    assert {test.captions[i] for i in range(0, 10_000, 1000)} == {
        "a photo of an airplane", "a photo of an automobile", "a photo of a bird",
        "a photo of a cat", "a photo of a deer", "a photo of a dog", "a photo of a frog",
        "a photo of a horse", "a photo of a ship", "a photo of a truck"}


@needs_cifar
def test_cifar10_train_channel_means_match_the_published_values():
    # an evenly spaced, class-balanced tenth of the 50k train images (the full split gives
    # 0.4914, 0.4822, 0.4465 to 4 decimals; this subset is within 0.002 of them)
    train = load_dataset("cifar10", "train", limit=5000, progress=False)
    assert torch.bincount(train.extras["label"]).tolist() == [500] * 10
    mean = (train.images.double() / 255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465]).double(),
                               atol=0.004, rtol=0)


@needs_cifar
def test_second_cifar10_load_comes_from_the_cache_and_is_identical():
    first = load_dataset("cifar10", "test", limit=300, progress=False)
    cached = list(os.scandir(os.environ["MINIDIFF_CACHE"]))
    assert any("cifar10-png-test-300" in entry.name for entry in cached)
    second = load_dataset("cifar10", "test", limit=300, progress=False)
    assert torch.equal(first.images, second.images) and first.captions == second.captions


@needs_celeba
@pytest.mark.parametrize("size", [32, 64])
def test_celeba_faces_are_square_crops_at_the_requested_size(size):
    faces = load_dataset("celeba", "test", image_size=size, limit=50, progress=False)
    item = faces[0]
    assert item["image"].shape == (3, size, size) and len(faces) == 50
    assert -1 <= item["image"].min() < item["image"].max() <= 1
    assert item["attributes"].shape == (40,) and len(faces.attribute_names) == 40


@needs_celeba
def test_celeba_captions_agree_with_attribute_rows():
    faces = load_dataset("celeba", "test", image_size=32, progress=False)
    assert len(faces) == data.CELEBA_TEST_SIZE
    column = {name: k for k, name in enumerate(faces.attribute_names)}
    for caption, row in zip(faces.captions, faces.extras["attributes"].tolist(), strict=True):
        words = caption.split(" ")
        assert caption.startswith("a photo of a ")
        assert ("smiling" in words) == bool(row[column["Smiling"]])
        assert ("young" in words) == bool(row[column["Young"]])
        assert ("man" in words) == bool(row[column["Male"]]) != ("woman" in words)
        assert ("eyeglasses" in words) == bool(row[column["Eyeglasses"]])
        hair = [c for name, c in data.HAIR_COLOURS.items() if row[column[name]]]
        assert (f"{hair[0]} hair" in caption) if hair else ("hair" not in words)
    assert data.celeba_caption(dict(Smiling=0, Young=0, Male=1, Eyeglasses=1, Blond_Hair=0,
                                    Black_Hair=1, Brown_Hair=0, Gray_Hair=0)) == (
        "a photo of a man with black hair and eyeglasses")


@needs_celeba
def test_celeba_attribute_base_rates_match_the_archive_readme():
    ids, names, values = data.read_celeba_attributes()
    assert len(ids) == 10_000 and ids[0] == "000001.jpg" and len(names) == 40
    rate = dict(zip(names, values.mean(axis=0), strict=True))
    for name, expected in dict(Smiling=0.482, Male=0.422, Eyeglasses=0.067, Young=0.777).items():
        assert abs(rate[name] - expected) < 0.001, (name, rate[name])
    train = load_dataset("celeba", "train", image_size=32, limit=10, progress=False)
    assert train.extras["attributes"].tolist()[0] == values[0].tolist()  # train starts at 1


def test_missing_data_error_says_how_to_get_it(tmp_path):
    for name, archive in (("cifar10", "cifar10-png.zip"), ("celeba", "celeba-10k.zip")):
        with pytest.raises(FileNotFoundError) as error:
            load_dataset(name, "test", root=tmp_path / "nowhere")
        message = str(error.value)
        assert "download=True" in message and "MINIDIFF_DATA" in message
        assert archive in message and str(tmp_path / "nowhere") in message


def test_no_shared_turns_off_the_sibling_lookup_but_not_minidiff_data(tmp_path, monkeypatch):
    """MINIDIFF_NO_SHARED=1 stands for a fresh clone: no ../shared/data, so nothing is found and
    `available` says so; an explicit MINIDIFF_DATA or root still wins; "0" leaves the lookup on."""
    monkeypatch.delenv("MINIDIFF_DATA", raising=False)
    monkeypatch.setenv("MINIDIFF_NO_SHARED", "1")
    assert data.data_root() is None
    assert not data.available("cifar10") and not data.available("celeba") and data.available("shapes")
    assert "MINIDIFF_NO_SHARED" in data.missing("cifar10") and "cifar10-png.zip" in data.missing("cifar10")
    with pytest.raises(FileNotFoundError, match="MINIDIFF_NO_SHARED"):
        load_dataset("celeba", "test")
    monkeypatch.setenv("MINIDIFF_DATA", str(tmp_path))
    assert data.data_root() == tmp_path and not data.available("cifar10")
    (tmp_path / "cifar10" / "test" / "cat").mkdir(parents=True)
    assert data.available("cifar10") and data.available("cifar10", root=tmp_path)
    monkeypatch.delenv("MINIDIFF_DATA")
    monkeypatch.setenv("MINIDIFF_NO_SHARED", "0")
    shared = Path(data.__file__).resolve().parents[3] / "shared" / "data"
    assert data.data_root() == (shared if shared.is_dir() else None)
    with pytest.raises(ValueError, match="mnist"):
        data.available("mnist")


def test_extracted_folder_works_like_the_zip(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        folder = tmp_path / "cifar10" / "test" / cls
        folder.mkdir(parents=True)
        for k in range(3):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{cls}_{k}.png")
    loaded = load_dataset("cifar10", "test", root=tmp_path, progress=False)
    assert len(loaded) == 6 and loaded.captions[0] == "a photo of a cat"
    assert loaded.extras["label"].tolist() == [3] * 3 + [5] * 3
    saved = np.array(Image.open(tmp_path / "cifar10/test/cat/cat_0.png"))
    assert torch.equal(loaded.images[0], torch.from_numpy(saved).permute(2, 0, 1))


def test_shapes_through_load_dataset_and_bad_names_are_explained():
    shapes = load_dataset("shapes", "test", n=8, seed=2)
    assert isinstance(shapes, ShapesDataset) and len(shapes) == 8
    assert torch.equal(shapes[3]["image"], ShapesDataset(8, 2, "test")[3]["image"])
    parse_caption(shapes[3]["caption"])
    with pytest.raises(ValueError, match="expected one of shapes, cifar10, celeba"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="split must be one of train, test; got 'val'"):
        load_dataset("cifar10", "val")
