"""Tagging metrics from a score matrix (images x vocabulary) and its boolean ground truth.

Definitions (all reported in %, like the retrieval metrics of ``evaluation/``):

- **tag mAP** (image -> tags): each image ranks the whole vocabulary; relevant = its tags.
  Mean average precision over images with at least one relevant tag.
- **tag recall@k**: the fraction of an image's relevant tags that rank within its top k,
  averaged over images with at least one relevant tag. (Not "at least one hit": with several
  tags per image, the fraction says how much of the tagging is recovered. It cannot reach 100
  for an image with more than k tags.)
- **text-to-image mAP** (tag -> images, search by words): each tag ranks all images; relevant =
  the images carrying it. Mean over tags with at least one relevant image.
- **zero-shot** variants: the ground truth is restricted to the zero-shot tags (tags never seen
  in training) while the ranking stays over the whole vocabulary, so a seen tag scored above a
  zero-shot one costs precision, as it would in use.

Ties follow scikit-learn's ``average_precision_score`` (pessimistic): an item's rank is the number
of items scoring at least as high as it, its tie group included. Recall@k uses the same rank, so a
tie group straddling position k counts as outside the top k.

Chance levels are exact expectations under random scores (a uniformly random ranking; random
continuous scores have no ties): for N ranked items of which R are relevant,
E[AP] = (H_N + (R - 1) / (N - 1) * (N - H_N)) / N with H_N the N-th harmonic number (a relevant
item at position p has on average (p - 1)(R - 1)/(N - 1) relevant items above it), and
E[recall@k] = min(k, N) / N.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tagging.tags import TaggingError

CHUNK_ROWS = 1024  # rows ranked at a time: bounds memory at a few (chunk x vocabulary) arrays


def _check(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, truth = np.asarray(scores), np.asarray(truth)
    if scores.ndim != 2 or scores.shape != truth.shape:
        raise TaggingError(f"scores {scores.shape} and ground truth {truth.shape} must be "
                           "(images, vocabulary) matrices of one shape")
    if truth.dtype != bool:
        raise TaggingError(f"the ground truth must be a boolean matrix, got {truth.dtype}")
    if not np.isfinite(scores).all():
        raise TaggingError("scores must be finite (a nan or inf has no rank)")
    return scores.astype(np.float64), truth


def _rank_counts(s: torch.Tensor, relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry: items of its row scoring >= it (its pessimistic rank), and relevant ones."""
    width = s.shape[1]
    at_or_above = width - torch.searchsorted(s.sort(1).values, s, right=False)
    # Irrelevant entries become -inf: below every finite score, so never counted.
    relevant_sorted = s.masked_fill(~relevant, -float("inf")).sort(1).values
    relevant_at_or_above = width - torch.searchsorted(relevant_sorted, s, right=False)
    return at_or_above, relevant_at_or_above


