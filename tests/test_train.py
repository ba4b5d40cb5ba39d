"""Training machinery: exact resume after SIGKILL, data parallelism under torchrun, data order, LR."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidiff.training.checkpoint import load_train_state
from minidiff.training.loop import TrainConfig, batch_indices, lr_at

TINY = dict(n_train=96, batch_size=8, ckpt_every=2, sample_every=0, warmup=2, unet="tiny", text_dim=16,
            text_depth=1, lr=3e-3)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
ROOT = Path(__file__).resolve().parents[1]


def run_train(out: Path, steps: int, kill_at: int | None = None) -> subprocess.CompletedProcess:
    cfg = {**TINY, "steps": steps, "out": str(out)}
    code = ("import torch; torch.set_num_threads(1)\n"
            "from minidiff.training.loop import TrainConfig\nfrom minidiff.training.tasks import train\n"
            f"train(TrainConfig(**{cfg!r}), progress=False, _kill_at_step={kill_at!r})")
    return subprocess.run([sys.executable, "-c", code], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)


def final_tensors(out: Path) -> dict:
    tensors, state = load_train_state(out / "state.safetensors")
    return {k: v for k, v in tensors.items()}, state


def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    """Kill -9 after step 5 (checkpoint at 4, so step 5 is lost), re-run the same command: the model, EMA,
    optimiser moments and RNG state at step 8 equal the uninterrupted run's bit for bit."""
    a, b = tmp_path / "straight", tmp_path / "killed"
    assert run_train(a, 8).returncode == 0
    killed = run_train(b, 8, kill_at=5)
    assert killed.returncode == -signal.SIGKILL
    assert final_tensors(b)[1]["step"] == 4  # the last checkpoint before the kill
    resumed = run_train(b, 8)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (ta, sa), (tb, sb) = final_tensors(a), final_tensors(b)
    assert sa["step"] == sb["step"] == 8 and ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert different == []
    assert not list(b.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_resume_refuses_a_state_written_with_another_configuration(tmp_path):
    assert run_train(tmp_path, 2).returncode == 0
    from minidiff.training.tasks import train

    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(**{**TINY, "lr": 1e-4, "steps": 4, "out": str(tmp_path)}), progress=False)


def test_two_process_gloo_run_follows_the_one_process_run(tmp_path):
    """torchrun with 2 CPU processes (gloo) and the same global batch takes the same steps as 1 process:
    each process sees half the batch and DistributedDataParallel averages the gradients. Weights agree to 1e-5
    (float32 sums in another order); the logged loss (of the whole global batch) follows the 1-process run's
    and went down."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_train(one, 6).returncode == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "minidiff", "train", "--threads", "1", "--steps", "6", "--out", str(two),
           *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (t1, _), (t2, s2) = final_tensors(one), final_tensors(two)
    assert s2["step"] == 6
    worst = max((t1[k] - t2[k]).abs().max().item() for k in t1 if k.startswith("model."))
    assert worst < 1e-5
    log = [json.loads(line) for line in (two / "log.jsonl").read_text().splitlines()]
    log1 = [json.loads(line) for line in (one / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))
    assert max(abs(r["loss"] - r1["loss"]) for r, r1 in zip(log, log1, strict=True)) < 1e-5
    assert log[-1]["loss"] < log[0]["loss"]


def run_ddp(out: Path, steps: int, kill_at: int | None = None, port: int = 29527) -> subprocess.CompletedProcess:
    """torchrun with 2 CPU processes (gloo) of the TINY diffusion run; kill_at: both processes SIGKILL themselves
    right after that step (torchrun then reports the failure)."""
    script = out.parent / f"{out.name}_train.py"
    cfg = {**TINY, "steps": steps, "out": str(out)}
    script.write_text("import torch; torch.set_num_threads(1)\nfrom minidiff.training.loop import TrainConfig\n"
                      "from minidiff.training.tasks import train\n"
                      f"train(TrainConfig(**{cfg!r}), progress=False, _kill_at_step={kill_at!r})\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(script)]
    return subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_two_process_ddp_run_killed_and_resumed_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Under DistributedDataParallel, kill -9 both processes after step 5 (checkpoint at 4) and relaunch the same
    torchrun command: model, EMA, optimiser moments and RNG at step 8 equal the uninterrupted 2-process run's bit
    for bit (gloo's all-reduce of two processes is deterministic)."""
    a, b = tmp_path / "straight", tmp_path / "killed"
    proc = run_ddp(a, 8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run_ddp(b, 8, kill_at=5, port=29528).returncode != 0
    assert final_tensors(b)[1]["step"] == 4
    resumed = run_ddp(b, 8, port=29529)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (ta, sa), (tb, sb) = final_tensors(a), final_tensors(b)
    assert sa["step"] == sb["step"] == 8 and ta.keys() == tb.keys()
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []


def test_batch_indices_visit_every_example_once_per_epoch_and_are_reproducible():
    n, B = 50, 8
    first_epoch = torch.cat([batch_indices(s, B, n, seed=3) for s in range(7)])[:n]  # 56 >= 50 positions
    assert sorted(first_epoch.tolist()) == list(range(n))
    assert torch.equal(batch_indices(5, B, n, 3), batch_indices(5, B, n, 3))
    assert not torch.equal(batch_indices(5, B, n, 3), batch_indices(5, B, n, 4))


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = TrainConfig(lr=1e-3, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-4) and lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 60) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way: cos = 0
    assert lr_at(cfg, 110) == pytest.approx(1e-4) and lr_at(cfg, 500) == pytest.approx(1e-4)


