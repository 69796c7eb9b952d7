"""Batched image operations shared by the weight-free NST methods.

Colour-space conversion (sRGB <-> CIE Lab), a Laplacian pyramid, moment (mean/covariance)
matching of feature sets, and quantile (histogram) matching. Every function works on whole
batches with tensor ops, on whatever device its inputs live on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# sRGB (D65) <-> CIE XYZ, and the D65 white point used to normalise XYZ before Lab.
_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_D65_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_LAB_EPSILON = (6.0 / 29.0) ** 3
_LAB_KAPPA = (29.0 / 6.0) ** 2 / 3.0

# 5-tap binomial kernel: the classic Burt-Adelson pyramid filter.
_BINOMIAL_5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _apply_colour_matrix(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(images), images)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIE Lab (L in [0, 100], a and b roughly in [-128, 127])."""
    rgb = images.clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _apply_colour_matrix(linear, _RGB_TO_XYZ) / _D65_WHITE.to(images).view(1, 3, 1, 1)
    f = torch.where(xyz > _LAB_EPSILON, xyz.clamp_min(_LAB_EPSILON) ** (1.0 / 3.0),
                    xyz * _LAB_KAPPA + 4.0 / 29.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_lab``; colours outside the sRGB gamut are clipped to [0, 1]."""
    light, a, b = lab.unbind(1)
    fy = (light + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=1)
    xyz = torch.where(f > 6.0 / 29.0, f ** 3, (f - 4.0 / 29.0) / _LAB_KAPPA)
    xyz = xyz * _D65_WHITE.to(lab).view(1, 3, 1, 1)
    linear = _apply_colour_matrix(xyz, torch.linalg.inv(_RGB_TO_XYZ)).clamp(0.0, 1.0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055,
                      12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def blend(content: torch.Tensor, stylized: torch.Tensor, strength: float) -> torch.Tensor:
    """Linear content-style trade-off: strength 0 gives the content, 1 the full stylization
    (exactly: ``lerp`` returns its end point at weight 1). The AdaIN family blends features
    with it (AdaIN's alpha), the weight-free methods images."""
    return torch.lerp(content, stylized, float(strength))


# --- Laplacian pyramid -------------------------------------------------------------------------

def _blur(images: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    taps = _BINOMIAL_5.to(images)
    kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, 5, 5)
    # Reflection needs at least 3 pixels per side; tiny levels fall back to edge replication.
    mode = "reflect" if min(images.shape[-2:]) > 2 else "replicate"
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode=mode), kernel, groups=channels)


def _downsample(images: torch.Tensor) -> torch.Tensor:
    return _blur(images)[..., ::2, ::2]


def _upsample(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images, finest first, followed by the low-pass residual (``levels + 1`` items).

    Levels that would shrink below 2 pixels are skipped, so small images get fewer bands.
    """
    pyramid = []
    current = images
    for _ in range(levels):
        if min(current.shape[-2:]) < 4:
            break
        coarser = _downsample(current)
        pyramid.append(current - _upsample(coarser, current.shape[-2:]))
        current = coarser
    pyramid.append(current)
    return pyramid


def reconstruct_pyramid(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Exact inverse of ``laplacian_pyramid``."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = _upsample(image, band.shape[-2:]) + band
    return image


# --- moment matching ---------------------------------------------------------------------------

def feature_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (..., D, 1) and covariance (..., D, D) of features shaped (..., D, N)."""
    mean = features.mean(dim=-1, keepdim=True)
    centred = features - mean
    covariance = centred @ centred.transpose(-1, -2) / max(features.shape[-1] - 1, 1)
    return mean, covariance


def symmetric_power(matrix: torch.Tensor, power: float, floor: float = 0.0,
                    shift: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``matrix ** power`` of (a batch of) symmetric PSD matrices, through their eigenvalues,
    each clamped to at least ``floor`` and then raised by ``shift`` (a regulariser)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    eigenvalues = eigenvalues.clamp_min(floor) + shift
    return eigenvectors @ torch.diag_embed(eigenvalues ** power) @ eigenvectors.transpose(-1, -2)


def covariance_power(covariance: torch.Tensor, power: float, eps: float) -> torch.Tensor:
    """Symmetric matrix power of a covariance, regularised by ``eps`` times its mean variance.

    The relative regulariser keeps whitening of near-flat images (tiny eigenvalues) from
    blowing up noise, whatever the overall scale of the features.
    """
    scale = torch.diagonal(covariance, dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp_min(1e-8)
    return symmetric_power(covariance, power, shift=eps * scale)


def match_moments(features: torch.Tensor, target_mean: torch.Tensor,
                  target_colouring: torch.Tensor, eps: float) -> torch.Tensor:
    """Whiten (B, D, N) features per item, then colour them with a target's statistics.

    ``target_colouring`` is the square root of the target covariance (``covariance_power(cov,
    0.5, eps)``), computed once per style and shared by the whole batch.
    """
    mean, covariance = feature_moments(features)
    whitening = covariance_power(covariance, -0.5, eps)
    return target_colouring @ (whitening @ (features - mean)) + target_mean


# --- histogram matching ------------------------------------------------------------------------

def sorted_values(features: torch.Tensor) -> torch.Tensor:
    """(C, N) reference values, sorted per row: what ``match_histograms`` matches to."""
    return features.sort(dim=-1).values


def match_histograms(features: torch.Tensor, reference_sorted: torch.Tensor,
                     tie_break: torch.Tensor | None = None) -> torch.Tensor:
    """Give each row of (B, C, N) ``features`` the value distribution of ``reference_sorted``.

    Values keep their rank order; the k-th smallest takes the reference's quantile at the same
    fraction, linearly interpolated, so the reference may hold a different number of values.
    ``tie_break`` (broadcastable to ``features``, tiny) orders equal values, which are common in
    8-bit images and flat regions; without it they would be ranked in raster order.
    """
    count, reference_count = features.shape[-1], reference_sorted.shape[-1]
    keys = features if tie_break is None else features + tie_break
    order = keys.argsort(dim=-1)
    positions = ((torch.arange(count, device=features.device, dtype=features.dtype) + 0.5)
                 * reference_count / count - 0.5).clamp(0.0, reference_count - 1)
    lower = positions.floor().long()
    upper = (lower + 1).clamp_max(reference_count - 1)
    weight = positions - lower
    quantiles = torch.lerp(reference_sorted[..., lower], reference_sorted[..., upper], weight)
    matched = torch.empty_like(features)
    return matched.scatter_(-1, order, quantiles.expand_as(features).contiguous())
