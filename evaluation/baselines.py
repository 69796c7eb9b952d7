"""Untrained style descriptors evaluated exactly like a trained encoder.

Each baseline maps images (B, 3, H, W) in [0, 1] to L2-normalised codes. They start from the
same backbones as the encoder (``train.model``): the VGG weights file and the ViT name / local
pretrained file given there, random (seeded) weights when none is named.

- ``vgg_moments``: ALADIN-like, mean and std of every ReLU layer of the normalised VGG19 up to
  ``eval.moments_max_layer`` (relu4_1: the AdaIN encoder ALADIN takes its moments from).
- ``vgg_gram``: Gram matrices of a few VGG layers, channels compressed by a fixed random
  projection (P G Pᵀ) so relu4_1's 512x512 Gram becomes a small matrix; its upper triangle.
- ``vit_raw``: the ViT's pooled features.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylize.vgg import RELU_CHANNELS, VGGFeatures, modules_up_to, vgg_normalised
from train.model import ViTBranch, VGGMomentsBranch, load_vgg_weights


class Normalised(nn.Module):
    """L2-normalises a descriptor so similarities are cosines, as for the encoder's codes."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(images).float().flatten(1), dim=1)


class ProjectedGram(nn.Module):
    """Upper triangles of P G Pᵀ per layer: G the channel Gram, P a fixed random projection."""

    def __init__(self, layers: list[str], channels: int, vgg: nn.Sequential, seed: int):
        super().__init__()
        self.layers = layers
        self.features = VGGFeatures(layers, vgg)
        generator = torch.Generator().manual_seed(seed)
        for name in layers:
            width = RELU_CHANNELS[name]
            projection = torch.randn(min(channels, width), width, generator=generator) / width ** 0.5
            self.register_buffer(f"projection_{name}", projection)
        rows, cols = torch.triu_indices(channels, channels)
        self.register_buffer("triu_rows", rows, persistent=False)
        self.register_buffer("triu_cols", cols, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        activations = self.features(images)
        parts = []
        for name in self.layers:
            act = activations[name].float().flatten(2)                     # (B, C, HW)
            projected = getattr(self, f"projection_{name}") @ act           # (B, k, HW)
            gram = projected @ projected.transpose(1, 2) / act.shape[-1]    # (B, k, k)
            k = gram.shape[-1]
            keep = (self.triu_rows < k) & (self.triu_cols < k)
            upper = gram[:, self.triu_rows[keep], self.triu_cols[keep]]
            # Per-layer normalisation: deeper layers' Grams are orders of magnitude larger.
            parts.append(F.normalize(upper, dim=1))
        return torch.cat(parts, dim=1)


def vgg_moments(cfg: dict) -> nn.Module:
    vgg_cfg = dict(cfg["train"]["model"]["vgg"], max_layer=cfg["eval"]["moments_max_layer"],
                   trainable=False)
    return Normalised(VGGMomentsBranch(vgg_cfg))


def vgg_gram(cfg: dict) -> nn.Module:
    layers = list(cfg["eval"]["gram_layers"])
    vgg = vgg_normalised(max(modules_up_to(name) for name in layers))
    weights = cfg["train"]["model"]["vgg"]["weights"]
    if weights is not None:
        load_vgg_weights(vgg, Path(weights))
    return Normalised(ProjectedGram(layers, cfg["eval"]["gram_channels"], vgg, cfg["seed"]))


def vit_raw(cfg: dict) -> nn.Module:
    return Normalised(ViTBranch(cfg["train"]["model"]["vit"], cfg["eval"]["image_size"]))


BASELINES: dict[str, Callable[[dict], nn.Module]] = {
    "vgg_moments": vgg_moments, "vgg_gram": vgg_gram, "vit_raw": vit_raw}


def build_baseline(name: str, cfg: dict) -> nn.Module:
    """A baseline by name, in eval mode; random weights are seeded from ``cfg['seed']``."""
    try:
        factory = BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline '{name}'; known: {', '.join(BASELINES)}") from None
    torch.manual_seed(cfg["seed"])
    return factory(cfg).eval()
