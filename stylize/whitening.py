"""``whitening``: multi-scale patch whitening-colouring on a Laplacian pyramid.

Each band-pass level of the content is cut into overlapping ``patch_size`` x ``patch_size``
RGB patches; their covariance is whitened and replaced by the covariance of the style band's
patches (a WCT on patches instead of deep features), and the patches are folded back by
averaging their overlaps. The low-pass residual gets the style's colour mean and covariance.
Texture and stroke statistics therefore move at every scale while edges stay where they were.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylize.base import NSTMethod, register_method
from stylize.parts.imageops import (blend, covariance_power, feature_moments, laplacian_pyramid,
                              match_moments, reconstruct_pyramid)


@dataclass
class LevelStatistics:
    mean: torch.Tensor       # (D, 1)
    colouring: torch.Tensor  # (D, D) square root of the covariance


@register_method("whitening")
class PatchWhitening(NSTMethod):
    def __init__(self, device: str | torch.device = "cpu", half: bool = False, levels: int = 3,
                 patch_size: int = 3, eps: float = 1e-2, **options):
        super().__init__(device, half, **options)
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
        self.levels = int(levels)
        self.patch_size = int(patch_size)
        self.eps = float(eps)

    def options(self) -> dict:
        return {"levels": self.levels, "patch_size": self.patch_size, "eps": self.eps}

    def _patches(self, band: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C * k * k, H * W): one patch centred on every pixel."""
        pad = self.patch_size // 2
        mode = "reflect" if min(band.shape[-2:]) > pad else "replicate"
        return F.unfold(F.pad(band, (pad,) * 4, mode=mode), self.patch_size)

    def _fold(self, patches: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Average overlapping patches back into a (B, C, H, W) band."""
        pad = self.patch_size // 2
        padded = (size[0] + 2 * pad, size[1] + 2 * pad)
        summed = F.fold(patches, padded, self.patch_size)
        counts = F.fold(torch.ones_like(patches[:1]), padded, self.patch_size)
        return (summed / counts)[..., pad:pad + size[0], pad:pad + size[1]]

    def _level_features(self, pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """Patch features of every band, plain pixel colours of the residual."""
        return [self._patches(band) for band in pyramid[:-1]] + [pyramid[-1].flatten(2)]

    def prepare_style(self, style: torch.Tensor) -> list[LevelStatistics]:
        pyramid = laplacian_pyramid(style.to(self.device, torch.float32)[None], self.levels)
        statistics = []
        for features in self._level_features(pyramid):
            mean, covariance = feature_moments(features[0])
            statistics.append(LevelStatistics(mean, covariance_power(covariance, 0.5, self.eps)))
        return statistics

    def stylize(self, contents: torch.Tensor, style_state: list[LevelStatistics],
                strength: float = 1.0, seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        pyramid = laplacian_pyramid(contents, self.levels)
        # A small style image may have fewer levels: its coarsest band then serves the rest.
        *band_stats, residual_stats = style_state
        moved = []
        for index, band in enumerate(pyramid[:-1]):
            stats = band_stats[min(index, len(band_stats) - 1)]
            patches = match_moments(self._patches(band), stats.mean, stats.colouring, self.eps)
            moved.append(self._fold(patches, band.shape[-2:]))
        residual = pyramid[-1]
        moved.append(match_moments(residual.flatten(2), residual_stats.mean,
                                   residual_stats.colouring, self.eps).view_as(residual))
        return blend(contents, reconstruct_pyramid(moved).clamp(0.0, 1.0), strength)
