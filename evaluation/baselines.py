"""Untrained style descriptors evaluated exactly like a trained encoder.

Each baseline maps images (B, 3, H, W) in [0, 1] to L2-normalised codes. They start from the
same backbones as the encoder (``train.model``): the VGG weights file and the ViT name / local
pretrained file given there, random (seeded) weights when none is named.

- ``vgg_moments``: ALADIN-like, mean and std of every ReLU layer of the normalised VGG19 up to
  ``eval.moments_max_layer`` (relu4_1: the AdaIN encoder ALADIN takes its moments from).
- ``vgg_gram``: Gram matrices of a few VGG layers, channels compressed by a fixed random
  projection (P G Pᵀ) so relu4_1's 512x512 Gram becomes a small matrix; its upper triangle.
- ``vit_raw``: the ViT's pooled features.

The two VGG baselines share one VGG trunk and its forward pass.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylize.vgg import RELU_CHANNELS, RELU_INDEX, VGGFeatures
from train.model import ViTBranch, layer_moments, moment_norms, normalised_vgg, vgg_layers_up_to


class Normalised(nn.Module):
    """L2-normalises a descriptor so similarities are cosines, as for the encoder's codes."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(images).float().flatten(1), dim=1)


class ProjectedGram(nn.Module):
    """Upper triangles of P G Pᵀ per layer: G the channel Gram, P a fixed random projection."""

    def __init__(self, layers: list[str], channels: int, seed: int):
        super().__init__()
        self.layers = layers
        generator = torch.Generator().manual_seed(seed)
        for name in layers:
            width = RELU_CHANNELS[name]
            projection = torch.randn(min(channels, width), width, generator=generator) / width ** 0.5
            self.register_buffer(f"projection_{name}", projection)
        rows, cols = torch.triu_indices(channels, channels)
        self.register_buffer("triu_rows", rows, persistent=False)
        self.register_buffer("triu_cols", cols, persistent=False)

    def forward(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
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


class LayerMoments(nn.Module):
    """ALADIN's descriptor: LayerNormed mean and std of each layer (untrained norms)."""

    def __init__(self, layers: list[str]):
        super().__init__()
        self.layers = layers
        self.norms = moment_norms(layers)

    def forward(self, activations: dict[str, torch.Tensor]) -> torch.Tensor:
        return layer_moments(activations, self.norms)


class VGGBaselines(nn.Module):
    """The VGG baselines asked for, from one pass of one VGG trunk: both read activations of
    the same network, so computing them once halves the cost of evaluating both."""

    def __init__(self, names: list[str], cfg: dict):
        super().__init__()
        self.heads = nn.ModuleDict()
        if "vgg_moments" in names:
            self.heads["vgg_moments"] = LayerMoments(vgg_layers_up_to(cfg["eval"]["moments_max_layer"]))
        if "vgg_gram" in names:
            self.heads["vgg_gram"] = ProjectedGram(list(cfg["eval"]["gram_layers"]),
                                                   cfg["eval"]["gram_channels"], cfg["seed"])
        wanted = sorted({layer for head in self.heads.values() for layer in head.layers},
                        key=RELU_INDEX.get)
        weights = cfg["train"]["model"]["vgg"]["weights"]
        vgg = normalised_vgg(wanted[-1], Path(weights) if weights is not None else None)
        self.features = VGGFeatures(wanted, vgg)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        activations = self.features(images)
        return {name: F.normalize(head(activations).flatten(1), dim=1)
                for name, head in self.heads.items()}


def vit_raw(cfg: dict) -> nn.Module:
    return Normalised(ViTBranch(cfg["train"]["model"]["vit"], cfg["eval"]["image_size"]))


VGG_BASELINES = ("vgg_moments", "vgg_gram")
BASELINES = (*VGG_BASELINES, "vit_raw")


def build_baselines(names: list[str], cfg: dict) -> list[tuple[list[str], nn.Module]]:
    """The baselines by name as (names, network) pairs in eval mode: one network computes all
    the VGG baselines (returning a dict of codes), ``vit_raw`` is a network of its own.
    Random weights are seeded from ``cfg['seed']``."""
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise KeyError(f"unknown baseline '{unknown[0]}'; known: {', '.join(BASELINES)}")
    torch.manual_seed(cfg["seed"])
    built: list[tuple[list[str], nn.Module]] = []
    vgg_names = [name for name in names if name in VGG_BASELINES]
    if vgg_names:
        built.append((vgg_names, VGGBaselines(vgg_names, cfg).eval()))
    if "vit_raw" in names:
        built.append((["vit_raw"], vit_raw(cfg).eval()))
    return built
