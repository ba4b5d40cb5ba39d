"""Checkpoints: exact round trip, and clear refusals of corrupt, mismatched or missing files."""

import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from minidiff.nn.diffusion_model import DiffusionModel
from minidiff.nn.text import TextEncoderConfig, Tokenizer
from minidiff.nn.unet import UNetConfig
from minidiff.schedule import Schedule
from minidiff.training import pretrained
from minidiff.training.checkpoint import load_model, save_model


def tiny_model(seed: int = 0, base: int = 8) -> DiffusionModel:
    torch.manual_seed(seed)
    tok = Tokenizer.from_captions(["a red circle", "a blue square"])
    cfg = UNetConfig.tiny(context_dim=16)
    cfg.base_channels = base
    model = DiffusionModel(cfg, Schedule.cosine(100), tok, TextEncoderConfig(tok.vocab_size, tok.max_len, 16, 1, 2))
    with torch.no_grad():  # the output conv starts at zero; perturb so outputs depend on every weight
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def outputs(model: DiffusionModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([3, 70])
    with torch.no_grad():
        return model(x, t, model.encode_text(["a red circle", "a blue square"]))


def test_float32_round_trip_is_exact_and_keeps_config_and_vocabulary(tmp_path):
    m = tiny_model()
    save_model(m, tmp_path / "m", info={"note": "x"})
    back = load_model(tmp_path / "m.json")
    assert torch.equal(outputs(m), outputs(back))
    assert back.tokenizer.words == m.tokenizer.words and back.schedule.spec == m.schedule.spec
    assert back.info == {"note": "x"} and torch.equal(back.schedule.alpha_bar, m.schedule.alpha_bar)


def test_float16_export_is_half_the_size_and_close(tmp_path):
    m = tiny_model()
    save_model(m, tmp_path / "a")
    save_model(m, tmp_path / "b", dtype=torch.float16)
    a, b = (tmp_path / "a.safetensors").stat().st_size, (tmp_path / "b.safetensors").stat().st_size
    assert b < 0.55 * a
    ref, half = outputs(m), outputs(load_model(tmp_path / "b"))
    assert (half - ref).abs().max() < 2e-3 * ref.abs().max()


def test_a_corrupt_weights_file_is_refused(tmp_path):
    save_model(tiny_model(), tmp_path / "m")
    st = tmp_path / "m.safetensors"
    data = bytearray(st.read_bytes())
    data[-10] ^= 0xFF
    st.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "m")
    st.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_model(tmp_path / "m", verify=False)


def legacy_pair(model, stem) -> None:
    """A first-format checkpoint: STEM.safetensors (weights only) + STEM.json (config, the file's sha256)."""
    st = stem.with_suffix(".safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    meta = {"format": "minidiff-model/1", "kind": "DiffusionModel", "config": model.config(), "dtype": "float32",
            "sha256": hashlib.sha256(st.read_bytes()).hexdigest(), "info": {}}
    stem.with_suffix(".json").write_text(json.dumps(meta))


def test_weights_of_another_architecture_are_refused_with_a_clear_error(tmp_path):
    """Weights that do not fit their config are refused: by the hash, and (unverified) by the shapes. In the
    one-file format that means a header edited to another architecture; in the first format (two files) a
    weights file swapped for another checkpoint's."""
    legacy_pair(tiny_model(base=8), tmp_path / "small")
    legacy_pair(tiny_model(base=12), tmp_path / "big")
    (tmp_path / "small.safetensors").write_bytes((tmp_path / "big.safetensors").read_bytes())
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "small")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_model(tmp_path / "small", verify=False)
    save_model(tiny_model(base=8), tmp_path / "one")
    with safe_open(str(tmp_path / "one.safetensors"), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["minidiff"]), {k: f.get_tensor(k) for k in f.keys()}
    meta["config"]["unet"]["base_channels"] = 12
    save_file(tensors, str(tmp_path / "one.safetensors"), metadata={"minidiff": json.dumps(meta)})
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "one")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_model(tmp_path / "one", verify=False)


def test_missing_files_and_unknown_formats_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors is missing"):
        load_model(tmp_path / "nothing")
    legacy_pair(tiny_model(), tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["format"] = "something-else/9"
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="expected 'minidiff-model/1'"):
        load_model(tmp_path / "m")
    save_model(tiny_model(), tmp_path / "n")
    with safe_open(str(tmp_path / "n.safetensors"), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["minidiff"]), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(tmp_path / "n.safetensors"), metadata={"minidiff": json.dumps({**meta, "format": "x/9"})})
    with pytest.raises(ValueError, match="expected 'minidiff-model/2'"):
        load_model(tmp_path / "n")
    with pytest.raises(ValueError, match="no shipped checkpoint named 'nope'"):
        pretrained.load("nope")


def test_an_autoencoder_checkpoint_round_trips_with_its_scale_factor(tmp_path):
    from minidiff.nn.autoencoder import Autoencoder, AutoencoderConfig

    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(base_channels=8)).eval()
    ae.scale_factor.fill_(0.37)
    save_model(ae, tmp_path / "ae")
    back = load_model(tmp_path / "ae")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert isinstance(back, Autoencoder) and back.scale_factor.item() == pytest.approx(0.37)
    with torch.no_grad():
        assert torch.equal(ae.to_latent(x), back.to_latent(x))
