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


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    from minidiff.metrics import frechet_distance

    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = (mu1 - mu2).pow(2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum()  # 5 + (4 + 1 + 0)
    assert abs(frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) - expected.item()) < 1e-10
    # a rotation of both covariances leaves it unchanged; a full covariance against itself gives 0
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    a, b = q @ torch.diag(s1).double() @ q.T, q @ torch.diag(s2).double() @ q.T
    assert abs(frechet_distance(q @ mu1.double(), a, q @ mu2.double(), b) - expected.item()) < 1e-9
    assert abs(frechet_distance(mu1, a, mu1, a)) < 1e-9


def test_feature_fid_of_samples_converges_to_the_closed_form():
    from minidiff.metrics import feature_fid

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(200_000, 2, generator=g, dtype=torch.float64) * 2 + 1  # N(1, 4 I)
    # closed form: |mu|^2 = 2, trace term 2 * (1 + 4 - 2 * 2) = 2  -> 4
    assert abs(feature_fid(x, y) - 4.0) < 0.05


def test_kernel_distance_is_unbiased_and_matches_a_loop():
    from minidiff.metrics import kernel_distance

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4000, 8, generator=g), torch.randn(4000, 8, generator=g)
    mean, std = kernel_distance(a, b, subsets=50, subset_size=200)
    assert abs(mean) < 4 * std / 50**0.5 + 1e-12  # same distribution: zero in expectation
    x, y = torch.randn(6, 3, generator=g).double(), (torch.randn(6, 3, generator=g) + 1).double()

    def k(u, v):
        return (u @ v / 3 + 1) ** 3

    m = 6
    ref = (sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
           - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2)
    got, _ = kernel_distance(x, y, subsets=1, subset_size=6)
    assert abs(got - ref.item()) < 1e-10
