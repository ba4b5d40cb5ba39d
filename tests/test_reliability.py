"""Reliability: every bad input gets a clear error (type and message), nothing is silently wrong, no checkpoint is
lost, and the command line answers in one line.

`CASES` is the table: each row runs one bad input against the Python API or the CLI and names the exception (or
the CLI's exit code 2) and a fragment of the message it must carry; each run also checks that nothing was
written or lost in its folder (`Sandbox`). The kill test SIGKILLs saves at random moments; the lock test trains
twice into one folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from minidiff.cli import main
from minidiff.datasets import load_dataset
from minidiff.edict import edict_edit, edict_invert
from minidiff.guidance import Guidance, classifier_free_guidance, guided
from minidiff.inversion import ddim_invert, sdedit
from minidiff.metrics import psnr, ssim
from minidiff.null_text import null_text_invert
from minidiff.p2p import Reweight
from minidiff.samplers import ddim_step
from minidiff.schedule import timesteps
from minidiff.training import pretrained
from minidiff.training.checkpoint import (
    checkpoint_path,
    load_model,
    read_metadata,
    remove_stale_temporaries,
    save_model,
)
from minidiff.training.loop import TrainConfig, run_lock
from tests.test_checkpoint import tiny_model
from tests.test_experiments import images

ROOT = Path(__file__).resolve().parents[1]
HAVE_SHAPES = pretrained.available("shapes")


# ---- the sandbox: what a case may write ---------------------------------------------------------------------------

class Sandbox:
    """A folder with one saved checkpoint `m` (and its JSON copy) whose bytes must survive every failing case."""

    def __init__(self, root: Path):
        self.root = root
        self.model = tiny_model()
        self.ckpt = save_model(self.model, root / "m")
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()}

    def unchanged(self, allowed: tuple[str, ...] = ()) -> None:
        after = {k: v for k, v in self.snapshot().items() if not k.startswith(allowed)}
        assert after == {k: v for k, v in self.before.items() if not k.startswith(allowed)}, \
            sorted(set(after) ^ set(self.before)) or "a file's bytes changed"


def edited_checkpoint(sb: Sandbox, edit) -> Path:
    """A copy of the sandbox's checkpoint whose header metadata was edited by `edit(meta)` (the hash kept)."""
    from safetensors import safe_open

    with safe_open(str(sb.ckpt), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["minidiff"]), {k: f.get_tensor(k) for k in f.keys()}
    edit(meta)
    path = sb.root / "edited" / "e.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(tensors, str(path), metadata={"minidiff": json.dumps(meta)})
    return path


def rename_a_word(meta: dict) -> None:
    words = meta["config"]["tokenizer"]["words"]
    words[words.index("red")] = "rose"  # shifts no ids here but changes what "red" means: refused by the hash


def drop_a_word(meta: dict) -> None:
    meta["config"]["tokenizer"]["words"].pop()  # a tokenizer shorter than the embedding table


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as e:  # argparse's own errors (exit 2)
        return e.code


# ---- the table ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    run: object  # run(sandbox) -> result (a CLI exit code) or raises
    error: type | int  # the exception type, or the CLI exit code (2)
    match: str  # a fragment the message (or the CLI's stderr) must contain
    allowed: tuple[str, ...] = ()  # sandbox paths a case may create (prefixes)
    needs_shapes: bool = False


def m(sb):
    return sb.model


def x_img(n=2, dtype=torch.float32):
    return images(n, dtype)


CTX = ["a red circle", "a blue square"]


def ctx(sb):
    return sb.model.encode_text(CTX)


