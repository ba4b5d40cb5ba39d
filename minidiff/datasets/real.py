"""The real image data sets, CIFAR-10 and CelebA: files, decoding, captions (`minidiff.datasets` is the interface).

Every item is a dict with `image` (3, H, W) float32 in [-1, 1] (converted here, the data
boundary), `caption` (str) and `index`, plus `label` (CIFAR-10) or `attributes` (CelebA).

- "cifar10": 32x32 photos of 10 classes; caption "a photo of a cat" / "an airplane".
- "celeba": aligned faces, centre square crop resized to `image_size`; caption from the
  attributes, see `celeba_caption`.

Real data is read from, in this order: the `root` argument, the folder in the environment
variable MINIDIFF_DATA, or `../shared/data` next to the repository (unless MINIDIFF_NO_SHARED
is set, see `data_root`). `available(name)` says whether the files are there. A root may hold the
archives `cifar10-png.zip` (cifar10/{train,test}/<class>/<name>.png) and `celeba-10k.zip`
(celeba/img/NNNNNN.jpg, celeba/attributes.csv), or those folders extracted. Only with
`download=True` does torchvision download the original data sets. Decoded images are
cached as .npz in MINIDIFF_CACHE (default ~/.cache/minidiff), keyed by the zip's size and
modification time, so the second load is fast.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")  # torchvision's label order
HAIR_COLOURS = {"Blond_Hair": "blond", "Black_Hair": "black", "Brown_Hair": "brown",
                "Gray_Hair": "gray"}  # in order of precedence when several are set
CELEBA_TEST_SIZE = 1000  # the last 1,000 images of the shared 10k archive are the test split
NAMES = ("shapes", "cifar10", "celeba")
CELEBA_ATTRIBUTES = ("Smiling", "Young", "Male", "Eyeglasses", "Blond_Hair", "Black_Hair", "Brown_Hair",
                     "Gray_Hair")  # the attributes captions state, in the evaluation classifier's order
ARCHIVES = {"cifar10": "cifar10-png.zip", "celeba": "celeba-10k.zip"}
LAYOUTS = {"cifar10": "cifar10/{train,test}/<class>/<name>.png",
           "celeba": "celeba/img/NNNNNN.jpg and celeba/attributes.csv (image_id + 40 columns)"}


class ImageDataset(Dataset):
    """Images held in memory as uint8 (N, 3, H, W), with captions and per-item extras."""

    attribute_names: list[str] | None = None  # CelebA: the names of the `attributes` entries

    def __init__(self, images: torch.Tensor, captions: list[str], **extras: torch.Tensor):
        self.images, self.captions, self.extras = images, captions, extras  # images: uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        item = dict(image=to_float(self.images[index]), caption=self.captions[index], index=index)
        return item | {name: values[index] for name, values in self.extras.items()}


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 in [-1, 1] (any shape)."""
    return images.float() / 127.5 - 1


# --------------------------------------------------------------------------- files

