"""UNet throughput on this CPU: images/s and achieved GFLOP/s beside a matmul reference.

For each UNet config (the shipped 3x32x32 `UNetConfig.shapes_small()` with fused and
explicit attention, a 4x8x8 latent model, optionally a 3x64x64 pixel model):

- parameter count;
- FLOPs per image of the forward and of the backward pass, counted once with
  `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention
  matmuls; elementwise ops such as GroupNorm and SiLU are not counted);
- forward images/s (eval, no_grad) and train images/s (zero_grad + forward + MSE loss
  + backward; the AdamW step is EXCLUDED), median over timed repeats after warm-up;
- achieved GFLOP/s = FLOPs per image x images/s, and its fraction of the float32
  matmul GFLOP/s measured in the same run (the best of 1024^3 and 2048^3).

A 3x3 conv 64->64 on (64, 64, 32, 32) is timed too: the UNet is mostly convolutions.

Run:  python benchmarks/unet_throughput.py                 # full table, ~minutes
      python benchmarks/unet_throughput.py --threads 2 --batch 1 64 --repeats 7 --pixel64
      python benchmarks/unet_throughput.py --quick         # seconds-long smoke run

The numbers depend on the machine, its thread count and whatever else runs on it:
compare only numbers measured side by side in one run, never across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from minidiff.nn.unet import UNet, UNetConfig

CONTEXT_LEN, CONTEXT_DIM = 24, 64  # the text encoder's (B, max_len, dim)
LATENT = UNetConfig(
    in_channels=4, image_size=8, base_channels=64, channel_mults=(1, 2), num_res_blocks=2,
    attention_resolutions=(8, 4), heads=4, dim_head=32, context_dim=CONTEXT_DIM, norm_groups=32,
)
PIXEL64 = dataclasses.replace(UNetConfig.shapes_small(), image_size=64, channel_mults=(1, 2, 2, 2))


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_rates(repeats: int, warmup: int, conv_batch: int) -> list[tuple[str, float, float]]:
    """(name, GFLOP per call, GFLOP/s) for float32 matmuls and a 3x3 conv 64->64 at 32x32."""
    ops = []
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        # n^2 outputs, n multiply-adds each
        ops.append((f"matmul {n}x{n} @ {n}x{n}", 2 * n**3, lambda a=a, b=b: a @ b))
    x, w = torch.randn(conv_batch, 64, 32, 32), torch.randn(64, 64, 3, 3)
    # (B * 64 * 32 * 32) outputs, (64 * 3 * 3) multiply-adds each
    ops.append((f"conv3x3 64->64 on ({conv_batch}, 64, 32, 32)", 2 * x.numel() * 64 * 9,
                lambda: F.conv2d(x, w, padding=1)))
    return [(name, flops / 1e9, flops / 1e9 / median_seconds(fn, repeats, warmup)) for name, flops, fn in ops]


def unet_inputs(cfg: UNetConfig, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_t (B, C, H, W), t (B,), context (B, L, D) of the right shapes, random values."""
    x_t = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    return x_t, torch.randint(0, 1000, (batch,)), torch.randn(batch, CONTEXT_LEN, CONTEXT_DIM)


def flops_per_image(cfg: UNetConfig, batch: int = 2) -> tuple[float, float]:
    """(forward, backward) FLOPs per image, counted with FlopCounterMode.

    Counted on the explicit attention path: the CPU kernel behind
    F.scaled_dot_product_attention is not in FlopCounterMode's registry, and the
    arithmetic is the same either way.
    """
    model = UNet(dataclasses.replace(cfg, fused_attention=False))
    x_t, t, context = unet_inputs(cfg, batch)
    with FlopCounterMode(display=False) as fwd:
        loss = F.mse_loss(model(x_t, t, context), torch.randn_like(x_t))
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return fwd.get_total_flops() / batch, bwd.get_total_flops() / batch


def time_model(model: UNet, batch: int, repeats: int, warmup: int) -> tuple[float, float]:
    """(forward, train step) images/s; the train step is forward + MSE + backward, no AdamW."""
    x_t, t, context = unet_inputs(model.cfg, batch)
    target = torch.randn_like(x_t)

    def forward():
        with torch.no_grad():
            model(x_t, t, context)

    def train_step():
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x_t, t, context), target).backward()

    model.eval()
    fwd = batch / median_seconds(forward, repeats, warmup)
    model.train()
    return fwd, batch / median_seconds(train_step, repeats, warmup)


def unet_rows(name: str, cfg: UNetConfig, args: argparse.Namespace, matmul: float) -> list[str]:
    """One markdown row per batch size for one config."""
    torch.manual_seed(0)
    model = UNet(cfg)
    f_fwd, f_bwd = flops_per_image(cfg)
    attn = "fused" if cfg.fused_attention else "explicit"
    rows = []
    for batch in args.batch:
        fwd, train = time_model(model, batch, args.repeats, args.warmup)
        gf_fwd, gf_train = f_fwd * fwd / 1e9, (f_fwd + f_bwd) * train / 1e9
        rows.append(
            f"| {name} | {attn} | {model.num_params():,} | {f_fwd / 1e9:.3f} | {f_bwd / 1e9:.3f} | {batch} "
            f"| {fwd:.1f} | {gf_fwd:.1f} | {gf_fwd / matmul:.0%} "
            f"| {train:.1f} | {gf_train:.1f} | {gf_train / matmul:.0%} |"
        )
    return rows


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo, else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report(args: argparse.Namespace) -> str:
    """The whole markdown report: machine, reference ops, UNet table."""
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    lines = [
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs, 1-min load average at start: {load}",
        "",
        "| reference op (float32) | GFLOP/call | GFLOP/s | / matmul |",
        "| --- | ---: | ---: | ---: |",
    ]
    refs = reference_rates(args.repeats, args.warmup, conv_batch=8 if args.quick else 64)
    matmul = max(rate for name, _, rate in refs if name.startswith("matmul"))
    lines += [f"| {name} | {gflop:.2f} | {rate:.1f} | {rate / matmul:.0%} |" for name, gflop, rate in refs]
    pixel = UNetConfig.shapes_small(context_dim=CONTEXT_DIM)
    configs = [
        ("pixel 3x32x32 shapes_small", pixel),
        ("pixel 3x32x32 shapes_small", dataclasses.replace(pixel, fused_attention=False)),
        ("latent 4x8x8", LATENT),
    ] + ([("pixel 3x64x64", PIXEL64)] if args.pixel64 else [])
    lines += [
        "",
        "| model | attention | params | fwd GFLOP/img | bwd GFLOP/img | batch | fwd img/s | fwd GFLOP/s "
        "| fwd / matmul | train img/s | train GFLOP/s | train / matmul |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, cfg in configs:
        lines += unet_rows(name, cfg, args, matmul)
    lines += [
        "",
        f"Median of {args.repeats} timed repeat(s) after {args.warmup} warm-up call(s). train = zero_grad + forward + "
        "MSE + backward (AdamW step excluded). FLOPs from FlopCounterMode (matmul/conv/attention only). "
        f"'/ matmul' = achieved GFLOP/s over the best float32 matmul, {matmul:.1f} GFLOP/s, this run.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes to time")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--pixel64", action="store_true", help="also time a 3x64x64 pixel UNet")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 1 2, 1 repeat, 1 warm-up")
    parser.add_argument("--markdown-out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.warmup = [1, 2], 1, 1
    torch.set_num_threads(args.threads)
    text = report(args)
    print(text)
    if args.markdown_out:
        args.markdown_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
