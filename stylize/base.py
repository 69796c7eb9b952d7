"""The NST method interface and its registry.

A method is created once (weights loaded once per Ray actor), then called many times with a
batch of content images and one style. Style features are computed once per style by
``prepare_style`` and reused for every content batch of that style.

Images are float tensors in [0, 1], RGB, shaped (B, 3, H, W) for contents and (3, H, W) for a
style; outputs have the contents' shape, lie in [0, 1], and live on the method's device.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch

_REGISTRY: dict[str, type["NSTMethod"]] = {}


class NSTMethod(ABC):
    name: ClassVar[str] = ""
    #: Methods built from convolution networks can run in fp16 on a GPU.
    supports_half: ClassVar[bool] = False

    def __init__(self, device: str | torch.device = "cpu", half: bool = False, **options: Any):
        if options:
            raise TypeError(f"NST method '{self.name}' got unknown options: {sorted(options)}")
        self.device = torch.device(device)
        self.half = bool(half and self.supports_half and self.device.type == "cuda")

    def options(self) -> dict:
        """The constructor options that shape the output, recorded with every stylization."""
        return {}

    def prepare_style(self, style: torch.Tensor) -> Any:
        """Compute what the method needs from one style image (default: the image itself)."""
        return style.to(self.device, torch.float32)

    @abstractmethod
    def stylize(self, contents: torch.Tensor, style_state: Any, strength: float = 1.0,
                seed: int = 0) -> torch.Tensor:
        """Stylize a batch of contents with a prepared style; ``seed`` fixes any randomness."""

    def __call__(self, contents: torch.Tensor, style: torch.Tensor, strength: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
        return self.stylize(contents.to(self.device, torch.float32), self.prepare_style(style),
                            strength=strength, seed=seed)


def register_method(name: str) -> Callable[[type[NSTMethod]], type[NSTMethod]]:
    def wrap(cls: type[NSTMethod]) -> type[NSTMethod]:
        if name in _REGISTRY:
            raise ValueError(f"NST method '{name}' registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def create_method(name: str, **options: Any) -> NSTMethod:
    """Build a registered method by name; options go to its constructor."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown NST method '{name}'; known: {', '.join(list_methods())}") from None
    return cls(**options)


def configured_method(name: str, methods_cfg: dict) -> tuple[str, dict]:
    """The registered method and constructor options of the config entry ``stylize.methods.<name>``.

    An entry may name its registered method with a ``method`` key, so that one method can
    appear under several names with different options (``magenta_coarse: {method: magenta,
    work_size: 128}``); without it the entry's own name is the method.
    """
    options = dict(methods_cfg.get(name) or {})
    return options.pop("method", name), options
