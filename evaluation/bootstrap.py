"""How sure a difference between two models is: a paired bootstrap over the clusters their
queries come in.

A test split crosses styles with contents: every query is one stylization, a (style, content)
pair, and its average precision depends on both (a hard style is hard in all its stylizations,
a content that leaks leaks in every style). Resampling the queries alone would count 400
stylizations of 20 styles x 48 contents as 400 independent draws and give intervals far too
narrow. Each resample here draws the styles and the contents instead, independently and with
replacement, and weights a query by how often its style times how often its content was drawn
(the pigeonhole bootstrap for crossed factors, Owen 2007); sibling styles of one group can be
drawn together by giving their group as the style factor. With one factor (labelled retrieval:
the works of one artist query together) it is the plain cluster bootstrap. Both models are
scored on the same draw (paired), so what varies between them is measured, not the split's
difficulty. The interval is the central ``level`` of the draws' differences (percentile).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

WEIGHTS_PER_BLOCK = 2_000_000   # resamples x queries held in memory at once (float64: 16 MB)


@dataclass(frozen=True)
class Difference:
    """Mean AP of model a minus model b, in points (%), with its bootstrap interval."""

    value: float
    low: float
    high: float
    resamples: int          # draws that held at least one query (the interval's sample)

    @property
    def settled(self) -> bool:
        return settled((self.value, self.low, self.high))

    def as_list(self) -> list[float]:
        return [round(self.value, 2), round(self.low, 2), round(self.high, 2)]


def settled(entry: Sequence[float]) -> bool:
    """``[difference, low, high]``: the interval leaves out zero, so the split tells which model
    is ahead."""
    return entry[1] > 0 or entry[2] < 0


def interval_text(entry: Sequence[float]) -> str:
    """``[difference, low, high]`` (``Difference.as_list``) as ``+1.23 [-0.50, +2.90]``."""
    value, low, high = entry
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"


def _codes(labels: Sequence) -> tuple[np.ndarray, int]:
    unique, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.ravel(), len(unique)


def draw_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``size`` resamples of ``n`` draws."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size)


def paired_difference(scores_a: np.ndarray, scores_b: np.ndarray, groups: Sequence,
                      crossed: Sequence | None = None, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> Difference:
    """Mean of ``scores_a`` minus mean of ``scores_b`` (per-query values in [0, 1]: AP, a hit at
    rank 1; nan where a query has no relevant item: left out) in points, with a bootstrap
    interval over the queries' ``groups`` (a test split: their styles) and, where given, the
    factor ``crossed`` with them (their contents): see the module docstring."""
    scores_a = np.asarray(scores_a, dtype=np.float64)
    scores_b = np.asarray(scores_b, dtype=np.float64)
    crossed = np.zeros(len(groups), dtype=np.int64) if crossed is None else crossed
    if not (len(scores_a) == len(scores_b) == len(groups) == len(crossed)):
        raise ValueError("paired_difference: every query needs a score from both models and a "
                         "group (and a crossed factor, where given)")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_difference: level must be in (0, 1), not {level}")
    keep = ~(np.isnan(scores_a) | np.isnan(scores_b))
    if not keep.any():
        raise ValueError("paired_difference: no query has a relevant item")
    delta = 100.0 * (scores_a[keep] - scores_b[keep])
    rows, n_rows = _codes(np.asarray(groups)[keep])
    columns, n_columns = _codes(np.asarray(crossed)[keep])
    rng = np.random.default_rng(seed)
    draws = []
    block = max(1, WEIGHTS_PER_BLOCK // len(delta))
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        weights = (draw_counts(rng, n_rows, size)[:, rows]
                   * draw_counts(rng, n_columns, size)[:, columns]).astype(np.float64)
        totals = weights.sum(axis=1)
        # A draw can miss every query when the factors are sparsely crossed: it says nothing
        # about the difference, so it is left out rather than counted as zero.
        draws.append((weights @ delta)[totals > 0] / totals[totals > 0])
    values = np.concatenate(draws) if draws else np.empty(0)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = (np.percentile(values, [tail, 100.0 - tail]) if values.size
                 else (float("nan"), float("nan")))
    return Difference(float(delta.mean()), float(low), float(high), int(values.size))
