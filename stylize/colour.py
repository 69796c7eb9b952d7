"""``colour``: colour statistics transfer in CIE Lab.

The content's Lab pixels are whitened and re-coloured with the style's Lab mean and covariance
(or, with ``full_covariance=False``, Reinhard-style per-channel mean and standard deviation).
Only the global colour mood moves; every pixel keeps its place, so the structure is intact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from stylize.base import NSTMethod, register_method
from stylize.parts.imageops import (blend, covariance_power, feature_moments, lab_to_rgb,
                              match_moments, rgb_to_lab)


@dataclass
class ColourStyle:
    mean: torch.Tensor       # (3, 1) Lab mean
    colouring: torch.Tensor  # (3, 3) square root of the Lab covariance (diagonal for Reinhard)


@register_method("colour")
class ColourTransfer(NSTMethod):
    def __init__(self, device: str | torch.device = "cpu", half: bool = False,
                 full_covariance: bool = True, eps: float = 1e-3, **options):
        super().__init__(device, half, **options)
        self.full_covariance = bool(full_covariance)
        self.eps = float(eps)

    def options(self) -> dict:
        return {"full_covariance": self.full_covariance, "eps": self.eps}

    def _lab_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return rgb_to_lab(images).flatten(2)

    def prepare_style(self, style: torch.Tensor) -> ColourStyle:
        pixels = self._lab_pixels(style.to(self.device, torch.float32)[None])[0]
        mean, covariance = feature_moments(pixels)
        if not self.full_covariance:
            covariance = torch.diag_embed(torch.diagonal(covariance))
        return ColourStyle(mean, covariance_power(covariance, 0.5, self.eps))

    def _per_channel_transfer(self, pixels: torch.Tensor, style: ColourStyle) -> torch.Tensor:
        mean, std = pixels.mean(-1, keepdim=True), pixels.std(-1, keepdim=True)
        target_std = torch.diagonal(style.colouring)[:, None]
        return (pixels - mean) / (std + self.eps * target_std) * target_std + style.mean

    def stylize(self, contents: torch.Tensor, style_state: ColourStyle, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        pixels = self._lab_pixels(contents)
        if self.full_covariance:
            moved = match_moments(pixels, style_state.mean, style_state.colouring, self.eps)
        else:
            moved = self._per_channel_transfer(pixels, style_state)
        # Blending in Lab interpolates the colour statistics perceptually.
        lab = blend(pixels, moved, strength).view_as(contents)
        return lab_to_rgb(lab)
