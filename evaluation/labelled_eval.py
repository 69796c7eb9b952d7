"""Labelled retrieval inside an evaluation run: the table, every model's codes of its images,
both protocols, the report section and a picture (the metrics: ``evaluation.labelled``).

The caller (``pipeline/eval.py``) names the table: ``eval.labelled.table``, or the synthetic
world's. The ``unseen`` protocol queries with the table's images the encoders did not train on
(given as paths): on a user's own collection the encoders have seen the rest, and the no-NST
control has learned their labels; ``seen`` queries with that rest, so that leave-one-out splits
into what a model remembers and what carries over. Codes come from the
evaluation's own models (each image embedded once, fused pairs computed from their parts) and
from ``pipeline/embed.py`` outputs (``--embeddings NAME=DIR``), matched to the table by path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from common import storage
from common.images import ImageError, open_image
from common.schema import Config, Labelled
from evaluation.embed import EvalError, embed_images
from evaluation.fusion import FusedSpec, add_fused
from evaluation.labelled import (LabelTable, LabelTableError, LabelledResult, label_differences,
                                 markdown_section, nearest, query_database_split,
                                 read_label_table, read_split, score_table, write_split)
from evaluation.report import plot_retrieval_grid
from models.embedder import Embedder

FOLDER = "labelled"                 # under the evaluation's --out
SPLIT_FILE = "split.csv"
PICTURE = "labelled_grid.png"
PICTURE_NEIGHBOURS = 8


@dataclass
class LabelledTask:
    table: LabelTable
    splits: dict[str, tuple[np.ndarray, np.ndarray] | None]   # protocol -> (queries, gallery) rows
    notes: dict[str, str]                                     # column -> a sentence for the report


def _split(table: LabelTable, lcfg: Labelled, seed: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's query/database split: ``split_file`` when given; else read back when ``out``
    holds one (reruns and other models score the same split), else drawn with the seed and
    written there."""
    given = lcfg.split_file
    path = Path(given) if given else out / FOLDER / SPLIT_FILE
    if path.is_file() or given:
        try:
            return read_split(path, table.ids)
        except (LabelTableError, OSError) as exc:
            raise EvalError(f"eval.labelled.split_file: {exc}") from None
    # Stratified on every column's labels at once: one split serves all columns.
    labels = [frozenset(f"{column}={label}" for column, sets in zip(table.columns, row) for label in sets)
              for row in zip(*table.columns.values())]
    queries, database = query_database_split(labels, lcfg.query_fraction, seed)
    write_split(path, table.ids, queries, database)
    return queries, database


@dataclass
class TableSource:
    """Where a run's labelled table comes from: a file, its label columns (None: all) and a
    sentence per column for the report."""

    path: Path
    columns: list[str] | None = None
    notes: dict[str, str] = field(default_factory=dict)


def prepare_labelled(cfg: Config, source: TableSource, out: Path,
                     trained: set[str] | None = None) -> LabelledTask:
    """The run's labelled task; the table is read and checked (columns, labels, every file)
    before any embedding work. ``trained``: the resolved paths of the images the encoders
    trained on, for the ``unseen`` and ``seen`` protocols (None: not known, they are skipped)."""
    lcfg = cfg.eval.labelled
    try:
        table = read_label_table(source.path, source.columns)
    except LabelTableError as exc:
        raise EvalError(f"eval.labelled.table: {exc}") from None
    splits: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for protocol in lcfg.protocols:
        if protocol == "loo":
            splits[protocol] = None
        elif protocol == "split":
            splits[protocol] = _split(table, lcfg, cfg.seed, out)
        elif (queries := _trained_split(table, trained, protocol == "seen")) is not None:
            splits[protocol] = queries
    return LabelledTask(table, splits, source.notes)