CASES = [
    # checkpoints: saving
    Case("save over an existing checkpoint", lambda sb: save_model(sb.model, sb.root / "m"), FileExistsError,
         "already exists"),
    Case("save over an existing checkpoint given as .json", lambda sb: save_model(sb.model, sb.root / "m.json"),
         FileExistsError, "--force"),
    Case("save a non-checkpointable module", lambda sb: save_model(torch.nn.Linear(2, 2), sb.root / "lin"), TypeError,
         "cannot checkpoint a Linear"),
    # checkpoints: loading
    Case("load a missing checkpoint", lambda sb: load_model(sb.root / "nothing"), FileNotFoundError, "is missing"),
    Case("load a file that is not safetensors",
         lambda sb: (put(sb.root / "junk" / "j.safetensors", b"junk"), load_model(sb.root / "junk" / "j")),
         ValueError, "not a readable safetensors", ("junk",)),
    Case("load a pickled torch file (never unpickled)",
         lambda sb: ((sb.root / "pkl").mkdir(), torch.save(sb.model.state_dict(), sb.root / "pkl" / "p.safetensors"),
                     load_model(sb.root / "pkl" / "p")), ValueError, "not a readable safetensors", ("pkl",)),
    Case("load safetensors without minidiff metadata",
         lambda sb: (put(sb.root / "raw" / "x", b""), save_file({"a": torch.zeros(1)},
                                                                str(sb.root / "raw" / "r.safetensors")),
                     load_model(sb.root / "raw" / "r")), ValueError, "not a minidiff checkpoint", ("raw",)),
    Case("a renamed vocabulary word", lambda sb: load_model(edited_checkpoint(sb, rename_a_word)), ValueError,
         "sha256", ("edited",)),
    Case("an edited schedule T", lambda sb: load_model(edited_checkpoint(
        sb, lambda meta: meta["config"]["schedule"].update(T=200))), ValueError, "corrupted or edited", ("edited",)),
    Case("an edited schedule kind", lambda sb: load_model(edited_checkpoint(
        sb, lambda meta: meta["config"]["schedule"].update(kind="linear"))), ValueError, "sha256", ("edited",)),
    Case("a tokenizer shorter than the embedding table (hash not checked)", lambda sb: load_model(
        edited_checkpoint(sb, drop_a_word), verify=False), ValueError, "do not match the text encoder", ("edited",)),
    Case("an unknown kind (hash not checked)", lambda sb: load_model(edited_checkpoint(
        sb, lambda meta: meta.update(kind="GAN")), verify=False), ValueError, "known kinds", ("edited",)),
    Case("a config without its UNet (hash not checked)", lambda sb: load_model(edited_checkpoint(
        sb, lambda meta: meta["config"].pop("unet")), verify=False), ValueError, "does not describe a DiffusionModel",
         ("edited",)),
    Case("a config whose channels do not fit the tensors (hash not checked)", lambda sb: load_model(edited_checkpoint(
        sb, lambda meta: meta["config"]["unet"].update(base_channels=12)), verify=False), ValueError,
         "do not fit the architecture", ("edited",)),
    Case("an unknown format", lambda sb: load_model(edited_checkpoint(sb, lambda meta: meta.update(format="x/9"))),
         ValueError, "expected 'minidiff-model/2'", ("edited",)),
    Case("a shipped name that does not exist", lambda sb: pretrained.load("nope"), ValueError,
         "no shipped checkpoint named 'nope'"),
    Case("an autoencoder where a diffusion model is needed", lambda sb: pretrained.load("cifar10_ae",
                                                                                     kind="DiffusionModel"),
         ValueError, "Autoencoder checkpoint; this needs a DiffusionModel"),
    # training options
    *[Case(f"train with {opt} = {value!r}", lambda sb, o=opt, v=value: TrainConfig(**{o: v}), ValueError,
           f"--{opt.replace('_', '-')} must be") for opt, value in (
        ("grad_clip", 0.0), ("grad_clip", -1.0), ("batch_size", 0), ("p_uncond", 5.0), ("ema_decay", 2.0),
        ("ema_decay", 1.0), ("ckpt_every", 0), ("steps", 0), ("lr", float("nan")), ("lr", -1e-3), ("task", "gan"),
        ("dataset", "mnist"), ("schedule", "quadratic"), ("T", 0), ("warmup", -1), ("min_lr_ratio", 2.0))],
    # images and tensors given to the methods
    Case("DDIM inversion of uint8 images", lambda sb: ddim_invert(sb.model, sb.model.schedule,
                                                                  (x_img() * 127.5 + 127.5).byte(), 2, ctx(sb)),
         TypeError, "floating"),
    Case("DDIM inversion of [0, 255] images", lambda sb: ddim_invert(sb.model, sb.model.schedule,
                                                                     x_img() * 127.5 + 127.5, 2, ctx(sb)),
         ValueError, "x / 127.5 - 1"),
    Case("DDIM inversion of an image with one NaN pixel",
         lambda sb: ddim_invert(sb.model, sb.model.schedule, x_img().index_put_((torch.tensor([0]),) * 4,
                                                                                 torch.tensor(float("nan"))), 2,
                                ctx(sb)), ValueError, "1 NaN or infinite"),
    Case("SDEdit of [0, 255] images", lambda sb: sdedit(sb.model, sb.model.schedule, x_img() * 127.5 + 127.5, 50, 4,
                                                        ctx(sb)), ValueError, "expected images in [-1, 1]"),
    Case("EDICT editing of an image with inf", lambda sb: edict_edit(
        sb.model, sb.model.schedule, x_img().clone().fill_(float("inf")), ctx(sb), ctx(sb), 4), ValueError,
         "NaN or infinite"),
    Case("EDICT with p = 0", lambda sb: edict_invert(sb.model, sb.model.schedule, x_img(), steps=2, p=0.0,
                                                     context=ctx(sb)), ValueError, "mixing weight p"),
    Case("EDICT with p = nan", lambda sb: edict_invert(sb.model, sb.model.schedule, x_img(), steps=2, p=float("nan"),
                                                       context=ctx(sb)), ValueError, "mixing weight p"),
    Case("EDICT with p = 1e-3 in float32 (blows up)", lambda sb: edict_invert(
        sb.model, sb.model.schedule, x_img(), steps=40, p=1e-3, context=ctx(sb)), ValueError, "diverged"),
    Case("model.encode of [0, 255] images", lambda sb: sb.model.encode(x_img() * 127.5 + 127.5), ValueError,
         "values in [0, 255] are 8-bit"),
    Case("model.encode of images in [-2, 2]", lambda sb: sb.model.encode(2 * x_img()), ValueError,
         "must be images in [-1, 1]"),
    Case("PSNR of [0, 255] images", lambda sb: psnr(x_img() * 127.5 + 127.5, x_img() * 127.5 + 127.5), ValueError,
         "data range 2"),
    Case("SSIM of [0, 255] images", lambda sb: ssim(x_img() * 127.5 + 127.5, x_img()), ValueError, "data_range"),
    Case("PSNR of images of different shapes", lambda sb: psnr(x_img(2), x_img(1)), ValueError, "equal shape"),
    Case("guidance w = nan", lambda sb: Guidance(sb.model.null_context(), float("nan")), ValueError, "finite number"),
    Case("guidance w = inf", lambda sb: Guidance(sb.model.null_context(), float("inf")), ValueError, "finite number"),
    Case("guidance as the old (null, w) tuple", lambda sb: guided(sb.model, (sb.model.null_context(), 3.0)),
         TypeError, "Guidance(null_context, w)"),
    Case("guidance as a bare float", lambda sb: ddim_invert(sb.model, sb.model.schedule, x_img(), 2, ctx(sb),
                                                            guidance=3.0), TypeError, "Guidance(model.null_context()"),
    Case("a null context of the wrong length", lambda sb: classifier_free_guidance(
        sb.model, Guidance(sb.model.null_context()[:, :5], 3.0))(x_img(), torch.tensor([5, 5]), ctx(sb)), ValueError,
         "does not fit the context"),
    Case("re-weighting by nan", lambda sb: Reweight(sb.model.tokenizer, CTX[:1], CTX[:1], timesteps(100, 4),
                                                    weights={"red": float("nan")}), ValueError,
         "re-weighting factor of 'red' must be a finite number"),
    Case("re-weighting by -1", lambda sb: Reweight(sb.model.tokenizer, CTX[:1], CTX[:1], timesteps(100, 4),
                                                   weights={"red": -1.0}), ValueError, "must lie in [0, inf]"),
    Case("null-text inversion with 0 inner steps", lambda sb: null_text_invert(
        sb.model, sb.model.schedule, x_img(1), ctx(sb)[:1], Guidance(sb.model.null_context(), 3.0), steps=2,
        inner_steps=0), ValueError, "inner_steps must be >= 1"),
    Case("encode_text(None)", lambda sb: sb.model.encode_text(None), TypeError, "prompts must be a string"),
    Case("encode_text with an unknown word", lambda sb: sb.model.encode_text(["a zebra"]), ValueError, "zebra"),
    Case("the model on uint8 images", lambda sb: sb.model((x_img() * 127.5 + 127.5).byte(), torch.tensor([3, 4]),
                                                           ctx(sb)), TypeError, "but it was given torch.uint8"),
    Case("the model on float16 images", lambda sb: sb.model(x_img().half(), torch.tensor([3, 4]), ctx(sb)),
         TypeError, "convert them with .to(torch.float32)"),
    Case("a DDIM step with eta = nan", lambda sb: ddim_step(sb.model.schedule, x_img(), x_img(), 10, 5,
                                                            float("nan")), ValueError, "eta must be >= 0"),
    # the command line: one line on stderr, exit 2, nothing written
    Case("sample --w nan", lambda sb: cli("sample", "--prompt", "a red circle", "--w", "nan"), 2,
         "expected a finite number"),
    Case("sample --w inf", lambda sb: cli("sample", "--prompt", "a red circle", "--w", "inf"), 2,
         "expected a finite number"),
    Case("sample --w -4", lambda sb: cli("sample", "--prompt", "a red circle", "--w", "-4"), 2, ">= 0"),
    Case("sample --n 0", lambda sb: cli("sample", "--prompt", "a red circle", "--n", "0"), 2, "integer >= 1"),
    Case("sample --steps 0", lambda sb: cli("sample", "--prompt", "a red circle", "--steps", "0"), 2,
         "integer >= 1"),
    Case("sample --out /dev/full", lambda sb: cli("sample", "--prompt", "a red circle", "--out", "/dev/full"), 2,
         "image file name ending in .png"),
    Case("sample --out an existing folder", lambda sb: (sb.root / "d.png").mkdir() or cli(
        "sample", "--prompt", "a red circle", "--out", str(sb.root / "d.png")), 2, "is a folder", ("d.png",)),
    Case("sample --checkpoint an autoencoder", lambda sb: cli(
        "sample", "--checkpoint", "cifar10_ae", "--prompt", "a photo of a cat", "--out", str(sb.root / "s.png")), 2,
         "needs a DiffusionModel"),
    Case("sample --checkpoint that does not exist", lambda sb: cli(
        "sample", "--checkpoint", "nope", "--prompt", "a red circle", "--out", str(sb.root / "s.png")), 2,
         "no shipped checkpoint named 'nope'"),
    Case("sample a prompt with an unknown word", lambda sb: cli(
        "sample", "--checkpoint", str(sb.ckpt), "--prompt", "a zebra", "--n", "1", "--steps", "2", "--out",
        str(sb.root / "s.png")), 2, "zebra"),
    Case("bench ddim-roundtrip --n 0", lambda sb: cli("bench", "ddim-roundtrip", "--n", "0"), 2, "integer >= 1"),
    Case("bench prompt-accuracy --w nan", lambda sb: cli("bench", "prompt-accuracy", "--w", "nan"), 2,
         "finite number"),
    Case("bench --out a file", lambda sb: cli("bench", "eta-grid", "--out", str(sb.ckpt)), 2, "is not a folder"),
    Case("bench quality --checkpoint shapes", lambda sb: cli("bench", "quality", "--checkpoint", "shapes", "--out",
                                                             str(sb.root / "o")), 2, "quality table judges",
         ("o",), True),
    Case("export from a missing run folder", lambda sb: cli("export", "--run", str(sb.root / "run"), "--to",
                                                            str(sb.root / "new")), 2, "is missing"),
    Case("export from a folder that is not a run", lambda sb: cli("export", "--run", str(sb.root), "--to",
                                                                  str(sb.root / "new")), 2, "not a run folder"),
    Case("train --grad-clip 0", lambda sb: cli("train", "--grad-clip", "0", "--out", str(sb.root / "r")), 2,
         "--grad-clip must be"),
    Case("train --batch-size 0", lambda sb: cli("train", "--batch-size", "0", "--out", str(sb.root / "r")), 2,
         "--batch-size must be an integer >= 1"),
    Case("train --ckpt-every 0", lambda sb: cli("train", "--ckpt-every", "0", "--out", str(sb.root / "r")), 2,
         "--ckpt-every must be"),
    Case("train --p-uncond 5", lambda sb: cli("train", "--p-uncond", "5", "--out", str(sb.root / "r")), 2,
         "--p-uncond must be a probability"),
    Case("train-classifier over the shipped classifier without --force", lambda sb: cli(
        "train-classifier", "--steps", "1", "--n", "4"), 2, "already exists", (), True),
    Case("train-classifier --to an existing checkpoint", lambda sb: cli(
        "train-classifier", "--steps", "1", "--n", "4", "--to", str(sb.root / "m")), 2, "pass --force"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_error_and_nothing_is_written_or_lost(case, tmp_path, capsys):
    if case.needs_shapes and not HAVE_SHAPES:
        pytest.skip("shipped shapes checkpoint missing")
    if "cifar10_ae" in case.name + str(case.match) or "autoencoder" in case.name:
        if not pretrained.available("cifar10_ae"):
            pytest.skip("shipped cifar10_ae checkpoint missing")
    sb = Sandbox(tmp_path)
    capsys.readouterr()
    if isinstance(case.error, int):
        assert case.run(sb) == case.error
        err = capsys.readouterr().err
        assert case.match in err and "Traceback" not in err, err
        ours = [line for line in err.splitlines() if line.startswith("minidiff: error:")]
        assert len(ours) <= 1 and (ours or "usage:" in err), err  # ours: one line; else argparse's usage + error
    else:
        with pytest.raises(case.error) as info:
            case.run(sb)
        assert case.match in str(info.value), str(info.value)
    sb.unchanged(case.allowed)


def test_the_table_has_at_least_60_cases():
    assert len(CASES) >= 60, len(CASES)


# ---- behaviours that are not errors ---------------------------------------------------------------------------------

def test_a_dotted_name_keeps_its_dot_and_never_touches_the_checkpoint_it_resembles(tmp_path):
    """`save_model(model, DIR/shapes.v2)` writes DIR/shapes.v2.safetensors; DIR/shapes.safetensors is untouched."""
    sb = Sandbox(tmp_path)
    out = save_model(sb.model, tmp_path / "m.v2")
    assert out == tmp_path / "m.v2.safetensors" and checkpoint_path(tmp_path / "m.v2.json") == out
    sb.unchanged(("m.v2",))
    assert torch.equal(next(iter(load_model(out).state_dict().values())),
                       next(iter(sb.model.state_dict().values())))


def test_force_replaces_and_the_config_travels_inside_the_weights_file(tmp_path):
    """One file is the whole checkpoint: the JSON copy can be deleted and the model still loads, identical."""
    Sandbox(tmp_path)
    other = tiny_model(seed=1)
    save_model(other, tmp_path / "m", force=True)
    (tmp_path / "m.json").unlink()
    back = load_model(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), other.state_dict().values(),
                                                 strict=True))
    assert read_metadata(tmp_path / "m")["config"]["tokenizer"] == other.config()["tokenizer"]


