"""``gram``: image optimisation against Gram statistics of a random-filter CNN.

Following Ustyuzhaninov et al. (2016, "Texture synthesis using shallow convolutional networks
with random filters"), no trained network is needed: a small multi-scale CNN with random,
untrained filters (drawn from ``filter_seed``, so the network is the same in every process)
gives Gram statistics that capture texture. The image starts from the content plus a faint
seeded noise and is optimised with Adam so that the channel means and centred Gram matrices of
the image and of every layer approach the style's, while its features at ``content_layer``
(0 is the image itself) stay close to the content's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylize.base import NSTMethod, register_method

# Centre the input so that random filters see signed values, as trained CNNs do.
_INPUT_MEAN = 0.45
# Amplitude of the seeded starting noise: seeds texture in flat regions of the content.
_START_NOISE = 0.02


def _random_filter_network(layers: int, filters: int, seed: int) -> nn.ModuleList:
    """Stacked 3x3 conv + ReLU layers with He-scaled Gaussian random filters, no training."""
    generator = torch.Generator().manual_seed(seed)
    convs = nn.ModuleList()
    channels = 3
    for _ in range(layers):
        conv = nn.Conv2d(channels, filters, kernel_size=3, padding=1, padding_mode="reflect")
        weight = torch.randn(conv.weight.shape, generator=generator) * (2.0 / (channels * 9)) ** 0.5
        conv.weight.data.copy_(weight)
        conv.bias.data.zero_()
        conv.requires_grad_(False)
        convs.append(conv)
        channels = filters
    return convs


def _statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel means (B, F) and centred Gram matrices (B, F, F) of (B, F, H, W) features.

    Centring matters: an uncentred Gram of ReLU features is dominated by the mean responses
    (overall colour and brightness), and its texture part would barely be optimised.
    """
    flat = features.flatten(2)
    mean = flat.mean(-1)
    centred = flat - mean[..., None]
    return mean, centred @ centred.transpose(1, 2) / flat.shape[-1]


def _relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error per batch item, relative to the target's squared norm."""
    dims = tuple(range(1, value.dim()))
    return (value - target).square().sum(dims) / target.square().sum().clamp_min(1e-12)


@register_method("gram")
class RandomFilterGram(NSTMethod):
    def __init__(self, device: str | torch.device = "cpu", half: bool = False,
                 iterations: int = 30, filters: int = 24, layers: int = 3,
                 content_layer: int = 1, content_weight: float = 1.0, lr: float = 0.03,
                 filter_seed: int = 1, **options):
        super().__init__(device, half, **options)
        # Layer 0 is the image itself, 1..layers the convolution layers.
        if not 0 <= content_layer <= layers:
            raise ValueError(f"content_layer must be in [0, {layers}], got {content_layer}")
        self.iterations = int(iterations)
        self.filters = int(filters)
        self.layers = int(layers)
        self.content_layer = int(content_layer)
        self.content_weight = float(content_weight)
        self.lr = float(lr)
        self.filter_seed = int(filter_seed)
        self.network = _random_filter_network(self.layers, self.filters,
                                              self.filter_seed).to(self.device)

    def options(self) -> dict:
        return {"iterations": self.iterations, "filters": self.filters, "layers": self.layers,
                "content_layer": self.content_layer, "content_weight": self.content_weight,
                "lr": self.lr, "filter_seed": self.filter_seed}

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The image itself, then the feature maps of every layer (each at half the resolution
        of the one before, after the first); the image's own statistics pin down its colours."""
        current = images - _INPUT_MEAN
        features = [current]
        for index, conv in enumerate(self.network):
            if index > 0:
                current = F.avg_pool2d(current, 2, ceil_mode=True)
            current = F.relu(conv(current))
            features.append(current)
        return features

    def prepare_style(self, style: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The style's channel means (1, F) and centred Gram matrix (1, F, F) at every layer."""
        with torch.no_grad():
            features = self._features(style.to(self.device, torch.float32)[None])
        return [_statistics(f) for f in features]

    def _loss(self, image: torch.Tensor, style_statistics: list[tuple[torch.Tensor, torch.Tensor]],
              content_target: torch.Tensor, style_weight: float) -> torch.Tensor:
        features = self._features(image)
        # Relative errors make the layers (and the content term) comparable in scale.
        style_loss = sum(_relative_error(mean, style_mean) + _relative_error(gram, style_gram)
                         for (mean, gram), (style_mean, style_gram)
                         in zip(map(_statistics, features), style_statistics))
        content = features[self.content_layer]
        content_loss = ((content - content_target).square().mean((1, 2, 3))
                        / content_target.square().mean((1, 2, 3)).clamp_min(1e-8))
        # Summed over the batch: Adam is per-pixel, so every image is optimised independently.
        return (style_weight * style_loss + self.content_weight * content_loss).sum()

    def stylize(self, contents: torch.Tensor,
                style_state: list[tuple[torch.Tensor, torch.Tensor]],
                strength: float = 1.0, seed: int = 0) -> torch.Tensor:
        contents = contents.to(self.device, torch.float32)
        if strength <= 0.0:
            return contents.clone()
        generator = torch.Generator().manual_seed(seed)
        # One noise pattern for the batch, so an image's result does not depend on its batch.
        noise = torch.randn((1, *contents.shape[1:]), generator=generator).to(self.device)
        with torch.no_grad():
            content_target = self._features(contents)[self.content_layer]
        # Callers may run every method under no_grad or inference_mode; this one needs autograd.
        with torch.inference_mode(False), torch.enable_grad():
            image = (contents + _START_NOISE * noise).clamp(0.0, 1.0).requires_grad_(True)
            optimiser = torch.optim.Adam([image], lr=self.lr)
            for _ in range(self.iterations):
                optimiser.zero_grad(set_to_none=True)
                self._loss(image, style_state, content_target, float(strength)).backward()
                optimiser.step()
                with torch.no_grad():
                    image.clamp_(0.0, 1.0)
        return image.detach()
