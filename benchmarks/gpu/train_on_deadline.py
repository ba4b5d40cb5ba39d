"""One `python -m minidiff train` run sized to end before a wall-clock deadline (benchmarks/gpu/run.sh).

A device machine is lent for minutes, so a run's horizon (--steps, which fixes the cosine learning-rate schedule)
is chosen up front from a measured step time: wait at a barrier until every run sharing the GPU has loaded its data,
time `--calibrate` steps into a scratch folder, then train `--steps` = (seconds left - margin) / step time, rounded
down to 50. The run itself is the plain CLI command with that --steps (printed, so it can be documented and re-run).
With `--carried F` (benchmarks/gpu/carry_latents.py) a latent model trains where the images are absent: F's z_0
becomes the run folder's latent cache, and the images the CLI would load are replaced by zeros of the same shape.

    python benchmarks/gpu/train_on_deadline.py --deadline EPOCH --barrier DIR --runs 6 -- --dataset shapes ...
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open

from minidiff import cli
from minidiff.training import tasks
from minidiff.training.checkpoint import save_train_state


def carried_data(path: str):
    """(zeros standing in for the images, captions, the latent cache's tensors and state) from a carried file."""
    with safe_open(path, framework="pt") as f:
        meta, z = f.metadata(), f.get_tensor("z0").float()
    images = torch.zeros(json.loads(meta["shape"]))  # (N, 3, H, W): only len(images) is used once z_0 is cached
    return images, json.loads(meta["captions"]), {"z0": z}, {"key": meta["key"]}


def install_data(carried: str | None):
    """Load the training data once for the calibration and the run (monkeypatching tasks.training_data)."""
    if carried:
        images, captions, tensors, state = carried_data(carried)

        def seed_cache(folder: Path) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            save_train_state(folder / "latents.safetensors", tensors, state)
        return (lambda cfg: (images, captions)), seed_cache
    cache = {}
    real = tasks.training_data

    def load(cfg):
        if "data" not in cache:
            cache["data"] = real(cfg)
        return cache["data"]
    return load, lambda folder: None


def barrier(folder: Path, name: str, runs: int, wait: float = 240.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).touch()
    start = time.time()
    while len(list(folder.iterdir())) < runs and time.time() - start < wait:
        time.sleep(0.5)


def seconds_per_step(args: list[str], steps: int, seed_cache) -> float:
    scratch = Path(tempfile.mkdtemp(prefix="calibrate-"))
    seed_cache(scratch)
    assert 0 == cli.main(["train", *args, "--out", str(scratch), "--steps", str(steps), "--ckpt-every", str(10 * steps),
              "--sample-every", "0"])
    t = [json.loads(line)["seconds"] for line in (scratch / "log.jsonl").read_text().splitlines()]
    skip = steps // 3  # warm-up (cuDNN autotuning, allocator)
    return (t[-1] - t[skip - 1]) / (len(t) - skip)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadline", type=float, required=True, help="epoch seconds by which the run must end")
    ap.add_argument("--margin", type=float, default=25.0, help="seconds kept for the last export")
    ap.add_argument("--barrier", type=Path, required=True)
    ap.add_argument("--runs", type=int, required=True, help="runs sharing the device (they wait for each other)")
    ap.add_argument("--calibrate", type=int, default=30)
    ap.add_argument("--min-steps", type=int, default=50)
    ap.add_argument("--carried", default=None)
    ap.add_argument("train_args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = [x for x in a.train_args if x != "--"]
    out = Path(args[args.index("--out") + 1])
    load, seed_cache = install_data(a.carried)
    tasks.training_data = load
    out.mkdir(parents=True, exist_ok=True)
    seed_cache(out)
    load(cli_config(args))  # the data, before the barrier
    barrier(a.barrier, out.name, a.runs)
    dt = seconds_per_step(args, a.calibrate, seed_cache)
    steps = max(a.min_steps, int(0.9 * (a.deadline - time.time() - a.margin) / dt) // 50 * 50)  # 10% slack
    print(f"[{out.name}] {dt * 1000:.1f} ms/step -> --steps {steps}", flush=True)
    (out / "gpu_run.json").write_text(json.dumps({"ms_per_step": dt * 1000, "steps": steps, "args": args,
                                                  "device": torch.cuda.get_device_name() if torch.cuda.is_available()
                                                  else "cpu"}))
    rc = cli.main(["train", *args, "--steps", str(steps)])
    raise SystemExit(rc)


def cli_config(args: list[str]):
    from minidiff.training.loop import config_from_args

    p = argparse.ArgumentParser()
    for key in ("--dataset", "--data-root", "--image-size", "--n-train", "--seed"):
        p.add_argument(key)
    known, _ = p.parse_known_args(args)
    return config_from_args(**{k: (int(v) if k in ("image_size", "n_train", "seed") else v)
                               for k, v in vars(known).items() if v is not None})


if __name__ == "__main__":
    main()