def test_autoencoder_task_trains_and_exports_a_model_with_unit_variance_latents(tmp_path):
    from minidiff.datasets.shapes import shapes_tensors
    from minidiff.nn.autoencoder import Autoencoder
    from minidiff.training.checkpoint import load_model
    from minidiff.training.tasks import train

    cfg = TrainConfig(task="autoencoder", n_train=64, batch_size=8, steps=4, ckpt_every=4, warmup=1,
                      ae_channels=8, out=str(tmp_path))
    train(cfg, progress=False)
    ae = load_model(tmp_path / "model")
    assert isinstance(ae, Autoencoder)
    images, _ = shapes_tensors(64, seed=0, split="train")  # the training set, which is also the probe set
    with torch.no_grad():
        z = ae.to_latent(images)
    assert z.shape == (64, 4, 8, 8)
    assert abs(z.double().std().item() - 1) < 1e-4  # float32 encoder outputs; float64 statistics
    log = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4


def test_min_snr_weight_turns_the_eps_loss_into_the_clipped_snr_weighted_x0_loss():
    """Hang et al. (2023): w_t ||eps - eps_hat||^2 = min(SNR_t, gamma) ||x_0 - x0_hat||^2 (x0_hat from eps_hat by eq. 4
    inverted), to float64 round-off; w_t = 1 wherever SNR_t <= gamma; a bad gamma is refused."""
    from minidiff.elbo import min_snr_weight, snr
    from minidiff.gaussian import predict_x0, q_sample
    from minidiff.schedule import Schedule

    sched, g = Schedule.linear(1000), torch.Generator().manual_seed(0)
    t = torch.arange(1, 1001)
    x0, eps, eps_hat = (torch.randn(1000, 3, generator=g, dtype=torch.float64) for _ in range(3))
    x_t = q_sample(sched, x0, t, eps)
    w = min_snr_weight(sched, t, 5.0)
    lhs = w * (eps - eps_hat).pow(2).sum(1)
    rhs = snr(sched)[t].clamp(max=5.0) * (x0 - predict_x0(sched, x_t, t, eps_hat)).pow(2).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-12)
    low = snr(sched)[t] <= 5.0
    assert low.any() and (~low).any() and bool((w[low] == 1).all()) and bool((w[~low] < 1).all())
    with pytest.raises(ValueError, match="gamma"):
        min_snr_weight(sched, t, 0.0)
    with pytest.raises(ValueError, match="--min-snr-gamma must be a finite number > 0"):
        TrainConfig(min_snr_gamma=-1.0)


def test_min_snr_gamma_reweights_the_training_loss(tmp_path):
    """One training step with and without --min-snr-gamma 5 (and with a gamma above every SNR) sees the same batch
    and noise; the logged losses differ with gamma 5 (the option reaches the loss) and not with the huge gamma
    (every weight is 1)."""
    from minidiff.training.tasks import train

    logs = {}
    for name, gamma in (("plain", None), ("min_snr", 5.0), ("huge", 1e12)):
        out = tmp_path / name
        train(TrainConfig(**{**TINY, "steps": 1, "out": str(out), "min_snr_gamma": gamma}), progress=False)
        logs[name] = json.loads((out / "log.jsonl").read_text().splitlines()[0])["loss"]
    assert logs["min_snr"] < logs["plain"] and logs["huge"] == logs["plain"]


def test_init_starts_the_run_from_a_checkpoint_and_refuses_one_that_does_not_fit(tmp_path):
    """--init (fine-tuning): with a vanishing learning rate the run's exported EMA after one step is the
    checkpoint's weights; a checkpoint of another width or vocabulary is refused before training."""
    from minidiff.training.checkpoint import load_model
    from minidiff.training.tasks import build_model, init_from, train, training_data

    base_run = train(TrainConfig(**{**TINY, "steps": 2, "out": str(tmp_path / "base")}), progress=False)
    base = load_model(base_run / "model")
    cfg = TrainConfig(**{**TINY, "steps": 1, "lr": 1e-30, "init": str(base_run / "model.json"),
                         "out": str(tmp_path / "ft")})
    tuned = load_model(train(cfg, progress=False) / "model")
    for name, w in base.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], w, rtol=0, atol=1e-20)
    _, captions = training_data(cfg)
    with pytest.raises(ValueError, match="do not fit this run's model"):
        init_from(build_model(TrainConfig(**{**TINY, "text_dim": 8}), captions), base)
    with pytest.raises(ValueError, match="vocabulary differs"):
        init_from(build_model(cfg, captions[:1]), base)
