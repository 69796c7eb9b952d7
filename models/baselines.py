"""Untrained and pretrained style descriptors, evaluated exactly like a trained encoder.

Each baseline maps images (B, 3, H, W) in [0, 1] to L2-normalised codes. A baseline is one
function decorated with ``@register_baseline("name")`` that builds its network from the config;
``eval.baselines`` names the ones to run. Baselines reading the same backbone declare a
``trunk`` (itself registered with ``@register_trunk``): the trunk then runs once per batch and
each baseline is a head on its activations.

- ``vgg_moments``: ALADIN-like, mean and std of every ReLU layer of the normalised VGG19 up to
  ``eval.moments_max_layer`` (relu4_1: the AdaIN encoder ALADIN takes its moments from).
- ``vgg_gram``: Gram matrices of a few VGG layers, channels compressed by a fixed random
  projection (P G Pᵀ) so relu4_1's 512x512 Gram becomes a small matrix; its upper triangle.
- ``vit_raw``: the ViT's pooled features.
- ``magenta_style``: the 100-d style vector of Magenta's pretrained style-prediction network
  (``stylize.magenta``; files from ``stylize.methods.magenta`` or the installed package): a
  network that learned style from ~80k paintings, the role ALADIN plays in the published
  tables. On splits stylized by that same network it scores the very code that conditioned the
  stylization: the report says so there.
- ``colour_hist``: a joint RGB histogram (``eval.colour_bins`` per channel), square-rooted: a
  trivial palette descriptor. Where it wins, a split measures palette, not style.

They start from the same backbones as the encoder (``train.model``): the VGG weights file and
the ViT name / local pretrained file given there, random (seeded) weights when none is named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from common.schema import Config, baseline_eval_keys
from models.encoder import ViTBranch, layer_moments, moment_norms, normalised_vgg, vgg_layers_up_to
from stylize.magenta import style_network
from stylize.parts.vgg import RELU_CHANNELS, RELU_INDEX, VGGFeatures


@dataclass(frozen=True)
class BaselineSpec:
    build: Callable[[dict], nn.Module]   # config -> network (images, or the trunk's output, -> codes)
    trunk: str | None
    conditions: str | None               # the NST method whose conditioning code it computes


# The eval keys the baselines (and the factory, which sizes their input) read: a baseline's
# hash (stylecode.identity) covers these and no other eval key, so it stays stable when
# evaluation settings (tagging, fusion) change. They are marked in the schema
# (common.schema.Eval, ``BASELINE_KEY``); tests/test_models.py checks that every eval key read
# in the model library is marked.
BASELINE_EVAL_KEYS = baseline_eval_keys()
_BASELINES: dict[str, BaselineSpec] = {}
_TRUNKS: dict[str, Callable[[dict, list[nn.Module]], nn.Module]] = {}


def register_baseline(name: str, trunk: str | None = None, conditions: str | None = None) -> Callable:
    """Register ``build(cfg) -> nn.Module`` as baseline ``name``; with ``trunk``, the module
    maps that trunk's output to codes, otherwise images to codes. ``conditions`` names the
    registered NST method whose own conditioning code the baseline computes (the report flags
    the splits that method stylized)."""
    def wrap(build: Callable[[dict], nn.Module]) -> Callable[[dict], nn.Module]:
        if name in _BASELINES:
            raise ValueError(f"baseline '{name}' registered twice")
        _BASELINES[name] = BaselineSpec(build, trunk, conditions)
        return build
    return wrap


def conditioning_baselines(names: list[str]) -> dict[str, str]:
    """Baseline name -> the NST method whose conditioning code it computes, for those named."""
    return {name: _BASELINES[name].conditions for name in names
            if name in _BASELINES and _BASELINES[name].conditions}


def register_trunk(name: str) -> Callable:
    """Register ``build(cfg, heads) -> nn.Module``: a backbone shared by several baselines."""
    def wrap(build: Callable[[dict, list[nn.Module]], nn.Module]) -> Callable:
        _TRUNKS[name] = build
        return build
    return wrap


def list_baselines() -> list[str]:
    return sorted(_BASELINES)


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


class SharedTrunk(nn.Module):
    """Several baselines from one pass of one backbone: a dict name -> codes."""

    def __init__(self, trunk: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        activations = self.trunk(images)
        return {name: F.normalize(head(activations).flatten(1), dim=1)
                for name, head in self.heads.items()}


@register_trunk("vgg")
def vgg_trunk(cfg: Config, heads: list[nn.Module]) -> nn.Module:
    """The normalised VGG19 tapping every layer its heads read (``head.layers``)."""
    wanted = sorted({layer for head in heads for layer in head.layers}, key=RELU_INDEX.get)
    weights = cfg.train.model.vgg.weights
    return VGGFeatures(wanted, normalised_vgg(wanted[-1], Path(weights) if weights is not None else None))


@register_baseline("vgg_moments", trunk="vgg")
def vgg_moments(cfg: Config) -> nn.Module:
    return LayerMoments(vgg_layers_up_to(cfg.eval.moments_max_layer))


@register_baseline("vgg_gram", trunk="vgg")
def vgg_gram(cfg: Config) -> nn.Module:
    return ProjectedGram(list(cfg.eval.gram_layers), cfg.eval.gram_channels, cfg.seed)


@register_baseline("vit_raw")
def vit_raw(cfg: Config) -> nn.Module:
    return ViTBranch(cfg.train.model.vit, cfg.eval.image_size)


class StyleVector(nn.Module):
    """Magenta's style-prediction network as a descriptor: images -> 100-d style vectors."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.style_vectors(images).to(images.device)


