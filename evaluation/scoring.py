"""The metrics reported per model and split, in %: one table, read by the scoring, the report
and the printed summary alike. Adding a metric is one entry of ``METRICS``.

Test splits: style retrieval among the split's stylizations (mAP, recall@1, recall@10), style
IR-1 against the split's style references, and the same for content (relevant = same content
image; IR-1 gallery = the content source images), where lower is better. Crops: each crop
against all other crops, relevant = crops of the same image.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from evaluation.bootstrap import paired_difference
from evaluation.embed import SplitEmbeddings
from evaluation.metrics import Ranking, rank_queries

TEST, CROPS = "test", "crops"   # the kinds of split a metric applies to


class Rankings:
    """The retrieval tasks of one model on one split, each ranked on first use (several
    metrics read one ranking)."""

    def __init__(self, split: SplitEmbeddings, model: str, chunk_size: int, device: torch.device):
        self.split, self.model = split, model
        self.options = dict(chunk_size=chunk_size, device=device)

    def _self_ranked(self, labels) -> Ranking:
        return rank_queries(self.split.images[self.model], labels, **self.options)

    @cached_property
    def style(self) -> Ranking:
        return self._self_ranked(self.split.style_ids)

    @cached_property
    def content(self) -> Ranking:
        return self._self_ranked(self.split.content_ids)

    @cached_property
    def style_references(self) -> Ranking:
        return rank_queries(self.split.images[self.model], self.split.style_ids,
                            self.split.references[self.model], self.split.reference_ids,
                            with_ap=False, **self.options)

    @cached_property
    def content_sources(self) -> Ranking:
        return rank_queries(self.split.images[self.model], self.split.content_ids,
                            self.split.contents[self.model], self.split.content_gallery_ids,
                            with_ap=False, **self.options)


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    kind: str                                 # TEST or CROPS
    lower_is_better: bool
    compute: Callable[[Rankings], float]
    chance: Callable[[Rankings], float]       # the value of a random order on the same labels
    summary: bool = False                     # also printed by the evaluation command


METRICS = (
    Metric("style_map", "Style mAP", TEST, False, lambda r: r.style.mean_ap(),
           lambda r: r.style.chance_map(), summary=True),
    Metric("style_ir1", "Style IR-1", TEST, False, lambda r: r.style_references.recall(1),
           lambda r: r.style_references.chance_recall(1)),
    Metric("content_map", "Content mAP", TEST, True, lambda r: r.content.mean_ap(),
           lambda r: r.content.chance_map(), summary=True),
    Metric("content_ir1", "Content IR-1", TEST, True, lambda r: r.content_sources.recall(1),
           lambda r: r.content_sources.chance_recall(1)),
    Metric("style_recall1", "Style recall@1", TEST, False, lambda r: r.style.recall(1),
           lambda r: r.style.chance_recall(1)),
    Metric("style_recall10", "Style recall@10", TEST, False, lambda r: r.style.recall(10),
           lambda r: r.style.chance_recall(10)),
    # On crops the "style" label is the source image: relevant = crops of the same image.
    Metric("map", "Crops mAP", CROPS, False, lambda r: r.style.mean_ap(), lambda r: r.style.chance_map()),
    Metric("top1", "Crops top-1 accuracy", CROPS, False, lambda r: r.style.recall(1),
           lambda r: r.style.chance_recall(1)),
)


def metrics_for(kind: str) -> list[Metric]:
    return [metric for metric in METRICS if metric.kind == kind]


CHANCE_SUFFIX = "_chance"


def score_rankings(rankings: Rankings, kind: str) -> dict[str, float]:
    """Every metric of ``kind`` on one model's rankings, each with its chance level
    (``<name>_chance``: the same for every model, as it depends on the labels only)."""
    scores = {}
    for metric in metrics_for(kind):
        scores[metric.name] = metric.compute(rankings)
        scores[metric.name + CHANCE_SUFFIX] = metric.chance(rankings)
    return scores


def score_split(split: SplitEmbeddings, model: str, kind: str, chunk_size: int,
                device: torch.device) -> dict[str, float]:
    """Every metric of ``kind`` for one model on one split (``score_rankings``)."""
    return score_rankings(Rankings(split, model, chunk_size, device), kind)


# The mAP metrics whose differences between models get intervals, and the ranking each reads.
DIFFERENCE_RANKINGS = {"style_map": "style", "content_map": "content"}


def split_differences(rankings: dict[str, Rankings], reference: str, resamples: int,
                      seed: int) -> dict[str, dict[str, list[float]]]:
    """``reference`` minus every other model on one test split, per mAP metric: ``[difference,
    low, high]`` in points, the 95% interval of a paired bootstrap over the split's contents and
    its style groups (``SplitEmbeddings.groups``; without them, the styles): sibling styles of
    one group rise and fall together, so they are drawn together (evaluation/bootstrap.py)."""
    base = rankings[reference]
    split = base.split
    groups = split.groups if len(split.groups) else split.style_ids
    out = {}
    # A metric no query can score (every content in one stylization: nothing relevant) has no
    # difference to give.
    tasks = {metric: task for metric, task in DIFFERENCE_RANKINGS.items()
             if not np.isnan(getattr(base, task).ap).all()}
    for name, other in rankings.items():
        if name == reference:
            continue
        out[name] = {metric: paired_difference(getattr(base, task).ap, getattr(other, task).ap,
                                               groups, split.content_ids, resamples,
                                               seed).as_list()
                     for metric, task in tasks.items()}
    return out