def test_shipped_checkpoints_are_one_file_each_and_verify():
    """Every shipped checkpoint is in the one-file format, and its content hash verifies (load_model checks it)."""
    if not pretrained.names():
        pytest.skip("no shipped checkpoints")
    for name in pretrained.names():
        meta = read_metadata(pretrained.checkpoint_dir() / name)
        assert meta["format"] == "minidiff-model/2", name
        load_model(pretrained.checkpoint_dir() / name)


def test_legacy_two_file_checkpoints_still_load(tmp_path):
    """A first-format checkpoint (NAME.json + NAME.safetensors, the file's sha256) loads as before."""
    import hashlib

    model = tiny_model()
    st = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    meta = {"format": "minidiff-model/1", "kind": "DiffusionModel", "config": model.config(), "dtype": "float32",
            "sha256": hashlib.sha256(st.read_bytes()).hexdigest(), "info": {"note": "legacy"}}
    (tmp_path / "old.json").write_text(json.dumps(meta))
    back = load_model(tmp_path / "old")
    assert back.info == {"note": "legacy"} and back.sha256 == meta["sha256"]
    st.write_bytes(st.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "old")


def test_warning_when_guidance_pushes_samples_outside_the_image_range(tmp_path, capsys):
    """sample --w 1e6 is allowed but not silent: it says how much of the image was clipped."""
    ckpt = save_model(tiny_model(), tmp_path / "m")
    assert cli("sample", "--checkpoint", str(ckpt), "--prompt", "a red circle", "--n", "1", "--steps", "2", "--w",
               "1e6", "--out", str(tmp_path / "s.png")) == 0
    assert "fell outside [-1, 1] and are clipped" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match="no shipped checkpoint"):
        main(["--debug", "sample", "--checkpoint", "nope", "--prompt", "x"])
    monkeypatch.setenv("MINIDIFF_DEBUG", "1")
    with pytest.raises(ValueError, match="no shipped checkpoint"):
        main(["sample", "--checkpoint", "nope", "--prompt", "x"])