def _trained_split(table: LabelTable, trained: set[str] | None,
                   seen: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """(the rows the encoders trained on if ``seen``, else the others; every row), or None
    where that says nothing new: the trained images are not known, or none is in the table
    (then unseen is leave-one-out and seen is empty)."""
    if not trained:
        return None
    in_training = np.array([str(Path(path).resolve()) in trained for path in table.paths])
    if not in_training.any():
        return None
    return np.flatnonzero(in_training == seen), np.arange(len(table))


def _opened(paths: Sequence[str]):
    for path in paths:
        try:
            yield open_image(path)
        except ImageError as exc:
            raise EvalError(f"eval.labelled.table: {exc}") from None


def embed_table(task: LabelledTask, models: Sequence[Embedder], fused: Sequence[FusedSpec],
                batch_size: int) -> dict[str, np.ndarray]:
    """Every model's codes of the table's images, in table order, fused pairs included."""
    if not models:
        return {}
    return add_fused(embed_images(_opened(task.table.paths), models, batch_size), fused)


def stored_codes(task: LabelledTask, text: str) -> tuple[str, np.ndarray]:
    """``NAME=DIR``: the codes ``pipeline/embed.py`` wrote to DIR (a folder or URL), one per table row (matched by
    the image's resolved path); a table image DIR does not hold is an error naming it."""
    from stylecode.identity import StyleCodeError
    from stylecode.store import read_folder
    name, _, folder = text.rpartition("=")
    try:
        stored = read_folder(storage.path_or_url(folder))   # a URL stays whole
    except StyleCodeError as exc:
        raise EvalError(f"--embeddings {text}: {exc}") from None
    row_of = {str(Path(path).resolve()): row for row, path in enumerate(stored.paths)}
    wanted = [str(Path(path).resolve()) for path in task.table.paths]
    missing = [path for path in wanted if path not in row_of]
    if missing:
        raise EvalError(f"--embeddings {text}: {len(missing)} of the table's {len(task.table)} "
                        f"images have no code there (embed the table's images), e.g. {missing[0]}")
    return name or stored.info.name, stored.codes[[row_of[path] for path in wanted]]


def _picture(task: LabelledTask, model: str, codes: np.ndarray, queries: int, out: Path) -> None:
    """A few queries of the first label column with their nearest images; green = a hit."""
    column, labels = next(iter(task.table.columns.items()))
    candidates = [row for row, label_set in enumerate(labels) if label_set]
    if not (queries and candidates):
        return
    chosen = [candidates[i] for i in np.unique(np.linspace(0, len(candidates) - 1, queries).astype(int))]
    found = nearest(codes, chosen, k=PICTURE_NEIGHBOURS)
    images = {row: open_image(task.table.paths[row]) for row in {*chosen, *found.ravel().tolist()}}
    rows = [(images[q], [(images[n], bool(labels[q] & labels[n])) for n in row])
            for q, row in zip(chosen, found)]
    plot_retrieval_grid(rows, f"{model}: nearest images (green = same {column})", out)


def run_labelled(task: LabelledTask, codes: dict[str, np.ndarray], cfg: Config, out: Path
                 ) -> tuple[dict, list[str]]:
    """Score every model on every protocol; returns the report.json payload and the report's
    Markdown lines, and draws the picture with the first model."""
    lcfg = cfg.eval.labelled
    payload, lines = {"table": str(task.table.source), "images": len(task.table)}, []
    for protocol, split in task.splits.items():
        results = score_table(codes, task.table, protocol, split=split, ks=lcfg.ks,
                              chunk_size=cfg.eval.chunk_size)
        payload[protocol] = _summaries(results)
        differences = label_differences(results, task.table.columns, cfg.eval.bootstrap_resamples,
                                        cfg.seed)
        if differences:
            payload.setdefault("differences", {"reference": next(iter(codes))})[protocol] = differences
        lines += markdown_section(results, task.table, protocol=protocol, notes=task.notes,
                                  differences=differences)
    if codes:
        model = next(iter(codes))
        _picture(task, model, codes[model], lcfg.picture_queries, out / PICTURE)
    return payload, lines


def _summaries(results: dict[str, dict[str, LabelledResult]]) -> dict:
    """{column: {model: metrics, "chance": levels, "queries": n}}, in %."""
    by_column: dict[str, dict] = {}
    for model, columns in results.items():
        for column, result in columns.items():
            entry = by_column.setdefault(column, {"queries": len(result.query),
                                                  "chance": result.chance()})
            entry[model] = result.summary()
    return by_column
