"""AdaIN (Huang & Belongie 2017) from the published ``vgg_normalised.pth`` and ``decoder.pth``.

As in the published test script: RGB inputs in [0, 1] without normalisation, the VGG cut at
relu4_1, AdaIN of the content features to the style's channel mean and std, and
``strength`` is the published ``alpha`` (a blend of the AdaIN feature with the content
feature before decoding). Images are reflect-padded to a multiple of 8 and the output cropped
back, so any content size works.

``preserve_color`` recolours the style to each content's colour mean and covariance before
encoding it (the published ``--preserve_color``); the style statistics then depend on the
content and are computed per content image instead of once per style.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stylize.base import register_method
from stylize.parts.checkpoint import PretrainedMethod, resolve_files
from stylize.parts.adain_family import (RELU4_1_STRIDE, adain, finish, load_decoder,
                                       load_vgg_encoder, mean_std, pad_to_multiple)
from stylize.parts.imageops import blend, symmetric_power

PUBLISHED_FILES = {"vgg": "vgg_normalised.pth", "decoder": "decoder.pth"}


def match_colours(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give a (3, H, W) image the colour mean and covariance of another (CORAL).

    Unlike the published code, correlations are divided by the pixel count, so images of
    different sizes are matched exactly rather than scaled by the ratio of their sizes.
    """
    def standardise(image: torch.Tensor):
        flat = image.reshape(3, -1).double()
        mean, std = flat.mean(dim=1, keepdim=True), flat.std(dim=1, keepdim=True) + eps
        normalised = (flat - mean) / std
        correlation = normalised @ normalised.T / (flat.shape[1] - 1)
        return normalised, mean, std, correlation + eps * torch.eye(3, dtype=flat.dtype)

    normalised, _, _, source_corr = standardise(source)
    _, mean, std, target_corr = standardise(target)
    whitened = symmetric_power(source_corr, -0.5, floor=1e-12) @ normalised
    coloured = symmetric_power(target_corr, 0.5, floor=1e-12) @ whitened * std + mean
    return coloured.reshape(source.shape).to(source.dtype)


@register_method("adain")
class AdaIN(PretrainedMethod):
    def __init__(self, vgg: str | Path | None = None, decoder: str | Path | None = None,
                 dir: str | Path | None = None, preserve_color: bool = False,
                 **base: Any):
        super().__init__(**base)
        self._files = resolve_files(dir, {"vgg": vgg, "decoder": decoder}, PUBLISHED_FILES)
        self.encoder = self._place(load_vgg_encoder(self._files["vgg"], ["relu4_1"],
                                                    what="adain vgg"))
        self.decoder = self._place(load_decoder(self._files["decoder"], what="adain decoder"))
        self.preserve_color = bool(preserve_color)

    def options(self) -> dict:
        return {**super().options(), "preserve_color": self.preserve_color}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """relu4_1 features of RGB images in [0, 1]."""
        return self.encoder(self._input(images))["relu4_1"]

    @torch.inference_mode()
    def prepare_style(self, style: torch.Tensor) -> Any:
        style = style.to(self.device, torch.float32)
        if self.preserve_color:
            return style
        return mean_std(self.encode(style[None]))

    @torch.inference_mode()
    def stylize(self, contents: torch.Tensor, style_state: Any, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        height, width = contents.shape[-2:]
        if self.preserve_color:
            recoloured = torch.stack([match_colours(style_state, c) for c in contents])
            style_mean, style_std = mean_std(self.encode(recoloured))
        else:
            style_mean, style_std = style_state
        content_features = self.encode(pad_to_multiple(contents, RELU4_1_STRIDE))
        features = blend(content_features, adain(content_features, style_mean, style_std),
                         strength)
        return finish(self.decoder(features), height, width)
