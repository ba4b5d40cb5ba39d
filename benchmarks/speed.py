"""minidiff beside Hugging Face diffusers, and minidiff's own method ratios, measured side by side in one run.

Every row times both sides in the same process, alternating, so the ratio is fair even on a busy machine; compare
ratios, never absolute numbers across runs. The diffusers UNet is a `UNet2DConditionModel` built to exactly the
same 1,687,075 parameters as `UNetConfig.shapes_small()` (channels 32/64/64, one layer per block, cross-attention
at 16x16 and 8x8, head dim 16, 8 norm groups, context dim 64).

| row | what is timed | target |
|---|---|---|
| UNet forward | eval forward, batch 64, no_grad | minidiff >= 1.5x diffusers |
| UNet train step | forward + MSE + backward + AdamW step, batch 64 | >= 1.5x |
| DDIM overhead | 50 steps, batch 1, a free eps-model (the sampler alone) | >= 1.0x (no worse) |
| DDIM + CFG | 50 steps, w = 3, each side's own UNet, batch 16 | >= 1.5x |
| P2P / 2-prompt DDIM | p2p_sample (Replace, 50 steps, CFG) vs ddim_sample on the same 2 prompts | <= 1.15x |
| EDICT / DDIM | edict_sample vs ddim_sample, 50 steps, CFG | floor 2.0x (two model calls a step) |
| null-text / DDIM inversion | null_text_invert (10 inner steps) vs ddim_invert, 50 steps, 1 image | reported |
| roofline | the train step's FLOP/s as a fraction of the float32 matmul FLOP/s | reported |
| bf16 autocast | forward speed-up (batch 16), and PSNR of bf16 vs fp32 samples from the same noise | reported |

Run:  python benchmarks/speed.py                 # the CPU table (about 8 minutes on 2 cores)
      python benchmarks/speed.py --quick         # a smoke run in seconds (fewer repeats, smaller batches)
      python benchmarks/speed.py --device cuda   # the same table on a GPU; says so and exits when there is none
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from minidiff.guidance import Guidance
from minidiff.nn.diffusion_model import DiffusionModel
from minidiff.nn.unet import UNet, UNetConfig
from minidiff.samplers import ddim_sample
from minidiff.schedule import Schedule

L, D = 24, 64  # the text encoder's context (B, L, D)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def paired_seconds(fns: list[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each fn, timed alternately (a, b, a, b, ...) after one warm-up call each."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def diffusers_unet(device: torch.device):
    """A diffusers UNet2DConditionModel with the parameter count of UNetConfig.shapes_small() (1,687,075)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=D, attention_head_dim=16, norm_num_groups=8).to(device)


def ours_unet(device: torch.device) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig.shapes_small(context_dim=D)).to(device)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def unet_rows(ours, theirs, batch: int, repeats: int, device) -> list[tuple]:
    """Forward and train-step images/s of both UNets on the same inputs."""
    x, c = torch.randn(batch, 3, 32, 32, device=device), torch.randn(batch, L, D, device=device)
    t = torch.randint(1, 1000, (batch,), device=device)
    ours.eval(), theirs.eval()  # no dropout in either; timed as eval forwards, then train steps

    @torch.no_grad()
    def fwd_ours():
        return ours(x, t, c)

    @torch.no_grad()
    def fwd_theirs():
        return theirs(x, t - 1, encoder_hidden_states=c).sample

    opt_o, opt_t = torch.optim.AdamW(ours.parameters(), 1e-4), torch.optim.AdamW(theirs.parameters(), 1e-4)

    def train(model, opt, call):
        def step():
            opt.zero_grad(set_to_none=True)
            F.mse_loss(call(), x).backward()
            opt.step()
        return step

    a, b = paired_seconds([fwd_ours, fwd_theirs], repeats, device)
    ours.train(), theirs.train()
    c_o, c_t = paired_seconds([train(ours, opt_o, lambda: ours(x, t, c)),
                               train(theirs, opt_t, lambda: theirs(x, t - 1, encoder_hidden_states=c).sample)],
                              repeats, device)
    return [(f"UNet forward, batch {batch}", f"{batch / a:.1f} img/s", f"{batch / b:.1f} img/s", b / a, ">= 1.5"),
            (f"UNet train step (AdamW), batch {batch}", f"{batch / c_o:.1f} img/s", f"{batch / c_t:.1f} img/s",
             c_t / c_o, ">= 1.5")]


