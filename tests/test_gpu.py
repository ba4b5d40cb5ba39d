"""The same paths on every device: sampling, inversion, every editing method, training steps, the benchmarks.

Each test is parametrized over DEVICES: its CPU twin runs everywhere (it checks the test itself and the CPU
path), its `gpu` twin only where CUDA exists (tests/conftest.py skips it elsewhere; pytest counts it as
skipped). On the GPU the result must be on the GPU and must match the CPU result from the same inputs: the same
noise (drawn on the CPU from a seed and moved, `schedule.standard_normal`), the same weights, float32. cuDNN and
cuBLAS sum in other orders (and convolutions may use TF32), so GPU and CPU agree to 1e-2 on images in [-1, 1],
not to round-off; the CPU twin compares the CPU with itself, exactly.
"""

import subprocess
import sys

import pytest
import torch

from minidiff.devices import autocast, resolve_device
from minidiff.edict import edict_edit, edict_invert, edict_sample
from minidiff.guidance import Guidance
from minidiff.inversion import ddim_invert, sdedit
from minidiff.null_text import null_text_invert, null_text_sample
from minidiff.p2p import LocalBlend, Refine, Replace, Reweight, p2p_sample
from minidiff.samplers import ddim_sample, ddpm_sample
from minidiff.schedule import Schedule, timesteps
from tests.test_experiments import images, tiny_model
from tests.test_train import ENV, ROOT, TINY

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
SRC, TGT = ["a red circle"], ["a blue circle"]
GRID = timesteps(100, 4)
TOL = 1e-2


def both(run, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """run(model, x0) on the CPU and on `device` (the same weights and inputs, moved): (cpu result, device result
    moved to the CPU). Only the GPU twin can catch a tensor made on the wrong device; the CPU twin checks that the
    test itself runs and is deterministic."""
    cpu = run(tiny_model(), images(1))
    dev = torch.device(device)
    out = run(tiny_model().to(dev), images(1).to(dev))
    assert out.device.type == dev.type, f"the result is on {out.device}, not {dev}"
    return cpu, out.cpu()


def close(a: torch.Tensor, b: torch.Tensor, device: str) -> None:
    if device == "cpu":
        assert torch.equal(a, b)
    else:
        assert (a - b).abs().max().item() < TOL * max(1.0, a.abs().max().item())  # relative beyond [-1, 1]


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["ddpm", "ddim eta=1", "ddim cfg", "ddim inversion", "sdedit", "null-text",
                                  "edict"])
