"""CAST (Zhang et al. 2022, domain-enhanced style transfer via contrastive learning) from the
published ``latest_net_AE.pth`` and ``latest_net_Dec_B.pth``.

CAST builds its encoder from ``vgg_normalised.pth`` but re-initialises and trains it, so the
encoder weights come from the AE file (keys ``enc_1.*``..``enc_4.*``: the VGG up to relu4_1
cut at relu1_1, relu2_1, relu3_1), never from VGG. The stylised image is
``Dec_B(AdaIN(AE(content), AE(style)))``, with ``Dec_B`` the AdaIN-layout decoder nested as
``decoder.*``. ``latest_net_Dec_A.pth`` is loaded by the published test script but takes no
part in the output, so it is not read. The published code saves the networks unwrapped;
files saved from a ``DataParallel`` wrapper (keys ``module.*``) are accepted too.

As published, both images are resized to 256x256 (bicubic; the ``image_size`` option changes
that) and mapped to [-1, 1]; the output is clamped to [-1, 1], mapped back to [0, 1] and
resized to the content's size.
``strength`` blends the decoder input between the AdaIN feature (1, the published output) and
the content's own feature (0).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylize.base import register_method
from stylize.parts.checkpoint import PretrainedMethod, build_and_load, resolve_files
from stylize.parts.adain_family import adain, adain_decoder, mean_std
from stylize.parts.imageops import blend
from stylize.parts.vgg import modules_up_to, vgg_normalised

PUBLISHED_FILES = {"ae": "latest_net_AE.pth", "dec_b": "latest_net_Dec_B.pth"}
IMAGE_SIZE = 256
# A DataParallel wrapper's prefix is dropped; the published files have none.
PREFIX_MAP = {"module.": ""}
_STAGE_ENDS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


class CastEncoder(nn.Module):
    """The published ``ADAIN_Encoder``: the VGG up to relu4_1 as ``enc_1``..``enc_4``."""

    def __init__(self):
        super().__init__()
        layers = list(vgg_normalised(modules_up_to("relu4_1")))
        start = 0
        for stage, relu in enumerate(_STAGE_ENDS, start=1):
            end = modules_up_to(relu)
            setattr(self, f"enc_{stage}", nn.Sequential(*layers[start:end]))
            start = end

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        for stage in range(1, len(_STAGE_ENDS) + 1):
            images = getattr(self, f"enc_{stage}")(images)
        return images


class CastDecoder(nn.Module):
    """The published ``Decoder``: the AdaIN decoder under the attribute ``decoder``."""

    def __init__(self):
        super().__init__()
        self.decoder = adain_decoder()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)


def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bicubic", antialias=True,
                         align_corners=False)


@register_method("cast")
class CAST(PretrainedMethod):
    def __init__(self, ae: str | Path | None = None, dec_b: str | Path | None = None,
                 dir: str | Path | None = None, image_size: int = IMAGE_SIZE, **base: Any):
        super().__init__(**base)
        self._files = resolve_files(dir, {"ae": ae, "dec_b": dec_b}, PUBLISHED_FILES)
        self.encoder = self._place(build_and_load(CastEncoder, self._files["ae"],
                                                  prefix_map=PREFIX_MAP, what="cast AE"))
        self.decoder = self._place(build_and_load(CastDecoder, self._files["dec_b"],
                                                  prefix_map=PREFIX_MAP, what="cast Dec_B"))
        self.image_size = int(image_size)

    def options(self) -> dict:
        return {**super().options(), "image_size": self.image_size}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """relu4_1-level features of RGB images in [0, 1], resized and mapped as published."""
        # Bicubic overshoots; the published pipeline resizes 8-bit images, which clips it.
        resized = _resize(images.float(), self.image_size, self.image_size).clamp(0.0, 1.0)
        return self.encoder(self._input(resized * 2.0 - 1.0))

    @torch.inference_mode()
    def prepare_style(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mean_std(self.encode(style.to(self.device)[None]))

    @torch.inference_mode()
    def stylize(self, contents: torch.Tensor, style_state: tuple, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        content = self.encode(contents.to(self.device))
        features = blend(content, adain(content, *style_state), strength)
        output = (self.decoder(features).float().clamp(-1.0, 1.0) + 1.0) / 2.0
        return _resize(output, *contents.shape[-2:]).clamp_(0.0, 1.0)
