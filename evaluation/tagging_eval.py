"""Zero-shot style tagging in the evaluation (``eval.tagging``; the ``tagging`` library does the work).

For every evaluated model (fused ones included) a head maps the model's frozen codes of the
TRAINING styles (the ``train`` split's style references) into a frozen text encoder's space,
trained on those styles' tags without the configured zero-shot tags. It then ranks the whole tag
vocabulary for each held-out TEST style (the test splits' style references, whose codes the
retrieval evaluation has already computed); tags never seen in training, the zero-shot tags
among them, are scored apart.

Everything that can fail on user input (the text encoder folder, the head settings, the
zero-shot list, every style's tags) is checked by :func:`prepare_tagging`, before any embedding.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from common import storage
from common.schema import Config
from evaluation.embed import EvalError, RecurringImages, embed_images, reference_key
from evaluation.fusion import FusedSpec, add_fused
from models.embedder import Embedder
from shards.reader import SplitRoles, StyleReference, iter_references
from tagging import (HeadConfig, TagHead, TaggingError, TextEncoder, build_vocabulary, save_scores,
                     tag_metrics, train_head, truth_matrix, unseen_mask, validate_tag_rows)

KEY = "eval.tagging"
RECALL_KS = (5, 10)
TOP_K = 5            # predicted tags shown per image in tagging.png
# The report's columns: metric key of tagging.tag_metrics -> title (chance levels beside them).
COLUMNS = {"tag_map": "tag mAP", "tag_recall@5": "recall@5", "tag_recall@10": "recall@10",
           "zero_shot_tag_map": "zero-shot tag mAP", "zero_shot_tag_recall@5": "zero-shot recall@5",
           "zero_shot_tag_recall@10": "zero-shot recall@10",
           "text_to_image_map": "text→image mAP",
           "zero_shot_text_to_image_map": "zero-shot text→image mAP"}


@dataclass
class TaggedStyles:
    """Style references with their checked tag lists, each style once, in shard order."""

    references: list[StyleReference]
    rows: list[list[str]]

    @property
    def ids(self) -> list[str]:
        return [ref.style_id for ref in self.references]


@dataclass
class TaggingTask:
    """What tagging needs, checked: the text encoder, the head settings, the styles."""

    text: TextEncoder
    head: HeadConfig
    zero_shot: list[str]
    train: TaggedStyles
    test: TaggedStyles
    picture_images: int


@dataclass
class TaggingResult:
    metrics: dict[str, dict[str, float]]          # model -> tag_metrics
    meta: dict
    # Per pictured test style: its image, its tags, and per pictured model its top tags.
    examples: list[tuple[Image.Image, list[str], dict[str, list[str]]]] = field(default_factory=list)


def read_tagged_styles(split_dirs: Sequence[str | Path]) -> TaggedStyles:
    """The style references of the splits (a style shared by several splits once) with their
    tags; a missing, empty or malformed tag list is an error naming the shard and sample."""
    references: dict[str, StyleReference] = {}
    for split_dir in split_dirs:
        for ref in iter_references(split_dir):
            references.setdefault(ref.style_id, ref)
    refs = list(references.values())
    try:
        rows = validate_tag_rows([ref.tags for ref in refs], "style tags (the shards' json)",
                                 row_ids=[f"{ref.shard}, sample {ref.key}" for ref in refs])
    except TaggingError as exc:
        raise EvalError(f"{', '.join(str(d) for d in split_dirs)}: {exc}") from None
    return TaggedStyles(refs, rows)


def text_model_path(value: str | None) -> Path | None:
    """``eval.tagging.text_model``: None (the installed default) or a folder (absolute once
    loaded: common.config resolves relative paths against the config file's folder)."""
    return None if value is None else Path(value).expanduser()


def _zero_shot_tags(value: object) -> list[str]:
    if value == []:
        return []
    try:
        return validate_tag_rows([value], f"{KEY}.zero_shot_tags")[0]
    except TaggingError as exc:
        raise EvalError(str(exc)) from None


def prepare_tagging(cfg: Config, shards: str | Path, roles: SplitRoles, device: str) -> TaggingTask:
    """Check and load everything tagging needs (fails before any embedding work)."""
    settings = cfg.eval.tagging
    if roles.train is None:
        raise EvalError(f"{KEY}.enabled is true but {shards} holds no train split: the tagging "
                        f"heads train on its style tags (set {KEY}.enabled=false to skip tagging)")
    try:
        head = HeadConfig.from_dict({**settings.head.model_dump(), "seed": cfg.seed})
    except (TaggingError, TypeError) as exc:
        raise EvalError(f"{KEY}.head: {exc}") from None
    zero_shot = _zero_shot_tags(settings.zero_shot_tags)
    train = read_tagged_styles([storage.join(shards, roles.train)])
    test = read_tagged_styles([storage.join(shards, split) for split in roles.test_columns()])
    try:
        text = TextEncoder(text_model_path(settings.text_model), device=device)
    except TaggingError as exc:
        raise EvalError(f"{KEY}.text_model: {exc}") from None
    return TaggingTask(text, head, zero_shot, train, test, int(settings.picture_images))


def training_rows(styles: TaggedStyles, zero_shot: Sequence[str]) -> tuple[list[int], list[list[str]]]:
    """The rows the heads train on: each training style's tags less the zero-shot ones, and the
    positions of the styles kept (a style left with no tag has nothing to learn from)."""
    held = set(zero_shot)
    rows = [[tag for tag in row if tag not in held] for row in styles.rows]
    keep = [i for i, row in enumerate(rows) if row]
    if not keep:
        raise EvalError(f"every training style's tags are in {KEY}.zero_shot_tags: nothing to train on")
    return keep, [rows[i] for i in keep]


def _test_codes(task: TaggingTask, recurring: RecurringImages,
                fused: Sequence[FusedSpec]) -> dict[str, np.ndarray]:
    """The test styles' codes: the retrieval evaluation embedded them already (recurring)."""
    by_key = {reference_key(ref.style_id): ref for ref in task.test.references}
    codes = recurring.embed(list(by_key), lambda keys: [by_key[key].image() for key in keys])
    return add_fused(codes, fused)


def picture_rows(n_styles: int, count: int) -> list[int]:
    """Evenly spread test styles for tagging.png."""
    return np.unique(np.linspace(0, n_styles - 1, min(count, n_styles)).astype(int)).tolist()


@dataclass
class _Targets:
    """The test side, the same for every model: vocabulary, ground truth, unseen tags."""

    vocabulary: list[str]
    truth: np.ndarray
    unseen: np.ndarray


def _tag_with(name: str, train: np.ndarray, test: np.ndarray, rows: list[list[str]],
              targets: _Targets, task: TaggingTask, model_hash: str,
              out: Path) -> tuple[TagHead, dict[str, float]]:
    """One model's head, trained, saved and scored; returns it and its metrics."""
    head = train_head(train, rows, task.text, task.head, image_model=name,
                      image_model_hash=model_hash, source="training style tags")
    head.save(out / "heads" / f"{name}.pt")
    scores = head.score(test, targets.vocabulary)
    save_scores(out / "tagging" / f"{name}.npz", task.test.ids, targets.vocabulary, scores,
                targets.truth, targets.unseen)
    unseen = targets.unseen if targets.unseen.any() else None
    return head, tag_metrics(scores, targets.truth, RECALL_KS, unseen)


def run_tagging(task: TaggingTask, models: Sequence[Embedder], fused: Sequence[FusedSpec],
                hashes: dict[str, str], recurring: RecurringImages, batch_size: int,
                picture_models: Sequence[str], out: Path) -> TaggingResult:
    """Train a head per model, score the test styles, save scores (``tagging/<model>.npz``)
    and heads (``heads/<model>.pt`` with their text cache)."""
    started = time.time()
    train_codes = add_fused(embed_images((ref.image() for ref in task.train.references), models,
                                         batch_size), fused)
    test_codes = _test_codes(task, recurring, fused)
    embedded = time.time() - started
    keep, rows = training_rows(task.train, task.zero_shot)
    vocabulary = build_vocabulary(rows + task.test.rows)
    targets = _Targets(vocabulary, truth_matrix(task.test.rows, vocabulary, "test style tags"),
                       unseen_mask(vocabulary, build_vocabulary(rows)))
    shown = picture_rows(len(task.test.rows), task.picture_images)
    result = TaggingResult({}, {})
    tops: dict[str, list[list[str]]] = {}
    for name, codes in train_codes.items():
        head, result.metrics[name] = _tag_with(name, codes[keep], test_codes[name], rows, targets,
                                               task, hashes.get(name, ""), out)
        if name in picture_models:
            tops[name] = head.top_tags(test_codes[name][shown], vocabulary, TOP_K)
    result.examples = [(task.test.references[i].image(), task.test.rows[i],
                        {name: tops[name][j] for name in picture_models if name in tops})
                       for j, i in enumerate(shown)]
    result.meta = _meta(task, keep, targets, embedded, time.time() - started)
    return result


def _meta(task: TaggingTask, keep: list[int], targets: _Targets, embed_seconds: float,
          seconds: float) -> dict:
    test_counts = {tag: sum(tag in row for row in task.test.rows) for tag in task.zero_shot}
    return {"text_encoder": task.text.identity, "train_styles": len(keep),
            "train_styles_without_tags": len(task.train.rows) - len(keep),
            "test_styles": len(task.test.rows), "vocabulary": len(targets.vocabulary),
            "unseen_tags": int(targets.unseen.sum()), "zero_shot_tags": test_counts,
            "recall_ks": list(RECALL_KS), "head": asdict(task.head),
            "seconds": {"embed_train_styles": round(embed_seconds, 2),
                        "total": round(seconds, 2)}}
