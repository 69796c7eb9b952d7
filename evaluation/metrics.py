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
high as it; the first-hit rank needs that count for the best relevant item alone. Relevant sets
are small, so each row of a chunk's scores is compared directly with each of its m relevant
scores and the comparisons that hold are counted: m cheap, vectorised passes over the chunk's
scores, with no sorting of rows, no binary searches and no histograms. (The cost grows with m:
at some 50 relevant items per query it is about that of the similarity product itself.) Queries
are taken in order of their number of relevant items, so the rows of a chunk need about the same
m. On the CPU numpy compares into bytes, a cache-sized block of rows at a time, and sums the
bytes eight at a time as 64-bit words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass
class Ranking:
    """Per-query results of one retrieval task."""

    ap: np.ndarray          # average precision in [0, 1]; nan where the query has no relevant item
    first_hit: np.ndarray   # rank (1-based) of the first relevant item; 0 where there is none
    n_relevant: np.ndarray  # relevant gallery items per query
    gallery_size: int       # items ranked per query (the query itself excluded)

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

    def chance_map(self) -> float:
        """The mAP (%) a random order scores on these queries, exactly: with R relevant among
        N, E[AP] = (H_N + (R - 1) / (N - 1) * (N - H_N)) / N (H_N the N-th harmonic number)."""
        relevant = self.n_relevant[self.answerable].astype(np.float64)
        if not relevant.size:
            return float("nan")
        n = self.gallery_size
        harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
        expected = (harmonic + (relevant - 1) / max(n - 1, 1) * (n - harmonic)) / n
        return float(100.0 * expected.mean())

    def chance_recall(self, k: int) -> float:
        """The recall@k (%) of a random order, exactly: 1 - C(N - R, k) / C(N, k)."""
        relevant = self.n_relevant[self.answerable]
        if not relevant.size:
            return float("nan")
        n, k = self.gallery_size, min(k, self.gallery_size)
        miss = {r: _all_missed(n, int(r), k) for r in np.unique(relevant)}
        return float(100.0 * np.mean([1.0 - miss[r] for r in relevant]))


def _all_missed(n: int, r: int, k: int) -> float:
    """Probability that k items drawn from n without replacement miss all r relevant ones."""
    if n - r < k:
        return 0.0
    return math.exp(math.lgamma(n - r + 1) - math.lgamma(n - r - k + 1)
                    - math.lgamma(n + 1) + math.lgamma(n - k + 1))


# Bytes of one block of comparisons on the CPU (see _count_at_least_cpu): about the L2 cache.
_CPU_BLOCK = 1 << 20
_WORDS = 255   # 8-byte words of 0/1 bytes summed at once: at most 255 in any byte, no carry


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _encode_labels(query_labels: Sequence, gallery_labels: Sequence) -> tuple[np.ndarray, np.ndarray, int]:
    """Map both label lists onto shared integer codes; labels are equal when their text is."""
    query, gallery = np.asarray(query_labels), np.asarray(gallery_labels)
    # Integers of one kind, or strings, are equal exactly when their text is: no conversion.
    if not (query.dtype.kind == gallery.dtype.kind and query.dtype.kind in "iuU"):
        query, gallery = query.astype(str), gallery.astype(str)
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


