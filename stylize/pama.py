"""PAMA (Luo et al. 2022, Progressive Attentional Manifold Alignment) from the published
``encoder.pth``, ``decoder.pth`` and ``PAMA1.pth``..``PAMA3.pth``.

Three alignment blocks refine the content's relu4_1 feature in turn, each attending to the
style's relu4_1 feature; the AdaIN-layout decoder renders the result. As published, the
encoder and decoder files are loaded non-strictly (the encoder file may hold VGG layers past
the 44 modules built here; extra keys are ignored, missing ones are still errors) and the
three blocks strictly. Inputs are RGB in [0, 1]; the published code runs on CUDA only, this
one on any device. Images are reflect-padded to a multiple of 8 and the output cropped back.

``strength`` blends the decoder input between the aligned feature (1, the published output)
and the content's relu4_1 feature (0), like AdaIN's alpha.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylize.base import register_method
from stylize.parts.checkpoint import PretrainedMethod, build_and_load, resolve_files
from stylize.parts.adain_family import (RELU4_1_STRIDE, StyleAttention, finish, load_decoder,
                                       load_vgg_encoder, pad_to_multiple)
from stylize.parts.imageops import blend

PUBLISHED_FILES = {"encoder": "encoder.pth", "decoder": "decoder.pth", "pama1": "PAMA1.pth",
                   "pama2": "PAMA2.pth", "pama3": "PAMA3.pth"}
ENCODER_MODULES = 44  # the published network keeps the VGG up to relu5_1


def _padded_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    pad = conv.kernel_size[0] // 2
    return conv(F.pad(x, (pad, pad, pad, pad), mode="reflect"))


class FuseUnit(nn.Module):
    """Mixes the content feature and the attended feature with a learned per-pixel weight."""

    def __init__(self, channels: int):
        super().__init__()
        self.proj1 = nn.Conv2d(2 * channels, channels, kernel_size=1)
        self.proj2 = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj3 = nn.Conv2d(channels, channels, kernel_size=1)
        self.fuse1x = nn.Conv2d(channels, 1, kernel_size=1)
        self.fuse3x = nn.Conv2d(channels, 1, kernel_size=3)
        self.fuse5x = nn.Conv2d(channels, 1, kernel_size=5)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        joint = self.proj1(torch.cat((first, second), dim=1))
        # Three receptive fields vote on the weight; the mean of sigmoids lies in [0, 1].
        weight = sum(torch.sigmoid(_padded_conv(conv, joint))
                     for conv in (self.fuse1x, self.fuse3x, self.fuse5x)) / 3
        return weight * self.proj2(first) + (1 - weight) * self.proj3(second)


class PAMABlock(nn.Module):
    """One published ``PAMA`` block: keys ``conv_in``, ``attn.{f,g,h,out_conv}``, ``fuse.*``,
    ``conv_out``."""

    def __init__(self, channels: int = 512):
        super().__init__()
        self.conv_in = nn.Conv2d(channels, channels, kernel_size=3)
        self.attn = StyleAttention(channels, channels // 2, nn.ReLU6(), residual=False)
        self.fuse = FuseUnit(channels)
        self.conv_out = nn.Conv2d(channels, channels, kernel_size=3)

    def style_keys(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attn.style_keys(F.relu6(_padded_conv(self.conv_in, style)))

    def forward(self, content: torch.Tensor, style_keys: tuple) -> torch.Tensor:
        content = F.relu6(_padded_conv(self.conv_in, content))
        attended = F.relu6(_padded_conv(self.conv_out, self.attn(content, *style_keys)))
        return self.fuse(content, attended)


@register_method("pama")
class PAMA(PretrainedMethod):
    def __init__(self, encoder: str | Path | None = None, decoder: str | Path | None = None,
                 pama1: str | Path | None = None, pama2: str | Path | None = None,
                 pama3: str | Path | None = None, dir: str | Path | None = None, **base: Any):
        super().__init__(**base)
        given = {"encoder": encoder, "decoder": decoder,
                 "pama1": pama1, "pama2": pama2, "pama3": pama3}
        self._files = resolve_files(dir, given, PUBLISHED_FILES)
        self.encoder = self._place(load_vgg_encoder(
            self._files["encoder"], ["relu4_1"], num_modules=ENCODER_MODULES, strict=False,
            what="pama encoder"))
        self.decoder = self._place(load_decoder(self._files["decoder"], strict=False,
                                                what="pama decoder"))
        self.blocks = self._place(nn.ModuleList(
            build_and_load(PAMABlock, self._files[option], what=f"pama {option}")
            for option in ("pama1", "pama2", "pama3")))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._input(images))["relu4_1"]

    @torch.inference_mode()
    def prepare_style(self, style: torch.Tensor) -> list[tuple]:
        # Every block attends to the same style feature: all their keys depend on the style only.
        style_features = self.encode(style[None])
        return [block.style_keys(style_features) for block in self.blocks]

    @torch.inference_mode()
    def stylize(self, contents: torch.Tensor, style_state: list[tuple], strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        height, width = contents.shape[-2:]
        content = self.encode(pad_to_multiple(self._input(contents), RELU4_1_STRIDE))
        aligned = content
        for block, style_keys in zip(self.blocks, style_state):
            aligned = block(aligned, style_keys)
        return finish(self.decoder(blend(content, aligned, strength)), height, width)
