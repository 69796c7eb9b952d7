"""Training checkpoints: one ``RUN/checkpoints/last.pt``, replaced atomically.

A checkpoint is a dict with ``model``, ``optimizer``, ``scheduler``, ``step``,
``data_position`` (where the batch stream stands) and ``config`` (the resolved config). It is
written to a temporary file in the same folder and renamed over ``last.pt``, so a crash while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.files import atomic_output

CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.pt"


def last_checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST_NAME


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_output(path) as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume (run without --resume "
                                "to start afresh)")
    return torch.load(path, map_location=map_location, weights_only=True)