@register_baseline("magenta_style", conditions="magenta")
def magenta_style(cfg: Config) -> nn.Module:
    return StyleVector(style_network(cfg.stylize.methods))


class ColourHistogram(nn.Module):
    """Joint RGB histogram with ``bins`` per channel, square-rooted (Hellinger): comparing
    palettes by the cosine of these vectors weighs rare colours fairly against dominant ones."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        index = (images.float().clamp(0, 1) * self.bins).long().clamp_(max=self.bins - 1).flatten(2)
        cells = (index[:, 0] * self.bins + index[:, 1]) * self.bins + index[:, 2]     # (B, HW)
        counts = torch.zeros(len(images), self.bins ** 3, device=images.device)
        counts.scatter_add_(1, cells, torch.ones_like(cells, dtype=counts.dtype))
        return (counts / cells.shape[1]).sqrt()


@register_baseline("colour_hist")
def colour_hist(cfg: Config) -> nn.Module:
    return ColourHistogram(int(cfg.eval.colour_bins))


def build_baselines(names: list[str], cfg: Config) -> list[tuple[list[str], nn.Module]]:
    """The baselines by name as (names, network) pairs in eval mode, built in the order their
    first member is named: baselines sharing a trunk become one network returning a dict of
    codes, any other is a network of its own. Random weights are seeded from ``cfg.seed``."""
    unknown = [name for name in names if name not in _BASELINES]
    if unknown:
        raise KeyError(f"unknown baseline '{unknown[0]}'; known: {', '.join(list_baselines())}")
    torch.manual_seed(cfg.seed)
    built: list[tuple[list[str], nn.Module]] = []
    trunks_built: set[str] = set()
    for name in dict.fromkeys(names):
        spec = _BASELINES[name]
        if spec.trunk is None:
            built.append(([name], Normalised(spec.build(cfg)).eval()))
        elif spec.trunk not in trunks_built:
            trunks_built.add(spec.trunk)
            members = [n for n in dict.fromkeys(names) if _BASELINES[n].trunk == spec.trunk]
            heads = {member: _BASELINES[member].build(cfg) for member in members}
            trunk = _TRUNKS[spec.trunk](cfg, list(heads.values()))
            built.append((members, SharedTrunk(trunk, heads).eval()))
    return built
