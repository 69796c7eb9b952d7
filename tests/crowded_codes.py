"""Codes whose cosines crowd within a float32 step of 1 (as VGG Gram codes do), and the chunk
sizes x thread counts a ranking of them must not depend on."""
from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import torch

CHUNK_SIZES, THREAD_COUNTS = (1, 7, 256), (1, 2)


def crowded_codes(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    codes = (1.0 + 1e-4 * rng.standard_normal((n, dim))).astype(np.float32)
    return codes / np.linalg.norm(codes, axis=1, keepdims=True)


def each_chunk_size_and_thread_count() -> Iterator[tuple[int, int]]:
    """(chunk size, threads) for every pair, torch set to those threads while each is used."""
    threads = torch.get_num_threads()
    try:
        for count, chunk_size in itertools.product(THREAD_COUNTS, CHUNK_SIZES):
            torch.set_num_threads(count)
            yield chunk_size, count
    finally:
        torch.set_num_threads(threads)
