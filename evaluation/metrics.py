"""Exact retrieval metrics over embeddings, in query chunks so memory stays bounded.

Similarity is the dot product (codes are L2-normalised, so it is the cosine). A query is never
part of its own gallery. Only a chunk of ``chunk_size`` queries x the whole gallery is held at a
time: no N x N matrix, so 100k images fit on a laptop or a GPU.

Ties follow scikit-learn's ``average_precision_score``: items with equal scores are retrieved
together, so a relevant item shares the precision of its whole tie group (pessimistic: every
item tied with it counts as ranked above it). The same rule gives the rank used for recall@k:
one plus the number of irrelevant gallery items scoring at least as high as the best relevant
item.

Average precision needs, for each relevant item, only how many gallery items score at least as
high as it. With the query's relevant scores sorted, one binary search per gallery item
(``searchsorted``) buckets it between two relevant scores; a per-bucket histogram then gives
every count at once, without sorting whole rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass
class Ranking:
    """Per-query results of one retrieval task."""

    ap: np.ndarray          # average precision in [0, 1]; nan where the query has no relevant item
    first_hit: np.ndarray   # rank (1-based) of the first relevant item; 0 where there is none

    @property
    def answerable(self) -> np.ndarray:
        return self.first_hit > 0

    def mean_ap(self) -> float:
        """Mean average precision in %, over queries with at least one relevant item."""
        valid = self.ap[self.answerable]
        return float(100.0 * valid.mean()) if valid.size else float("nan")

    def recall(self, k: int) -> float:
        """% of queries (with a relevant item) whose best relevant item ranks within the top k."""
        hits = self.first_hit[self.answerable]
        return float(100.0 * (hits <= k).mean()) if hits.size else float("nan")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _encode_labels(query_labels: Sequence, gallery_labels: Sequence) -> tuple[np.ndarray, np.ndarray, int]:
    """Map both label lists onto shared integer codes."""
    query = np.asarray(query_labels).astype(str)
    gallery = np.asarray(gallery_labels).astype(str)
    vocab, codes = np.unique(np.concatenate([query, gallery]), return_inverse=True)
    return codes[: len(query)], codes[len(query):], len(vocab)


def _relevant_table(gallery_codes: np.ndarray, n_labels: int) -> np.ndarray:
    """(labels, largest group) table of gallery indices per label, padded with -1."""
    counts = np.bincount(gallery_codes, minlength=n_labels)
    order = np.argsort(gallery_codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(order)) - starts[gallery_codes[order]]
    table = np.full((n_labels, max(int(counts.max()), 1)), -1, dtype=np.int64)
    table[gallery_codes[order], position] = order
    return table


def _first_hit(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Rank of the first relevant item per row (1 + irrelevant items scoring >= the best
    relevant one); 0 without one."""
    best = relevant.masked_fill(~valid, -float("inf")).max(1).values[:, None]
    irrelevant_above = (scores >= best).sum(1) - ((relevant >= best) & valid).sum(1)
    return torch.where(valid.any(1), irrelevant_above + 1, 0)


