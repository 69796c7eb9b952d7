"""Loading published NST checkpoint files, with errors that name the file and the keys.

The published NST projects release plain ``state_dict`` files saved with ``torch.save``. A file
that does not fit the network (a missing or renamed key, a tensor of the wrong shape) must fail
when the method is created, not produce silent garbage during a long stage-1 run.

``PretrainedMethod`` is the shared base of the methods built from such files: it resolves the
checkpoint paths (given one by one, or as a folder holding the published file names), places
the networks on the method's device in inference mode, and runs them in fp16 when asked.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from stylize.base import NSTMethod

_SHOWN_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into its network; the message names the file."""


def _describe(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    more = f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} ({shown}{more})"


def load_state(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` file onto the CPU; only tensors are accepted (``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download or a pickle of a whole model
        raise CheckpointError(f"{what}: cannot read {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise CheckpointError(f"{what}: {path} does not hold a state_dict of tensors")
    return dict(state)


def _rename(state: dict[str, torch.Tensor], prefix_map: Mapping[str, str]) -> dict:
    """Replace leading key prefixes, in the map's order (e.g. ``{"module.": ""}``)."""
    renamed = {}
    for key, value in state.items():
        for old, new in prefix_map.items():
            if key.startswith(old):
                key = new + key[len(old):]
        renamed[key] = value
    return renamed


def load_into(module: nn.Module, path: str | Path, strict: bool = True,
              prefix_map: Mapping[str, str] | None = None, what: str = "checkpoint") -> None:
    """Load a ``state_dict`` file into ``module``, refusing any mismatch with a clear message.

    ``strict=False`` tolerates keys in the file that the module does not have (a file saved
    from a deeper network); keys the module needs but the file lacks, and shape mismatches,
    are errors either way.
    """
    state = load_state(path, what)
    if prefix_map:
        state = _rename(state, prefix_map)
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    if missing:
        problems.append(f"missing keys {_describe(missing)}")
    unexpected = [k for k in state if k not in expected]
    if unexpected and strict:
        problems.append(f"unexpected keys {_describe(unexpected)}")
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if mismatched:
        problems.append(f"shape mismatches {_describe(mismatched)}")
    if problems:
        raise CheckpointError(f"{what}: {path} does not fit the network: " + "; ".join(problems))
    # assign: the file's tensors become the parameters, so a module built on the meta device
    # (see ``build_and_load``) never allocates and initialises weights only to overwrite them.
    module.load_state_dict({k: state[k] for k in expected}, strict=True, assign=True)


def build_and_load(factory: Callable[[], nn.Module], path: str | Path, strict: bool = True,
                   prefix_map: Mapping[str, str] | None = None,
                   what: str = "checkpoint") -> nn.Module:
    """Build ``factory()`` without initialising its weights, then load them from ``path``."""
    with torch.device("meta"):
        module = factory()
    load_into(module, path, strict=strict, prefix_map=prefix_map, what=what)
    return module


def _latest(folder: Path, pattern: str) -> Path:
    """The file matching ``pattern`` with the highest iteration number (``decoder_iter_*``)."""
    matches = sorted(folder.glob(pattern),
                     key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)] or [0])
    if not matches:
        raise FileNotFoundError(f"no file matching {pattern} in {folder}")
    return matches[-1]


def resolve_files(folder: str | Path | None, given: Mapping[str, str | Path | None],
                  published: Mapping[str, str]) -> dict[str, Path]:
    """Each checkpoint's path: given explicitly, else the published file name in ``folder``.

    ``published`` maps option names to the projects' file names, which may be glob patterns
    (the newest iteration wins).
    """
    paths = {}
    for option, file_name in published.items():
        if given.get(option) is not None:
            paths[option] = Path(given[option]).expanduser()
        elif folder is not None:
            paths[option] = _latest(Path(folder).expanduser(), file_name)
        else:
            raise TypeError(f"checkpoint '{option}' ({file_name}) not given: pass its path "
                            f"or 'dir', a folder holding the published files")
    return paths


class PretrainedMethod(NSTMethod):
    """A method built from published checkpoint files; runs without gradients."""

    supports_half = True

    def __init__(self, device: str | torch.device = "cpu", half: bool = False, **options: Any):
        super().__init__(device=device, half=half, **options)
        self.dtype = torch.float16 if self.half else torch.float32
        self._files: dict[str, Path] = {}

    def _place(self, module: nn.Module) -> nn.Module:
        module.eval().requires_grad_(False)
        return module.to(self.device, self.dtype)

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, self.dtype)

    def options(self) -> dict:
        # File names (not folders) say which published weights made an image, on any machine.
        return {option: path.name for option, path in self._files.items()}