def _per_row(scores: np.ndarray, truth: np.ndarray, k: int | None) -> np.ndarray:
    """AP per row (``k`` None) or recall@k per row; nan where a row has no relevant item."""
    scores, truth = _check(scores, truth)
    out = np.full(len(scores), np.nan)
    for start in range(0, len(scores), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        # Contiguous: a transposed view (text -> image) would be copied by every searchsorted.
        s = torch.from_numpy(np.ascontiguousarray(scores[rows]))
        relevant = torch.from_numpy(np.ascontiguousarray(truth[rows]))
        at_or_above, relevant_at_or_above = _rank_counts(s, relevant)
        if k is None:
            precision = relevant_at_or_above.double() / at_or_above.double()
            value = precision.masked_fill(~relevant, 0.0).sum(1)
        else:
            value = ((at_or_above <= k) & relevant).sum(1).double()
        n_relevant = relevant.sum(1)
        has = (n_relevant > 0).numpy()
        out[rows][has] = (value / n_relevant.clamp(min=1)).numpy()[has]
    return out


def average_precision(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Average precision of each row's ranking of the columns, in [0, 1]; nan without relevant."""
    return _per_row(scores, truth, None)


def recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Fraction of each row's relevant columns ranked within its top ``k``; nan without relevant."""
    if k < 1:
        raise TaggingError(f"recall@k needs k >= 1, got {k}")
    return _per_row(scores, truth, k)


def expected_random_ap(n_items: int, n_relevant: np.ndarray) -> np.ndarray:
    """Exact expected AP of a uniformly random ranking of ``n_items``, ``n_relevant`` of them
    relevant (see the module docstring for the formula)."""
    r = np.asarray(n_relevant, dtype=np.float64)
    if n_items == 1:
        return np.ones_like(r)
    harmonic = float(np.sum(1.0 / np.arange(1, n_items + 1)))
    return (harmonic + (r - 1) / (n_items - 1) * (n_items - harmonic)) / n_items


def expected_random_recall(n_items: int, k: int) -> float:
    """Exact expected recall@k of a uniformly random ranking (the same for every row)."""
    return min(k, n_items) / n_items


def _mean_percent(values: np.ndarray) -> float:
    valid = values[~np.isnan(values)]
    return float(100.0 * valid.mean()) if valid.size else float("nan")


def _direction(scores: np.ndarray, truth: np.ndarray, prefix: str,
               ks: Sequence[int]) -> dict[str, float]:
    """mAP (+ recall@k when ``ks``) with chance levels, rows ranking columns."""
    n_relevant = truth.sum(1)
    answerable = n_relevant > 0
    chance_ap = expected_random_ap(truth.shape[1], n_relevant[answerable])
    out = {f"{prefix}map": _mean_percent(average_precision(scores, truth)),
           f"{prefix}map_chance": _mean_percent(chance_ap),
           f"{prefix}queries": int(answerable.sum())}
    for k in ks:
        out[f"{prefix}recall@{k}"] = _mean_percent(recall_at_k(scores, truth, k))
        out[f"{prefix}recall@{k}_chance"] = (100.0 * expected_random_recall(truth.shape[1], k)
                                             if answerable.any() else float("nan"))
    return out


def tag_metrics(scores: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                zero_shot: np.ndarray | None = None) -> dict[str, float]:
    """Image->tag mAP and recall@k, text->image mAP, each with its chance level, in %; with a
    boolean ``zero_shot`` mask over the vocabulary, the same restricted to those tags
    (keys prefixed ``zero_shot_``). ``*queries`` count the images (or tags) averaged over."""
    scores, truth = _check(scores, truth)
    out = {**_direction(scores, truth, "tag_", ks),
           **_direction(scores.T, truth.T, "text_to_image_", ())}
    if zero_shot is not None:
        zero_shot = np.asarray(zero_shot, dtype=bool)
        if zero_shot.shape != (truth.shape[1],):
            raise TaggingError(f"the zero-shot mask needs one entry per tag ({truth.shape[1]}), "
                               f"got shape {zero_shot.shape}")
        restricted = truth & zero_shot[None, :]
        out.update(_direction(scores, restricted, "zero_shot_tag_", ks))
        out.update(_direction(scores.T, restricted.T, "zero_shot_text_to_image_", ()))
    return out


@dataclass
class ScoreFile:
    """One model's tagging scores, as saved by :func:`save_scores`."""

    image_ids: list[str]
    vocabulary: list[str]
    scores: np.ndarray      # (images, vocabulary) similarities, at the dtype saved
    truth: np.ndarray       # (images, vocabulary) bool
    zero_shot: np.ndarray   # (vocabulary,) bool: tags unseen in training


def save_scores(path: str | Path, image_ids: Sequence[str], vocabulary: Sequence[str],
                scores: np.ndarray, truth: np.ndarray, zero_shot: np.ndarray | None = None) -> Path:
    """Write one model's scores and ground truth as ``.npz`` (no pickles), so metrics can be
    recomputed later without the model."""
    _check(scores, truth)
    scores, truth = np.asarray(scores), np.asarray(truth)  # kept at their dtype: same metrics
    if scores.shape != (len(image_ids), len(vocabulary)):
        raise TaggingError(f"scores {scores.shape} do not match {len(image_ids)} image ids x "
                           f"{len(vocabulary)} tags")
    mask = np.zeros(len(vocabulary), bool) if zero_shot is None else np.asarray(zero_shot, bool)
    if mask.shape != (len(vocabulary),):
        raise TaggingError(f"the zero-shot mask needs one entry per tag, got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:  # a handle: numpy would append .npz to a bare name
        np.savez_compressed(handle, image_ids=np.asarray(list(image_ids), dtype=str),
                            vocabulary=np.asarray(list(vocabulary), dtype=str),
                            scores=scores, truth=truth, zero_shot=mask)
    return path


def load_scores(path: str | Path) -> ScoreFile:
    """Read a file written by :func:`save_scores`."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return ScoreFile(image_ids=data["image_ids"].tolist(),
                             vocabulary=data["vocabulary"].tolist(), scores=data["scores"],
                             truth=data["truth"], zero_shot=data["zero_shot"])
    except (OSError, KeyError, ValueError) as exc:
        raise TaggingError(f"{path}: not a tagging score file ({exc})") from None


def metrics_from_file(path: str | Path, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """:func:`tag_metrics` recomputed from a saved score file (zero-shot ones when it has any)."""
    saved = load_scores(path)
    zero_shot = saved.zero_shot if saved.zero_shot.any() else None
    return tag_metrics(saved.scores, saved.truth, ks, zero_shot)
