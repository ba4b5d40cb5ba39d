"""Shared pytest set-up: `gpu` tests run only where CUDA exists; elsewhere they are skipped, and counted.

Every other test runs on the CPU, also on a GPU machine: "auto" devices (the CLI's and TrainConfig's default)
resolve to $MINIDIFF_DEVICE, set to "cpu" here, so exact-number tests (bit-exact resume, EDICT round trips) keep
the CPU's determinism. The `gpu` tests name their device.

Under pytest-xdist (`make test` runs `pytest -n auto`) each of the N workers gets cores / N torch threads, and so do
the processes it starts (notebook kernels, torchrun, the CLI) through OMP_NUM_THREADS: N workers with all the
cores each would oversubscribe the CPU (benchmarks/threads.py: 4x slower tiny ops beside a busy neighbour).
"""

import os

import pytest
import torch

os.environ.setdefault("MINIDIFF_DEVICE", "cpu")


def threads_per_worker(workers: int) -> int:
    """The torch threads of one of `workers` test processes sharing this machine's cores (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _threads = threads_per_worker(int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


def pytest_collection_modifyitems(config, items):
    """`slow` tests first (a stable sort; the order within each group is kept): under xdist the long notebook runs
    then start early instead of being the last worker's tail. Without CUDA, `gpu` tests are marked skipped."""
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
