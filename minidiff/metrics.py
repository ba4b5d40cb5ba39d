"""Image quality metrics: PSNR and SSIM (whole image or inside a mask).

Images are (B, C, H, W) in [-1, 1] (the project's convention), so the data range is 2:

    PSNR = 10 log10( range^2 / MSE )                                     dB, per image (B,)

    SSIM(x, y) = mean over pixels of  (2 mu_x mu_y + C1) (2 s_xy + C2)
                                      --------------------------------------
                                      (mu_x^2 + mu_y^2 + C1) (s_x^2 + s_y^2 + C2)

with local statistics from an 11x11 Gaussian window (sigma 1.5), C1 = (0.01 range)^2,
C2 = (0.03 range)^2 (Wang et al. 2004), averaged over channels; only pixels whose window
lies inside the image count ("valid" filtering). This is scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`,
which the tests check it against. A `mask` (B, 1, H, W) restricts the average to chosen
pixels (e.g. the region an edit must not touch); the windows still see their neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DATA_RANGE = 2.0  # images in [-1, 1]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    for name, v in (("x", x), ("y", y)):
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or inf")


def _check_range(x: Tensor, y: Tensor, data_range: float) -> None:
    """With the default data range 2, images are in [-1, 1]. Model outputs may overshoot it (they are scored as they
    are, unclipped, however far), but non-negative values beyond 10 are another convention: 8-bit pixel values."""
    for name, v in (("x", x), ("y", y)):
        if data_range == DATA_RANGE and v.numel() and v.min().item() >= 0 and v.max().item() > 10:
            raise ValueError(f"{name} has values in [{v.min().item():.4g}, {v.max().item():.4g}]: these metrics take "
                             "images in [-1, 1] (data range 2); convert 8-bit images with x / 127.5 - 1, or pass "
                             "data_range for another convention")


def mse(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error per image (B,), over all values or over the pixels where mask (B, 1, H, W) is 1."""
    _check_pair(x, y)
    err = (x.double() - y.double()) ** 2  # (B, C, H, W)
    if mask is None:
        return err.flatten(1).mean(1)
    m = _mask(mask, x).expand_as(err)
    return (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def psnr(x: Tensor, y: Tensor, mask: Tensor | None = None, data_range: float = DATA_RANGE) -> Tensor:
    """PSNR in dB per image (B,): 10 log10(range^2 / MSE); inf for identical images."""
    _check_range(x, y, data_range)
    return 10 * torch.log10(data_range**2 / mse(x, y, mask))  # mse checks the pair


def _mask(mask: Tensor, x: Tensor) -> Tensor:
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"mask must be (B, 1, H, W) = ({x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}), "
                         f"got {tuple(mask.shape)}")
    return mask.double()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 1-D Gaussian (size,), float64."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, data_range: float = DATA_RANGE, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM, averaged over channels: (B, 1, H - size + 1, W - size + 1), float64."""
    _check_pair(x, y)
    _check_range(x, y, data_range)
    if min(x.shape[-2:]) < size:
        raise ValueError(f"images must be at least {size}x{size} for an {size}x{size} SSIM window, "
                         f"got {tuple(x.shape)}")
    C = x.shape[1]
    g = gaussian_window(size, sigma).to(x.device)
    w = (g[:, None] * g[None, :]).expand(C, 1, size, size)  # (C, 1, k, k): one window per channel

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, w, groups=C)  # "valid": (B, C, H-k+1, W-k+1)

    x, y = x.double(), y.double()
    mu_x, mu_y = blur(x), blur(y)
    s_xx, s_yy, s_xy = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2))
    return s.mean(dim=1, keepdim=True)


def ssim(x: Tensor, y: Tensor, mask: Tensor | None = None, data_range: float = DATA_RANGE) -> Tensor:
    """Mean SSIM per image (B,); with a mask (B, 1, H, W), the mean over the valid pixels inside it."""
    s = ssim_map(x, y, data_range)  # (B, 1, h, w)
    if mask is None:
        return s.flatten(1).mean(1)
    pad = (x.shape[-1] - s.shape[-1]) // 2
    m = _mask(mask, x)[..., pad:pad + s.shape[-2], pad:pad + s.shape[-1]]  # window centres
    return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


# ---- distances between feature distributions (classifier-FID / classifier-KID) -------------------

def _sqrtm_psd(a: Tensor) -> Tensor:
    """Symmetric PSD square root by eigendecomposition (negative round-off eigenvalues -> 0)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017):

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1^{1/2} sigma2 sigma1^{1/2})^{1/2})

    (the symmetric form of Tr (sigma1 sigma2)^{1/2}, same eigenvalues, stable in float64).
    """
    mu1, mu2, sigma1, sigma2 = (v.double() for v in (mu1, mu2, sigma1, sigma2))
    s1 = _sqrtm_psd(sigma1)
    cross = _sqrtm_psd(s1 @ sigma2 @ s1)
    return ((mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(cross)).item()


def feature_fid(f1: Tensor, f2: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D), (N2, D)."""
    for f in (f1, f2):
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"features must be (N >= 2, D), got {tuple(f.shape)}")
    f1, f2 = f1.double(), f2.double()
    return frechet_distance(f1.mean(0), torch.cov(f1.T), f2.mean(0), torch.cov(f2.T))


def kernel_distance(f1: Tensor, f2: Tensor, subsets: int = 20, subset_size: int = 500, seed: int = 0
                    ) -> tuple[float, float]:
    """Kernel distance (KID, Binkowski et al. 2018): the unbiased MMD^2 with the kernel
    k(x, y) = (x . y / D + 1)^3, averaged over random subsets; returns (mean, std over subsets).

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/m^2 sum_{i, j} k(x_i, y_j)
    """
    f1, f2 = f1.double(), f2.double()
    m = min(subset_size, len(f1), len(f2))
    g = torch.Generator().manual_seed(seed)
    D, vals = f1.shape[1], []
    for _ in range(subsets):
        x = f1[torch.randperm(len(f1), generator=g)[:m]]
        y = f2[torch.randperm(len(f2), generator=g)[:m]]
        kxx, kyy, kxy = ((a @ b.T / D + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        vals.append((off - 2 * kxy.mean()).item())
    v = torch.tensor(vals, dtype=torch.float64)
    return v.mean().item(), v.std().item() if subsets > 1 else 0.0
