"""Fused style codes: two models' codes side by side (the published NST + ALADIN-ViT pairing).

Each code is L2-normalised first so that neither model dominates by the scale of its raw
output; the weights then set each model's share of the cosine similarity: for fused codes
f = [w_a a, w_b b] / sqrt(w_a^2 + w_b^2), f.f' = (w_a^2 a.a' + w_b^2 b.b') / (w_a^2 + w_b^2).
"""
from __future__ import annotations

import numpy as np


class FusionError(ValueError):
    """Codes or weights that cannot be fused; the message says which."""


def check_weights(weight_a: float, weight_b: float) -> None:
    """Refuse weights that give no direction (callers check a config before any embedding)."""
    if weight_a < 0 or weight_b < 0 or weight_a + weight_b == 0:
        raise FusionError(f"fusion weights must be >= 0 and not both 0, "
                          f"got {weight_a}, {weight_b}")


def _unit_rows(codes: np.ndarray, name: str) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or not np.isfinite(codes).all():
        raise FusionError(f"{name}: expected a finite (images, dim) array, "
                          f"got shape {codes.shape}")
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    if (norms == 0).any():
        raise FusionError(f"{name}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros "
                          "and has no direction")
    return codes / norms


def fuse(codes_a: np.ndarray, codes_b: np.ndarray, weight_a: float = 1.0,
         weight_b: float = 1.0) -> np.ndarray:
    """Unit-norm float32 (images, dim_a + dim_b) codes: the weighted concatenation of the two
    L2-normalised codes, re-normalised."""
    check_weights(weight_a, weight_b)
    a, b = _unit_rows(codes_a, "codes_a"), _unit_rows(codes_b, "codes_b")
    if len(a) != len(b):
        raise FusionError(f"cannot fuse {len(a)} codes with {len(b)}: one code per image each")
    fused = np.concatenate([weight_a * a, weight_b * b], axis=1)
    return (fused / np.linalg.norm(fused, axis=1, keepdims=True)).astype(np.float32)