def _queries_by_relevant_count(query_codes: np.ndarray, gallery_codes: np.ndarray, n_labels: int,
                               same_set: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each query's number of relevant gallery items, and the queries ordered by it: a chunk of
    similar counts pads its relevant scores little."""
    n_relevant = np.bincount(gallery_codes, minlength=n_labels)[query_codes] - int(same_set)
    return n_relevant, np.argsort(n_relevant, kind="stable")


def _count_at_least_cpu(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(c, k) number of entries of each score row (c, N) that are >= each of its k thresholds."""
    rows, width = scores.shape
    k = thresholds.shape[1]
    # One byte per comparison, in rows padded to whole groups of at most _WORDS 8-byte words;
    # the padding is never written, so stays False.
    words = -(-width // 8)
    group = min(words, _WORDS)
    padded = 8 * group * -(-words // group)
    block = max(1, min(rows, _CPU_BLOCK // (k * padded)))   # a cache-sized block of rows
    marks = np.zeros((block, k, padded), dtype=bool)
    counts = np.empty((rows, k), dtype=np.int64)
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        part = marks[: stop - start]
        np.greater_equal(scores[start:stop, None, :], thresholds[start:stop, :, None],
                         out=part[:, :, :width])
        # Add the marks 8 at a time as uint64 words, a group of words per sum so that no byte
        # of the sums exceeds 255 (no carry between bytes); then add up the bytes.
        sums = part.view(np.uint64).reshape(stop - start, k, -1, group).sum(-1)
        counts[start:stop] = sums.view(np.uint8).reshape(stop - start, k, -1).sum(-1)
    return counts


def _count_at_least_torch(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """As _count_at_least_cpu, for accelerators: a few large comparisons, each no larger than
    the chunk's scores."""
    rows, k = thresholds.shape
    block = max(1, rows // k)
    return torch.cat([(scores[i:i + block, None, :] >= thresholds[i:i + block, :, None]).sum(2)
                      for i in range(0, rows, block)])


def _count_at_least(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(c, k) number of entries of each score row (c, N) that are >= each of its k thresholds.

    On the CPU numpy does it, in one thread: its comparisons are vectorised into bytes (torch's
    into bool are not), and it does not stall, as torch's threads do, when each of its many
    small operations waits for threads that share the cores with other work. (Two threads,
    beside torch's, measured slower.)"""
    if scores.device.type == "cpu":
        return torch.from_numpy(_count_at_least_cpu(scores.numpy(), thresholds.numpy()))
    return _count_at_least_torch(scores, thresholds)


def _relevant_scores(scores: torch.Tensor, relevant_index: torch.Tensor,
                     own: torch.Tensor | None) -> torch.Tensor:
    """Each row's relevant scores (c, table width) in ascending order, then +inf. With ``own``
    (each row's own gallery position) that item is left out: its score in ``scores`` becomes
    -inf, which also takes it out of the ranking."""
    valid = relevant_index >= 0
    if own is not None:
        scores[torch.arange(len(own), device=scores.device), own] = -float("inf")
        valid &= relevant_index != own[:, None]
    relevant = scores.gather(1, relevant_index.clamp(min=0)).masked_fill(~valid, float("inf"))
    return relevant.sort(dim=1).values


def _rank_chunk(scores: torch.Tensor, ascending: torch.Tensor, n_real: torch.Tensor, width: int,
                with_ap: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """AP (None without ``with_ap``) and first-hit rank per query row, from the chunk's scores
    (c, N) and its relevant items' scores in ascending order, the first ``n_real`` of each row
    real and none beyond ``width``, then +inf; AP is nan and the rank 0 where nothing is relevant."""
    best = (n_real - 1).clamp(min=0)[:, None]
    # The rank needs the count at the best relevant score only.
    counted = ascending[:, :width].contiguous() if with_ap else ascending.gather(1, best)
    retrieved = _count_at_least(scores, counted)   # gallery items >= each counted score
    is_real = torch.arange(width, device=scores.device)[None, :] < n_real[:, None]
    # Relevant items >= each counted score, ties included: the same count among the real ones.
    real = ascending[:, :width].masked_fill(~is_real, -float("inf"))
    relevant_retrieved = _count_at_least(real, counted)
    has_relevant = n_real > 0
    best_column = best if with_ap else torch.zeros_like(best)
    irrelevant_above = (retrieved - relevant_retrieved).gather(1, best_column)[:, 0]
    first_hit = torch.where(has_relevant, irrelevant_above + 1, 0)
    if not with_ap:
        return None, first_hit
    precision = torch.where(is_real, relevant_retrieved.double() / retrieved.clamp(min=1).double(), 0.0)
    # Summed at the full width of the relevant scores, not the chunk's: a fixed layout, so a
    # query's AP is the same to the last bit whichever chunk it falls in.
    precision = torch.nn.functional.pad(precision, (0, ascending.shape[1] - width))
    ap = precision.sum(1) / n_real.clamp(min=1).double()
    return torch.where(has_relevant, ap, float("nan")), first_hit


def _take_rows(data: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """data[rows]. On the CPU through numpy, in one thread: torch shares so small a gather
    between its threads, and waits milliseconds for the second when the cores are busy."""
    if data.device.type == "cpu":
        return torch.from_numpy(data.numpy()[rows])
    return data[torch.from_numpy(rows).to(data.device)]


def rank_queries(queries: np.ndarray | torch.Tensor, query_labels: Sequence,
                 gallery: np.ndarray | torch.Tensor | None = None,
                 gallery_labels: Sequence | None = None, *, chunk_size: int = 256,
                 device: str | torch.device | None = None, with_ap: bool = True) -> Ranking:
    """Rank a gallery for every query; relevant = same label.

    Without ``gallery`` the queries are their own gallery (each query excluded from its own).
    Similarities are computed in float64 whatever the inputs: the codes of some models (VGG
    Grams) have cosines crowded within a float32 step of each other, and a float32 product
    rounds them differently with the chunk size and the thread count, which reorders ties and
    moves the mAP. Float32 codes multiply exactly in float64, so the rankings (and every digit
    a report prints) are the same whichever chunk size, thread count or device.
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
    query_codes, gallery_codes, n_labels = _encode_labels(query_labels, gallery_labels)
    n_relevant, order = _queries_by_relevant_count(query_codes, gallery_codes, n_labels, same_set)
    table = torch.from_numpy(_relevant_table(gallery_codes, n_labels)).to(device)
    query_codes_t, order_t = torch.from_numpy(query_codes).to(device), torch.from_numpy(order).to(device)
    n_relevant_t = torch.from_numpy(n_relevant).to(device)
    gallery_t = torch.as_tensor(gallery).to(device, torch.float64)
    queries_t = gallery_t if same_set else torch.as_tensor(queries).to(device, torch.float64)
    ap = np.full(len(queries), np.nan)
    first_hit = np.zeros(len(queries), dtype=np.int64)
    # One buffer for every chunk's scores: no fresh memory to fault in for each chunk.
    buffer = torch.empty(min(chunk_size, len(queries)), len(gallery), dtype=torch.float64, device=device)
    for start in range(0, len(queries), chunk_size):
        rows, rows_t = order[start:start + chunk_size], order_t[start:start + chunk_size]
        scores = torch.mm(_take_rows(queries_t, rows), gallery_t.T, out=buffer[: len(rows)])
        ascending = _relevant_scores(scores, table[query_codes_t[rows_t]], rows_t if same_set else None)
        width = max(int(n_relevant[rows[-1]]), 1)   # rows come by relevant count: the last is the widest
        chunk_ap, chunk_first_hit = _rank_chunk(scores, ascending, n_relevant_t[rows_t], width, with_ap)
        if chunk_ap is not None:
            ap[rows] = chunk_ap.cpu().numpy()
        first_hit[rows] = chunk_first_hit.cpu().numpy()
    return Ranking(ap=ap, first_hit=first_hit, n_relevant=n_relevant,
                   gallery_size=len(gallery) - int(same_set))


def nearest_neighbours(embeddings: np.ndarray, query_positions: Sequence[int], k: int) -> np.ndarray:
    """(queries, k) positions of each query's k most similar other embeddings, best first
    (ties broken by position: a stable sort)."""
    data = torch.as_tensor(embeddings)
    positions = torch.as_tensor(list(query_positions), dtype=torch.long)
    scores = data[positions] @ data.T
    scores[torch.arange(len(positions)), positions] = -float("inf")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, : min(k, len(data) - 1)].numpy()