def test_sampling_and_inversion_run_on_the_device_of_their_inputs(device, path):
    def run(model, x0):
        S, ctx, g = model.schedule, model.encode_text(SRC), Guidance.of(model, 3.0)
        if path == "ddpm":
            return ddpm_sample(model, Schedule.cosine(6), x0, context=ctx, generator=gen())
        if path == "ddim eta=1":
            return ddim_sample(model, S, x0, grid=GRID, eta=1.0, context=ctx, generator=gen())
        if path == "ddim cfg":
            return ddim_sample(model, S, x0, grid=GRID, context=ctx, guidance=g)
        if path == "ddim inversion":
            return ddim_invert(model, S, x0, context=ctx, grid=GRID, guidance=g)
        if path == "sdedit":
            return sdedit(model, S, x0, 50, steps=4, context=ctx, generator=gen(), guidance=g)
        if path == "null-text":
            return null_text_sample(model, S, null_text_invert(model, S, x0, ctx, g, grid=GRID, inner_steps=3), ctx)
        y = edict_sample(model, S, *edict_invert(model, S, x0, grid=GRID, context=ctx, guidance=g), grid=GRID,
                         context=ctx, guidance=g)[0]
        return torch.cat([y, edict_edit(model, S, x0, ctx, model.encode_text(TGT), grid=GRID, guidance=g)[0]])

    close(*both(run, device), device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("edit", ["replace + self + local blend", "refine", "reweight"])
def test_every_prompt_to_prompt_edit_runs_on_the_device_of_its_inputs(device, edit):
    def run(model, x0):
        tok = model.tokenizer
        if edit == "refine":
            ctrl = Refine(tok, SRC, ["a red circle a blue square"], GRID)
        elif edit == "reweight":
            ctrl = Reweight(tok, SRC, TGT, GRID, weights={"blue": 2.0}, base_edit=Replace(tok, SRC, TGT, GRID))
        else:
            blend = LocalBlend.for_model(model, SRC, TGT, [["red"]], [["blue"]], start=0.0)
            ctrl = Replace(tok, SRC, TGT, GRID, self_steps=0.5, local_blend=blend)
        return torch.cat(p2p_sample(model, ctrl, x0, guidance=Guidance.of(model, 3.0)))

    close(*both(run, device), device)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_sampling_stays_close_to_float32_and_returns_float32(device):
    """Under bf16 autocast the UNet's matmuls run in bfloat16 but eps comes back in float32, so the samplers'
    updates stay float32; 4 DDIM steps from the same noise stay within 0.1 of the float32 samples."""
    dev = torch.device(device)
    model, x = tiny_model().to(dev), images(1).to(dev)
    ctx = model.encode_text(SRC)
    ref = ddim_sample(model, model.schedule, x, grid=GRID, context=ctx)
    with autocast(dev, "bf16"):
        low = ddim_sample(model, model.schedule, x, grid=GRID, context=ctx)
    assert low.dtype == torch.float32 and 0 < (low - ref).abs().max().item() < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_on_the_device_follow_the_cpu_run_and_resume(device, tmp_path):
    """6 steps of the tiny diffusion task with `device`: the logged losses follow the CPU run's (to 1e-2 on the GPU,
    exactly on the CPU twin), the CPU twin's weights equal the CPU run's, and the exported model loads on the CPU.
    (GPU weights are not compared: Adam's first steps are ~lr * sign(g), so a rounding sign flip moves a weight
    by ~2 lr.)"""
    import json

    from minidiff.training.checkpoint import load_model
    from tests.test_train import final_tensors

    runs = {}
    for name, dev in (("cpu", "cpu"), ("dev", device)):
        out = tmp_path / name
        code = ("import torch; torch.set_num_threads(1)\nfrom minidiff.training.loop import TrainConfig\n"
                "from minidiff.training.tasks import train\n"
                f"train(TrainConfig(**{ {**TINY, 'steps': 6, 'out': str(out), 'device': dev}!r}), progress=False)")
        proc = subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
        runs[name] = (*final_tensors(out), losses)
        assert next(load_model(out / "model").parameters()).device.type == "cpu"
    (ta, sa, la), (tb, sb, lb) = runs["cpu"], runs["dev"]
    assert sa["step"] == sb["step"] == 6 and len(la) == len(lb) == 6
    gap = max(abs(a - b) for a, b in zip(la, lb, strict=True))
    if device == "cpu":
        assert gap == 0.0 and all(torch.equal(ta[k], tb[k]) for k in ta)
    else:
        assert gap < TOL


def test_resolve_device_names_the_default_and_refuses_a_missing_gpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MINIDIFF_DEVICE", "auto")
    assert resolve_device(None).type in ("cuda", "mps", "cpu")
    monkeypatch.setenv("MINIDIFF_DEVICE", "cpu")  # the override "auto" honours
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv("MINIDIFF_DEVICE", "tpu")
    with pytest.raises(ValueError, match="cuda:N or mps"):
        resolve_device(None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA devices"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="cuda:N or mps"):
        resolve_device("tpu")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("table", [["null-text", "--n", "2", "--w", "3", "--steps", "10"],
                                   ["edit", "--n", "3", "--steps", "10", "--edict-steps", "10"],
                                   ["ddim-roundtrip", "--n", "2", "--steps", "10"]])
def test_benchmark_tables_run_on_cuda(table, tmp_path):
    from minidiff.training import pretrained

    if not pretrained.available("shapes"):
        pytest.skip("the shipped shapes checkpoint is missing")
    proc = subprocess.run([sys.executable, "-m", "minidiff", "bench", *table, "--device", "cuda",
                           "--out", str(tmp_path)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|---" in proc.stdout


@pytest.mark.gpu
def test_speed_benchmark_prints_the_gpu_table():
    pytest.importorskip("diffusers")
    proc = subprocess.run([sys.executable, "benchmarks/speed.py", "--device", "cuda", "--quick"], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "minidiff vs diffusers" in proc.stdout and "cuda" in proc.stdout