def test_shipped_defaults_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    """The default classifier of `bench classifier-guidance` is the shipped name, found from any folder."""
    from minidiff.bench.registry import TABLES

    if not pretrained.available("shapes_classifier"):
        pytest.skip("shipped shapes_classifier missing")
    monkeypatch.chdir(tmp_path)
    name = TABLES["classifier-guidance"].defaults["classifier"]
    assert os.sep not in name
    assert type(pretrained.load(name, kind="NoisyClassifier")).__name__ == "NoisyClassifier"


# ---- data faults -----------------------------------------------------------------------------------------------------

def tiny_cifar_zip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for k in range(3):
            from io import BytesIO

            from PIL import Image

            buf = BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
            z.writestr(f"cifar10/test/cat/c{k}.png", buf.getvalue())
    return path


def test_a_corrupt_archive_is_named_and_the_cache_is_optional(tmp_path, monkeypatch):
    """A corrupt zip names the file and the fix; a corrupt cache entry is rebuilt; a cache folder that cannot be
    made or written warns and loading goes on."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cifar10-png.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"cifar10-png.zip is not a readable zip archive"):
        load_dataset("cifar10", "test", root=tmp_path / "bad", progress=False)
    good = tmp_path / "good"
    good.mkdir()
    tiny_cifar_zip(good / "cifar10-png.zip")
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINIDIFF_CACHE", str(cache))
    first = load_dataset("cifar10", "test", root=good, progress=False)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_dataset("cifar10", "test", root=good, progress=False)
    assert torch.equal(first.images, again.images) and np.load(entry)["images"].shape[0] == 3  # rebuilt
    blocked = tmp_path / "a_file"
    blocked.write_text("a file where the cache folder should be: no folder can be made below it, even by root")
    monkeypatch.setenv("MINIDIFF_CACHE", str(blocked / "cache"))
    with pytest.warns(UserWarning, match="could not write the decode cache"):
        third = load_dataset("cifar10", "test", root=good, progress=False)
    assert torch.equal(first.images, third.images)


# ---- kills and concurrency -------------------------------------------------------------------------------------------

_MODELS: list = []  # built by the parent before forking, so a child starts saving at once


def _save_forever(path: str, seed: int) -> None:
    for i in range(10**6):
        save_model(_MODELS[(seed + i) % 2], path, force=True)


def test_sigkill_during_saves_never_loses_the_checkpoint_and_the_next_save_cleans_up(tmp_path):
    """25 times: a forked process saves the same checkpoint over and over and is SIGKILLed at a random moment
    (0-40 ms); the checkpoint must load and verify every time (the old one or the new one, never a mix), and the
    next save leaves no temporary file."""
    path = tmp_path / "c"
    _MODELS[:] = [tiny_model(seed=0, base=12), tiny_model(seed=1, base=12)]
    save_model(_MODELS[0], path)
    ctx = multiprocessing.get_context("fork")
    rng, leftovers = random.Random(0), 0
    for k in range(25):
        proc = ctx.Process(target=_save_forever, args=(str(path), k))
        proc.start()
        time.sleep(rng.uniform(0.0, 0.04))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        load_model(path)  # verifies the content hash
        leftovers += len(list(tmp_path.glob(".*.tmp")))
    save_model(tiny_model(seed=2, base=12), path, force=True)
    assert not list(tmp_path.glob(".*.tmp")), list(tmp_path.glob(".*"))
    print(f"{leftovers} of 25 kills left a temporary file (killed mid-save); none is left after the next save")


def test_stale_temporaries_of_live_writers_are_kept():
    """Only temporaries whose writer is dead are removed (a live pid's file may be a save in progress)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "c.safetensors"
        live = Path(d) / f".c.safetensors.{os.getpid()}.abc.tmp"
        dead = Path(d) / ".c.safetensors.999999999.abc.tmp"
        live.write_bytes(b"x")
        dead.write_bytes(b"x")
        assert remove_stale_temporaries(target) == 1 and live.exists() and not dead.exists()


def test_a_second_train_into_a_locked_run_folder_fails_at_once(tmp_path):
    """While one process holds the run folder's lock, `train` into it exits 2 with a one-line error."""
    out = tmp_path / "run"
    with run_lock(out):
        run = subprocess.run([sys.executable, "-m", "minidiff", "train", "--out", str(out), "--steps", "1",
                              "--n-train", "8", "--batch-size", "4", "--unet", "tiny", "--text-dim", "16"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2, run.stderr[-2000:]
    assert "is being trained by another process" in run.stderr and "Traceback" not in run.stderr
    assert not (out / "state.safetensors").exists()


def test_rerunning_a_finished_run_reexports_a_missing_model_and_export_needs_only_the_state(tmp_path):
    """A finished run whose model export was lost: re-running `train` trains nothing and writes it again; then
    `export` rebuilds the same model from the training state alone, and refuses to overwrite without --force."""
    from minidiff.training.tasks import train
    from tests.test_train import TINY

    cfg = TrainConfig(**{**TINY, "steps": 2, "out": str(tmp_path / "run")})
    train(cfg, progress=False)
    exported = load_model(tmp_path / "run" / "model")
    for suffix in (".safetensors", ".json"):
        (tmp_path / "run" / f"model{suffix}").unlink()
    state_before = (tmp_path / "run" / "state.safetensors").read_bytes()
    train(cfg, progress=False)
    again = load_model(tmp_path / "run" / "model")
    assert (tmp_path / "run" / "state.safetensors").read_bytes() == state_before  # nothing trained
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    assert cli("export", "--run", str(tmp_path / "run"), "--to", str(tmp_path / "shipped"), "--dtype",
               "float32") == 0
    shipped = load_model(tmp_path / "shipped")
    assert all(torch.equal(a, b) for a, b in zip(exported.state_dict().values(), shipped.state_dict().values(),
                                                 strict=True))
    assert shipped.info["step"] == 2
    assert cli("export", "--run", str(tmp_path / "run"), "--to", str(tmp_path / "shipped")) == 2
    with pytest.raises(ValueError, match="already trained 2 steps"):
        train(replace(cfg, steps=1), progress=False)
