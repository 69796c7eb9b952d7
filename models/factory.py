"""Models by name: a training checkpoint or a registered baseline, as an ``Embedder``.

The one place evaluation and the Python API (``stylecode``) build a model from, so both see
the same network at the same input size: a checkpoint's encoder at the size it was trained at
(its spec says), a baseline at ``eval.image_size``.
"""
from __future__ import annotations

from pathlib import Path, PurePath

import torch

from common import storage
from common.schema import Config
from models.baselines import build_baselines
from models.checkpoint import CheckpointReadError, FileOverrides, load_encoder
from models.embedder import Embedder


class ModelLoadError(ValueError):
    """A model that cannot be built; the message names it and its file."""


def checkpoint_name(text: str) -> tuple[str, str | Path]:
    """``name=path`` or a plain path or URL (named after its run folder: RUN/checkpoints/x.pt
    -> RUN)."""
    name, sep, path = text.partition("=")
    if sep and "/" not in name:
        return name, storage.path_or_url(path)
    folder = storage.parent(text)
    if storage.name(folder) == "checkpoints":
        return storage.name(storage.parent(folder)), storage.path_or_url(text)
    return PurePath(storage.name(text)).stem, storage.path_or_url(text)


def checkpoint_model(name: str, path: str | Path, device: torch.device,
                     files: FileOverrides | None = None) -> Embedder:
    """The encoder of a training checkpoint, at the image size it was trained at."""
    if not storage.is_file(path):
        raise ModelLoadError(f"checkpoint {name}: file not found: {path}")
    try:
        encoder, _ = load_encoder(path, map_location=device, files=files)
    except CheckpointReadError as exc:  # the file itself is bad, whatever the config
        raise ModelLoadError(f"checkpoint {name}: {exc}") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"checkpoint {name} ({path}) does not fit the encoder its config "
                             f"describes (another architecture or config?): {exc}") from None
    return Embedder([name], encoder, encoder.image_size, device)


def baseline_models(names: list[str], cfg: Config, device: torch.device) -> list[Embedder]:
    """The baselines by name (those sharing a trunk as one network), at ``eval.image_size``."""
    try:
        baselines = build_baselines(names, cfg)
    except KeyError as exc:
        raise ModelLoadError(str(exc.args[0])) from None
    return [Embedder(members, net, cfg.eval.image_size, device) for members, net in baselines]
