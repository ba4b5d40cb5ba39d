"""The course project's baselines (`minidiff.baselines`): each one's defining property, checked exactly on a tiny
random text-conditional UNet in float64 (round-off ~1e-15, so 1e-12 fails on any real error)."""

import dataclasses

import pytest
import torch

from minidiff.attention_control import attention_control, hooked_layers
from minidiff.baselines.blended import blended_latent_sample, blended_sample, latent_mask
from minidiff.baselines.direct_inversion import direct_inversion_p2p, direct_invert, direct_sample
from minidiff.baselines.instruct_pix2pix import dual_guided, instruct_edit
from minidiff.baselines.masactrl import CrossAttentionMasks, MutualSelfAttention, masked_probs
from minidiff.baselines.pix2pix_zero import (
    CrossMaps,
    auto_corr_loss,
    edit_direction,
    kl_loss,
    pix2pix_zero_edit,
    pix2pix_zero_invert,
    regularize_noise,
    xa_guidance_step,
)
from minidiff.datasets.shapes import KINDS, caption, replace_word, sample_scene
from minidiff.datasets.shapes_instruct import INSTRUCTION_WORDS, apply, instruction_for
from minidiff.gaussian import q_sample
from minidiff.guidance import Guidance
from minidiff.inversion import ddim_invert
from minidiff.nn.autoencoder import Autoencoder, AutoencoderConfig
from minidiff.nn.diffusion_model import DiffusionModel
from minidiff.nn.instruct import InstructPix2Pix
from minidiff.p2p import AttentionEdit, Replace, p2p_sample
from minidiff.samplers import ddim_sample
from minidiff.schedule import timesteps
from minidiff.training import pretrained
from minidiff.training.checkpoint import load_model
from minidiff.training.instruct import dropout_masks
from minidiff.training.loop import TrainConfig
from minidiff.training.tasks import train
from tests.test_experiments import images, tiny_model

F64 = torch.float64
SRC, TGT = ["a red circle", "a blue square"], ["a blue circle", "a blue circle"]
GRID = timesteps(100, 6)


@pytest.fixture(scope="module")
def model():
    return tiny_model().double()


def max_abs(a, b) -> float:
    return (a - b).abs().max().item()


class Counting:
    """An eps-model wrapper that counts calls and those made with gradients on."""

    def __init__(self, model):
        self.model, self.calls, self.with_grad = model, 0, 0

    def __call__(self, x, t, c):
        self.calls += 1
        self.with_grad += torch.is_grad_enabled()
        return self.model(x, t, c)


def test_direct_inversion_reconstructs_exactly_and_costs_two_passes_per_step(model):
    """Guided DDIM (w = 3) from the w = 1 inversion misses x0; with Direct Inversion's offsets it returns x0 to
    float64 round-off. Its price: S inversion passes + S guided passes, none with gradients (null-text inversion
    runs an Adam loop per step)."""
    x0, ctx, w3 = images(2, F64), model.encode_text(SRC), Guidance.of(model, 3.0)
    counting = Counting(model)
    inv = direct_invert(counting, model.schedule, x0, ctx, w3, grid=GRID)
    assert (counting.calls, counting.with_grad) == (2 * (len(GRID) - 1), 0)
    plain = ddim_sample(model, model.schedule, inv.x_T, context=ctx, grid=GRID, guidance=w3)
    assert max_abs(plain, x0) > 1e-2  # what the offsets repair
    assert max_abs(direct_sample(model, model.schedule, inv, ctx, w3), x0) < 1e-12
    assert max_abs(inv.pivots[0], x0) == 0 and torch.equal(inv.pivots[-1], inv.x_T)


