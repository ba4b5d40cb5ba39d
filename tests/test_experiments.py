"""Experiment functions (lectures 2-3): plumbing on a tiny random DiffusionModel, numbers on a fake one.

The real tables need the trained `shapes` model; here a randomly initialised tiny model checks that
the functions run end to end and return well-formed rows, and an eps-model that ignores x_t, wrapped
with the DiffusionModel interface, checks the one number we know exactly: its round trip is perfect.
"""

import pytest
import torch

from minidiff.bench.eta_grid import eta_steps_grid
from minidiff.bench.roundtrip import DDIM_PAPER_CIFAR10, cfg_inversion_table, ddim_roundtrip_table
from minidiff.bench.tables import reconstruction_mse
from minidiff.nn.diffusion_model import DiffusionModel
from minidiff.nn.text import TextEncoderConfig, Tokenizer
from minidiff.nn.unet import UNetConfig
from minidiff.schedule import Schedule

CAPTIONS = ["a red circle", "a blue square"]


def tiny_model(seed: int = 0) -> DiffusionModel:
    torch.manual_seed(seed)
    tok = Tokenizer.from_captions(CAPTIONS)
    model = DiffusionModel(UNetConfig.tiny(context_dim=16), Schedule.cosine(100), tok,
                           TextEncoderConfig(tok.vocab_size, tok.max_len, 16, 1, 2))
    with torch.no_grad():  # the output conv starts at zero: perturb so eps depends on x_t, t and the prompt
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


class XIndependentModel:
    """The DiffusionModel interface around eps(x_t, t, c) = f(t, c): fixed random images per (t, prompt)."""

    conditional = True

    def __init__(self, T: int = 100):
        self.schedule = Schedule.cosine(T)
        self.table = torch.randn(2, T + 1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def encode_text(self, prompts):
        return torch.tensor([[[float(p != "")]] for p in prompts], dtype=torch.float64)  # (B, 1, 1)

    def null_context(self, batch: int = 1):
        return self.encode_text([""] * batch)

    def __call__(self, x_t, t, context=None):
        return self.table[(context[:, 0, 0] != 0).long(), t].to(x_t)


def images(n: int = 2, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(dtype)


def test_reconstruction_mse_maps_pixels_to_unit_range():
    x0 = torch.zeros(2, 3, 4, 4)
    assert reconstruction_mse(x0 + 1, x0 - 1).tolist() == [1.0, 1.0]  # white vs black: MSE 1 in [0, 1] units
    assert reconstruction_mse(x0 + 0.2, x0).allclose(torch.tensor([0.01, 0.01]))


def test_roundtrip_and_cfg_tables_run_on_a_tiny_random_model_and_return_rows(capsys):
    model = tiny_model()
    rows = ddim_roundtrip_table(model, images(), CAPTIONS, steps_list=(5, 10), batch=1)
    assert [r["steps"] for r in rows] == [5, 10] and rows[1]["ddim_paper_cifar10"] == DDIM_PAPER_CIFAR10[10]
    assert all(r["mse"] >= 0 and r["se"] >= 0 for r in rows)
    null_rows = ddim_roundtrip_table(model, images(), None, steps_list=(5,))  # null-context inversion
    assert null_rows[0]["mse"] >= 0
    rows = cfg_inversion_table(model, images(), CAPTIONS, ws=(1.0, 7.5), steps=5)
    assert [r["w"] for r in rows] == [1.0, 7.5] and all(r["mse"] >= 0 for r in rows)
    out = capsys.readouterr().out
    assert "| steps | MSE (this model) | DDIM paper, CIFAR-10 |" in out and "| w | reconstruction MSE |" in out
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        ddim_roundtrip_table(model, images(), CAPTIONS[:1], steps_list=(5,))


def test_roundtrip_of_an_x_independent_model_is_perfect_at_every_step_count_and_guidance():
    """Exactness survives the table plumbing (batching, contexts, CFG): MSE below 1e-20 in float64 (measured 0
    up to round-off), for every step count including the full grid, and for w in {1, 7.5}."""
    model, x0 = XIndependentModel(), images(3, torch.float64)
    rows = ddim_roundtrip_table(model, x0, ["a", "b", "c"], steps_list=(1, 10, 100), batch=2)
    assert max(r["mse"] for r in rows) < 1e-20
    rows = cfg_inversion_table(model, x0, ["a", "b", "c"], ws=(1.0, 7.5), steps=10)
    assert max(r["mse"] for r in rows) < 1e-20


def test_eta_steps_grid_saves_a_figure_and_converges_for_eta_zero(tmp_path):
    rows = eta_steps_grid(tiny_model(), "a red circle", etas=(0.0, 1.0), steps=(2, 5, 10), seed=3,
                          path=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert [(r["eta"], r["steps"]) for r in rows] == [(0.0, 2), (0.0, 5), (0.0, 10), (1.0, 2), (1.0, 5), (1.0, 10)]
    assert rows[2]["change_vs_most_steps"] == 0.0 and rows[5]["change_vs_most_steps"] == 0.0