def data_root(root: str | Path | None = None) -> Path | None:
    """`root`, else $MINIDIFF_DATA, else ../shared/data next to the repository if it exists.

    MINIDIFF_NO_SHARED=1 (any value but empty or "0") turns the ../shared/data lookup off, as on
    a fresh clone: without `root` or MINIDIFF_DATA the result is then None (no data).
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("MINIDIFF_DATA"):
        return Path(os.environ["MINIDIFF_DATA"]).expanduser()
    if _no_shared():
        return None
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"  # beside the repository
    return shared if shared.is_dir() else None


def _no_shared() -> bool:
    return os.environ.get("MINIDIFF_NO_SHARED", "") not in ("", "0")


def available(name: str, root: str | Path | None = None) -> bool:
    """Whether `load_dataset(name, root=root)` finds its files without downloading ('shapes': always)."""
    return missing(name, root) is None


def missing(name: str, root: str | Path | None = None) -> str | None:
    """None if `load_dataset(name, root=root)` finds its files, else why not: the message loading
    would raise (where it looked, how to get the data). Opens the archive, decodes nothing."""
    if name == "shapes":
        return None
    if name not in ARCHIVES:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(NAMES)}")
    try:
        _open_source(data_root(root), ARCHIVES[name], name)
    except FileNotFoundError as e:
        return str(e)
    return None


def _open_source(root: Path | None, zip_name: str, top: str) -> tuple[Callable, list[str], Path]:
    """(read(name) -> bytes, sorted member names '<top>/...', path) of a zip or a folder.

    `root` may be the zip itself, a folder holding the zip or the extracted <top>/ folder,
    or that extracted folder itself. Raises FileNotFoundError saying how to get the data.
    """
    if root is not None:
        for path in (root, root / zip_name):
            if path.is_file() and path.suffix == ".zip":
                try:
                    archive = zipfile.ZipFile(path)
                except (zipfile.BadZipFile, OSError) as e:
                    raise ValueError(f"{path} is not a readable zip archive ({e}); copy {zip_name} again (it should "
                                     f"hold {LAYOUTS[top]})") from e
                if not any(name.startswith(f"{top}/") for name in archive.namelist()):
                    raise FileNotFoundError(f"{path} has no {top}/ folder inside; expected "
                                            f"{zip_name} holding {LAYOUTS[top]}")
                return archive.read, sorted(archive.namelist()), path
        base = root.parent if root.name == top else root
        if (base / top).is_dir():
            names = sorted(p.relative_to(base).as_posix() for p in (base / top).rglob("*"))
            return (lambda name: (base / name).read_bytes()), names, base / top
    shared = "../shared/data lookup off (MINIDIFF_NO_SHARED)" if _no_shared() else "no ../shared/data"
    looked = f"{root}" if root is not None else f"nowhere: no root given, MINIDIFF_DATA unset, {shared}"
    raise FileNotFoundError(
        f"{top} data not found (looked in {looked}). To get it, either pass download=True to "
        f"let torchvision download the original data set (needs internet), or set MINIDIFF_DATA "
        f"(or pass root=) to a folder containing {zip_name} (holding {LAYOUTS[top]}) or that "
        f"{top}/ folder extracted.")


def _cached(key: str | None, build: Callable[[], dict[str, np.ndarray]]) -> dict:
    """build(), saved to / loaded from $MINIDIFF_CACHE/<key>.npz (no caching if key is None). The cache is optional:
    an unreadable entry is rebuilt, and a cache folder that cannot be written only costs a warning."""
    path = Path(os.environ.get("MINIDIFF_CACHE", "~/.cache/minidiff")).expanduser() / f"{key}.npz"
    if key is not None and path.exists():
        try:
            with np.load(path) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"decode cache {path} is unreadable ({e}); rebuilding it", stacklevel=2)
    arrays = build()
    if key is not None:
        _store(path, arrays)
    return arrays


def _store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, **arrays)
        os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
    except OSError as e:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        warnings.warn(f"could not write the decode cache {path} ({e}); loading goes on without it (set "
                      "MINIDIFF_CACHE to a writable folder to keep decoded images)", stacklevel=3)


def _cache_key(source: Path, *parts) -> str | None:
    """Zips are keyed by size and mtime; extracted folders are not cached."""
    if source.suffix != ".zip":
        return None
    stat = source.stat()
    return "-".join(map(str, (source.stem, *parts, stat.st_size, stat.st_mtime_ns)))


def _decode(read: Callable, names: list[str], prepare: Callable, desc: str,
            progress: bool) -> np.ndarray:
    """Decode and prepare images into one uint8 array (N, 3, H, W)."""
    images = []
    for name in tqdm(names, desc=desc, disable=not progress, leave=False):
        with Image.open(io.BytesIO(read(name))) as image:
            images.append(np.asarray(prepare(image.convert("RGB"))))  # (H, W, 3)
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def _subset(n: int, limit: int | None) -> np.ndarray:
    """Indices of `limit` evenly spaced items out of n (all if limit is None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(int)


def _resize(size: int) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image if image.size == (size, size) else image.resize(
        (size, size), Image.BICUBIC)  # PIL's resize filters (antialiases) when shrinking


# --------------------------------------------------------------------------- CIFAR-10

def cifar10_caption(label: int) -> str:
    """'a photo of a cat', 'an airplane', ..."""
    name = CIFAR10_CLASSES[label]
    return f"a photo of {'an' if name[0] in 'aeiou' else 'a'} {name}"


def load_cifar10(split: str = "train", root: str | Path | None = None, image_size: int = 32,
                 download: bool = False, cache: bool = True, limit: int | None = None,
                 progress: bool = True) -> ImageDataset:
    """CIFAR-10 (50,000 train / 10,000 test images), items with `label` in 0..9."""
    _check_split(split, ("train", "test"))
    if download:
        arrays = _torchvision_cifar10(split, root)
        arrays = {k: v[_subset(len(v), limit)] for k, v in arrays.items()}
    else:
        read, names, source = _open_source(data_root(root), ARCHIVES["cifar10"], "cifar10")
        names = [n for n in names if n.startswith(f"cifar10/{split}/") and n.endswith(".png")]
        names = [names[i] for i in _subset(len(names), limit)]  # sorted by class, then name
        labels = np.array([CIFAR10_CLASSES.index(n.split("/")[2]) for n in names])
        arrays = _cached(_cache_key(source, split, limit) if cache else None,
                         lambda: dict(images=_decode(read, names, lambda image: image,
                                                     "CIFAR-10", progress), labels=labels))
    images = torch.from_numpy(arrays["images"])
    if image_size != 32:
        images = torch.nn.functional.interpolate(images.float(), size=image_size, mode="bicubic",
                                                 antialias=True).round().clamp(0, 255).byte()
    labels = torch.from_numpy(arrays["labels"]).long()
    return ImageDataset(images, [cifar10_caption(int(y)) for y in labels], label=labels)


def _torchvision_cifar10(split: str, root: str | Path | None) -> dict[str, np.ndarray]:
    from torchvision.datasets import CIFAR10  # optional dependency, only for downloading

    root = Path(root or Path("~/.cache/minidiff/torchvision").expanduser())
    data = CIFAR10(str(root), train=split == "train", download=True)
    return dict(images=data.data.transpose(0, 3, 1, 2).copy(), labels=np.array(data.targets))


# --------------------------------------------------------------------------- CelebA

def celeba_caption(attributes: dict[str, int]) -> str:
    """Caption of a CelebA attribute row (name -> 0/1), by the grammar

        "a photo of a" ["smiling"] ["young"] ("man" | "woman") [WITH]
        WITH := "with" HAIR "hair" ["and eyeglasses"] | "with eyeglasses"

    from Smiling, Young, Male, Eyeglasses and the first set of Blond_Hair, Black_Hair,
    Brown_Hair, Gray_Hair (HAIR = blond, black, brown, gray), e.g. "a photo of a smiling
    young woman with blond hair", "a photo of a man with black hair and eyeglasses".
    """
    words = ["a photo of a"] + ["smiling"] * attributes["Smiling"] + ["young"] * attributes["Young"]
    words.append("man" if attributes["Male"] else "woman")
    hair = next((colour for name, colour in HAIR_COLOURS.items() if attributes[name]), None)
    if hair is not None:
        words.append(f"with {hair} hair" + (" and eyeglasses" if attributes["Eyeglasses"] else ""))
    elif attributes["Eyeglasses"]:
        words.append("with eyeglasses")
    return " ".join(words)


def celeba_targets(attributes: Tensor, attribute_names: list[str]) -> Tensor:
    """(N, 40) CelebA attributes -> (N, 8) targets in CELEBA_ATTRIBUTES order."""
    idx = [attribute_names.index(a) for a in CELEBA_ATTRIBUTES]
    return attributes[:, idx]


def caption_attributes(caption: str) -> dict[str, int]:
    """The CELEBA_ATTRIBUTES a CelebA caption states (see `celeba_caption`): 1 or 0 for each;
    hair colours only when a hair colour is named (captions say nothing about absent hair colour)."""
    words = caption.split()
    out = {"Smiling": int("smiling" in words), "Young": int("young" in words), "Male": int("man" in words),
           "Eyeglasses": int("eyeglasses" in words)}
    if "hair" in words:
        colour = words[words.index("hair") - 1]
        for name in CELEBA_ATTRIBUTES[4:]:
            out[name] = int(name.split("_")[0].lower() == colour)
    return out


def read_celeba_attributes(root: str | Path | None = None) -> tuple[list[str], list[str],
                                                                    np.ndarray]:
    """(image ids, the 40 attribute names, values (N, 40) in {0, 1}) from attributes.csv."""
    read, _, _ = _open_source(data_root(root), ARCHIVES["celeba"], "celeba")
    return _parse_attributes(read("celeba/attributes.csv"))


def _parse_attributes(text: bytes) -> tuple[list[str], list[str], np.ndarray]:
    rows = list(csv.reader(io.StringIO(text.decode())))
    values = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.uint8)
    return [row[0] for row in rows[1:]], rows[0][1:], values


