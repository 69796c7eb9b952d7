"""The models an evaluation compares: training checkpoints and untrained baselines."""
from __future__ import annotations

from typing import Sequence

import torch

from evaluation.embed import EvalError
from models.embedder import Embedder, model_names
from models.factory import ModelLoadError, baseline_models, checkpoint_model, checkpoint_name
from common.schema import Config


def build_models(checkpoints: Sequence[str], cfg: Config, device: torch.device) -> list[Embedder]:
    """Checkpoints (``[name=]path``) first, then the baselines of ``eval.baselines``."""
    try:
        models = [checkpoint_model(*checkpoint_name(text), device) for text in checkpoints]
        models += baseline_models(list(cfg.eval.baselines), cfg, device)
    except ModelLoadError as exc:
        raise EvalError(str(exc)) from None
    names = model_names(models)
    if not models:
        raise EvalError("nothing to evaluate: give --checkpoint and/or baselines")
    if len(set(names)) != len(names):
        raise EvalError(f"model names must be unique, got {names}: use --checkpoint NAME=PATH")
    return models
