"""A style model as one object: images in, L2-normalised style codes out.

Checkpoints and baselines are built exactly as ``pipeline/eval.py`` builds them
(``models.factory``) and see their images through the same embedder and resize policy
(``models.embedder``), so codes from here and from an evaluation are the same numbers.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image

from common.config import load_config
from common.schema import Config
from common.images import open_image
from models.checkpoint import FileOverrides
from models.embedder import Embedder, EmbedderError
from models.encoder import ModelConfigError
from models.factory import ModelLoadError, baseline_models, checkpoint_model
from models.fuse import FusionError, check_weights, fuse
from stylecode.identity import ModelSpec, Recipe, StyleCodeError

ImageInput = Union[Image.Image, str, Path, torch.Tensor]
Prepared = Union[Image.Image, torch.Tensor]   # an input after its file, if any, is opened


def _as_list(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """A single image (or a (B, 3, H, W) batch tensor) as a list of images."""
    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (Image.Image, str, Path)):
        return [images]
    return list(images)


def _opened(images: Iterable[ImageInput]) -> Iterator[Prepared]:
    for image in images:
        yield open_image(image) if isinstance(image, (str, Path)) else image


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class StyleModel(ABC):
    """Embeds images into L2-normalised style codes; ``name``, ``hash`` and ``dim`` identify
    them (see ``stylecode.identity``)."""

    def __init__(self, recipe: Recipe, cfg: dict, device: torch.device):
        self.recipe, self.cfg, self.device = recipe, cfg, device

    @property
    def name(self) -> str:
        return self.recipe.name

    @cached_property
    def hash(self) -> str:
        return self.recipe.hash(self.cfg)

    @property
    @abstractmethod
    def dim(self) -> int:
        """The length of a code."""

    @abstractmethod
    def codes(self, images: Sequence[Prepared]) -> torch.Tensor:
        """(B, dim) float32 unit rows on ``device`` for one batch of opened images."""

    def embed(self, images: ImageInput | Iterable[ImageInput], batch_size: int = 32,
              as_torch: bool = False) -> np.ndarray | torch.Tensor:
        """Codes of PIL images, image files (paths or URLs, opened with ``open_image``) or
        tensors (3, H, W) / (B, 3, H, W) in [0, 1], in batches: a (N, dim) float32 numpy array,
        or a tensor on ``device`` with ``as_torch``. A single image gives one row."""
        parts = [self.codes(chunk) for chunk in _chunks(_opened(_as_list(images)), batch_size)]
        codes = torch.cat(parts) if parts else torch.zeros(0, self.dim, device=self.device)
        return codes if as_torch else codes.cpu().numpy()


class EncoderModel(StyleModel):
    """A checkpoint's encoder or a baseline: one ``models.embedder.Embedder``."""

    def __init__(self, recipe: Recipe, cfg: dict, embedder: Embedder):
        super().__init__(recipe, cfg, embedder.device)
        self.embedder = embedder
        self.image_size = embedder.image_size

    def codes(self, images: Sequence[Prepared]) -> torch.Tensor:
        try:
            batch = torch.stack([self.embedder.prepare(image) for image in images])
        except EmbedderError as exc:
            raise StyleCodeError(str(exc)) from None
        return self.embedder.codes(batch)[self.embedder.names[0]].float()

    @cached_property
    def dim(self) -> int:
        blank = torch.zeros(3, self.image_size, self.image_size)
        return int(self.codes([blank]).shape[1])


class FusedModel(StyleModel):
    """Two models' codes side by side, weighted (``models.fuse``: the published pairing)."""

    def __init__(self, recipe: Recipe, cfg: dict, parts: tuple[StyleModel, StyleModel]):
        super().__init__(recipe, cfg, parts[0].device)
        self.parts = parts
        try:  # now, not at the first batch
            check_weights(*recipe.weights)
        except FusionError as exc:
            raise StyleCodeError(str(exc)) from None

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self.parts)

    def codes(self, images: Sequence[Prepared]) -> torch.Tensor:
        a, b = (part.codes(images).cpu().numpy() for part in self.parts)
        try:
            fused = fuse(a, b, *self.recipe.weights)
        except FusionError as exc:
            raise StyleCodeError(f"{self.name}: {exc}") from None
        return torch.from_numpy(fused).to(self.device)


def _embedder(spec: ModelSpec, cfg: dict, device: torch.device,
              files: FileOverrides | None) -> Embedder:
    try:
        if not spec.is_baseline:
            return checkpoint_model(spec.name, spec.path, device, files)
        model, = baseline_models([spec.name], cfg, device)
    except (ModelLoadError, ModelConfigError, FileNotFoundError) as exc:
        raise StyleCodeError(str(exc)) from None
    except OSError as exc:  # a damaged checkpoint file: torch cannot even open it
        raise StyleCodeError(f"{spec}: cannot read the checkpoint ({exc})") from None
    return model


def build(recipe: Recipe, cfg: dict, device: str | torch.device | None = None,
          files: FileOverrides | None = None) -> StyleModel:
    """The model a recipe describes; baselines are built from ``cfg`` (a checkpoint brings
    its own spec). ``device``: default CUDA when available. ``files``: a checkpoint's
    pretrained files by name, where the installed packages do not hold them."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = [EncoderModel(Recipe((spec,)), cfg, _embedder(spec, cfg, device, files))
              for spec in recipe.specs]
    return models[0] if len(models) == 1 else FusedModel(recipe, cfg, (models[0], models[1]))


def load(*models: str | Path | ModelSpec, weights: Sequence[float] | None = None,
         config: Config | dict | str | Path | None = None, device: str | torch.device | None = None,
         files: FileOverrides | None = None) -> StyleModel:
    """Load a model: a checkpoint path (``[NAME=]PATH``) or ``"baseline:NAME"``; two of them
    make a fused pair (``weights``, default 1, 1). ``config``: a loaded config, a complete config
    dict (e.g. a saved one) or a YAML file for baselines (default: the embedded tiny config). ``files``: pretrained files a checkpoint
    names (``{"arbitrary_predict.onnx": PATH}``) found elsewhere than in the installed package."""
    cfg = (config if isinstance(config, Config) else Config.model_validate(config)
           if isinstance(config, dict) else load_config(config))
    return build(Recipe.parse(models, weights), cfg, device, files)