def test_direct_inversion_p2p_keeps_the_source_branch_on_the_pivot_at_every_step(model):
    """With P2P the source branch is x*_t after every step (so its maps are the source image's) and ends at x0;
    with identical prompts and the offsets added to the targets too ("add-target"), the target is x0 as well."""
    x0, w3 = images(2, F64), Guidance.of(model, 3.0)
    inv = direct_invert(model, model.schedule, x0, model.encode_text(SRC), w3, grid=GRID)
    seen = []
    ctrl = Replace(model.tokenizer, SRC, TGT, inv.grid, cross_steps=0.8, self_steps=0.4)
    xs, xt = direct_inversion_p2p(model, ctrl, inv, w3, callback=lambda d: seen.append(d["x_prev"][:2]))
    S = len(GRID) - 1
    assert max(max_abs(x, inv.pivots[S - 1 - i]) for i, x in enumerate(seen)) < 1e-12
    assert max_abs(xs, x0) < 1e-12 and max_abs(xt, x0) > 1e-2  # the target is edited
    same = Replace(model.tokenizer, SRC, SRC, inv.grid)
    xs, xt = direct_inversion_p2p(model, same, inv, w3, offset_target=True)
    assert max_abs(xs, x0) < 1e-12 and max_abs(xt, x0) < 1e-12


