"""Where a training run keeps its checkpoints, and what resuming one needs.

Reading and writing a checkpoint is the model library's (``models.checkpoint``); a run folder
holds ``RUN/checkpoints/last.pt`` (replaced atomically as training goes) and ``step-0.pt`` (the
encoder before its first step). Run folders may be URLs.
"""
from __future__ import annotations

from pathlib import Path

from common import storage
from models.checkpoint import ENCODER_KEYS

CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.pt"
START_NAME = "step-0.pt"
# Beyond the encoder: where optimizer, schedule and batch stream stand.
RESUME_KEYS = (*ENCODER_KEYS, "optimizer", "scheduler", "step", "data_position")


def _in_run(run_dir: str | Path, name: str) -> str | Path:
    return storage.path_or_url(storage.join(run_dir, CHECKPOINT_DIR, name))


def last_checkpoint_path(run_dir: str | Path) -> str | Path:
    """``RUN/checkpoints/last.pt``: a Path in a local run folder, else a URL."""
    return _in_run(run_dir, LAST_NAME)


def start_checkpoint_path(run_dir: str | Path) -> str | Path:
    """The untrained encoder of a run (written before its first step): its numbers beside the
    trained ones show what training changed."""
    return _in_run(run_dir, START_NAME)