def diffusers_ddim(scheduler, unet_call, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    """diffusers' documented sampling loop: set_timesteps, then scheduler.step on each model output."""
    scheduler.set_timesteps(steps)
    x = x_T
    for k in scheduler.timesteps:
        x = scheduler.step(unet_call(x, k), k, x).prev_sample
    return x


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)


def overhead_row(repeats: int, device) -> tuple:
    """50 DDIM steps of batch 1 with a free eps-model: what each sampler costs beyond the model."""
    sched, scheduler = Schedule.linear(1000), make_scheduler()
    x_T = torch.randn(1, 3, 32, 32, device=device)

    def free(x, t, c=None):
        return x * 0.1

    with torch.no_grad():
        a, b = paired_seconds([lambda: ddim_sample(free, sched, x_T, 50),
                               lambda: diffusers_ddim(scheduler, lambda x, k: x * 0.1, x_T, 50)], repeats, device)
    return ("DDIM 50 steps, free eps-model, batch 1", f"{a * 1e3:.2f} ms", f"{b * 1e3:.2f} ms", b / a, ">= 1.0")


def cfg_row(ours, theirs, batch: int, repeats: int, device) -> tuple:
    """50 DDIM steps with classifier-free guidance (w = 3), each side's UNet, one batched call per step."""
    sched, scheduler, w = Schedule.linear(1000), make_scheduler(), 3.0
    ours.eval(), theirs.eval()
    x_T, c = torch.randn(batch, 3, 32, 32, device=device), torch.randn(batch, L, D, device=device)
    null = torch.zeros(1, L, D, device=device)

    def their_cfg(x, k):
        cc = torch.cat([null.expand(batch, -1, -1), c])
        eps_u, eps_c = theirs(torch.cat([x, x]), k, encoder_hidden_states=cc).sample.chunk(2)
        return eps_u + w * (eps_c - eps_u)

    with torch.no_grad():
        a, b = paired_seconds([lambda: ddim_sample(ours, sched, x_T, 50, context=c, guidance=Guidance(null, w)),
                               lambda: diffusers_ddim(scheduler, their_cfg, x_T, 50)], repeats, device)
    return (f"DDIM 50 steps + CFG, own UNets, batch {batch}", f"{a:.2f} s", f"{b:.2f} s", b / a, ">= 1.5")


def shapes_model(device) -> DiffusionModel:
    """The shipped `shapes` model (the method rows need its tokenizer and schedule)."""
    from minidiff.training import pretrained

    return pretrained.load("shapes", kind="DiffusionModel").to(device).eval()