def test_blended_diffusion_is_the_noised_source_outside_the_mask_at_every_step(model):
    """Outside the mask every step's result is q_sample(x0, t_prev, eps) with that step's noise, bit for bit, and
    the source itself at t = 0; with a mask of ones it is plain guided DDIM from the same noised start."""
    x0, w3 = images(2, F64), Guidance.of(model, 3.0)
    mask = torch.zeros(2, 1, 32, 32, dtype=F64)
    mask[:, :, 8:20, 4:24] = 1
    grid, skip = timesteps(100, 8), 2
    noise = torch.randn(len(grid) - skip, *x0.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    ctx, seen = model.encode_text(TGT), []
    out = blended_sample(model, model.schedule, x0, mask, ctx, w3, grid=grid, skip=skip, noise=noise,
                         callback=seen.append)
    for d in seen:
        ref = q_sample(model.schedule, x0, torch.full((2,), d["t_prev"]), noise[d["i"] + 1])
        assert torch.equal(d["x_prev"] * (1 - mask), ref * (1 - mask))
    assert torch.equal(out * (1 - mask), x0 * (1 - mask)) and max_abs(out * mask, x0 * mask) > 1e-2
    ones = blended_sample(model, model.schedule, x0, torch.ones_like(mask), ctx, w3, grid=grid, skip=skip, noise=noise)
    x_k = q_sample(model.schedule, x0, torch.full((2,), int(grid[skip])), noise[0])
    assert max_abs(ones, ddim_sample(model, model.schedule, x_k, context=ctx, grid=grid[skip:], guidance=w3)) < 1e-12


def test_blended_diffusion_refuses_masks_that_are_not_binary_or_not_image_sized(model):
    x0, ctx = images(1, F64), model.encode_text(TGT[:1])
    with pytest.raises(ValueError, match="binary"):
        blended_sample(model, model.schedule, x0, torch.full((1, 1, 32, 32), 0.5, dtype=F64), ctx, steps=2)
    with pytest.raises(ValueError, match="latent_mask"):
        blended_sample(model, model.schedule, x0, torch.ones(1, 1, 8, 8, dtype=F64), ctx, steps=2)
    pixel = torch.zeros(1, 1, 32, 32)
    pixel[..., 5, 9] = 1  # one pixel: its 4x4 latent cell (1, 2) and only it
    assert latent_mask(pixel, (8, 8)).nonzero().tolist() == [[0, 0, 1, 2]]


def tiny_latent_model():
    """`tiny_model`'s text and schedule on a 4x8x8 latent UNet with a random f = 4 autoencoder attached."""
    base = tiny_model()
    torch.manual_seed(1)
    unet = dataclasses.replace(base.unet.cfg, in_channels=4, image_size=8, attention_resolutions=(8,))
    model = DiffusionModel(unet, base.schedule, base.tokenizer, base.text_encoder.cfg,
                           data={"autoencoder": {"name": "random"}, "image_size": 32})
    model.text_encoder.load_state_dict(base.text_encoder.state_dict())
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ae = Autoencoder(AutoencoderConfig(base_channels=8, norm_groups=4))
    return model.attach_autoencoder(ae).double().eval()


def test_blended_latent_diffusion_keeps_the_source_latents_outside_the_latent_mask():
    """In latent space: every step outside the latent mask is the forward-noised z_0 = E(x), the final latents
    there are z_0 bit for bit, so the image is the source up to the autoencoder: with an empty mask exactly D(E(x))."""
    model = tiny_latent_model()
    x0, w3, ctx = images(2, F64), Guidance.of(model, 3.0), model.encode_text(TGT)
    pixel = torch.zeros(2, 1, 32, 32, dtype=F64)
    pixel[:, :, 9:18, 5:22] = 1
    z0, m = model.encode(x0), latent_mask(pixel, (8, 8))
    assert bool((torch.nn.functional.interpolate(m, size=(32, 32)) >= pixel).all())  # the edit region is never cut
    noise, seen = torch.randn(6, *z0.shape, generator=torch.Generator().manual_seed(3), dtype=F64), []
    out, z = blended_latent_sample(model, x0, pixel, ctx, w3, steps=6, skip=1, noise=noise, callback=seen.append)
    assert len(seen) == 5 and z.shape == (2, 4, 8, 8) and torch.equal(out, model.decode(z))
    for d in seen:
        ref = q_sample(model.schedule, z0, torch.full((2,), d["t_prev"]), noise[d["i"] + 1])
        assert torch.equal(d["x_prev"] * (1 - m), ref * (1 - m))
    assert torch.equal(z * (1 - m), z0 * (1 - m)) and max_abs(z * m, z0 * m) > 1e-2
    empty, _ = blended_latent_sample(model, x0, torch.zeros_like(pixel), ctx, w3, steps=6, skip=1, noise=noise)
    assert torch.equal(empty, model.decode(z0)) and max_abs(empty, x0) > 1e-3  # D(E(x)), not x: "up to the AE"


def masactrl(model, sources, targets, start=0.0, **kwargs):
    return MutualSelfAttention.for_model(model, sources, targets, GRID, start=start, first_layer="down", **kwargs)


def test_masactrl_target_queries_read_the_source_keys_and_values(model):
    """At a controlled self-attention layer the target row's output is W_o softmax(Q_tgt K_src^T / sqrt(d)) V_src
    computed by hand, and the source row is untouched."""
    layer = next(m for m in hooked_layers(model.unet) if m.kind == "self")
    ctrl = masactrl(model, SRC[:1], TGT[:1])
    x = torch.randn(2, 64, layer.to_q.in_features, generator=torch.Generator().manual_seed(4), dtype=F64)
    t = torch.full((2,), int(GRID[0]))
    layer.set_controller(ctrl)
    try:
        out = layer(x, t=t, resolution=(8, 8))
    finally:
        layer.set_controller(None)
    heads = lambda y: y.unflatten(-1, (layer.heads, -1)).transpose(0, 1)  # (N, heads*d) -> (heads, N, d)
    q, k, v = heads(layer.to_q(x[1])), heads(layer.to_k(x[0])), heads(layer.to_v(x[0]))
    ref = ((q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1) @ v).transpose(0, 1).flatten(1)
    assert max_abs(out[1], layer.to_out(ref)) < 1e-12
    assert max_abs(out[0], layer(x[:1])[0]) < 1e-12


def test_masactrl_with_identical_prompts_and_full_control_gives_the_source(model):
    """Identical prompts, every self-attention layer from step 0: the target equals the source; different prompts
    under the same control give a different target, which differs again without control."""
    x_T, w3 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=F64), Guidance.of(model, 3.0)
    xs, xt = p2p_sample(model, masactrl(model, SRC, SRC), x_T, w3)
    assert max_abs(xs, xt) < 1e-12
    _, controlled = p2p_sample(model, masactrl(model, SRC, TGT), x_T, w3)
    _, free = p2p_sample(model, AttentionEdit(model.tokenizer, SRC, TGT, GRID, cross_steps=0.0), x_T, w3)
    assert max_abs(controlled, xs) > 1e-3 and max_abs(controlled, free) > 1e-3


