"""Shared pytest set-up: `gpu` tests run only where CUDA exists; elsewhere they are skipped, and counted.

Every other test runs on the CPU, also on a GPU machine: "auto" devices (the CLI's and TrainConfig's default)
resolve to $MINIDIFF_DEVICE, set to "cpu" here, so exact-number tests (bit-exact resume, EDICT round trips) keep
the CPU's determinism. The `gpu` tests name their device.
"""

import os

import pytest
import torch

os.environ.setdefault("MINIDIFF_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
