"""Thread counts for tiny models: the 2-D toy's training speed alone and beside a busy neighbour process.

The toy eps-model (lecture 1, `make demo`) is an MLP whose ops take microseconds. With torch's default of one
thread per core, each op is split across the cores and every split waits for the slowest thread; when another
process keeps a core busy, that thread is descheduled for a whole time slice and the toy crawls. `train_toy`
therefore runs on one thread (`minidiff.devices.num_threads`). This script shows why, in one run:

| threads | alone (it/s) | beside a busy process (it/s) |

The neighbour is a separate Python process doing float32 matmuls on one thread (what a second training job, a
notebook kernel or a test run does to this machine).

Run:  python benchmarks/threads.py            # about a minute
      python benchmarks/threads.py --steps 200
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from minidiff.datasets.toy import two_moons
from minidiff.elbo import L_simple
from minidiff.nn.toy import ToyMLP
from minidiff.schedule import Schedule

NEIGHBOUR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
             "while True:\n    a = torch.tanh(a @ a)\n")


def toy_its(threads: int, steps: int) -> float:
    """Training iterations per second of the toy (batch 256, Adam) on `threads` threads, after 20 warm-up steps."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    sched, data = Schedule.linear(1000), two_moons(20_000, g)
    model = ToyMLP(dim=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)

    def step():
        loss = L_simple(model, sched, data[torch.randint(0, len(data), (256,), generator=g)], generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    args = ap.parse_args(argv)
    cores = torch.get_num_threads()
    counts = sorted({1, cores})
    alone = {n: toy_its(n, args.steps) for n in counts}
    busy = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
    try:
        time.sleep(1.0)
        beside = {n: toy_its(n, args.steps) for n in counts}
    finally:
        busy.kill()
        busy.wait()
    print(f"\nThe 2-D toy's training speed (batch 256, {args.steps} steps; torch's default is {cores} threads)\n")
    print("| threads | alone (it/s) | beside a busy process (it/s) | slow-down |\n|---|---|---|---|")
    for n in counts:
        print(f"| {n} | {alone[n]:.0f} | {beside[n]:.0f} | {alone[n] / beside[n]:.1f}x |")


if __name__ == "__main__":
    main()
