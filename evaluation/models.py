"""The models an evaluation compares: training checkpoints and untrained baselines."""
from __future__ import annotations

from pathlib import Path, PurePath
from typing import Sequence

import torch

from common import storage
from evaluation.baselines import build_baselines
from evaluation.embed import Embedder, EvalError, model_names
from train.checkpoint import CheckpointReadError
from train.model import load_encoder


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


def load_checkpoint_model(name: str, path: str | Path, device: torch.device) -> Embedder:
    """The encoder of a training checkpoint, at the image size it was trained at."""
    if not storage.is_file(path):
        raise EvalError(f"checkpoint {name}: file not found: {path}")
    try:
        encoder, train_cfg = load_encoder(path, map_location=device)
    except CheckpointReadError as exc:  # the file itself is bad, whatever the config
        raise EvalError(f"checkpoint {name}: {exc}") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        raise EvalError(f"checkpoint {name} ({path}) does not fit the encoder its config "
                        f"describes (another architecture or config?): {exc}") from None
    return Embedder([name], encoder, train_cfg["train"]["image_size"], device)


def build_models(checkpoints: Sequence[str], cfg: dict, device: torch.device) -> list[Embedder]:
    """Checkpoints (``[name=]path``) first, then the baselines of ``eval.baselines``."""
    models = [load_checkpoint_model(*checkpoint_name(text), device) for text in checkpoints]
    try:
        baselines = build_baselines(list(cfg["eval"]["baselines"]), cfg)
    except KeyError as exc:
        raise EvalError(str(exc.args[0])) from None
    models += [Embedder(names, net, cfg["eval"]["image_size"], device)
               for names, net in baselines]
    names = model_names(models)
    if not models:
        raise EvalError("nothing to evaluate: give --checkpoint and/or baselines")
    if len(set(names)) != len(names):
        raise EvalError(f"model names must be unique, got {names}: use --checkpoint NAME=PATH")
    return models
