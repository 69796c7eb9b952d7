"""One embedder and its one resize policy: images in, each model's codes out.

Every route to a code goes through here: evaluation, the Python API (``stylecode``) and the
encoder itself, so the same image gives the same floats whichever route it takes. The policy:
a PIL image is resized to the model's square input size with PIL's bicubic filter; a tensor
(3, H, W) or batch (B, 3, H, W) in [0, 1] with antialiased bilinear interpolation; an image
already at that size is left untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from shards.codec import pil_to_tensor

ImageLike = Union[Image.Image, torch.Tensor]


class EmbedderError(ValueError):
    """An input the embedder cannot use; the message says what it got."""


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch (B, 3, H, W) at ``size`` x ``size``: antialiased bilinear, so shrinking averages
    rather than aliases; untouched when already there."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def prepare(image: ImageLike, size: int) -> torch.Tensor:
    """A model's input for one image: (3, size, size) float in [0, 1] (see the module notes)."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise EmbedderError(f"an image tensor must be (3, H, W) RGB in [0, 1], got shape "
                                f"{tuple(image.shape)}")
        return resize_batch(image.float()[None], size)[0]
    target = (size, size)
    return pil_to_tensor(image.resize(target, Image.BICUBIC) if image.size != target else image)


@dataclass
class Embedder:
    """A network: images (B, 3, S, S) in [0, 1] -> (B, D) L2-normalised codes of the model
    ``names[0]``, or a dict name -> codes when one network computes several models (the VGG
    baselines share one trunk)."""

    names: list[str]
    net: nn.Module
    image_size: int
    device: torch.device

    def __post_init__(self):
        # Channels-last convolutions: the VGG trunk runs ~1.3x faster on a CPU (same codes).
        self.net = self.net.to(self.device, memory_format=torch.channels_last)

    def prepare(self, image: ImageLike) -> torch.Tensor:
        return prepare(image, self.image_size)

    @torch.no_grad()
    def codes(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each model's codes of a prepared batch (B, 3, S, S), on the device."""
        codes = self.net(batch.to(self.device, memory_format=torch.channels_last))
        return {self.names[0]: codes} if isinstance(codes, torch.Tensor) else codes

    def embed(self, images: Sequence[ImageLike]) -> dict[str, np.ndarray]:
        codes = self.codes(torch.stack([self.prepare(img) for img in images]))
        return {name: codes[name].float().cpu().numpy() for name in self.names}


def model_names(models: Sequence[Embedder]) -> list[str]:
    return [name for model in models for name in model.names]
