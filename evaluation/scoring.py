"""The numbers reported per model and split (see "Evaluation" in the design notes), in %.

Test splits: style retrieval among the split's stylizations (mAP, recall@1, recall@10), style
IR-1 against the split's style references, and the same for content (relevant = same content
image; IR-1 gallery = the content source images), where lower is better. Crops: each crop
against all other crops, relevant = crops of the same image.
"""
from __future__ import annotations

import torch

from evaluation.embed import SplitEmbeddings
from evaluation.metrics import rank_queries

TEST_METRICS = ("style_map", "style_ir1", "content_map", "content_ir1", "style_recall1",
                "style_recall10")
CROPS_METRICS = ("map", "top1")
LOWER_IS_BETTER = ("content_map", "content_ir1")


def score_test_split(split: SplitEmbeddings, model: str, chunk_size: int,
                     device: torch.device) -> dict[str, float]:
    images = split.images[model]
    options = dict(chunk_size=chunk_size, device=device)
    style = rank_queries(images, split.style_ids, **options)
    style_ir = rank_queries(images, split.style_ids, split.references[model], split.reference_ids,
                            with_ap=False, **options)
    content = rank_queries(images, split.content_ids, **options)
    content_ir = rank_queries(images, split.content_ids, split.contents[model],
                              split.content_gallery_ids, with_ap=False, **options)
    return {"style_map": style.mean_ap(), "style_ir1": style_ir.recall(1),
            "content_map": content.mean_ap(), "content_ir1": content_ir.recall(1),
            "style_recall1": style.recall(1), "style_recall10": style.recall(10)}


def score_crops(split: SplitEmbeddings, model: str, chunk_size: int,
                device: torch.device) -> dict[str, float]:
    crops = rank_queries(split.images[model], split.style_ids, chunk_size=chunk_size, device=device)
    return {"map": crops.mean_ap(), "top1": crops.recall(1)}