def test_masactrl_masks_of_ones_are_the_unmasked_control_and_a_mask_restricts_the_keys(model):
    """P' with all-ones masks is P; with a foreground mask, target foreground queries put all their attention on
    source foreground keys and background queries none."""
    x_T, w3 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6), dtype=F64), Guidance.of(model, 3.0)
    ones = torch.ones(2, 1, 32, 32, dtype=F64)
    _, plain = p2p_sample(model, masactrl(model, SRC, TGT), x_T, w3)
    _, masked = p2p_sample(model, masactrl(model, SRC, TGT, masks=(ones, ones)), x_T, w3)
    assert max_abs(plain, masked) < 1e-12
    probs = torch.rand(1, 2, 4, 4, dtype=F64).softmax(-1)  # (G, heads, HW_q, HW_k)
    m_src, m_tgt = torch.tensor([[1, 1, 0, 0]]), torch.tensor([[1, 0, 1, 0]])
    p = masked_probs(probs, m_tgt, m_src)
    assert torch.allclose(p.sum(-1), torch.ones(1, 2, 4, dtype=F64))
    assert torch.allclose(p[..., [0, 2], :][..., 2:], torch.zeros(1, 2, 2, 2, dtype=F64))  # fg queries: fg keys
    assert torch.allclose(p[..., [1, 3], :][..., :2], torch.zeros(1, 2, 2, 2, dtype=F64))  # bg queries: bg keys


# ---- InstructPix2Pix ------------------------------------------------------------------------------------------

def tiny_instruct() -> InstructPix2Pix:
    model = InstructPix2Pix.from_text_model(tiny_model(), INSTRUCTION_WORDS).double()
    with torch.no_grad():  # the image's input weights start at zero: perturb so eps depends on the image
        model.unet.conv_in.weight.add_(0.05 * torch.randn_like(model.unet.conv_in.weight))
    return model.eval()


def test_instruct_pix2pix_starts_as_its_text_model_whatever_the_image():
    """From a text-to-image model: zero weights on the image's input channels, so at initialisation eps does not
    depend on c_I and is the base UNet's; shared words keep their embeddings."""
    base = tiny_model().double()
    model = InstructPix2Pix.from_text_model(base, INSTRUCTION_WORDS).double()
    x, t = images(2, F64), torch.tensor([10, 70])
    ctx = base.encode_text(SRC)
    assert max_abs(model(x, t, ctx, image=images(2, F64)), base(x, t, ctx)) < 1e-12
    assert max_abs(model(x, t, ctx, image=torch.zeros_like(x)), base(x, t, ctx)) < 1e-12
    red = base.text_encoder.tok_emb.weight[base.tokenizer.stoi["red"]]
    assert torch.equal(model.text_encoder.tok_emb.weight[model.tokenizer.stoi["red"]], red)


def test_dual_guidance_at_unit_scales_is_the_conditional_model():
    """Eq. 3 with s_I = s_T = 1 is eps(x_t, c_I, c_T); s_T = 0 is eps(x_t, c_I, 0); s_I = s_T = 0 is eps(x_t, 0, 0)."""
    model, x, t = tiny_instruct(), images(2, F64), torch.tensor([10, 70])
    src = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9), dtype=F64) * 2 - 1
    c, null = model.encode_text(["make the circle green", "move it to the left"]), model.encode_text([""])
    null2 = null.expand(2, -1, -1)
    for (s_I, s_T), (image, context) in {(1, 1): (src, c), (1, 0): (src, null2),
                                         (0, 0): (torch.zeros_like(src), null2)}.items():
        eps = dual_guided(model, src, null, s_I, s_T)(x, t, c)
        assert max_abs(eps, model(x, t, context, image=image)) < 1e-12
    assert max_abs(dual_guided(model, src, null, 1.5, 3)(x, t, c), model(x, t, c, image=src)) > 1e-4