def _face_crop(size: int) -> Callable[[Image.Image], Image.Image]:
    """Central square of side = width (89x89 of the 89x109 frames), resized to size."""
    def prepare(image: Image.Image) -> Image.Image:
        width, height = image.size
        top = (height - width) // 2
        return _resize(size)(image.crop((0, top, width, top + width)))
    return prepare


def load_celeba(split: str = "train", root: str | Path | None = None, image_size: int = 64,
                download: bool = False, cache: bool = True, limit: int | None = None,
                progress: bool = True) -> ImageDataset:
    """CelebA faces with `attributes` (40,) in {0, 1} (names in `.attribute_names`).

    From the shared 10k archive: test = the last CELEBA_TEST_SIZE images, train = the rest,
    all = every image. With download=True: torchvision's official train / test / all split.
    """
    _check_split(split, ("train", "test", "all"))
    if download:
        arrays, attribute_names = _torchvision_celeba(split, root, image_size, limit, progress)
    else:
        read, _, source = _open_source(data_root(root), ARCHIVES["celeba"], "celeba")
        ids, attribute_names, values = _parse_attributes(read("celeba/attributes.csv"))
        keep = {"train": slice(0, -CELEBA_TEST_SIZE), "test": slice(-CELEBA_TEST_SIZE, None),
                "all": slice(None)}[split]
        ids, values = ids[keep], values[keep]
        chosen = _subset(len(ids), limit)
        files = [f"celeba/img/{ids[i]}" for i in chosen]
        arrays = _cached(_cache_key(source, split, image_size, limit) if cache else None,
                         lambda: dict(images=_decode(read, files, _face_crop(image_size),
                                                     "CelebA", progress)))
        arrays["attributes"] = values[chosen]
    attributes = torch.from_numpy(arrays["attributes"]).long()
    captions = [celeba_caption(dict(zip(attribute_names, row.tolist(), strict=True)))
                for row in attributes]
    dataset = ImageDataset(torch.from_numpy(arrays["images"]), captions, attributes=attributes)
    dataset.attribute_names = list(attribute_names)
    return dataset


def _torchvision_celeba(split, root, image_size, limit, progress) -> tuple[dict, list[str]]:
    from torchvision.datasets import CelebA  # optional dependency, only for downloading

    root = Path(root or Path("~/.cache/minidiff/torchvision").expanduser())
    data = CelebA(str(root), split=split, target_type="attr", download=True)
    chosen = _subset(len(data), limit)
    folder = Path(data.root) / data.base_folder / "img_align_celeba"
    files = [data.filename[i] for i in chosen]
    images = _decode(lambda name: (folder / name).read_bytes(), files, _face_crop(image_size),
                     "CelebA", progress)
    names = [n for n in data.attr_names if n]
    return dict(images=images, attributes=data.attr[chosen].numpy().astype(np.uint8)), names


# --------------------------------------------------------------------------- one interface

def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(allowed)}; got {split!r}")
