"""SANet (Park & Lee 2019) from ``vgg_normalised.pth``, ``decoder_iter_*.pth`` and
``transformer_iter_*.pth``, in the layout of the public PyTorch implementation.

Style-attentional blocks at relu4_1 and relu5_1; the relu5_1 result is upsampled onto relu4_1,
the sum goes through a 3x3 merge conv and the AdaIN decoder. Inputs are RGB in [0, 1] at their
native size. That size must be a multiple of 16 (relu5_1 is four pools deep and is upsampled
x2 onto relu4_1): contents are reflect-padded to one and the output is cropped back.

``strength`` blends the decoder input between the transformed feature (1, the published
output) and the content's relu4_1 feature (0), like AdaIN's alpha.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylize.base import register_method
from stylize.parts.checkpoint import PretrainedMethod, build_and_load, resolve_files
from stylize.parts.adain_family import (StyleAttention, finish, load_decoder, load_vgg_encoder,
                                       pad_to_multiple)
from stylize.parts.imageops import blend

PUBLISHED_FILES = {"vgg": "vgg_normalised.pth", "decoder": "decoder_iter_*.pth",
                   "transformer": "transformer_iter_*.pth"}
LAYERS = ["relu4_1", "relu5_1"]
SIZE_MULTIPLE = 16


class SANetTransform(nn.Module):
    """The published ``Transform``: key names ``sanet4_1.*``, ``sanet5_1.*``, ``merge_conv.*``."""

    def __init__(self, channels: int = 512):
        super().__init__()
        self.sanet4_1 = StyleAttention(channels, channels, nn.Identity(), residual=True)
        self.sanet5_1 = StyleAttention(channels, channels, nn.Identity(), residual=True)
        self.merge_conv = nn.Conv2d(channels, channels, kernel_size=3)

    def style_keys(self, style: dict[str, torch.Tensor]) -> dict[str, tuple]:
        return {"relu4_1": self.sanet4_1.style_keys(style["relu4_1"]),
                "relu5_1": self.sanet5_1.style_keys(style["relu5_1"])}

    def forward(self, content: dict[str, torch.Tensor], style_keys: dict[str, tuple]):
        attended4 = self.sanet4_1(content["relu4_1"], *style_keys["relu4_1"])
        attended5 = self.sanet5_1(content["relu5_1"], *style_keys["relu5_1"])
        merged = attended4 + F.interpolate(attended5, scale_factor=2, mode="nearest")
        return self.merge_conv(F.pad(merged, (1, 1, 1, 1), mode="reflect"))


@register_method("sanet")
class SANet(PretrainedMethod):
    def __init__(self, vgg: str | Path | None = None, decoder: str | Path | None = None,
                 transformer: str | Path | None = None, dir: str | Path | None = None,
                 **base: Any):
        super().__init__(**base)
        self._files = resolve_files(
            dir, {"vgg": vgg, "decoder": decoder, "transformer": transformer}, PUBLISHED_FILES)
        self.encoder = self._place(load_vgg_encoder(self._files["vgg"], LAYERS,
                                                    what="sanet vgg"))
        self.decoder = self._place(load_decoder(self._files["decoder"], what="sanet decoder"))
        self.transform = self._place(build_and_load(SANetTransform, self._files["transformer"],
                                                    what="sanet transformer"))

    @torch.inference_mode()
    def prepare_style(self, style: torch.Tensor) -> dict[str, tuple]:
        return self.transform.style_keys(self.encoder(self._input(style[None])))

    @torch.inference_mode()
    def stylize(self, contents: torch.Tensor, style_state: dict[str, tuple],
                strength: float = 1.0, seed: int = 0) -> torch.Tensor:
        height, width = contents.shape[-2:]
        content = self.encoder(pad_to_multiple(self._input(contents), SIZE_MULTIPLE))
        features = blend(content["relu4_1"], self.transform(content, style_state), strength)
        return finish(self.decoder(features), height, width)
