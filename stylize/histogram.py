"""``histogram``: pyramid band histogram matching in the manner of Heeger and Bergen (1995).

Starting from the content (not from noise, so its layout survives), each round matches the
histogram of every Lab channel to the style's, then the histogram of every channel of every
Laplacian band to the style's band, reconstructs, and matches the pixel histograms once more.
Band values that tie (flat regions) are ordered by a seeded, image-independent jitter, which is
what lets the style's texture grow inside flat areas of the content.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from stylize.base import NSTMethod, register_method
from stylize.parts.imageops import (blend, lab_to_rgb, laplacian_pyramid, match_histograms,
                              reconstruct_pyramid, rgb_to_lab, sorted_values)

# Tie-break jitter, relative to each band's value spread: far below any real difference.
_JITTER = 1e-4


@dataclass
class HistogramStyle:
    pixels: torch.Tensor       # (3, N) sorted Lab values per channel
    bands: list[torch.Tensor]  # per band-pass level, finest first: (3, N_l) sorted
    residual: torch.Tensor     # (3, N_r) sorted values of the low-pass residual


@register_method("histogram")
class PyramidHistogramMatching(NSTMethod):
    def __init__(self, device: str | torch.device = "cpu", half: bool = False, levels: int = 4,
                 iterations: int = 2, **options):
        super().__init__(device, half, **options)
        self.levels = int(levels)
        self.iterations = int(iterations)

    def options(self) -> dict:
        return {"levels": self.levels, "iterations": self.iterations}

    def prepare_style(self, style: torch.Tensor) -> HistogramStyle:
        lab = rgb_to_lab(style.to(self.device, torch.float32)[None])
        *bands, residual = [sorted_values(level[0].flatten(1))
                            for level in laplacian_pyramid(lab, self.levels)]
        return HistogramStyle(sorted_values(lab[0].flatten(1)), bands, residual)

    def _jitter(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        # One pattern for the whole batch, so an image's result does not depend on its batch.
        return torch.rand((1, *shape), generator=generator).to(self.device) * _JITTER

    def _match_image(self, lab: torch.Tensor, reference: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        flat = lab.flatten(2)
        spread = flat.amax(-1, keepdim=True) - flat.amin(-1, keepdim=True) + 1e-6
        tie_break = self._jitter(flat.shape[1:], generator) * spread
        return match_histograms(flat, reference, tie_break).view_as(lab)

    @staticmethod
    def _band_reference(style: HistogramStyle, index: int) -> torch.Tensor:
        # A small style image may have fewer levels: its coarsest band serves the rest.
        return style.bands[min(index, len(style.bands) - 1)]

    def stylize(self, contents: torch.Tensor, style_state: HistogramStyle, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        generator = torch.Generator().manual_seed(seed)
        lab = self._match_image(rgb_to_lab(contents), style_state.pixels, generator)
        for _ in range(self.iterations):
            *bands, residual = laplacian_pyramid(lab, self.levels)
            matched = [self._match_image(band, self._band_reference(style_state, index), generator)
                       for index, band in enumerate(bands)]
            matched.append(self._match_image(residual, style_state.residual, generator))
            lab = self._match_image(reconstruct_pyramid(matched), style_state.pixels, generator)
        return blend(contents, lab_to_rgb(lab), strength)

