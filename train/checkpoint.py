"""Training checkpoints: one ``RUN/checkpoints/last.pt``, replaced atomically.

A checkpoint is a dict with ``model``, ``optimizer``, ``scheduler``, ``step``,
``data_position`` (where the batch stream stands) and ``config`` (the resolved config, without
credentials). It is written atomically (``common.storage.open_output``: locally a temporary file
renamed over ``last.pt``; on object storage one upload once it is whole), so a crash while
saving leaves the previous checkpoint intact. Run folders and checkpoints may be URLs.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from common import storage

CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.pt"
START_NAME = "step-0.pt"
ENCODER_KEYS = ("model", "config")   # what rebuilding the encoder needs
RESUME_KEYS = ("model", "optimizer", "scheduler", "step", "data_position", "config")


class CheckpointReadError(ValueError):
    """A file that cannot be read as a training checkpoint (empty, truncated, corrupt, or not a
    checkpoint at all), as opposed to a good checkpoint of another architecture."""


def _in_run(run_dir: str | Path, name: str) -> str | Path:
    return storage.path_or_url(storage.join(run_dir, CHECKPOINT_DIR, name))


def last_checkpoint_path(run_dir: str | Path) -> str | Path:
    """``RUN/checkpoints/last.pt``: a Path in a local run folder, else a URL."""
    return _in_run(run_dir, LAST_NAME)


def start_checkpoint_path(run_dir: str | Path) -> str | Path:
    """The untrained encoder of a run (written before its first step): its numbers beside the
    trained ones show what training changed."""
    return _in_run(run_dir, START_NAME)


def save_checkpoint(path: str | Path, state: dict) -> str | Path:
    """Write ``state`` to ``path`` atomically."""
    with storage.open_output(path) as fh:
        torch.save(state, fh)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    keys: tuple[str, ...] = ENCODER_KEYS) -> dict:
    """Read a checkpoint holding at least ``keys``; a file that cannot be read as one is a
    :class:`CheckpointReadError` naming it."""
    if not storage.is_file(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = storage.read_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file raises RuntimeError, EOFError, UnpicklingError...
        raise CheckpointReadError(f"{path} cannot be read as a checkpoint: {_damage(len(data), exc)}") from None
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointReadError(f"{path} is not a training checkpoint of this project: it lacks "
                                  f"{', '.join(missing)}")
    return state


def _damage(size: int, exc: Exception) -> str:
    if size == 0:
        return "the file is empty (0 bytes)"
    # The first sentence: torch appends paragraphs of advice to some of its messages.
    detail = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the file is truncated or corrupt ({size} bytes; torch.load: {detail})"
