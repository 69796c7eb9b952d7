"""Parts shared by the AdaIN family (AdaIN, SANet, PAMA, CAST).

- ``adain_decoder``: the decoder that mirrors the normalised VGG19 up to relu4_1, in the layout
  of pytorch-AdaIN's ``decoder.pth`` (one ``nn.Sequential`` of 29 modules; SANet's
  ``decoder_iter_*.pth`` and PAMA's ``decoder.pth`` share it, CAST nests it as ``decoder.*``).
- channel statistics of feature maps (mean and std over space, unbiased variance + 1e-5)
  and AdaIN itself;
- ``load_vgg_encoder``: a ``vgg_normalised``-layout checkpoint cut to the layers a method uses;
- padding images to a multiple of the encoder's stride and cropping the result back.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylize.parts.checkpoint import build_and_load
from stylize.parts.vgg import NUM_MODULES, VGGFeatures, modules_up_to, vgg_normalised

# (input channels, output channels, upsample after this conv) of the decoder's convolutions.
_DECODER_CONVS = ((512, 256, True), (256, 256, False), (256, 256, False), (256, 256, False),
                  (256, 128, True),
                  (128, 128, False), (128, 64, True), (64, 64, False), (64, 3, False))

#: relu4_1 lies three ceil-mode max-pools deep: images are padded to multiples of this.
RELU4_1_STRIDE = 8


def adain_decoder() -> nn.Sequential:
    """Reflection-padded 3x3 convs with ReLUs and nearest x2 upsampling; no final ReLU."""
    layers: list[nn.Module] = []
    for index, (c_in, c_out, upsample) in enumerate(_DECODER_CONVS):
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, kernel_size=3)]
        if index < len(_DECODER_CONVS) - 1:
            layers.append(nn.ReLU())
        if upsample:
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*layers)


def load_decoder(path: str | Path, strict: bool = True, what: str = "decoder") -> nn.Sequential:
    return build_and_load(adain_decoder, path, strict=strict, what=what)


def load_vgg_encoder(path: str | Path, layers: list[str], num_modules: int = NUM_MODULES,
                     strict: bool = True, what: str = "vgg") -> VGGFeatures:
    """The first ``num_modules`` VGG modules loaded from ``path``, tapping ``layers``.

    With ``strict`` the file must hold exactly those modules' weights (``vgg_normalised.pth``:
    all 53); without it, extra keys in the file are ignored (PAMA's ``encoder.pth``). Modules
    past the deepest tapped layer are dropped after loading: they never run.
    """
    vgg = build_and_load(lambda: vgg_normalised(num_modules), path, strict=strict, what=what)
    depth = max(modules_up_to(name) for name in layers)
    return VGGFeatures(layers, nn.Sequential(*list(vgg)[:depth]))


def mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std over space, shaped (B, C, 1, 1).

    Computed in fp32: relu4_1 variances overflow fp16.
    """
    flat = features.flatten(2).float()
    mean = flat.mean(dim=2)[..., None, None]
    std = (flat.var(dim=2) + eps).sqrt()[..., None, None]
    return mean, std


def mean_variance_norm(features: torch.Tensor) -> torch.Tensor:
    mean, std = mean_std(features)
    return ((features.float() - mean) / std).to(features.dtype)


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Give every content channel the style's mean and std."""
    normalised = mean_variance_norm(content).float()
    return (normalised * style_std + style_mean).to(content.dtype)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad right and bottom so height and width are multiples of ``multiple``.

    The decoder's output then has exactly the padded size, and cropping it back keeps every
    original pixel's position (resizing would blur and shift them).
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def finish(output: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop a decoder output back to the content size, in fp32 and clamped to [0, 1]."""
    return output[..., :height, :width].float().clamp_(0.0, 1.0)


class StyleAttention(nn.Module):
    """Attention from content positions to style positions (SANet's block, PAMA's unit).

    Queries come from the normalised content, keys from the normalised style, values from the
    raw style, each through a 1x1 conv (``f``, ``g``, ``h``, the published key names) and
    ``activation``; ``out_conv`` maps the attended values back to ``channels``. The style's keys
    and values depend on the style alone, so ``style_keys`` computes them once per style.
    """

    def __init__(self, channels: int, inner_channels: int, activation: nn.Module,
                 residual: bool):
        super().__init__()
        self.f = nn.Conv2d(channels, inner_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, inner_channels, kernel_size=1)
        self.h = nn.Conv2d(channels, inner_channels, kernel_size=1)
        self.out_conv = nn.Conv2d(inner_channels, channels, kernel_size=1)
        self.activation = activation
        self.residual = residual

    def style_keys(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values), each (B, inner_channels, style positions)."""
        keys = self.activation(self.g(mean_variance_norm(style)))
        values = self.activation(self.h(style))
        return keys.flatten(2), values.flatten(2)

    def forward(self, content: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = content.shape
        queries = self.activation(self.f(mean_variance_norm(content))).flatten(2)
        # (B, content positions, style positions); a style batch of 1 broadcasts over contents.
        attention = torch.softmax(queries.transpose(1, 2) @ keys, dim=-1)
        attended = (values @ attention.transpose(1, 2)).view(batch, -1, height, width)
        out = self.activation(self.out_conv(attended))
        return content + out if self.residual else out
