"""How do InstructPix2Pix's two guidance scales trade off on `shapes`?  (issue 19; the table's S_I, S_T)

InstructPix2Pix (Brooks et al., CVPR 2023, eq. 3) guides with an image scale s_I and an instruction scale s_T:

    eps~ = eps(z, 0, 0) + s_I (eps(z, c_I, 0) - eps(z, 0, 0)) + s_T (eps(z, c_I, c_T) - eps(z, c_I, 0)).

This script edits 48 cases of `bench edit` (its first 36 word swaps and first 12 moves, so the scales are chosen on
the table's own scenes, and the table says so) with `baselines.instruct_pix2pix.instruct_edit` (DDIM 25 steps,
seed 0) at each (s_I, s_T) pair, and prints success per kind and the PSNR of the region that must not change. With
several checkpoints (e.g. `shapes_instruct` and a run's export) it prints one table each, so two fine-tunes are
compared on the same cases and noise.

Run:  python benchmarks/instruct_scales.py [--checkpoint shapes_instruct ...] [--threads 2]   (~30 s per checkpoint
      and pair on 2 cores)
"""

from __future__ import annotations

import argparse
import collections

import torch

from minidiff.baselines.instruct_pix2pix import instruct_edit
from minidiff.bench.edit import ALL_KINDS, edit_cases, table_row
from minidiff.training import pretrained

PAIRS = [(1.0, 1.0), (1.0, 3.0), (1.5, 3.0), (1.5, 5.0), (1.0, 7.5), (2.0, 3.0), (1.2, 5.0)]  # data/README's sweep


def sweep_cases(swaps: int = 36, moves: int = 12):
    """The first `swaps` word swaps and first `moves` moves of `bench edit --n 102` (102 swaps + 34 moves)."""
    cases = edit_cases(102, 0, 34)
    idx = list(range(swaps)) + list(range(102, 102 + moves))
    pick = lambda v: v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in idx]
    return type(cases)(**{k: pick(getattr(cases, k)) for k in cases.__dataclass_fields__})


def scale_row(model, cases, s_I: float, s_T: float, steps: int) -> list[str]:
    """One table row: success over all the cases and per kind, PSNR kept over the word swaps (`bench.edit.table_row`,
    whose "success" counts the word swaps only)."""
    row = table_row("", instruct_edit(model, cases.source, cases.instruction, s_I, s_T, steps, seed=0), 0.0, cases)
    count = collections.Counter(cases.kind)
    overall = sum(round(row[f"success_{k}"] * n) for k, n in count.items()) / len(cases.kind)  # whole cases
    return [f"({s_I:g}, {s_T:g})", f"{overall:.2f}", *(f"{row[f'success_{k}']:.2f}" for k in ALL_KINDS),
            f"{row['psnr_keep']:.1f}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", default=["shapes_instruct"], help="shipped names or paths")
    p.add_argument("--pairs", nargs="+", type=float, help="s_I s_T s_I s_T ... (default: the 7 pairs of data/README)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.pairs and len(a.pairs) % 2:
        p.error("--pairs takes s_I s_T pairs: an even count of numbers")
    pairs = list(zip(a.pairs[::2], a.pairs[1::2], strict=True)) if a.pairs else PAIRS
    cases = sweep_cases()
    header = ["(s_I, s_T)", "success", *ALL_KINDS, "PSNR kept"]
    for name in a.checkpoint:
        model = pretrained.load(name, kind="InstructPix2Pix")
        print(f"\n{name}: {len(cases.kind)} cases, DDIM {a.steps} steps, seed 0")
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for s_I, s_T in pairs:
            print("| " + " | ".join(scale_row(model, cases, s_I, s_T, a.steps)) + " |", flush=True)


if __name__ == "__main__":
    main()
