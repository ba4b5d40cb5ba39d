"""PSNR and SSIM against closed forms and against scikit-image (the reference implementation)."""

import math

import pytest
import torch

from minidiff.metrics import psnr, ssim, ssim_map


def images(seed: int, n: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 3, size + 4, size + 4, generator=g) * 2 - 1, 5, 1)
    return smooth.clamp(-1, 1)


def test_psnr_closed_form():
    x = torch.zeros(2, 3, 8, 8)
    y = x + torch.tensor([0.1, 0.02])[:, None, None, None]  # MSE 0.01 and 4e-4
    assert torch.allclose(psnr(x, y), torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 4e-4)],
                                                    dtype=torch.float64))
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1
    y2 = y.clone()
    y2[:, :, 4:] = 5.0  # outside the mask: ignored
    assert torch.allclose(psnr(x, y2, mask), psnr(x, y))


def test_ssim_identity_and_range():
    x = images(0)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    y = images(1)
    s = ssim(x, y)
    assert (s < 0.9).all() and (s > -1).all()


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    x, y = images(2), (images(2) + 0.3 * images(3)).clamp(-1, 1)
    ours = ssim(x, y)
    for b in range(3):
        ref = skm.structural_similarity(x[b].double().numpy(), y[b].double().numpy(), channel_axis=0, data_range=2.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ours[b].item() - ref) < 1e-10


def test_masked_ssim_averages_the_map_inside_the_mask():
    x, y = images(4), images(5)
    full = torch.ones(3, 1, 32, 32)
    assert torch.allclose(ssim(x, y, full), ssim(x, y))
    mask = torch.zeros(3, 1, 32, 32)
    mask[..., 5:16, 5:27] = 1  # window centres 5..15 -> map rows 0..10
    s_map = ssim_map(x, y)  # (3, 1, 22, 22)
    assert torch.allclose(ssim(x, y, mask), s_map[..., 0:11, 0:22].flatten(1).mean(1))


def test_bad_input_is_refused():
    x = images(0)
    with pytest.raises(ValueError, match="equal shape"):
        psnr(x, x[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        ssim(x, x * float("nan"))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match=r"mask must be \(B, 1, H, W\)"):
        psnr(x, x, torch.ones(3, 32, 32))
