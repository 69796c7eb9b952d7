"""The one way the project opens an input image (manifests' contents and styles, queries).

``open_image`` reads a local path or any URL fsspec understands and returns an 8-bit RGB image
the way a viewer shows it:
- EXIF orientation applied (phone photos are stored sideways with a rotation tag);
- 16-bit and 32-bit greyscale scaled to 8 bits (a plain ``convert("RGB")`` clips them, turning
  most 16-bit PNGs white);
- transparency composited over white (converting drops alpha, leaving whatever colour the
  transparent pixels happen to hold);
- images smaller than ``min_side`` refused (a 1x1 image stretched to a square is no style);
- images larger than ``max_pixels`` refused before they are decoded (decompression bombs).
Errors are ``ImageError`` naming the file.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps

from common import storage

MIN_SIDE = 8
MAX_PIXELS = 100_000_000
_WIDE_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and why."""


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16/32-bit greyscale -> 8-bit RGB, scaling the 16-bit range onto 0..255."""
    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")


def _without_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, as a viewer would show it (see the module notes)."""
    if image.mode in _WIDE_GREY:
        return _wide_grey_to_rgb(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _without_alpha(image)
    return image.convert("RGB")


def _decode(source: str | Path | BinaryIO, name: str, min_side: int, max_pixels: int) -> Image.Image:
    with Image.open(source) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{name}: {width}x{height} pixels is over the limit of {max_pixels} "
                             "(a decompression bomb or a mistake)")
        if min(width, height) < min_side:
            raise ImageError(f"{name}: {width}x{height} is too small (both sides must be at "
                             f"least {min_side} px)")
        return to_rgb(ImageOps.exif_transpose(image))


def _guarded(decode: Callable[[], Image.Image], name: str) -> Image.Image:
    """Run ``decode``; whatever PIL raises on a bad file becomes an ``ImageError`` naming it."""
    try:
        return decode()
    except ImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: cannot read the image: {exc}") from None


def _decode_local_or_url(path: str | Path, name: str, min_side: int, max_pixels: int) -> Image.Image:
    if storage.is_url(name):
        with storage.open_input(name) as fh:
            return _decode(fh, name, min_side, max_pixels)
    return _decode(path, name, min_side, max_pixels)


def open_image(path: str | Path, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a local path or an fsspec URL as 8-bit RGB; ``ImageError`` names the file."""
    name = str(path)
    return _guarded(lambda: _decode_local_or_url(path, name, min_side, max_pixels), name)


def image_from_bytes(data: bytes, name: str, min_side: int = MIN_SIDE,
                     max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An image held in memory (an upload), opened with every check of ``open_image``;
    ``ImageError`` names it by ``name``."""
    return _guarded(lambda: _decode(io.BytesIO(data), name, min_side, max_pixels), name)
