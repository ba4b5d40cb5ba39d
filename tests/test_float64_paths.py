"""Device and dtype follow the inputs: every editing path runs in float64 end to end.

A float64 model and float64 inputs must give float64 all the way through: a tensor made on a fixed dtype (a
float32 mask, index or noise) would either fail or silently round the computation to float32. Each test runs a
path on a tiny random text-conditional UNet made float64 under a spy that checks the output of every module
(UNet layers, attention with its controller, text encoder) is float64, checks the results are float64, and,
where an exact oracle exists, checks it to float64 round-off (1e-12), which float32 cannot reach (its round-off
here is ~1e-6).
"""

import dataclasses
from contextlib import contextmanager

import torch

from minidiff.edict import edict_edit
from minidiff.guidance import Guidance
from minidiff.inversion import ddim_invert, sdedit
from minidiff.null_text import null_text_invert, null_text_sample
from minidiff.p2p import AttentionEdit, AttentionStore, LocalBlend, Refine, Replace, Reweight, p2p_sample
from minidiff.samplers import ddim_sample
from minidiff.schedule import timesteps
from tests.test_experiments import images, tiny_model

F64 = torch.float64
SRC, TGT = ["a red circle"], ["a blue circle"]
GRID = timesteps(100, 6)


@contextmanager
def only_float64(model):
    """Every floating-point tensor that any submodule of `model` returns must be float64."""
    seen = []

    def check(module, inputs, output):
        for o in output if isinstance(output, tuple) else (output,):
            if torch.is_tensor(o) and o.is_floating_point():
                seen.append(type(module).__name__)
                assert o.dtype == F64, f"{type(module).__name__} returned {o.dtype}"

    handles = [m.register_forward_hook(check) for m in model.modules()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def model64():
    return tiny_model().double()


def max_abs(a, b) -> float:
    return (a - b).abs().max().item()


def test_p2p_without_injection_is_ddim_of_each_prompt_to_float64_round_off():
    """AttentionEdit with no injection window (and an AttentionStore) is plain CFG DDIM of each prompt: equal to
    1e-12 in float64 (the explicit attention of the controller path vs the fused one; float32 measured ~1e-6)."""
    model = model64()
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=F64)
    store = AttentionStore(2)
    ctrl = AttentionEdit(model.tokenizer, SRC, TGT, GRID, cross_steps=0.0, store=store)
    with only_float64(model) as seen:
        xs, xt = p2p_sample(model, ctrl, x_T, guidance=Guidance.of(model, 3.0))
    assert seen and xs.dtype == xt.dtype == F64
    for prompt, x in ((SRC, xs), (TGT, xt)):
        ref = ddim_sample(model, model.schedule, x_T, context=model.encode_text(prompt), grid=GRID,
                          guidance=Guidance.of(model, 3.0))
        assert max_abs(x, ref) < 1e-12
    assert store.maps(16).dtype == F64


def test_every_p2p_controller_and_local_blend_run_in_float64():
    """Word swap with self-attention injection and local blend, refinement, re-weighting on top of a word swap:
    float64 through every module, float64 results that match the float32 run of the same controller (max abs
    difference below 1e-3; the mask of local blend is the same binary mask in both)."""
    model = model64()
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=F64)
    tok = model.tokenizer

    def controllers():
        blend = LocalBlend.for_model(model, SRC, TGT, [["red"]], [["blue"]])
        swap = Replace(tok, SRC, TGT, GRID, self_steps=0.5, local_blend=blend)
        refine = Refine(tok, ["a red circle"], ["a red circle a blue square"], GRID)
        reweight = Reweight(tok, SRC, TGT, GRID, weights={"blue": 2.0}, base_edit=Replace(tok, SRC, TGT, GRID))
        return {"swap + self + blend": swap, "refine": refine, "reweight": reweight}

    out64 = {}
    with only_float64(model):
        for name, ctrl in controllers().items():
            out64[name] = p2p_sample(model, ctrl, x_T, guidance=Guidance.of(model, 3.0))[1]
            assert out64[name].dtype == F64, name
    model = model.float()
    for name, ctrl in controllers().items():
        x32 = p2p_sample(model, ctrl, x_T.float(), guidance=Guidance.of(model, 3.0))[1]
        assert max_abs(out64[name], x32.double()) < 1e-3, name


def test_inversion_sdedit_null_text_and_edict_run_in_float64():
    """DDIM inversion + sampling, SDEdit, null-text inversion and its reconstruction, EDICT editing (pixel space):
    float64 through every module and in every result. Null-text inversion's per-step embeddings are float64, its
    reconstruction under w = 3 matches the float32 run (max abs difference below 1e-3), and at w = 1
    (where the null embedding drops out) its sampler equals DDIM sampling to 1e-12."""
    model = model64()
    x0, ctx, null = images(1, F64), model.encode_text(SRC), model.null_context(1)
    gen = torch.Generator().manual_seed(2)
    with only_float64(model):
        x_T = ddim_invert(model, model.schedule, x0, context=ctx, grid=GRID)
        rec = ddim_sample(model, model.schedule, x_T, context=ctx, grid=GRID)
        edited = sdedit(model, model.schedule, x0, 50, steps=6, context=ctx, eta=1.0, generator=gen)
        inv = null_text_invert(model, model.schedule, x0, ctx, Guidance(null, 3.0), grid=GRID, inner_steps=5)
        nt = null_text_sample(model, model.schedule, inv, ctx)
        x_e, y_e = edict_edit(model, model.schedule, x0, ctx, model.encode_text(TGT), grid=GRID,
                              guidance=Guidance(null, 3.0))
    for t in (x_T, rec, edited, inv.x_T, inv.null_embeddings, inv.pivots, nt, x_e, y_e):
        assert t.dtype == F64
    model32 = tiny_model()
    inv32 = null_text_invert(model32, model32.schedule, x0.float(), ctx.float(), Guidance(null.float(), 3.0),
                             grid=GRID, inner_steps=5)
    nt32 = null_text_sample(model32, model32.schedule, inv32, ctx.float())
    assert max_abs(nt, nt32.double()) < 1e-3  # the same computation, in float32
    # w = 1: the null embedding drops out, and the batched [null; cond] sampler equals plain DDIM to round-off
    at_w1 = dataclasses.replace(inv, x_T=x_T, w=1.0)
    assert max_abs(null_text_sample(model, model.schedule, at_w1, ctx), rec) < 1e-12
