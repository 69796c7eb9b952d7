"""Image encoding for shards: JPEG bytes in, RGB images out."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def to_pil(image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
    """Accept a PIL image, an HxWx3 uint8 array or a 3xHxW float tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0)
        return Image.fromarray(np.round(array).astype(np.uint8))
    return Image.fromarray(np.asarray(image, dtype=np.uint8))


def encode_jpeg(image: Image.Image | np.ndarray | torch.Tensor, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """HxW RGB PIL image -> 3xHxW float tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
