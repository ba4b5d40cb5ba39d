"""Checkpoints: one self-describing safetensors file per model; never pickle.

- A *model* checkpoint (what ships in `data/`) is `NAME.safetensors`: the tensors, and in the safetensors header
  the JSON metadata {"format", "kind", "config" (architecture, tokenizer vocabulary, schedule, data),
  "dtype", "info" (provenance: training command, step, measured numbers), "sha256"}. The sha256 covers the
  config, the info and every tensor (name, dtype, shape, bytes), so an edited vocabulary or schedule and a
  corrupt weight are refused alike. `NAME.json` beside it is a readable copy of the metadata, never read when
  loading. Loading also cross-checks the config against the tensors (vocabulary size vs embedding rows).
  Checkpoints of the first format (NAME.json + NAME.safetensors, sha256 of the weights file) still load.
- A *training state* (for exact resume) is one `.safetensors` file whose metadata holds the JSON state (step,
  optimiser hyper-parameters, the model's kind and config) and whose tensors hold model, EMA, optimiser
  moments and RNG states.

Every write goes to a temporary file in the same folder (named with the writer's pid), is fsync'ed, renamed over
the target (`os.replace`, atomic) and the folder fsync'ed, so a kill at any moment leaves either the old file or
the new one. Temporary files left by killed writers are removed by the next save of the same file. Saving never
overwrites an existing checkpoint unless asked (`force=True`, the CLI's `--force`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..nn.autoencoder import Autoencoder, AutoencoderConfig
from ..nn.classifiers import ImageClassifier, ImageClassifierConfig, NoisyClassifier, NoisyClassifierConfig
from ..nn.diffusion_model import DiffusionModel
from ..nn.instruct import InstructPix2Pix

Checkpointable = DiffusionModel | Autoencoder | NoisyClassifier | ImageClassifier
FORMAT = "minidiff-model/2"  # one file, metadata in the safetensors header
LEGACY_FORMAT = "minidiff-model/1"  # NAME.json + NAME.safetensors
STATE_FORMAT = "minidiff-train-state/1"
SUFFIX = ".safetensors"


def _tuples(c: dict, *keys: str) -> dict:
    return {**c, **{k: tuple(c[k]) for k in keys if k in c}}


# kind -> (config of a model, model from a config): every checkpointable architecture
KINDS = {
    "DiffusionModel": (lambda m: m.config(), DiffusionModel.from_config),
    "InstructPix2Pix": (lambda m: m.config(), InstructPix2Pix.from_config),
    "Autoencoder": (lambda m: asdict(m.cfg), lambda c: Autoencoder(AutoencoderConfig(**_tuples(c, "channel_mults")))),
    "NoisyClassifier": (lambda m: asdict(m.cfg),
                        lambda c: NoisyClassifier(NoisyClassifierConfig(**_tuples(c, "channel_mults")))),
    "ImageClassifier": (lambda m: asdict(m.cfg), lambda c: ImageClassifier(ImageClassifierConfig(**c))),
}


# ---- files -----------------------------------------------------------------------------------------------

def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file of `path`: PATH itself if it ends in .safetensors, PATH.safetensors otherwise (a name
    like "shapes.v2" keeps its dot), and NAME.safetensors for a readable copy NAME.json."""
    p = Path(path)
    if p.suffix == SUFFIX:
        return p
    return p.with_suffix(SUFFIX) if p.suffix == ".json" else p.with_name(p.name + SUFFIX)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> int:
    """Remove temporary files of `path` left by writers that no longer run (killed mid-save); returns how many."""
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        m = re.fullmatch(rf"\.{re.escape(path.name)}\.(\d+)\..*\.tmp", tmp.name)
        if m is None or not _alive(int(m.group(1))):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, fsync it, rename it over `path` (atomic), fsync the
    folder. A kill at any moment leaves the old file or the new one; its temporary file is removed by the next
    write of the same path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files (and writers may recreate them): the usual ones
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- model checkpoints ----------------------------------------------------------------------------------------

