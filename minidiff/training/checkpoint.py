"""Checkpoints: safetensors for tensors, JSON for everything else; never pickle.

Two kinds of files:

- a *model* checkpoint (what ships in `data/`): `NAME.safetensors` (weights) beside
  `NAME.json` ({"format", "config", "dtype", "sha256" of the weights file, "info"});
  the sha256 ties the pair together, so a corrupt or mismatched weights file is refused.
- a *training state* (for exact resume): one `.safetensors` file whose metadata holds
  the JSON state (step, optimiser hyper-parameters, ...) and whose tensors hold model,
  EMA, optimiser moments and RNG states.

Every write goes to a temporary file in the same folder, is fsync'ed, then renamed
over the target (`os.replace` is atomic), so a kill at any moment leaves either the
old file or the new one, never half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..nn.autoencoder import Autoencoder, AutoencoderConfig
from ..nn.classifiers import ImageClassifier, ImageClassifierConfig, NoisyClassifier, NoisyClassifierConfig
from ..nn.diffusion_model import DiffusionModel

Checkpointable = DiffusionModel | Autoencoder | NoisyClassifier | ImageClassifier
FORMAT = "minidiff-model/1"
# kind -> (config of a model, model from a config): every checkpointable architecture
KINDS = {
    "DiffusionModel": (lambda m: m.config(), DiffusionModel.from_config),
    "Autoencoder": (lambda m: asdict(m.cfg), lambda c: Autoencoder(AutoencoderConfig(**{
        **c, "channel_mults": tuple(c["channel_mults"])}))),
    "NoisyClassifier": (lambda m: asdict(m.cfg), lambda c: NoisyClassifier(NoisyClassifierConfig(**{
        **c, "channel_mults": tuple(c["channel_mults"])}))),
    "ImageClassifier": (lambda m: asdict(m.cfg), lambda c: ImageClassifier(ImageClassifierConfig(**c))),
}
STATE_FORMAT = "minidiff-train-state/1"


def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync it, and atomically rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def save_model(model: Checkpointable, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
               info: dict | None = None) -> Path:
    """Write PATH.safetensors and PATH.json; `dtype` float16 halves the file (weights are
    cast back to float32 on load). Returns the JSON path."""
    stem = _stem(path)
    weights = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    st = stem.with_suffix(".safetensors")
    _atomic_write(st, lambda tmp: save_file(weights, tmp))
    kind = type(model).__name__
    if kind not in KINDS:
        raise TypeError(f"cannot checkpoint a {kind}; known kinds: {sorted(KINDS)}")
    meta = {"format": FORMAT, "kind": kind, "config": KINDS[kind][0](model), "dtype": str(dtype).removeprefix("torch."),
            "sha256": _sha256(st), "info": info or {}}
    js = stem.with_suffix(".json")
    _atomic_write(js, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return js


def load_model(path: str | os.PathLike, verify: bool = True) -> Checkpointable:
    """Rebuild a model from PATH.json and load PATH.safetensors into it (float32, eval mode)."""
    stem = _stem(path)
    js, st = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for f in (js, st):
        if not f.exists():
            raise FileNotFoundError(f"checkpoint file {f} is missing; a model checkpoint is a pair "
                                    f"{stem.name}.json + {stem.name}.safetensors")
    try:
        meta = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{js} is not valid JSON ({e}); the checkpoint config is corrupt") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{js} has format {meta.get('format')!r}, expected {FORMAT!r}")
    if verify and meta.get("sha256") != _sha256(st):
        raise ValueError(f"{st} does not match the sha256 recorded in {js}: the weights file is "
                         "corrupt or belongs to another checkpoint")
    kind = meta.get("kind", "DiffusionModel")
    if kind not in KINDS:
        raise ValueError(f"{js} holds a {kind!r}; known kinds: {sorted(KINDS)}")
    model = KINDS[kind][1](meta["config"])
    try:
        model.load_state_dict(_read_tensors(st), strict=True)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"{st} does not fit the architecture in {js}: {e}") from e
    model.info = meta.get("info", {})
    model.sha256 = meta["sha256"]
    return model.float().eval()


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from e


# ---- training state -------------------------------------------------------------------------------

def save_train_state(path: str | os.PathLike, tensors: dict[str, Tensor], state: dict) -> None:
    """One atomic file: tensors in safetensors, `state` (JSON-able) in its metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"minidiff": json.dumps({"format": STATE_FORMAT, **state})}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    from safetensors import safe_open

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