def method_rows(model: DiffusionModel, repeats: int, device) -> list[tuple]:
    """minidiff's own ratios: P2P vs plain 2-prompt DDIM, EDICT vs DDIM, null-text vs DDIM inversion."""
    from minidiff.edict import edict_sample
    from minidiff.inversion import ddim_invert
    from minidiff.null_text import null_text_invert
    from minidiff.p2p import Replace
    from minidiff.p2p import p2p_sample as p2p
    from minidiff.schedule import timesteps

    sched, prompts = model.schedule, ["a red circle", "a blue circle"]
    g = Guidance.of(model, 3.0)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 3, 32, 32, generator=gen).to(device)
    ctx = model.encode_text(prompts)
    ctrl = Replace(model.tokenizer, prompts[0], prompts[1], timesteps(sched.T, 50), cross_steps=0.8, self_steps=0.4)
    with torch.no_grad():
        plain, p2p_t, edict = paired_seconds([
            lambda: ddim_sample(model, sched, torch.cat([x1, x1]), 50, context=ctx, guidance=g),
            lambda: p2p(model, ctrl, x1, g),
            lambda: edict_sample(model, sched, torch.cat([x1, x1]), steps=50, context=ctx,
                                 guidance=g)], repeats, device)
        img = ddim_sample(model, sched, x1, 50, context=ctx[:1], guidance=g)
    inv, nti = paired_seconds([lambda: ddim_invert(model, sched, img, 50, context=ctx[:1]),
                               lambda: null_text_invert(model, sched, img, ctx[:1], g, steps=50)],
                              max(1, repeats // 3), device)
    return [("P2P (Replace) / plain DDIM, 2 prompts, CFG", f"{p2p_t:.2f} s", f"{plain:.2f} s", p2p_t / plain,
             "<= 1.15"),
            ("EDICT / DDIM, 2 images, CFG", f"{edict:.2f} s", f"{plain:.2f} s", edict / plain, "floor 2.0"),
            ("null-text inversion / DDIM inversion, 1 image", f"{nti:.2f} s", f"{inv:.2f} s", nti / inv, "reported")]


def roofline_row(ours, batch: int, repeats: int, device) -> tuple:
    """FLOP/s of our train step (forward + backward, FlopCounterMode) over the float32 matmul FLOP/s."""
    x, c = torch.randn(batch, 3, 32, 32, device=device), torch.randn(batch, L, D, device=device)
    t = torch.randint(1, 1000, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(ours(x, t, c), x).backward()
    flops = counter.get_total_flops()
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def step():
        ours.zero_grad(set_to_none=True)
        F.mse_loss(ours(x, t, c), x).backward()

    s_step, s_mm = paired_seconds([step, lambda: a @ b], repeats, device)
    rate, peak = flops / s_step / 1e9, 2 * n**3 / s_mm / 1e9
    return ("UNet train step, fraction of fp32 matmul FLOP/s", f"{rate:.1f} GFLOP/s", f"matmul {peak:.1f} GFLOP/s",
            rate / peak, "reported")


def bf16_rows(model: DiffusionModel, repeats: int, device) -> list[tuple]:
    """bf16 autocast vs float32: UNet forward speed (batch 16) and the fidelity of 4 shapes samples (25 DDIM steps,
    CFG w = 3) drawn from the same noise: PSNR of the bf16 samples against the float32 ones, in dB."""
    from minidiff.metrics import psnr

    x, t = torch.randn(16, 3, 32, 32, device=device), torch.randint(1, 1000, (16,), device=device)
    c = model.encode_text(["a red circle"] * 16)

    def forward(low: bool):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=low):
            return model(x, t, c)

    fp32, bf16 = paired_seconds([lambda: forward(False), lambda: forward(True)], repeats, device)
    prompts = ["a red circle on the left on a gray background", "a blue square on the right on a white background",
               "a green triangle on the top on a black background",
               "a yellow circle on the bottom on a gray background"]
    x_T = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    ctx, g = model.encode_text(prompts), Guidance.of(model, 3.0)
    samples = []
    for low in (False, True):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=low):
            samples.append(ddim_sample(model, model.schedule, x_T, 25, context=ctx, guidance=g))
    db = psnr(samples[1].float().clamp(-1, 1), samples[0].clamp(-1, 1)).mean().item()
    return [("bf16 autocast: UNet forward, batch 16 (fp32 time / bf16 time)", f"{fp32 / bf16:.2f}x",
             f"fp32 {16 / fp32:.1f} img/s", fp32 / bf16, "reported"),
            ("bf16 autocast: 4 samples, DDIM 25 + CFG, PSNR vs fp32 samples", f"{db:.1f} dB", "same noise", None,
             "reported")]


def print_table(rows: list[tuple], title: str) -> None:
    print(f"\n{title}\n")
    print("| path | minidiff | reference | ratio | target |\n|---|---|---|---|---|")
    for name, ours, ref, ratio, target in rows:
        print(f"| {name} | {ours} | {ref} | {'' if ratio is None else f'{ratio:.2f}x'} | {target} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 8, 1 repeat")
    ap.add_argument("--skip", nargs="*", default=[], choices=["unet", "ddim", "methods", "roofline", "bf16"])
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: the GPU table was not measured (run this on a machine with a GPU)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, repeats = (8, 1) if args.quick else (64, args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {batch}, median of {repeats} alternating repeats")
    rows = []
    if "unet" not in args.skip or "ddim" not in args.skip:
        ours, theirs = ours_unet(device), diffusers_unet(device)
        assert n_params(ours) == n_params(theirs), (n_params(ours), n_params(theirs))
    if "unet" not in args.skip:
        rows += unet_rows(ours, theirs, batch, repeats, device)
    if "ddim" not in args.skip:
        rows += [overhead_row(repeats * 4, device), cfg_row(ours, theirs, batch // 4, max(1, repeats // 2), device)]
    print_table(rows, "minidiff vs diffusers (ratio = diffusers time / minidiff time; > 1: minidiff is faster)")
    rows, shapes = [], shapes_model(device) if {"methods", "bf16"} - set(args.skip) else None
    if "methods" not in args.skip:
        rows += method_rows(shapes, max(1, repeats // 2), device)
    if "roofline" not in args.skip:
        rows += [roofline_row(ours_unet(device), batch, repeats, device)]
    if "bf16" not in args.skip:
        rows += bf16_rows(shapes, max(1, repeats // 2), device)
    print_table(rows, "minidiff's methods (ratio = first / second time; reference = the second)")


if __name__ == "__main__":
    main()