def content_hash(tensors: dict[str, Tensor], meta: dict) -> str:
    """sha256 over the metadata (format, kind, config, dtype, info as canonical JSON) and every tensor's name,
    dtype, shape and bytes, in name order: what a checkpoint's "sha256" records."""
    h = hashlib.sha256(json.dumps({k: meta.get(k) for k in ("format", "kind", "config", "dtype", "info")},
                                  sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_model(model: Checkpointable, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
               info: dict | None = None, force: bool = False) -> Path:
    """Write the one-file checkpoint PATH.safetensors (see the module docstring) and its readable copy PATH.json.

    `dtype` float16 halves the file (weights are cast back to float32 on load). An existing checkpoint is
    only replaced with force=True. Returns the checkpoint's path."""
    st, arch = checkpoint_path(path), model_metadata(model)
    if st.exists() and not force:
        raise FileExistsError(f"{st} already exists; refusing to overwrite a checkpoint (pass force=True, or "
                              "--force on the command line, to replace it)")
    weights = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, **arch, "dtype": str(dtype).removeprefix("torch."), "info": info or {}}
    return write_checkpoint(st, weights, meta)


def write_checkpoint(st: Path, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Publish tensors + metadata as one file in one atomic rename (the hash computed here), then the JSON copy."""
    meta = {**meta, "format": FORMAT}
    meta["sha256"] = content_hash(tensors, meta)
    atomic_write(st, lambda tmp: save_file(tensors, tmp, metadata={"minidiff": json.dumps(meta)}))
    copy = {"note": f"a readable copy of the metadata of {st.name}; loading never reads this file", **meta}
    atomic_write(st.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(copy, indent=1)))
    return st


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint without reading its tensors: the header of a one-file checkpoint, or the
    JSON of a first-format pair (then with "format" = LEGACY_FORMAT)."""
    st = checkpoint_path(path)
    if not st.exists():
        raise FileNotFoundError(f"checkpoint file {st} is missing")
    try:
        with safe_open(str(st), framework="pt") as f:
            header = (f.metadata() or {}).get("minidiff")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{st} is not a readable safetensors file ({e})") from e
    if header is not None:
        meta = _json(header, st)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{st} has format {meta.get('format')!r}, expected {FORMAT!r}")
        return meta
    js = st.with_suffix(".json")
    if not js.exists():
        raise ValueError(f"{st} has no minidiff metadata in its header and no {js.name} beside it: it is not a "
                         "minidiff checkpoint")
    meta = _json(js.read_text(), js)
    if meta.get("format") != LEGACY_FORMAT:
        raise ValueError(f"{js} has format {meta.get('format')!r}, expected {LEGACY_FORMAT!r}")
    return meta


def _json(text: str, where: Path) -> dict:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the checkpoint metadata of {where} is not valid JSON ({e}): it is corrupt") from e
    if not isinstance(meta, dict):
        raise ValueError(f"the checkpoint metadata of {where} is not a JSON object: the checkpoint is corrupt")
    return meta


def load_model(path: str | os.PathLike, verify: bool = True, device: str | torch.device = "cpu") -> Checkpointable:
    """Rebuild a model from a checkpoint (PATH, PATH.safetensors or its copy PATH.json), float32, eval mode, on
    `device`. `verify` checks the sha256 (content hash, or the weights file's hash for the first format) of the
    tensors as read from the file, before they are moved."""
    st = checkpoint_path(path)
    meta = read_metadata(st)
    tensors = read_tensors(st)
    if verify:
        _verify(st, meta, tensors)
    model = model_from_metadata(meta, st)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()},
                              strict=True)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"the tensors of {st} do not fit the architecture of its config: {e}") from e
    model.info, model.sha256 = meta.get("info", {}), meta.get("sha256")
    return model.float().eval().to(device)


def _verify(st: Path, meta: dict, tensors: dict[str, Tensor]) -> None:
    if meta["format"] == LEGACY_FORMAT:
        ok = meta.get("sha256") == hashlib.sha256(st.read_bytes()).hexdigest()
        what = f"{st} does not match the sha256 recorded in {st.with_suffix('.json').name}"
    else:
        ok = meta.get("sha256") == content_hash(tensors, meta)
        what = f"{st}'s content does not match the sha256 in its header"
    if not ok:
        raise ValueError(f"{what}: the weights or the config were corrupted or edited (or the weights belong to "
                         "another checkpoint)")


def model_metadata(model: Checkpointable) -> dict:
    """{"kind", "config"} of a model: what rebuilds its architecture (`model_from_metadata`)."""
    kind = type(model).__name__
    if kind not in KINDS:
        raise TypeError(f"cannot checkpoint a {kind}; known kinds: {sorted(KINDS)}")
    return {"kind": kind, "config": KINDS[kind][0](model)}


def model_from_metadata(meta: dict, where: Path | str = "checkpoint") -> Checkpointable:
    """A freshly initialised model of the kind and config a checkpoint's metadata describes."""
    kind = meta.get("kind", "DiffusionModel")
    if kind not in KINDS:
        raise ValueError(f"{where} holds a {kind!r}; known kinds: {sorted(KINDS)}")
    try:
        return KINDS[kind][1](meta["config"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"the config in {where} does not describe a {kind} ({type(e).__name__}: {e}): the "
                         "checkpoint is corrupt or was edited") from e


def read_tensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a safetensors file, as stored (dtype kept)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from e


def convert_legacy(path: str | os.PathLike, rename_autoencoder: dict[str, str] | None = None) -> Path:
    """Rewrite a first-format checkpoint (NAME.json + NAME.safetensors) as one file with the same tensors, bit for
    bit (verified). A latent model's reference to its autoencoder's sha256 is replaced through
    `rename_autoencoder` {old sha256: new content hash} (convert the autoencoder first)."""
    st = checkpoint_path(path)
    meta = read_metadata(st)
    if meta["format"] != LEGACY_FORMAT:
        raise ValueError(f"{st} is already in format {meta['format']!r}")
    tensors = read_tensors(st)
    _verify(st, meta, tensors)
    new = {k: meta[k] for k in ("kind", "config", "dtype", "info")}
    ae = new["config"].get("data", {}).get("autoencoder") if new["kind"] == "DiffusionModel" else None
    if ae and rename_autoencoder and ae.get("sha256") in rename_autoencoder:
        ae["sha256"] = rename_autoencoder[ae["sha256"]]
    write_checkpoint(st, tensors, new)
    back = read_tensors(st)
    if set(back) != set(tensors) or not all(torch.equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype
                                            for k in tensors):
        raise RuntimeError(f"converting {st} changed its tensors")
    return st


# ---- training state -------------------------------------------------------------------------------

def save_train_state(path: str | os.PathLike, tensors: dict[str, Tensor], state: dict) -> None:
    """One atomic file: tensors in safetensors, `state` (JSON-able) in its metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"minidiff": json.dumps({"format": STATE_FORMAT, **state})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """(tensors, state) of a training state file; a clear error if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {}).get("minidiff", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable training state ({e})") from e
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} has format {state.get('format')!r}, expected {STATE_FORMAT!r}")
    return tensors, state


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimiser state_dict into tensors ("optim.<param>.<key>") and JSON (param_groups)."""
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": torch.as_tensor(v) for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], js: dict) -> None:
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, i, k = name.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": js["param_groups"]})