def _chunk_average_precision(scores: torch.Tensor, relevant: torch.Tensor,
                             valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AP and first-hit rank per query row, from the chunk's scores (c, N) and the relevant
    items' scores (c, m) with their mask; AP is nan and the rank 0 where nothing is relevant."""
    n_relevant = valid.sum(1)
    ascending, _ = relevant.masked_fill(~valid, float("inf")).sort(dim=1)
    # bucket[j] = how many relevant scores are <= score j, i.e. item j is retrieved no later
    # than the relevant items ascending[:bucket[j]].
    bucket = torch.searchsorted(ascending, scores, right=True)
    ones = torch.ones(1, dtype=bucket.dtype, device=scores.device).expand_as(bucket)  # no (c, N) copy
    histogram = torch.zeros(scores.shape[0], ascending.shape[1] + 1, dtype=torch.int64,
                            device=scores.device).scatter_add_(1, bucket, ones)
    # retrieved[:, i] = gallery items scoring >= ascending[:, i] (the item itself included).
    retrieved = histogram.flip(1).cumsum(1).flip(1)[:, 1:]
    # relevant items scoring >= ascending[:, i], ties included.
    relevant_retrieved = n_relevant[:, None] - torch.searchsorted(ascending, ascending, right=False)
    is_real = torch.arange(ascending.shape[1], device=scores.device)[None, :] < n_relevant[:, None]
    precision = torch.where(is_real, relevant_retrieved.double() / retrieved.clamp(min=1).double(), 0.0)
    ap = precision.sum(1) / n_relevant.clamp(min=1).double()
    # The best relevant item is the last real entry of the ascending scores.
    best_column = (n_relevant - 1).clamp(min=0)[:, None]
    irrelevant_above = (retrieved - relevant_retrieved).gather(1, best_column)[:, 0]
    first_hit = irrelevant_above + 1
    has_relevant = n_relevant > 0
    return torch.where(has_relevant, ap, float("nan")), torch.where(has_relevant, first_hit, 0)


def rank_queries(queries: np.ndarray | torch.Tensor, query_labels: Sequence,
                 gallery: np.ndarray | torch.Tensor | None = None,
                 gallery_labels: Sequence | None = None, *, chunk_size: int = 256,
                 device: str | torch.device | None = None, with_ap: bool = True) -> Ranking:
    """Rank a gallery for every query; relevant = same label.

    Without ``gallery`` the queries are their own gallery (each query excluded from its own).
    Float64 inputs are scored in float64, everything else in float32.
    """
    same_set = gallery is None
    if same_set:
        gallery, gallery_labels = queries, query_labels
    if gallery_labels is None:
        raise ValueError("gallery_labels are required with a gallery")
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("every embedding needs exactly one label")
    if len(queries) == 0 or len(gallery) == 0:
        raise ValueError("cannot rank an empty query set or gallery")
    device = torch.device(device) if device is not None else default_device()
    dtype = torch.float64 if torch.as_tensor(queries[:1]).dtype == torch.float64 else torch.float32
    query_codes, gallery_codes, n_labels = _encode_labels(query_labels, gallery_labels)
    table = torch.from_numpy(_relevant_table(gallery_codes, n_labels)).to(device)
    query_codes_t = torch.from_numpy(query_codes).to(device)
    gallery_t = torch.as_tensor(gallery).to(device, dtype)
    ap = np.full(len(queries), np.nan)
    first_hit = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk_size):
        stop = min(start + chunk_size, len(queries))
        chunk = torch.as_tensor(queries[start:stop]).to(device, dtype)
        scores = chunk @ gallery_t.T
        relevant_index = table[query_codes_t[start:stop]]
        valid = relevant_index >= 0
        if same_set:
            rows = torch.arange(start, stop, device=device)
            scores[rows - start, rows] = -float("inf")
            valid &= relevant_index != rows[:, None]
        relevant = scores.gather(1, relevant_index.clamp(min=0))
        if with_ap:
            chunk_ap, chunk_first_hit = _chunk_average_precision(scores, relevant, valid)
            ap[start:stop] = chunk_ap.cpu().numpy()
        else:
            chunk_first_hit = _first_hit(scores, relevant, valid)
        first_hit[start:stop] = chunk_first_hit.cpu().numpy()
    return Ranking(ap=ap, first_hit=first_hit)


def nearest_neighbours(embeddings: np.ndarray, query_positions: Sequence[int], k: int) -> np.ndarray:
    """(queries, k) positions of each query's k most similar other embeddings, best first
    (ties broken by position: a stable sort)."""
    data = torch.as_tensor(embeddings)
    positions = torch.as_tensor(list(query_positions), dtype=torch.long)
    scores = data[positions] @ data.T
    scores[torch.arange(len(positions)), positions] = -float("inf")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, : min(k, len(data) - 1)].numpy()