def test_instructions_outside_the_vocabulary_or_grammar_are_clear_errors():
    model, src = tiny_instruct(), images(1, F64)
    with pytest.raises(ValueError, match=r"\['paint'\] are not in the vocabulary"):
        instruct_edit(model, src, ["paint the circle green"], steps=2)
    scene = sample_scene(3, n_objects=2)
    with pytest.raises(ValueError, match="'it' needs a scene with one object"):
        apply(scene, "move it to the left")
    with pytest.raises(ValueError, match="expected a shape after 'the'.*grammar: make the"):
        apply(scene, "make the background circle")
    with pytest.raises(ValueError, match="does not follow the grammar"):
        apply(scene, f"turn the {scene.objects[0].shape} into green")


def test_instructions_edit_exactly_what_the_caption_word_swap_edits():
    """For every kind, applying `instruction_for(scene, kind, new)` gives the scene `replace_word` gives for object
    0 (or the background); 'move it' changes only the position."""
    for i in range(40):
        scene = sample_scene(i)
        for kind in ("colour", "shape", "background"):
            old = scene.background if kind == "background" else getattr(scene.objects[0], kind)
            new = next(v for v in KINDS[kind] if v != old)
            want = replace_word(scene, old, new, None if kind == "background" else 0)
            assert apply(scene, instruction_for(scene, kind, new)) == want, (caption(scene), kind, new)
        if len(scene.objects) == 1:
            moved = apply(scene, "move it to the center").objects[0]
            assert dataclasses.replace(moved, position=scene.objects[0].position) == scene.objects[0]


# ---- Pix2Pix-Zero ---------------------------------------------------------------------------------------------

def test_pix2pix_zero_with_no_direction_no_guidance_no_regularisation_is_ddim_inversion_and_sampling(model):
    """lambda_ac = lambda_kl = 0: the inversion is `ddim_invert`; a zero direction and lambda_xa = 0: the edit is
    guided DDIM from x_T with the source prompt, i.e. the reconstruction."""
    x0, ctx, w3 = images(2, F64), model.encode_text(SRC), Guidance.of(model, 3.0)
    x_T = pix2pix_zero_invert(model, model.schedule, x0, ctx, grid=GRID, lambda_ac=0, lambda_kl=0)
    assert max_abs(x_T, ddim_invert(model, model.schedule, x0, context=ctx, grid=GRID)) < 1e-12
    rec, edit = pix2pix_zero_edit(model, x_T, ctx, torch.zeros_like(ctx[:1]), w3, grid=GRID, lambda_xa=0)
    ref = ddim_sample(model, model.schedule, x_T, context=ctx, grid=GRID, guidance=w3)
    assert max_abs(rec, ref) < 1e-12 and max_abs(edit, ref) < 1e-12


def test_pix2pix_zero_cross_attention_guidance_step_lowers_the_map_loss(model):
    """One step x - lambda grad L_xa lowers L_xa by at least half its first-order prediction lambda |grad|^2 (the
    maps of c + direction move towards the reconstruction's)."""
    x_T, ctx = images(2, F64), model.encode_text(SRC)
    direction = edit_direction(model.encode_text, ["a red circle"], ["a blue circle"])
    recorder = CrossMaps(2)
    t = int(GRID[0])
    with attention_control(model, recorder):
        model(x_T, torch.full((2,), t), ctx)
    lam = 0.1
    x, before = xa_guidance_step(model, x_T, t, ctx + direction, recorder.maps, lam)
    _, after = xa_guidance_step(model, x, t, ctx + direction, recorder.maps, lam)
    grad_sq = ((x - x_T) / lam).pow(2).sum().item()
    assert before > 0 and grad_sq > 0 and after <= before - 0.5 * lam * grad_sq  # Armijo's sufficient decrease


