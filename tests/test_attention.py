"""The attention layer and its controller hook (what Prompt-to-Prompt builds on)."""

import pytest
import torch

from minidiff.attention_control import AttentionController, AttentionInfo, attention_control
from minidiff.nn.attention import Attention, attention_layers
from minidiff.nn.unet import UNet, UNetConfig

# image 16, levels at 16 and 8; layer names -> feature-map size (documents the naming)
CFG = dict(in_channels=3, image_size=16, base_channels=16, channel_mults=(1, 2),
           num_res_blocks=1, attention_resolutions=(16, 8), heads=2, dim_head=8,
           context_dim=12, norm_groups=4)
BLOCK_SIZES = {"down.0": 16, "down.2": 8, "mid": 8, "up.0": 8, "up.1": 8, "up.3": 16, "up.4": 16}


def make_unet(fused: bool = False, seed: int = 0) -> UNet:
    """A tiny UNet with all weights perturbed (zero-init layers would hide attention)."""
    torch.manual_seed(seed)
    unet = UNet(UNetConfig(**CFG, fused_attention=fused)).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return unet


def inputs(B: int = 2, L: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, 16, 16, generator=g)
    t = torch.tensor([7, 500])[:B]
    context = torch.randn(B, L, 12, generator=g)
    return x, t, context


class Recorder(AttentionController):
    def __init__(self):
        self.calls: list[tuple[AttentionInfo, torch.Tensor]] = []

    def __call__(self, probs, info):
        self.calls.append((info, probs.detach().clone()))
        return probs


class UniformCross(AttentionController):
    def cross(self, probs, info):
        return torch.full_like(probs, 1.0 / probs.shape[-1])


# measured max |explicit - fused|: 1.2e-7 (float32), 1.1e-16 (float64): round-off only
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("context_dim", [None, 12])
def test_fused_and_explicit_attention_agree(dtype, tol, context_dim):
    torch.manual_seed(0)
    attn = Attention(32, context_dim, heads=4, dim_head=8).to(dtype)
    x = torch.randn(3, 64, 32, dtype=dtype)
    context = None if context_dim is None else torch.randn(3, 7, 12, dtype=dtype)
    explicit = attn(x, context)
    attn.fused = True
    fused = attn(x, context)
    assert (explicit - fused).abs().max().item() < tol


def test_fused_and_explicit_unet_agree_float32():
    x, t, c = inputs()
    explicit = make_unet(fused=False)(x, t, c)
    fused = make_unet(fused=True)(x, t, c)
    assert (explicit - fused).abs().max().item() < 1e-5  # measured 1.9e-6, outputs ~0.5


def test_identity_controller_is_bit_identical():
    unet, (x, t, c) = make_unet(), inputs()
    reference = unet(x, t, c)
    with attention_control(unet, AttentionController()):
        controlled = unet(x, t, c)
    assert torch.equal(reference, controlled)


def test_recorder_sees_every_layer_with_kind_resolution_and_t():
    unet, (x, t, c) = make_unet(fused=True), inputs()  # a controller forces the explicit path
    with attention_control(unet, Recorder()) as rec:
        unet(x, t, c)
    names = [info.layer for info, _ in rec.calls]
    assert sorted(names) == sorted(layer.layer_name for layer in attention_layers(unet))
    assert len(names) == len(set(names)) == 2 * len(BLOCK_SIZES)  # self + cross per block
    for info, probs in rec.calls:
        block, kind = info.layer.rsplit(".attn.", 1)
        S = BLOCK_SIZES[block]
        assert (info.kind, info.resolution, info.heads) == (kind.split("_")[0], (S, S), 2)
        n_keys = S * S if info.kind == "self" else c.shape[1]
        assert probs.shape == (2, 2, S * S, n_keys)
        assert torch.equal(info.t, t)


def test_probs_sum_to_one_over_keys():
    unet, (x, t, c) = make_unet(), inputs()
    with attention_control(unet, Recorder()) as rec:
        unet(x, t, c)
    for _, probs in rec.calls:
        assert probs.min().item() >= 0.0
        assert (probs.sum(-1) - 1).abs().max().item() < 1e-6


def test_uniform_cross_attention_changes_output():
    unet, (x, t, c) = make_unet(), inputs()
    reference = unet(x, t, c)
    with attention_control(unet, UniformCross()):
        edited = unet(x, t, c)
    assert (reference - edited).abs().max().item() > 1e-3


def test_controller_detached_after_exception_and_previous_restored():
    unet, (x, t, c) = make_unet(), inputs()
    outer, inner = Recorder(), Recorder()
    with attention_control(unet, outer):
        with pytest.raises(RuntimeError, match="boom"):
            with attention_control(unet, inner):
                raise RuntimeError("boom")
        assert all(layer.controller is outer for layer in attention_layers(unet))
    assert all(layer.controller is None for layer in attention_layers(unet))
    unet(x, t, c)
    assert inner.calls == [] and outer.calls == []


def test_controller_returning_wrong_shape_raises():
    unet, (x, t, c) = make_unet(), inputs()
    with attention_control(unet, lambda probs, info: probs[:, :1]):
        with pytest.raises(ValueError, match="controller must return probs of shape"):
            unet(x, t, c)


def test_attention_control_on_model_without_attention_raises():
    with pytest.raises(ValueError, match="no Attention layers"):
        with attention_control(torch.nn.Linear(2, 2), AttentionController()):
            pass
