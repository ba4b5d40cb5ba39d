"""UNet shapes (pixels and latents), input validation, and the h-space hooks."""

from dataclasses import replace

import pytest
import torch

from minidiff.nn.unet import UNet, UNetConfig


def tiny(in_channels=3, image_size=16, context_dim=8, **kw) -> UNetConfig:
    lowest = image_size // 2
    return UNetConfig(in_channels=in_channels, image_size=image_size, base_channels=8,
                      channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(lowest,),
                      heads=2, dim_head=4, context_dim=context_dim, norm_groups=4, **kw)


def perturbed(cfg: UNetConfig, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    unet = UNet(cfg).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return unet


def args(cfg: UNetConfig, B: int = 2, L: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    t = torch.randint(1, 1001, (B,), generator=g)
    c = None if cfg.context_dim is None else torch.randn(B, L, cfg.context_dim, generator=g)
    return x, t, c


@pytest.mark.parametrize("channels, size", [(3, 32), (3, 64), (4, 8), (4, 16)])
def test_output_has_input_shape_for_pixels_and_latents(channels, size):
    cfg = tiny(channels, size)
    x, t, c = args(cfg, B=1)
    assert torch.equal(UNet(cfg)(x, t, c), torch.zeros_like(x))  # zero-init conv_out
    eps = perturbed(cfg)(x, t, c)
    assert eps.shape == x.shape and eps.abs().mean().item() > 1e-2


def test_unconditional_model_has_no_cross_attention():
    cfg = tiny(context_dim=None)
    unet = perturbed(cfg)
    x, t, _ = args(cfg)
    assert unet(x, t).shape == x.shape
    assert not any("cross" in name for name, _ in unet.named_modules())


def test_examples_do_not_interact_across_the_batch():
    cfg = tiny()
    unet = perturbed(cfg)
    x, t, c = args(cfg, B=3)
    full = unet(x, t, c)
    single = unet(x[1:2], t[1:2], c[1:2])
    assert (full[1:2] - single).abs().max().item() < 1e-5


def test_context_changes_the_prediction():
    cfg = tiny()
    unet = perturbed(cfg)
    x, t, c = args(cfg)
    assert (unet(x, t, c) - unet(x, t, c.flip(0))).abs().max().item() > 1e-3


def test_zero_h_delta_is_bit_identical_and_nonzero_changes_output():
    cfg = tiny()
    unet = perturbed(cfg)
    x, t, c = args(cfg)
    eps, h = unet(x, t, c, return_h=True)
    assert h.shape == (2, 16, 8, 8)  # (B, base * mults[-1], size/2, size/2)
    assert torch.equal(unet(x, t, c, h_delta=torch.zeros_like(h)), eps)
    eps2, h2 = unet(x, t, c, h_delta=0.5 * torch.randn_like(h), return_h=True)
    assert torch.equal(h2, h)  # h is returned before the delta is added
    assert (eps2 - eps).abs().max().item() > 1e-3


@pytest.mark.parametrize("change, message", [
    (lambda x, t, c: (x[:, :2], t, c), r"x_t must have shape \(B, 3, 16, 16\)"),
    (lambda x, t, c: (x[..., :8, :8], t, c), r"image_size=16"),
    (lambda x, t, c: (x, t.float(), c), r"t must be an integer tensor of shape \(2,\)"),
    (lambda x, t, c: (x, t[:1], c), r"t must be an integer tensor"),
    (lambda x, t, c: (x, t, None), r"encoded empty prompt"),
    (lambda x, t, c: (x, t, c[..., :5]), r"context must have shape \(2, L, 8\)"),
    (lambda x, t, c: (x, t, c[:1]), r"context must have shape"),
])
def test_bad_inputs_raise_errors_that_say_what_was_expected(change, message):
    cfg = tiny()
    unet = UNet(cfg)
    with pytest.raises(ValueError, match=message):
        unet(*change(*args(cfg)))


def test_unconditional_model_rejects_a_context():
    cfg = tiny(context_dim=None)
    x, t, _ = args(cfg)
    with pytest.raises(ValueError, match="unconditional"):
        UNet(cfg)(x, t, torch.zeros(2, 4, 8))


def test_h_delta_of_wrong_shape_raises():
    cfg = tiny()
    x, t, c = args(cfg)
    with pytest.raises(ValueError, match=r"h_delta must have the shape of h \(2, 16, 8, 8\)"):
        UNet(cfg)(x, t, c, h_delta=torch.zeros(2, 16, 4, 4))


def test_config_rejects_attention_resolutions_that_never_occur():
    with pytest.raises(ValueError, match=r"feature-map sizes of this UNet are \[32, 16, 8\]"):
        UNetConfig(image_size=32, channel_mults=(1, 2, 2), attention_resolutions=(4,))
    with pytest.raises(ValueError, match="divisible by"):
        UNetConfig(image_size=30, channel_mults=(1, 2, 2), attention_resolutions=())


def test_shapes_small_preset_size():
    n = UNet(UNetConfig.shapes_small()).num_params()
    assert 1.5e6 < n < 3e6


def test_positional_embedding_starts_at_zero_so_a_plain_models_weights_compute_the_same_eps():
    """`position_gain = 0`: the plain model's weights fit, only the gains g are missing; with them at zero the eps is
    bit-identical (fine-tuning `shapes` into `shapes_pos` starts exactly there), and every g gets a gradient."""
    plain, pos = perturbed(tiny()), UNet(tiny(position_gain=0.0)).eval()
    missing = pos.load_state_dict(plain.state_dict(), strict=False).missing_keys
    names = [k for k, _ in pos.named_parameters() if k.endswith("pos_gain")]
    assert sorted(missing) == sorted(names) and len(names) == 4  # mid + 1 down + 2 up blocks at 8x8
    x, t, c = args(plain.cfg)
    with torch.no_grad():
        assert torch.equal(pos(x, t, c), plain(x, t, c))
    pos(x, t, c).square().sum().backward()
    assert all(p.grad.abs().max() > 0 for k, p in pos.named_parameters() if k in names)
    with torch.no_grad():  # and a nonzero g moves eps
        pos.mid.attn.pos_gain.add_(1.0)
        assert (pos(x, t, c) - plain(x, t, c)).abs().max() > 1e-3


def test_shapes_pos_preset_adds_only_the_positional_embeddings():
    small, pos = UNetConfig.shapes_small(), UNetConfig.shapes_pos()
    assert pos.position_gain == 0.0 and replace(pos, position_gain=None) == small
    assert replace(UNetConfig.shapes_pos1(), position_gain=0.0) == pos
    assert all(float(g.min()) == float(g.max()) == 1.0
               for k, g in UNet(UNetConfig.shapes_pos1()).named_parameters() if k.endswith("pos_gain"))
    assert UNet(pos).num_params() - UNet(small).num_params() == 7 * 64  # one gain per channel per block


def test_sincos_2d_code_is_a_linear_read_out_of_position_and_distinct_per_token():
    from minidiff.nn.layers import sincos_2d

    E = sincos_2d(16, 64)  # (256, 64), row-major: token i is (row i // 16, column i % 16)
    assert E.shape == (256, 64) and torch.allclose(E.square().sum(1), torch.full((256,), 32.0), atol=1e-4)
    x_code = E[:, 0].view(16, 16)  # sin(pi/2 x): the same in every row, increasing left to right
    assert torch.equal(x_code, x_code[:1].expand(16, 16)) and (x_code[0].diff() > 0).all()
    assert torch.allclose(E[:, 32].view(16, 16), x_code.T)  # sin(pi/2 y): the same code down the rows
    assert torch.cdist(E, E).add(torch.eye(256) * 1e3).min() > 0.1  # no two tokens share a code
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(8, 30)


def test_shapes_attn32_preset_adds_only_the_32x32_transformers():
    small, big = UNetConfig.shapes_small(), UNetConfig.shapes_attn32()
    assert big.attention_resolutions == (32, 16, 8) and replace(big, attention_resolutions=(16, 8)) == small
    assert UNet(big).num_params() - UNet(small).num_params() == 261_792