def test_noise_regularisation_decorrelates_and_rescales_the_predicted_noise():
    """Unit-variance but spatially correlated noise loses most of its auto-correlation (L_pair 0.43-0.56x measured);
    white noise of std 0.3 moves towards unit variance (L_KL 1.5 -> 0.8 measured)."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 34, 34, generator=g, dtype=F64), 3, 1)
    smooth = smooth / smooth.flatten(1).std(1)[:, None, None, None]
    ac = lambda e: auto_corr_loss(e, torch.Generator().manual_seed(2))  # noqa: E731 (the same shifts each call)
    assert (ac(regularize_noise(smooth, generator=torch.Generator().manual_seed(1))) < 0.7 * ac(smooth)).all()
    white = 0.3 * torch.randn(2, 3, 32, 32, generator=g, dtype=F64)
    assert (kl_loss(regularize_noise(white, generator=torch.Generator().manual_seed(1))) < 0.6 * kl_loss(white)).all()


def test_instruct_pix2pix_conditioning_dropout_rates():
    """5% of examples lose only the instruction, 5% only the image, 5% both (the paper's sec. 3.2.1)."""
    text, image = dropout_masks(200_000, torch.Generator().manual_seed(0))
    rates = [(text & ~image).float().mean(), (image & ~text).float().mean(), (text & image).float().mean()]
    assert all(abs(r.item() - 0.05) < 0.002 for r in rates)  # 4 standard errors of a 5% rate over 200k draws


def test_train_instruct_runs_from_the_shipped_shapes_model_and_exports_an_instruct_pix2pix(tmp_path):
    if not pretrained.available("shapes"):
        pytest.skip("the shipped shapes checkpoint is missing (InstructPix2Pix starts from it)")
    cfg = TrainConfig(task="instruct", n_train=8, steps=2, batch_size=4, ckpt_every=1, sample_every=0,
                      out=str(tmp_path / "run"), device="cpu")
    model = load_model(train(cfg, progress=False) / "model")
    assert isinstance(model, InstructPix2Pix) and model.unet.cfg.cond_channels == 3
    assert model.tokenizer.words == INSTRUCTION_WORDS


def test_masactrl_masks_from_cross_attention_plumb_through_exactly(model):
    """Masks from the object words' cross-attention: with threshold -1 they are all ones, so the run is the unmasked
    control to round-off; with 0.5 they are binary (G, 1, r, r), not all ones, and change the target."""
    x_T, w3 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7), dtype=F64), Guidance.of(model, 3.0)
    r = max(model.unet.cfg.attention_resolutions)
    words = [["circle"], ["square"], ["circle"], ["circle"]]
    _, plain = p2p_sample(model, masactrl(model, SRC, TGT), x_T, w3)
    ones = CrossAttentionMasks.for_words(model.tokenizer, SRC + TGT, words, r, threshold=-1.0)
    _, all_ones = p2p_sample(model, masactrl(model, SRC, TGT, auto_masks=ones), x_T, w3)
    assert max_abs(plain, all_ones) < 1e-12 and all(bool(m.all()) for m in ones.masks)
    half = CrossAttentionMasks.for_words(model.tokenizer, SRC + TGT, words, r, threshold=0.5)
    _, masked = p2p_sample(model, masactrl(model, SRC, TGT, auto_masks=half), x_T, w3)
    m_src, m_tgt = half.masks
    assert m_src.shape == (2, 1, r, r) and set(torch.cat([m_src, m_tgt]).unique().tolist()) == {0.0, 1.0}
    assert max_abs(masked, plain) > 1e-6
