"""The normalised VGG19 used by the AdaIN family of NST methods.

The layout matches the published ``vgg_normalised.pth`` exactly (53 modules in one
``nn.Sequential``: a 1x1 input conv, then reflection-padded 3x3 convs, ReLUs and ceil-mode
max-pools), so that file loads with strict key matching. Inputs are RGB in [0, 1]; the 1x1 conv
of the published weights does the colour-order swap and mean subtraction itself.
"""
from __future__ import annotations

import torch
from torch import nn

# (stage, number of convs, output channels) of VGG19.
_STAGES = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _build_layers() -> tuple[list[nn.Module], dict[str, int]]:
    layers: list[nn.Module] = [nn.Conv2d(3, 3, kernel_size=1)]
    relu_index: dict[str, int] = {}
    channels = 3
    for stage, convs, width in _STAGES:
        for conv in range(1, convs + 1):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, width, kernel_size=3), nn.ReLU()]
            relu_index[f"relu{stage}_{conv}"] = len(layers) - 1
            channels = width
        if stage < 5:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True))
    return layers, relu_index


_LAYERS_TEMPLATE, RELU_INDEX = _build_layers()
NUM_MODULES = len(_LAYERS_TEMPLATE)  # 53, as in the published file
RELU_NAMES = list(RELU_INDEX)
RELU_CHANNELS = {name: next(w for s, _, w in _STAGES if name.startswith(f"relu{s}_"))
                 for name in RELU_NAMES}


def vgg_normalised(num_modules: int = NUM_MODULES) -> nn.Sequential:
    """The first ``num_modules`` modules of the normalised VGG19 (31 ends at relu4_1)."""
    layers, _ = _build_layers()
    return nn.Sequential(*layers[:num_modules])


def modules_up_to(relu_name: str) -> int:
    """How many leading modules end exactly at the named ReLU (e.g. relu4_1 -> 31)."""
    try:
        return RELU_INDEX[relu_name] + 1
    except KeyError:
        raise KeyError(f"unknown VGG layer '{relu_name}'; known: {', '.join(RELU_NAMES)}") from None


class VGGFeatures(nn.Module):
    """Runs a normalised VGG19 and returns the activations of the requested ReLU layers."""

    def __init__(self, layers: list[str], vgg: nn.Sequential | None = None):
        super().__init__()
        self.layers = list(layers)
        depth = max(modules_up_to(name) for name in self.layers)
        self.body = vgg if vgg is not None else vgg_normalised(depth)
        if len(self.body) < depth:
            raise ValueError(f"VGG has {len(self.body)} modules, {self.layers[-1]} needs {depth}")
        self._taps = {RELU_INDEX[name]: name for name in self.layers}
        self._depth = depth

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for index in range(self._depth):
            x = self.body[index](x)
            if index in self._taps:
                out[self._taps[index]] = x
        return out
